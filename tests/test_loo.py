"""PSIS-LOO per observation and per subject, and model comparison, on real (small) fits."""

import warnings

import arviz as az
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr

import bayes_nlme as bn
from bayes_nlme import dist
from bayes_nlme.diagnostics._loo import compare, loo, subject_log_likelihood
from bayes_nlme.model_zoo import theophylline as zoo

# The deliberately wrong model: no IIV on KA (Theophylline's KA varies most between
# subjects, omega_ka ~ 0.6), everything else as in the zoo model.
no_iiv_ka = bn.Model(
    name="theophylline_no_iiv_ka",
    params=dict(zoo.model.params),
    random=bn.IIV(["cl", "v"], sd=dist.HalfNormal(0.5)),
    pre=lambda p, eta, cov: dict(KA=p.tvka, CL=p.tvcl * jnp.exp(eta.cl), V=p.tvv * jnp.exp(eta.v)),
    dynamics=bn.pk.Depots1Central1(),
    derived=lambda p, a, ind: dict(DV=bn.error.Additive(a.Central / ind.V, sd=p.add_sd)),
)


@pytest.fixture(scope="module")
def theo():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # EVID=101 recoding note
        return bn.read_nonmem(zoo.data())


@pytest.fixture(scope="module")
def fit(theo):
    return bn.fit(zoo.model, theo, chains=2, warmup=150, samples=100, seed=0)


@pytest.fixture(scope="module")
def bad_fit(theo):
    return bn.fit(no_iiv_ka, theo, chains=2, warmup=150, samples=100, seed=0)


