"""Diagnostic plots on a real (small) Theophylline fit: every function returns a Figure and
writes a non-empty PNG; VPC variants (pcVPC, strata, LLOQ, precomputed simulations)."""

import warnings

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.figure import Figure

import bayes_nlme as bn
from bayes_nlme.diagnostics import residuals
from bayes_nlme.model_zoo import theophylline as zoo
from bayes_nlme.plots._gof import plot_eta_covariates, plot_gof, plot_rank, plot_trace
from bayes_nlme.plots._vpc import plot_vpc

MIN_PNG = 10_000  # bytes


@pytest.fixture(scope="module")
def theo():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # EVID=101 recoding note
        return bn.read_nonmem(zoo.data())


@pytest.fixture(scope="module")
def fit(theo):
    return bn.fit(zoo.model, theo, chains=2, warmup=150, samples=100, seed=0)


@pytest.fixture(scope="module")
def res(theo, fit):
    return residuals(zoo.model, theo, fit, n_sim=100, seed=0)


@pytest.fixture(scope="module")
def sims(theo, fit):
    return bn.simulate(zoo.model, theo, fit, etas="new", n_draws=100, seed=1)


def _check(fig, path):
    assert isinstance(fig, Figure)
    assert path.exists() and path.stat().st_size > MIN_PNG, path
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    plt.close(fig)


@pytest.mark.parametrize("kind", ["standard", "npde"])
@pytest.mark.parametrize("log", [False, True])
def test_plot_gof(res, tmp_path, kind, log):
    path = tmp_path / f"gof_{kind}_{log}.png"
    fig = plot_gof(res, kind=kind, log=log, path=path, **zoo.plot_labels)
    assert len(fig.axes) == 4
    labels = [ax.get_xlabel() for ax in fig.axes]
    assert "Time after dose (h)" in labels
    _check(fig, path)


def test_plot_gof_errors(res):
    with pytest.raises(ValueError, match="kind"):
        plot_gof(res, kind="qq")
    with pytest.raises(ValueError, match="lacks"):
        plot_gof(res.drop_vars("CWRES"))
    plt.close("all")


def test_plot_eta_covariates(fit, theo, tmp_path):
    # the model uses no covariate, so the fit stores none: they come from the dataset
    with pytest.raises(ValueError, match="data="):
        plot_eta_covariates(fit)
    path = tmp_path / "eta_cov.png"
    fig = plot_eta_covariates(fit, data=theo, path=path)
    assert len(fig.axes) == 3  # eta_ka, eta_cl, eta_v vs WT
    assert fig.axes[0].get_ylabel().startswith("η ka")  # model order of the ETAs
    assert fig.axes[-1].get_xlabel() == "WT"
    _check(fig, path)
    with pytest.raises(ValueError, match="not found"):
        plot_eta_covariates(fit, ["AGE"], data=theo)


def test_plot_eta_covariates_categorical(fit, theo, tmp_path):
    # a categorical covariate in constant_data (dim ID) is drawn as a strip plot
    idata = fit.copy()
    heavy = (np.asarray(theo.covariates["WT"]) > 70).astype(float)
    idata.constant_data["HEAVY"] = ("ID", heavy)
    path = tmp_path / "eta_cat.png"
    fig = plot_eta_covariates(idata, "HEAVY", path=path)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["0", "1"]
    _check(fig, path)


def test_plot_trace_and_rank(fit, tmp_path):
    for func in (plot_trace, plot_rank):
        path = tmp_path / f"{func.__name__}.png"
        fig = func(fit, path=path)
        titles = {ax.get_title() for ax in fig.axes}
        assert {"tvcl", "omega_ka_sd", "add_sd"} <= titles
        _check(fig, path)
    path = tmp_path / "trace_one.png"
    fig = plot_trace(fit, "tvcl", path=path)
    assert {ax.get_title() for ax in fig.axes} == {"tvcl"}
    _check(fig, path)


def test_plot_vpc_simulates(fit, theo, tmp_path):
    path = tmp_path / "vpc.png"
    fig = plot_vpc(zoo.model, theo, fit, n_sim=50, path=path, seed=3, **zoo.plot_labels)
    st = fig.vpc_stats
    assert st.attrs["n_sim"] == 50 and not st.attrs["pc"]
    assert int(st["n_obs"].sum()) == theo.n_obs
    _check(fig, path)


def test_plot_vpc_pc_strata_lloq(fit, theo, sims, tmp_path):
    path = tmp_path / "pcvpc.png"
    fig = plot_vpc(zoo.model, theo, fit, sims=sims, pc=True, path=path)
    st = fig.vpc_stats
    # the 12 pre-dose samples (PRED = 0) cannot be prediction-corrected
    assert st.attrs["pc"] and st.attrs["n_excluded"] == 12
    assert "Prediction-corrected" in fig.axes[0].get_ylabel()
    _check(fig, path)

    # strata from a real covariate: WT split at the median of the 12 subjects
    path = tmp_path / "vpc_wt.png"
    fig = plot_vpc(zoo.model, theo, fit, sims=sims, strata="WT", path=path)
    med = float(np.median(theo.covariates["WT"]))
    assert fig.vpc_stats["stratum"].values.tolist() == [f"WT <= {med:g}", f"WT > {med:g}"]
    n_low = int((np.asarray(theo.covariates["WT"]) <= med)[theo.obs_index[0]].sum())
    assert int(fig.vpc_stats["n_obs"].sel(stratum=f"WT <= {med:g}").sum()) == n_low
    assert len(fig.axes) == 2
    _check(fig, path)

    # pcVPC with strata given per subject, LLOQ and log axis (VPC and fraction BLQ rows)
    path = tmp_path / "vpc_lloq.png"
    labels = np.where(np.arange(theo.n_id) < 6, "first six", "last six")
    dv_sims = sims.predictions["DV"].values[0]
    fig = plot_vpc(
        zoo.model,
        theo,
        fit,
        sims=dv_sims,
        pc=True,
        strata=labels,
        lloq=1.0,
        log_y=True,
        path=path,
    )
    st = fig.vpc_stats
    assert len(fig.axes) == 4 and "obs_blq" in st
    assert fig.axes[0].get_yscale() == "log"
    _check(fig, path)

    with pytest.raises(ValueError, match="not a covariate"):
        plot_vpc(zoo.model, theo, fit, sims=sims, strata="AGE")
    with pytest.raises(ValueError, match="sims must have shape"):
        plot_vpc(zoo.model, theo, fit, sims=dv_sims[:, :10])
    plt.close("all")
