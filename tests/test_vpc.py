"""VPC statistics (vpc_stats): hand-computed percentiles, prediction correction, binning,
strata, LLOQ censoring, and the calibration of the simulated intervals."""

import numpy as np
import pytest

from bayes_nlme.plots._vpc import bin_edges, vpc_stats

# Six observations, deliberately not in time order. With 2 bins the cut is halfway between
# the 3rd and 4th sorted times (2 and 4), so
#   bin 0 = times {0.5, 1, 2} = obs (4, 0, 2), DV (2, 4, 6)
#   bin 1 = times {4, 6, 8}   = obs (1, 5, 3), DV (1, 3, 5)
TIME = np.array([1.0, 4.0, 2.0, 8.0, 0.5, 6.0])
DV = np.array([4.0, 1.0, 6.0, 5.0, 2.0, 3.0])
# three replicates: DV itself, 2 x DV, DV + 10
SIMS = np.stack([DV, 2 * DV, DV + 10])
PI = (0.05, 0.5, 0.95)
PRED = np.array([2.0, 1.0, 4.0, 5.0, 1.0, 2.0])


def _q(sorted_values, p):
    """Type-7 quantile written out: h = (n-1) p, interpolate between floor and ceil."""
    n = len(sorted_values)
    h = (n - 1) * p
    lo = int(np.floor(h))
    hi = min(lo + 1, n - 1)
    return sorted_values[lo] + (h - lo) * (sorted_values[hi] - sorted_values[lo])


def test_hand_computed_percentiles_two_bins():
    st = vpc_stats(TIME, DV, SIMS, bins=2, pi=PI, ci=0.95)
    np.testing.assert_allclose(st["lower"].values[0], [0.5, 3.0])
    np.testing.assert_allclose(st["upper"].values[0], [3.0, 8.0])
    np.testing.assert_array_equal(st["n_obs"].values[0], [3, 3])
    np.testing.assert_allclose(st["time"].values[0], [1.0, 6.0])  # median time of each bin
    np.testing.assert_array_equal(st["bin_index"].values, [0, 1, 0, 1, 0, 1])
    # n = 3 per bin: 5% -> s0 + 0.1 (s1 - s0); 50% -> s1; 95% -> s1 + 0.9 (s2 - s1)
    np.testing.assert_allclose(st["observed"].values[0, 0], [2.2, 4.0, 5.8])  # sorted 2, 4, 6
    np.testing.assert_allclose(st["observed"].values[0, 1], [1.2, 3.0, 4.8])  # sorted 1, 3, 5
    # simulated medians per replicate: bin 0 -> 4, 8, 14; bin 1 -> 3, 6, 13
    # median over replicates: 8 and 6; 95% interval over 3 values: 2.5% -> s0 + 0.05 (s1 - s0),
    # 97.5% -> s1 + 0.95 (s2 - s1)
    med = st.sel(pi=0.5)
    np.testing.assert_allclose(med["sim_median"].values[0], [8.0, 6.0])
    np.testing.assert_allclose(med["sim_lower"].values[0], [4.2, 3.15])
    np.testing.assert_allclose(med["sim_upper"].values[0], [8 + 0.95 * 6, 6 + 0.95 * 7])
    # simulated 5th percentiles: bin 0 -> 2.2, 4.4, 12.2 (median 4.4)
    np.testing.assert_allclose(st.sel(pi=0.05)["sim_median"].values[0], [4.4, 2.4])
    assert not st["obs_censored"].values.any()
    assert st.attrs["pc"] is False and st.attrs["n_sim"] == 3


def test_prediction_correction_by_hand():
    # bin 0: obs (4, 0, 2), PRED (1, 2, 4) -> PRED_bin = 2, factors 2, 1, 0.5
    #        pcDV = (2*2, 4*1, 6*0.5) = (4, 4, 3) -> sorted 3, 4, 4
    # bin 1: obs (1, 5, 3), PRED (1, 2, 5) -> PRED_bin = 2, factors 2, 1, 0.4
    #        pcDV = (1*2, 3*1, 5*0.4) = (2, 3, 2) -> sorted 2, 2, 3
    st = vpc_stats(TIME, DV, SIMS, bins=2, pred=PRED, pi=PI)
    assert st.attrs["pc"] is True and st.attrs["n_excluded"] == 0
    np.testing.assert_allclose(st["pred_bin"].values[0], [2.0, 2.0])
    np.testing.assert_allclose(st["y"].values, [4.0, 2.0, 3.0, 2.0, 4.0, 3.0])
    np.testing.assert_allclose(st["observed"].values[0, 0], [3.1, 4.0, 4.0])
    np.testing.assert_allclose(st["observed"].values[0, 1], [2.0, 2.0, 2.9])
    # replicate 2 (DV + 10), bin 0: (12*2, 14*1, 16*0.5) = (24, 14, 8) -> median 14
    # medians of the replicates in bin 0: 4, 8 (2 x pcDV), 14 -> median 8
    # bin 1: (11*2, 13*1, 15*0.4) = (22, 13, 6) -> median 13; replicates 2, 4, 13 -> median 4
    med = st.sel(pi=0.5)
    np.testing.assert_allclose(med["sim_median"].values[0], [8.0, 4.0])
    np.testing.assert_allclose(med["sim_upper"].values[0], [8 + 0.95 * 6, 4 + 0.95 * 9])
    # PRED of the simulations given per replicate, proportional to PRED: same correction
    st2 = vpc_stats(TIME, DV, SIMS, bins=2, pred=PRED, pred_sims=PRED * [[1.0], [2.0], [3.0]])
    np.testing.assert_allclose(st2["sim_median"].values, st["sim_median"].values)
    # different PRED for the simulations changes only the simulated side
    st3 = vpc_stats(TIME, DV, SIMS, bins=2, pred=PRED, pred_sims=np.ones(6))
    np.testing.assert_allclose(st3["observed"].values, st["observed"].values)
    np.testing.assert_allclose(st3.sel(pi=0.5)["sim_median"].values[0], [8.0, 6.0])


