"""PRED/IPRED/IWRES/CWRES/NPDE and shrinkage: formulas and statistical behaviour."""

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
import scipy.stats as st
import xarray as xr

import bayes_nlme as bn
from bayes_nlme import dist
from bayes_nlme.diagnostics import npde, pred, residuals, shrinkage
from bayes_nlme.model_zoo import theophylline as zoo

TRUTH = dict(
    tvka=1.5, tvcl=2.8, tvv=32.0, add_sd=0.4, omega_ka_sd=0.4, omega_cl_sd=0.3, omega_v_sd=0.2
)


def _design(n_id, times, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(1, n_id + 1):
        wt = float(rng.uniform(50, 90))
        rows.append(dict(ID=i, TIME=0.0, AMT=4.0 * wt, DV=0.0, EVID=1, CMT=1, WT=wt))
        rows += [dict(ID=i, TIME=t, AMT=0.0, DV=0.0, EVID=0, CMT=2, WT=wt) for t in times]
    return pd.DataFrame(rows)


def _simulated(model, design, truth, seed):
    sim = bn.simulate(model, design, truth, seed=seed)
    data = design.copy()
    data.loc[data.EVID == 0, "DV"] = sim.predictions["DV"].values[0, 0]
    return data


@pytest.fixture(scope="module")
def theo_fit():
    ds = bn.read_nonmem(zoo.data())
    return ds, bn.fit(zoo.model, ds, chains=2, warmup=200, samples=150, seed=0)


def test_shrinkage_matches_hand_computation():
    rng = np.random.default_rng(0)
    eta = rng.normal(0, 0.2, size=(2, 50, 6))  # chain, draw, ID
    omega = rng.uniform(0.3, 0.5, size=(2, 50))
    post = xr.Dataset(
        {"eta_cl": (("chain", "draw", "ID"), eta), "omega_cl_sd": (("chain", "draw"), omega)}
    )

    class _Idata:
        posterior = post

    class _Model:
        eta_names = ("cl",)

    means = eta.mean(axis=(0, 1))
    expected = 1 - means.std(ddof=1) / np.median(omega)
    res = xr.Dataset({"IWRES": ("obs", np.array([1.0, -1.0, 0.5, -0.5]))})
    out = shrinkage(_Model(), _Idata(), res)
    np.testing.assert_allclose(out["eta_cl"], expected, rtol=1e-12)
    np.testing.assert_allclose(out["epsilon"], 1 - np.std([1.0, -1.0, 0.5, -0.5], ddof=1))


def test_pred_is_typical_subject_at_posterior_median(theo_fit):
    ds, idata = theo_fit
    med = {k: float(idata.posterior[k].median()) for k in ("tvka", "tvcl", "tvv")}
    k = med["tvcl"] / med["tvv"]
    s, j = ds.obs_index
    t = ds.obs_time[s, j]
    dose = ds.dose_amt[s, 0]
    ref = (
        dose
        * med["tvka"]
        / (med["tvv"] * (med["tvka"] - k))
        * (np.exp(-k * t) - np.exp(-med["tvka"] * t))
    )
    np.testing.assert_allclose(pred(zoo.model, ds, idata), ref, rtol=1e-8, atol=1e-12)


def test_residual_table_definitions(theo_fit):
    ds, idata = theo_fit
    res = residuals(zoo.model, ds, idata, n_sim=200)
    assert set(res.data_vars) >= {"ID", "TIME", "DV", "PRED", "IPRED", "IWRES", "CWRES", "NPDE"}
    assert res.sizes["obs"] == 132
    ipred = np.median(idata.posterior["IPRED"].values.reshape(-1, 132), axis=0)
    np.testing.assert_allclose(res["IPRED"], ipred)
    add_sd = float(idata.posterior["add_sd"].median())
    np.testing.assert_allclose(res["IWRES"], (ds.dv - ipred) / add_sd, rtol=1e-10)
    yrep = idata.posterior_predictive["DV"].values.reshape(-1, 132)
    np.testing.assert_allclose(res["CWRES"], (ds.dv - yrep.mean(0)) / yrep.std(0, ddof=1))
    bound = st.norm.ppf(1 - 1 / 400)
    assert np.all(np.abs(res["NPDE"]) <= bound + 1e-12)
    df = res.to_dataframe()
    assert list(df.columns[:3]) == ["ID", "TIME", "DV"]


@pytest.mark.slow
def test_shrinkage_small_for_rich_data_large_for_sparse():
    rich = _simulated(zoo.model, _design(30, [0.5, 1, 2, 3, 5, 7, 9, 12, 18, 24]), TRUTH, 1)
    sparse_truth = {**TRUTH, "add_sd": 1.5}
    sparse = _simulated(zoo.model, _design(30, [24.0], seed=1), sparse_truth, 2)
    out = {}
    for name, data in (("rich", rich), ("sparse", sparse)):
        idata = bn.fit(zoo.model, data, chains=2, warmup=300, samples=200, seed=0)
        out[name] = shrinkage(zoo.model, idata)
    assert out["rich"]["eta_cl"] < 0.2, out
    assert out["sparse"]["eta_cl"] > 0.4 and out["sparse"]["eta_ka"] > 0.6, out


def _two_cpt_model():
    return bn.Model(
        params=dict(
            tvka=bn.Param(dist.LogNormal(jnp.log(1.5), 1.0)),
            tvcl=bn.Param(dist.LogNormal(jnp.log(3.0), 1.0)),
            tvv=bn.Param(dist.LogNormal(jnp.log(10.0), 1.0)),
            tvq=bn.Param(dist.LogNormal(jnp.log(5.0), 1.0)),
            tvv2=bn.Param(dist.LogNormal(jnp.log(40.0), 1.0)),
            add_sd=bn.Param(dist.HalfNormal(1.0)),
        ),
        random=bn.IIV(["cl", "v"]),
        pre=lambda p, eta, cov: dict(
            KA=p.tvka, CL=p.tvcl * jnp.exp(eta.cl), V=p.tvv * jnp.exp(eta.v), Q=p.tvq, V2=p.tvv2
        ),
        dynamics=bn.pk.Depots1Central1Periph1(),
        derived=lambda p, a, ind: dict(DV=bn.error.Additive(a.Central / ind.V, sd=p.add_sd)),
    )


@pytest.mark.slow
def test_npde_calibrated_for_true_model_and_not_for_misspecified():
    """NPDE ~ N(0, 1) when the fitted model generated the data (mean, variance, KS at the 1%
    level); a 1-cpt model fitted to clearly biexponential 2-cpt data fails the KS test."""
    times = [0.25, 0.5, 1, 2, 3, 5, 8, 12, 24]
    design = _design(40, times, seed=3)
    data = _simulated(zoo.model, design, TRUTH, 5)
    idata = bn.fit(zoo.model, data, chains=2, warmup=300, samples=250, seed=1)
    z = npde(zoo.model, data, idata, n_sim=400, seed=2)
    assert abs(z.mean()) < 0.15 and 0.8 < z.var() < 1.25, (z.mean(), z.var())
    assert st.kstest(z, "norm").pvalue > 0.01

    truth2 = dict(
        tvka=1.5,
        tvcl=3.0,
        tvv=10.0,
        tvq=6.0,
        tvv2=60.0,
        add_sd=0.15,
        omega_cl_sd=0.2,
        omega_v_sd=0.2,
    )
    wrong = _simulated(_two_cpt_model(), design, truth2, 6)
    idata2 = bn.fit(zoo.model, wrong, chains=2, warmup=300, samples=250, seed=1)
    z2 = npde(zoo.model, wrong, idata2, n_sim=400, seed=2)
    assert st.kstest(z2, "norm").pvalue < 0.01, (z2.mean(), z2.var())