def _quiet(func, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return func(*args, **kwargs)


def test_obs_level_equals_arviz(fit):
    ours = _quiet(loo, fit, pointwise=True)
    ref = _quiet(az.loo, fit, pointwise=True)
    for key in ("elpd_loo", "se", "p_loo", "n_samples", "n_data_points"):
        assert ours[key] == pytest.approx(ref[key], rel=1e-12), key
    np.testing.assert_allclose(ours["pareto_k"].values, ref["pareto_k"].values)
    assert ours["n_data_points"] == 132
    short = _quiet(loo, fit)
    assert isinstance(short, az.ELPDData)
    assert "pareto_k" not in short and short["elpd_loo"] == pytest.approx(ref["elpd_loo"])


def test_subject_level_sums_each_subjects_terms(fit, theo):
    res = _quiet(loo, fit, level="subject", pointwise=True)
    assert res["n_data_points"] == theo.n_id == 12
    assert res["loo_i"].dims == ("ID",)
    np.testing.assert_array_equal(res["loo_i"]["ID"].values, theo.ids)
    # the same by hand: add up the log-likelihood of each subject's observations
    ll = fit.log_likelihood["DV"].values  # (chain, draw, obs)
    subj = fit.constant_data["subject"].values
    summed = np.zeros(ll.shape[:2] + (theo.n_id,))
    for obs, sid in enumerate(subj):
        summed[..., list(theo.ids).index(sid)] += ll[..., obs]
    by_hand = az.InferenceData(
        posterior=fit.posterior,
        log_likelihood=xr.Dataset({"DV": (("chain", "draw", "ID"), summed)}),
    )
    ref = _quiet(az.loo, by_hand, pointwise=True)
    assert res["elpd_loo"] == pytest.approx(ref["elpd_loo"], rel=1e-12)
    assert res["p_loo"] == pytest.approx(ref["p_loo"], rel=1e-12)
    np.testing.assert_allclose(res["pareto_k"].values, ref["pareto_k"].values)
    np.testing.assert_allclose(subject_log_likelihood(fit).values, summed)


def test_warns_naming_high_pareto_k(fit):
    # subject level, conditional likelihood: most of the 12 subjects have k > 0.7 (see the
    # module docstring); the warning names them by ID
    with pytest.warns(UserWarning, match=r"Pareto k > 0.7 for \d+ of 12 subjects: ID \d+"):
        res = loo(fit, level="subject", pointwise=True)
    assert (res["pareto_k"].values > 0.7).sum() >= 3
    # an observation made extremely influential: its log-likelihood varies wildly over draws
    tweaked = fit.copy()
    ll = tweaked.log_likelihood["DV"].values.copy()
    rng = np.random.default_rng(0)
    ll[..., 5] = -np.exp(rng.normal(0, 3, ll.shape[:2]))
    tweaked.log_likelihood["DV"] = (("chain", "draw", "obs"), ll)
    with pytest.warns(UserWarning, match=r"obs 5 \(ID 1, TIME 3\.82\)"):
        loo(tweaked)


def test_argument_checks(fit):
    with pytest.raises(ValueError, match="level"):
        loo(fit, level="id")
    with pytest.raises(ValueError, match="both model and data"):
        loo(fit, level="subject", model=zoo.model)
    with pytest.raises(ValueError, match="at least two"):
        compare({"a": fit})


def test_compare_ranks_the_true_model_first(fit, bad_fit):
    """Margin (measured, seeds 0 and 1): elpd_diff 41 (obs) and 47 (subject), dse 14 and 17,
    i.e. about 3 standard errors; asserted: diff > 20 and > 2 dse."""
    for level in ("obs", "subject"):
        table = _quiet(compare, {"no_iiv_ka": bad_fit, "one_cpt": fit}, level=level)
        assert list(table.index) == ["one_cpt", "no_iiv_ka"], level
        diff, dse = table.loc["no_iiv_ka", ["elpd_diff", "dse"]]
        assert diff > 20 and diff > 2 * dse, (level, diff, dse)
        assert table.loc["one_cpt", "weight"] > 0.5
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compare({"no_iiv_ka": bad_fit, "one_cpt": fit}, level="subject")
    messages = [str(w.message) for w in caught if "PSIS-LOO" in str(w.message)]
    assert any(m.startswith("one_cpt: PSIS-LOO (subject level)") for m in messages)


def test_compare_refuses_different_data(fit, theo):
    other = fit.copy()
    other.observed_data["DV"] = other.observed_data["DV"] + 1.0
    with pytest.raises(ValueError, match="not of the same data"):
        compare({"a": fit, "b": other})


def test_marginal_subject_loo(fit, theo):
    """Subject-level LOO with the ETAs integrated out (Laplace): same target as the
    conditional sum, fewer draws used, and every subject's log-likelihood is its Laplace
    marginal at the draw's population parameters."""
    res = _quiet(loo, fit, level="subject", model=zoo.model, data=theo, n_draws=40, pointwise=True)
    assert res["n_data_points"] == 12 and res["n_samples"] == 40
    cond = _quiet(loo, fit, level="subject")
    # the conditional PSIS estimate (k > 0.7 for most subjects) is optimistic: measured
    # -158 against -189 for the marginal one on this fit
    assert res["elpd_loo"] < cond["elpd_loo"] - 10
    from bayes_nlme.diagnostics._ofv import laplace_ofv

    post = fit.posterior.isel(chain=0, draw=0)
    params = {n: float(post[n]) for n in zoo.model.population_names()}
    lm = -0.5 * laplace_ofv(zoo.model, theo, params, constant=True).ofv_subject
    from bayes_nlme.diagnostics._loo import subject_marginal_log_likelihood

    ll = subject_marginal_log_likelihood(zoo.model, theo, fit, n_draws=4)
    np.testing.assert_allclose(ll.values[0, 0], lm)
    # the marginal result feeds compare() like a fit
    fewer = _quiet(
        loo, fit, level="subject", model=zoo.model, data=theo, n_draws=20, pointwise=True
    )
    with pytest.raises(ValueError, match="different numbers"):
        _quiet(compare, {"a": res, "b": _quiet(loo, fit, pointwise=True)})
    table = _quiet(compare, {"a": res, "b": fewer})
    assert set(table.index) == {"a", "b"}