def test_prediction_correction_leaves_out_nonpositive_pred():
    pred = PRED.copy()
    pred[4] = 0.0  # e.g. a pre-dose sample
    st = vpc_stats(TIME, DV, SIMS, bins=2, pred=pred)
    assert st.attrs["n_excluded"] == 1
    assert np.isnan(st["y"].values[4]) and st["bin_index"].values[4] == -1
    # bins are computed without it: 5 times -> cut at round(5/2) = 2 -> between 2 and 4
    np.testing.assert_array_equal(st["n_obs"].values[0], [2, 3])
    # bin 0 = obs 0, 2 with PRED 2, 4 -> PRED_bin = 3: pcDV = 4 * 3/2, 6 * 3/4 = 6, 4.5
    np.testing.assert_allclose(st["y"].values[[0, 2]], [6.0, 4.5])


def test_bins_int_edges_auto():
    # explicit edges: [0, 1) [1, 5) [5, 8]; 8 is in the last (closed) bin, 0.5 in the first
    st = vpc_stats(TIME, DV, SIMS, bins=[0.0, 1.0, 5.0, 8.0])
    np.testing.assert_array_equal(st["n_obs"].values[0], [1, 3, 2])
    np.testing.assert_array_equal(st["bin_index"].values, [1, 1, 1, 2, 0, 2])
    # observations outside explicit edges are not used
    st = vpc_stats(TIME, DV, SIMS, bins=[1.0, 5.0])
    np.testing.assert_array_equal(st["bin_index"].values, [0, 0, 0, -1, -1, -1])
    np.testing.assert_allclose(st["observed"].sel(pi=0.5).values[0], [4.0])  # DV 4, 1, 6
    # auto with few distinct times: one bin per time, edges halfway
    t = np.array([0.0, 0.0, 1.0, 1.0, 2.0, 2.0])
    np.testing.assert_allclose(bin_edges(t, "auto"), [0.0, 0.5, 1.5, 2.0])
    st = vpc_stats(t, np.arange(6.0), np.ones((2, 6)), bins="auto")
    np.testing.assert_allclose(st["observed"].sel(pi=0.5).values[0], [0.5, 2.5, 4.5])
    # auto with many distinct times: about 10 observations per quantile bin
    np.testing.assert_allclose(bin_edges(np.arange(50.0), "auto"), [0, 9.5, 19.5, 29.5, 39.5, 49])
    assert bin_edges(np.arange(500.0), "auto").size == 11  # at most 10 bins
    # ties never straddle a quantile edge
    np.testing.assert_allclose(bin_edges([0.0] * 6 + [1.0, 2.0, 3.0, 4.0], 2), [0, 0.5, 4])
    with pytest.raises(ValueError, match="increasing"):
        bin_edges(TIME, [1.0, 1.0])
    with pytest.raises(ValueError, match="positive integer"):
        bin_edges(TIME, 0)


def test_strata_are_binned_separately():
    strata = np.array(["b", "a", "b", "a", "b", "a"])  # a: times 4, 8, 6; b: 1, 2, 0.5
    st = vpc_stats(TIME, DV, SIMS, bins=2, strata=strata)
    assert st["stratum"].values.tolist() == ["a", "b"]
    np.testing.assert_array_equal(st["stratum_index"].values, [1, 0, 1, 0, 1, 0])
    # stratum a: sorted times 4, 6, 8, cut at round(3/2) = 2 -> edge 7: {4, 6} {8}
    np.testing.assert_allclose(st["lower"].sel(stratum="a").values, [4.0, 7.0])
    np.testing.assert_array_equal(st["n_obs"].sel(stratum="a").values, [2, 1])
    np.testing.assert_allclose(st["observed"].sel(stratum="a", pi=0.5).values, [2.0, 5.0])
    # stratum b: times 0.5, 1, 2 -> edge 1.5: {0.5, 1} {2}; DV (2, 4) and (6)
    np.testing.assert_allclose(st["observed"].sel(stratum="b", pi=0.5).values, [3.0, 6.0])
    # explicit edges: empty bins have n_obs 0 and NaN statistics
    st = vpc_stats(TIME, DV, SIMS, bins=[0, 3, 5, 9], strata=strata)
    np.testing.assert_array_equal(st["n_obs"].values, [[0, 1, 2], [3, 0, 0]])
    assert np.isnan(st["observed"].values[0, 0]).all()


