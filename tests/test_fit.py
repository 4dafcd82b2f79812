"""NUTS fits: the InferenceData schema, real-data Theophylline, simulate-then-recover."""

import arviz as az
import numpy as np
import pandas as pd
import pytest

import bayes_nlme as bn
from bayes_nlme.model_zoo import theophylline as zoo

# NONMEM 7.4.4 FOCE-I, standard model (../shared/data/README.md)
NONMEM = dict(tvka=1.590, tvcl=2.751, tvv=31.81, add_sd=0.694)


@pytest.fixture(scope="module")
def theo():
    return bn.read_nonmem(zoo.data())


@pytest.fixture(scope="module")
def small_fit(theo):
    return bn.fit(zoo.model, theo, chains=2, warmup=150, samples=100, seed=1)


def test_inference_data_schema(small_fit, theo):
    idata = small_fit
    for group in ("posterior", "sample_stats", "log_likelihood", "observed_data", "constant_data"):
        assert group in idata.groups(), group
    post = idata.posterior
    assert post.sizes["chain"] == 2 and post.sizes["draw"] == 100
    np.testing.assert_array_equal(post["ID"].values, np.arange(1, 13))
    for name in ("tvka", "tvcl", "tvv", "add_sd", "omega_ka_sd", "omega_cl_sd", "omega_v_sd"):
        assert post[name].dims == ("chain", "draw"), name
    for name in ("eta_ka", "eta_cl", "eta_v", "KA", "CL", "V"):
        assert post[name].dims == ("chain", "draw", "ID"), name
    assert post["IPRED"].dims == ("chain", "draw", "obs")
    assert post["tvcl"].attrs["unit"] == "L/h"
    assert "loglik_DV" not in post
    ll = idata.log_likelihood["DV"]
    assert ll.dims == ("chain", "draw", "obs") and ll.sizes["obs"] == 132
    np.testing.assert_allclose(idata.observed_data["DV"].values, theo.dv)
    cd = idata.constant_data
    assert cd["TIME"].dims == ("obs",) and cd["subject"].dims == ("obs",)
    np.testing.assert_array_equal(cd["subject"].values, theo.obs_id)
    assert cd["AMT"].dims == ("ID", "dose")
    np.testing.assert_allclose(cd["AMT"].values[:, 0], theo.dose_amt[:, 0])
    # no variable shares its name with a dimension
    for group in idata.groups():
        ds = idata[group]
        assert not set(ds.data_vars) & set(ds.dims), group
    for field in ("diverging", "lp", "acceptance_rate", "step_size", "tree_depth", "energy"):
        assert field in idata.sample_stats


def test_log_likelihood_matches_error_model(small_fit):
    idata = small_fit
    post = idata.posterior.isel(chain=0, draw=slice(0, 5))
    dv = idata.observed_data["DV"].values
    from scipy.stats import norm

    ref = norm.logpdf(dv, post["IPRED"].values, post["add_sd"].values[:, None])
    np.testing.assert_allclose(
        idata.log_likelihood["DV"].isel(chain=0, draw=slice(0, 5)).values, ref, rtol=1e-10
    )


def test_netcdf_roundtrip_and_arviz_tools(small_fit, tmp_path):
    path = tmp_path / "posterior.nc"
    small_fit.to_netcdf(path)
    back = az.from_netcdf(path)
    np.testing.assert_allclose(back.posterior["tvcl"].values, small_fit.posterior["tvcl"].values)
    loo = az.loo(small_fit)
    assert np.isfinite(loo.elpd_loo)


def test_summary_table(small_fit):
    table = bn.summary(small_fit)
    assert list(table.index) == [
        "tvka",
        "tvcl",
        "tvv",
        "add_sd",
        "omega_ka_sd",
        "omega_cl_sd",
        "omega_v_sd",
    ]
    assert list(table.columns) == [
        "unit",
        "mean",
        "sd",
        "median",
        "5%",
        "95%",
        "ess_bulk",
        "ess_tail",
        "r_hat",
        "iiv_cv%",
    ]
    w = small_fit.posterior["omega_cl_sd"].values
    np.testing.assert_allclose(
        table.loc["omega_cl_sd", "iiv_cv%"], np.median(100 * np.sqrt(np.exp(w**2) - 1))
    )
    assert np.isnan(table.loc["tvcl", "iiv_cv%"])
    conv = table.attrs
    assert conv["chains"] == 2 and conv["draws"] == 100
    assert conv["divergences"] == int(small_fit.sample_stats["diverging"].sum())
    np.testing.assert_allclose(conv["max_r_hat"], table["r_hat"].max())
    assert conv["max_tree_depth_hits"] >= 0 and isinstance(conv["converged"], bool)
    post = small_fit.posterior["tvcl"].values.ravel()
    np.testing.assert_allclose(table.loc["tvcl", "median"], np.median(post))
    np.testing.assert_allclose(table.loc["tvcl", "5%"], np.quantile(post, 0.05))
    assert table.loc["tvv", "unit"] == "L"


