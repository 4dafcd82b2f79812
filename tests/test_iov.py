"""Reset records (EVID 3/4) in the population layer, and inter-occasion variability (IOV)."""

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import bayes_nlme as bn
from bayes_nlme import dist


def _model(iov=None, random=True, centered=False):
    kappa = (lambda eta: eta.kappa_cl) if iov is not None else (lambda eta: 0.0)
    return bn.Model(
        params=dict(
            tvcl=bn.Param(dist.LogNormal(jnp.log(5.0), 1.0), unit="L/h"),
            tvv=bn.Param(dist.LogNormal(jnp.log(50.0), 1.0), unit="L"),
            prop_sd=bn.Param(dist.HalfNormal(0.5)),
        ),
        random=bn.IIV(["cl", "v"], sd=dist.HalfNormal(0.5), centered=centered) if random else None,
        iov=iov,
        pre=lambda p, eta, cov: dict(
            CL=p.tvcl * jnp.exp((eta.cl if random else 0.0) + kappa(eta)) * (cov.WT / 70) ** 0.75,
            V=p.tvv * jnp.exp(eta.v if random else 0.0),
        ),
        covariates=["WT"],
        dynamics=bn.pk.Central1(),
        derived=lambda p, a, ind: dict(DV=bn.error.Proportional(a.Central / ind.V, sd=p.prop_sd)),
    )


def _occasions(n_id, times=(0.5, 2, 6, 12), n_occ=3, wt=None):
    rows = []
    for i in range(1, n_id + 1):
        for occ in range(1, n_occ + 1):
            w = 70.0 + 10 * occ if wt is None else wt
            rows.append(
                dict(
                    ID=i, TIME=0.0, DV=0.0, AMT=100.0 * occ, EVID=4 if occ > 1 else 1, OCC=occ, WT=w
                )
            )
            rows += [dict(ID=i, TIME=t, DV=1.0, AMT=0.0, EVID=0, OCC=occ, WT=w) for t in times]
    return pd.DataFrame(rows)


THETA = dict(tvcl=5.0, tvv=50.0, prop_sd=0.1)


def test_reset_occasions_equal_separate_subjects():
    """A subject with EVID=4 occasions is predicted exactly as if each occasion were its own
    subject (no carry-over of amounts across a reset; covariates per occasion)."""
    model = _model(random=False)
    df = _occasions(2)
    # carry-over would show: the second dose comes 12 h after the first in record order
    split = df.copy()
    split["ID"] = split["ID"] * 10 + split["OCC"]
    split["EVID"] = split["EVID"].replace(4, 1)
    a = bn.simulate(model, df, THETA, seed=0).predictions["IPRED"].values
    b = bn.simulate(model, split, THETA, seed=0).predictions["IPRED"].values
    np.testing.assert_allclose(a, b, rtol=1e-12)
    # and against the closed form, occasion 2 of subject 1 (AMT 200, WT 90)
    cl = 5.0 * (90 / 70) ** 0.75
    expect = 200 / 50 * np.exp(-cl / 50 * np.array([0.5, 2, 6, 12]))
    np.testing.assert_allclose(a[0, 0, 4:8], expect, rtol=1e-12)


def test_evid3_reset_clears_amounts():
    model = _model(random=False)
    df = pd.DataFrame(
        dict(
            ID=[1] * 5,
            TIME=[0.0, 2, 3, 3, 5],
            DV=[0, 1, 0, 1, 1],
            AMT=[100.0, 0, 0, 0, 0],
            EVID=[1, 0, 3, 0, 0],
            WT=[70.0] * 5,
        )
    )
    ipred = bn.simulate(model, df, THETA, seed=0).predictions["IPRED"].values[0, 0]
    assert ipred[0] == pytest.approx(2 * np.exp(-0.1 * 2), rel=1e-12)
    np.testing.assert_array_equal(ipred[1:], 0.0)


def test_iov_sites_dims_and_prior_draws():
    model = _model(iov=bn.IOV(["cl"], occasion="OCC", sd=dist.HalfNormal(0.3)))
    assert "omega_iov_cl_sd" in model.population_names()
    prior = bn.sample_prior_predictive(model, _occasions(4), draws=30).prior
    assert prior["kappa_cl"].dims == ("chain", "draw", "ID", "OCC")
    assert prior["OCC"].values.tolist() == [1.0, 2.0, 3.0]
    k = prior["kappa_cl"].values / prior["omega_iov_cl_sd"].values[..., None, None]
    assert abs(k.std() - 1) < 0.15  # standard normal KAPPA / SD


def test_iov_needs_occasions_that_start_with_a_reset():
    df = _occasions(2)
    df["EVID"] = df["EVID"].replace(4, 1)
    df["TIME"] = df.groupby("ID").cumcount().astype(float)  # one continuous clock
    model = _model(iov=bn.IOV(["cl"], occasion="OCC"))
    with pytest.raises(bn.ModelError, match=r"'OCC' changes within a segment.*EVID=4"):
        model.model_data(bn.read_nonmem(df))
    with pytest.raises(bn.ModelError, match="no such column"):
        _model(iov=bn.IOV(["cl"], occasion="PERIOD")).model_data(bn.read_nonmem(_occasions(2)))
    with pytest.raises(bn.ModelError, match="not available for datasets with reset"):
        bn.predict_ipred(model, _occasions(2), None)


@pytest.mark.slow
def test_iov_recovery():
    """Known IIV and IOV SDs recovered from 60 subjects x 3 occasions (simulate, then fit)."""
    iov = bn.IOV(["cl"], occasion="OCC", sd=dist.HalfNormal(0.5))
    model = _model(iov=iov, centered=True)  # rich data: 12 samples per subject
    design = _occasions(60, wt=70.0)
    truth = dict(THETA, omega_cl_sd=0.3, omega_v_sd=0.2, omega_iov_cl_sd=0.15)
    sim = bn.simulate(model, design, truth, seed=3).predictions
    df = design.copy()
    df.loc[df.EVID == 0, "DV"] = sim["DV"].values[0, 0]
    fit = bn.fit(model, df, chains=4, warmup=300, samples=300, seed=1, progress_bar=False)
    s = bn.summary(fit)
    # the sample's own SDs (what the data can tell): IIV 0.289, IOV 0.138
    emp = {
        "omega_cl_sd": float(np.std(sim["eta_cl"].values)),
        "omega_iov_cl_sd": float(np.std(sim["kappa_cl"].values)),
    }
    for name, value in emp.items():
        row = s.loc[name]
        assert row["5%"] < value < row["95%"], (name, row, value)
        assert abs(row["median"] / truth[name] - 1) < 0.25
    assert abs(s.loc["tvcl", "median"] / 5.0 - 1) < 0.1
    assert s["r_hat"].max() < 1.05


def test_individual_fits_for_occasions(tmp_path):
    """With resets/IOV the plot shows posterior IPRED at the observation times per occasion."""
    import matplotlib.pyplot as plt

    model = _model(iov=bn.IOV(["cl"], occasion="OCC"))
    df = _occasions(2)
    fit = bn.fit(model, df, chains=1, warmup=20, samples=10, progress_bar=False)
    path = tmp_path / "ind.png"
    fig = bn.plot_individual_fits(model, df, fit, path=path)
    assert path.stat().st_size > 0
    # one band + median line per occasion in each subject's panel
    assert len(fig.axes[0].get_lines()) == 3 + 1  # 3 occasions + the DV markers
    plt.close(fig)