def test_lloq_fractions_and_censored_percentiles():
    lloq = 2.5  # BLQ: DV 1 (obs 1) and DV 2 (obs 4)
    st = vpc_stats(TIME, DV, SIMS, bins=2, lloq=lloq)
    np.testing.assert_allclose(st["obs_blq"].values[0], [1 / 3, 1 / 3])
    # 3 values, 1 BLQ: percentile p is censored iff floor(2 p) < 1, i.e. only the 5th
    np.testing.assert_array_equal(
        st["obs_censored"].values[0], [[True, False, False], [True, False, False]]
    )
    assert np.isnan(st["observed"].values[0, :, 0]).all()
    # the median is the middle value; BLQ values rank lowest whatever their recorded DV
    np.testing.assert_allclose(st["observed"].values[0, :, 1], [4.0, 3.0])
    np.testing.assert_allclose(st["observed"].values[0, :, 2], [5.8, 4.8])
    # simulated fraction BLQ per replicate: bin 0 -> 1/3, 0, 0; bin 1 -> 1/3, 1/3, 0
    np.testing.assert_allclose(st["sim_blq_median"].values[0], [0.0, 1 / 3])
    np.testing.assert_allclose(st["sim_blq_upper"].values[0], [0.95 / 3, 1 / 3])
    # two BLQ of three: the median is censored too
    # (and so is the 95th, interpolated between the 2nd and 3rd values)
    st = vpc_stats(TIME, DV, SIMS, bins=2, lloq=4.5)  # BLQ: 4, 2 (bin 0); 1, 3 (bin 1)
    assert st["obs_censored"].values[0].all()
    assert np.isnan(st["observed"].values).all()
    # per-observation LLOQ
    st = vpc_stats(TIME, DV, SIMS, bins=2, lloq=np.where(TIME < 3, 10.0, 0.0))
    np.testing.assert_allclose(st["obs_blq"].values[0], [1.0, 0.0])
    assert "obs_blq" not in vpc_stats(TIME, DV, SIMS, bins=2)


def test_input_checks():
    with pytest.raises(ValueError, match="sims must have shape"):
        vpc_stats(TIME, DV, np.ones((3, 5)))
    with pytest.raises(ValueError, match="dv has"):
        vpc_stats(TIME, DV[:5], SIMS)
    with pytest.raises(ValueError, match="strata"):
        vpc_stats(TIME, DV, SIMS, strata=["a"] * 5)


# ------------------------------------------------------------------ calibration (statistical)
TIMES = np.array([0.5, 1.0, 2.0, 4.0, 8.0, 12.0])


def _replicates(rng, n_rep, n_id=30, k=0.25, dose_ratio=None):
    """One-compartment-like profiles with log-normal IIV on level and slope, proportional
    residual error: shape (n_rep, n_id * 6). ``dose_ratio`` gives each subject a dose."""
    t = np.tile(TIMES, n_id)
    dose = np.ones(n_id) if dose_ratio is None else dose_ratio
    base = 10 * np.repeat(dose, TIMES.size)
    eta_v = rng.normal(0, 0.3, (n_rep, n_id))
    eta_k = rng.normal(0, 0.3, (n_rep, n_id))
    conc = (
        base
        * np.exp(np.repeat(eta_v, 6, axis=1))
        * np.exp(-k * np.exp(np.repeat(eta_k, 6, axis=1)) * t)
    )
    return t, conc * np.exp(rng.normal(0, 0.15, conc.shape))


@pytest.mark.parametrize("pc", [False, True])
def test_observed_percentiles_inside_simulated_intervals_when_model_is_true(pc):
    """Observations that are one more replicate of the simulation: the observed median lies
    in the simulated 95% interval in about 95% of the bins (asserted: >= 85% over 20 datasets
    x 6 bins); a wrong elimination rate (k 0.25 -> 0.4) is detected (<= 50% covered)."""
    rng = np.random.default_rng(1)
    dose = rng.choice([1.0, 2.0, 4.0], 30)  # unequal doses: the case for a pcVPC
    covered, covered_wrong = [], []
    for _ in range(20):
        t, reps = _replicates(rng, 201, dose_ratio=dose)
        obs, sims = reps[0], reps[1:]
        _, wrong = _replicates(rng, 200, dose_ratio=dose, k=0.4)
        typical = 10 * np.repeat(dose, 6) * np.exp(-0.25 * t)
        pred = typical if pc else None
        for s, out in ((sims, covered), (wrong, covered_wrong)):
            st = vpc_stats(t, obs, s, bins="auto", pred=pred).sel(pi=0.5)
            assert st.sizes["bin"] == 6  # one bin per nominal time
            inside = (st["observed"] >= st["sim_lower"]) & (st["observed"] <= st["sim_upper"])
            out.extend(inside.values.ravel().tolist())
    assert np.mean(covered) >= 0.85, np.mean(covered)
    assert np.mean(covered_wrong) <= 0.5, np.mean(covered_wrong)