def test_same_seed_same_draws(theo):
    a = bn.fit(zoo.model, theo, chains=1, warmup=30, samples=20, seed=7)
    b = bn.fit(zoo.model, theo, chains=1, warmup=30, samples=20, seed=7)
    np.testing.assert_array_equal(a.posterior["tvcl"].values, b.posterior["tvcl"].values)


def test_predict_ipred_and_plot(small_fit, theo, tmp_path):
    times, ipred = bn.predict_ipred(zoo.model, theo, small_fit, n_draws=20, n_time=30)
    assert times.shape == (12, 30) and ipred.shape == (20, 12, 30)
    np.testing.assert_allclose(ipred[:, :, 0], 0.0, atol=1e-10)  # oral dose at t=0: none absorbed
    fig = bn.plot_individual_fits(
        zoo.model, theo, small_fit, path=tmp_path / "fits.png", n_draws=20
    )
    assert (tmp_path / "fits.png").stat().st_size > 10_000
    assert len([ax for ax in fig.axes if ax.get_visible()]) == 12


@pytest.mark.slow
def test_theophylline_matches_nonmem_with_defaults(theo):
    """Default settings on real data: converged, no divergences, NONMEM-like estimates."""
    idata = bn.fit(zoo.model, theo, seed=0)
    table = bn.summary(idata)
    med = table["median"]
    for name, tol in (("tvcl", 0.10), ("tvv", 0.10), ("tvka", 0.20), ("add_sd", 0.20)):
        assert abs(med[name] / NONMEM[name] - 1) < tol, (name, med[name], NONMEM[name])
    assert table["r_hat"].max() < 1.01
    assert int(idata.sample_stats["diverging"].sum()) == 0


def _design(n_id, seed=0):
    rng = np.random.default_rng(seed)
    times = [0.25, 0.5, 1.0, 2.0, 3.5, 5.0, 7.0, 9.0, 12.0, 24.0]
    rows = []
    for i in range(1, n_id + 1):
        wt = float(rng.uniform(50, 90))
        rows.append(dict(ID=i, TIME=0.0, AMT=4.0 * wt, DV=0.0, EVID=1, CMT=1, WT=wt))
        rows += [dict(ID=i, TIME=t, AMT=0.0, DV=0.0, EVID=0, CMT=2, WT=wt) for t in times]
    return pd.DataFrame(rows)


@pytest.mark.slow
def test_simulate_then_recover_60_subjects():
    truth = dict(
        tvka=1.5, tvcl=2.8, tvv=32.0, add_sd=0.5, omega_ka_sd=0.5, omega_cl_sd=0.3, omega_v_sd=0.2
    )
    design = _design(60)
    sim = bn.simulate(zoo.model, design, truth, seed=11)
    data = design.copy()
    data.loc[data.EVID == 0, "DV"] = sim.predictions["DV"].values[0, 0]
    idata = bn.fit(zoo.model, data, chains=4, warmup=500, samples=500, seed=2)
    table = bn.summary(idata)
    assert table["r_hat"].max() < 1.01
    for name, value in truth.items():
        lo, hi = table.loc[name, "5%"], table.loc[name, "95%"]
        assert lo < value < hi, (name, lo, value, hi)


def test_block_omega_reports_lower_triangle_correlations(theo):
    from bayes_nlme.model_zoo.theophylline import model as base

    block = bn.Model(
        params=base.params,
        random=bn.IIV(["ka", "cl", "v"], sd=bn.dist.HalfNormal(0.5), corr=2.0),
        pre=base.pre,
        dynamics=base.dynamics,
        derived=base.derived,
    )
    idata = bn.fit(block, theo, chains=1, warmup=60, samples=40, seed=0)
    corr = idata.posterior["omega_corr"]
    assert corr.dims == ("chain", "draw", "eta", "eta_")
    np.testing.assert_allclose(corr.sel(eta="cl", eta_="cl"), 1.0)
    np.testing.assert_allclose(corr.sel(eta="cl", eta_="v"), corr.sel(eta="v", eta_="cl"))
    rows = [r for r in bn.summary(idata).index if r.startswith("omega_corr")]
    assert rows == ["omega_corr[cl, ka]", "omega_corr[v, ka]", "omega_corr[v, cl]"]
