"""Multiple endpoints (DVID) and BLQ censoring (Beal's M3/M4) in the population layer."""

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
import scipy.stats as st
from numpyro import handlers

import bayes_nlme as bn
from bayes_nlme import dist
from bayes_nlme.population._error import Censored, Endpoints

IPRED = jnp.array([0.5, 2.0, 10.0, 0.05])
DV = jnp.array([0.7, 1.5, 12.0, 0.1])
CENS = jnp.array([False, True, False, True])
LLOQ = jnp.array([0.0, 1.0, 0.0, 0.2])


# --------------------------------------------------------------------------- likelihoods
def test_m3_equals_normal_cdf_for_censored_rows():
    err = Censored(bn.error.Additive(IPRED, sd=0.3), CENS, LLOQ, method="M3")
    lp = np.asarray(err.distribution().log_prob(DV))
    expect = np.where(CENS, st.norm.logcdf(LLOQ, IPRED, 0.3), st.norm.logpdf(DV, IPRED, 0.3))
    np.testing.assert_allclose(lp, expect, rtol=1e-12)


def test_m3_proportional_and_exponential():
    prop = Censored(bn.error.Proportional(IPRED, sd=0.2), CENS, LLOQ)
    sd = 0.2 * np.asarray(IPRED)
    expect = np.where(CENS, st.norm.logcdf(LLOQ, IPRED, sd), st.norm.logpdf(DV, IPRED, sd))
    np.testing.assert_allclose(prop.distribution().log_prob(DV), expect, rtol=1e-12)
    expo = Censored(bn.error.Exponential(IPRED, sd=0.4), CENS, LLOQ)
    ln = st.lognorm(s=0.4, scale=np.asarray(IPRED))
    expect = np.where(CENS, ln.logcdf(LLOQ), ln.logpdf(DV))
    np.testing.assert_allclose(expo.distribution().log_prob(DV), expect, rtol=1e-10)


def test_m4_truncates_at_zero():
    err = Censored(bn.error.Additive(IPRED, sd=0.3), CENS, LLOQ, method="M4")
    lp = np.asarray(err.distribution().log_prob(DV))
    n = st.norm(IPRED, 0.3)
    pos = n.sf(0.0)
    with np.errstate(divide="ignore"):  # LLOQ = 0 on the uncensored rows
        below = np.log((n.cdf(LLOQ) - n.cdf(0.0)) / pos)
    expect = np.where(CENS, below, n.logpdf(DV) - np.log(pos))
    np.testing.assert_allclose(lp, expect, rtol=1e-10)
    # M4 draws are positive, and follow the truncated normal
    draws = jax.vmap(lambda k: err.distribution().sample(k))(
        jax.random.split(jax.random.PRNGKey(0), 4000)
    )
    assert np.all(np.asarray(draws) > 0)
    tn = st.truncnorm(-IPRED[3] / 0.3, np.inf, loc=IPRED[3], scale=0.3)
    assert abs(float(draws[:, 3].mean()) - tn.mean()) < 0.01


def test_censored_gradient_is_finite_and_matches_finite_differences():
    def f(x):
        ipred = IPRED * x
        return (
            Censored(bn.error.Additive(ipred, sd=0.3), CENS, LLOQ).distribution().log_prob(DV).sum()
        )

    g = jax.grad(f)(1.3)
    h = 1e-6
    fd = (f(1.3 + h) - f(1.3 - h)) / (2 * h)
    np.testing.assert_allclose(g, fd, rtol=1e-6)


def test_endpoints_select_each_observations_model():
    a = bn.error.Additive(IPRED, sd=0.3)
    e = bn.error.Exponential(IPRED, sd=0.2)
    which = jnp.array([0, 1, 1, 0])
    dv = DV.at[0].set(-0.5)  # negative DV for the additive endpoint: lognormal must not see it
    err = Endpoints((a, e), which)
    lp = np.asarray(err.distribution().log_prob(dv))
    expect = np.where(
        which == 0,
        st.norm.logpdf(dv, IPRED, 0.3),
        st.lognorm(s=0.2, scale=np.asarray(IPRED)).logpdf(np.abs(dv)),
    )
    np.testing.assert_allclose(lp, expect, rtol=1e-10)
    g = jax.grad(
        lambda s: (
            Endpoints((a, bn.error.Exponential(IPRED, sd=s)), which)
            .distribution()
            .log_prob(dv)
            .sum()
        )
    )(0.2)
    assert np.isfinite(g)
    np.testing.assert_allclose(err.ipred, IPRED)
    np.testing.assert_allclose(err.scale(), np.where(which == 0, 0.3, 0.2))


# --------------------------------------------------------------------------- model level
def pkpd_model(**kw):
    """IV bolus PK with an Emax effect: outputs ``cp`` (additive) and ``effect`` (additive)."""

    def derived(p, a, ind):
        cp = a.Central / ind.V
        return dict(
            cp=bn.error.Additive(cp, sd=p.cp_sd),
            effect=bn.error.Additive(p.emax * cp / (p.ec50 + cp), sd=p.eff_sd),
        )

    spec = dict(
        params=dict(
            tvcl=bn.Param(dist.LogNormal(jnp.log(5.0), 1.0)),
            tvv=bn.Param(dist.LogNormal(jnp.log(50.0), 1.0)),
            emax=bn.Param(dist.LogNormal(jnp.log(100.0), 1.0)),
            ec50=bn.Param(dist.LogNormal(jnp.log(1.0), 1.0)),
            cp_sd=bn.Param(dist.HalfNormal(1.0)),
            eff_sd=bn.Param(dist.HalfNormal(10.0)),
        ),
        random=bn.IIV(["cl"], sd=dist.HalfNormal(0.5)),
        pre=lambda p, eta, cov: dict(CL=p.tvcl * jnp.exp(eta.cl), V=p.tvv),
        dynamics=bn.pk.Central1(),
        derived=derived,
    )
    spec.update(kw)
    return bn.Model(**spec)


def pkpd_data(dvid=("cp", "effect")):
    rows = []
    for i in (1, 2):
        rows.append(dict(ID=i, TIME=0.0, DV=0.0, AMT=100.0, EVID=1, DVID=dvid[0]))
        for t in (1.0, 4.0):
            rows.append(dict(ID=i, TIME=t, DV=1.5 / i, AMT=0.0, EVID=0, DVID=dvid[0]))
            rows.append(dict(ID=i, TIME=t, DV=40.0 / i, AMT=0.0, EVID=0, DVID=dvid[1]))
    return pd.DataFrame(rows)


THETA = dict(tvcl=5.0, tvv=50.0, emax=100.0, ec50=1.0, cp_sd=0.2, eff_sd=5.0, omega_cl_sd=0.3)


def _loglik(model, df, values):
    ds = bn.read_nonmem(df)
    md = model.model_data(ds)
    cond = handlers.condition(model.numpyro_model, data=values)
    tr = handlers.trace(handlers.seed(cond, 0)).get_trace(md, DV=jnp.asarray(ds.dv))
    return np.asarray(tr[model.output_name()]["fn"].log_prob(tr[model.output_name()]["value"]))


def test_two_endpoints_loglik_by_hand():
    model = pkpd_model()
    assert model.output_names() == ["cp", "effect"] and model.output_name() == "DV"
    values = {**THETA, "z_eta": jnp.array([[0.5], [-1.0]])}
    lp = _loglik(model, pkpd_data(), values)
    cl = 5.0 * np.exp(0.3 * np.array([0.5, -1.0]))
    expect = []
    for i, c in zip((1, 2), cl, strict=True):
        for t in (1.0, 4.0):
            cp = 100 / 50 * np.exp(-c / 50 * t)
            expect.append(st.norm.logpdf(1.5 / i, cp, 0.2))
            expect.append(st.norm.logpdf(40.0 / i, 100 * cp / (1 + cp), 5.0))
    np.testing.assert_allclose(lp, expect, rtol=1e-10)


def test_numeric_dvid_needs_a_map():
    df = pkpd_data(dvid=(1, 2))
    with pytest.raises(bn.ModelError, match=r"DVID values \['1', '2'\] have no output.*dvid="):
        pkpd_model().model_data(bn.read_nonmem(df))
    model = pkpd_model(dvid={1: "cp", 2: "effect"})
    values = {**THETA, "z_eta": jnp.array([[0.5], [-1.0]])}
    np.testing.assert_allclose(
        _loglik(model, df, values), _loglik(pkpd_model(), pkpd_data(), values)
    )
    with pytest.raises(bn.ModelError, match=r"names outputs \['pd'\] that derived"):
        pkpd_model(dvid={1: "cp", 2: "pd"}).model_data(bn.read_nonmem(df))


def test_one_output_with_several_dvids_is_an_error():
    model = pkpd_model(
        derived=lambda p, a, ind: dict(DV=bn.error.Additive(a.Central / ind.V, sd=p.cp_sd))
    )
    with pytest.raises(bn.ModelError, match=r"several types, DVID \['cp', 'effect'\]"):
        model.model_data(bn.read_nonmem(pkpd_data()))
    with pytest.raises(bn.ModelError, match="no DVID column"):
        pkpd_model().model_data(bn.read_nonmem(pkpd_data().drop(columns="DVID")))


def test_simulate_two_endpoints():
    model = pkpd_model()
    sim = bn.simulate(model, pkpd_data(), THETA, seed=1)
    assert sim.predictions["DV"].shape == (1, 1, 8)
    ipred = np.asarray(sim.predictions["IPRED"])[0, 0]
    assert np.all(ipred[1::2] > 10) and np.all(ipred[0::2] < 3)  # effect rows: Emax scale
    dvid = sim.predictions_constant_data["DVID"].values
    assert dvid.tolist() == ["cp", "effect"] * 4


# --------------------------------------------------------------------------- BLQ fits
def _pk_model(blq="M3"):
    return bn.Model(
        params=dict(
            tvcl=bn.Param(dist.LogNormal(jnp.log(5.0), 1.0), unit="L/h"),
            tvv=bn.Param(dist.LogNormal(jnp.log(50.0), 1.0), unit="L"),
            add_sd=bn.Param(dist.HalfNormal(1.0), unit="mg/L"),
        ),
        random=bn.IIV(["cl", "v"], sd=dist.HalfNormal(0.5)),
        pre=lambda p, eta, cov: dict(CL=p.tvcl * jnp.exp(eta.cl), V=p.tvv * jnp.exp(eta.v)),
        dynamics=bn.pk.Central1(),
        derived=lambda p, a, ind: dict(DV=bn.error.Additive(a.Central / ind.V, sd=p.add_sd)),
        blq=blq,
    )


def _censored_study(lloq=1.0, n_id=40, seed=3):
    rows = []
    for i in range(1, n_id + 1):
        rows.append(dict(ID=i, TIME=0.0, DV=0.0, AMT=100.0, EVID=1))
        rows += [
            dict(ID=i, TIME=t, DV=0.0, AMT=0.0, EVID=0)
            for t in (0.25, 0.5, 1, 2, 4, 6, 8, 12, 16, 24)
        ]
    design = pd.DataFrame(rows)
    truth = dict(tvcl=5.0, tvv=50.0, add_sd=0.3, omega_cl_sd=0.3, omega_v_sd=0.2)
    sim = bn.simulate(_pk_model(), design, truth, seed=seed).predictions
    df = design.copy()
    obs = df.EVID == 0
    df.loc[obs, "DV"] = sim["DV"].values[0, 0]
    df["CENS"] = (obs & (df.DV < lloq)).astype(int)
    df.loc[df.CENS == 1, "DV"] = lloq
    typical_cl = float(np.exp(np.log(sim["CL"].values).mean()))  # the sample's own truth
    return df, typical_cl


def test_blq_model_checks():
    with pytest.raises(bn.ModelError, match="'M3' or 'M4'"):
        _pk_model(blq="M2")
    df, _ = _censored_study(n_id=3)
    model = _pk_model()
    md = model.model_data(bn.read_nonmem(df))
    assert md.obs_cens is not None and md.obs_lloq is not None
    assert float(md.obs_lloq[np.asarray(md.obs_cens)].min()) == 1.0
    # posterior/prior predictive carries the censoring of each draw
    prior = bn.sample_prior_predictive(model, df, draws=20)
    blq = prior.prior_predictive["BLQ"].values
    dv = prior.prior_predictive["DV"].values
    assert np.array_equal(blq, dv < 1.0)


@pytest.mark.slow
def test_m3_recovers_where_dropping_blq_is_biased():
    df, typical_cl = _censored_study()
    frac = df.CENS[df.EVID == 0].mean()
    assert 0.3 < frac < 0.5
    kw = dict(chains=2, warmup=300, samples=300, progress_bar=False)
    m3 = bn.summary(bn.fit(_pk_model(), df, **kw)).loc["tvcl"]
    dropped = df[df.CENS == 0].drop(columns="CENS")
    m1 = bn.summary(bn.fit(_pk_model(), dropped, **kw)).loc["tvcl"]
    # measured: the sample's geometric-mean CL 4.73; M3 4.47 (4.07-4.96), as the uncensored
    # data give (4.40); dropping the BLQ rows 3.03 (2.66-3.37), 36% low
    assert m3["5%"] < typical_cl < m3["95%"]
    assert abs(m3["median"] / typical_cl - 1) < 0.08
    assert m1["95%"] < typical_cl
    assert m1["median"] / typical_cl < 0.8


def test_single_output_may_have_any_name():
    """The observed site is named after the output; fitting passes DV whatever the name."""
    model = pkpd_model(
        derived=lambda p, a, ind: dict(cp=bn.error.Additive(a.Central / ind.V, sd=p.cp_sd))
    )
    df = pkpd_data()
    df = df[df.DVID == "cp"].drop(columns="DVID")
    fit = bn.fit(model, df, chains=1, warmup=20, samples=10, progress_bar=False)
    assert fit.observed_data["cp"].shape == (4,)
    assert fit.log_likelihood["cp"].shape == (1, 10, 4)


def test_vpc_and_individual_fits_per_endpoint(tmp_path):
    import matplotlib.pyplot as plt

    from bayes_nlme.plots import plot_vpc

    model, df = pkpd_model(), pkpd_data()
    fit = bn.fit(model, df, chains=1, warmup=30, samples=20, progress_bar=False)
    fig = plot_vpc(model, df, fit, n_sim=20, bins=2)
    assert list(fig.vpc_stats["stratum"].values) == ["DVID=cp", "DVID=effect"]
    plt.close(fig)
    for name in model.output_names():
        path = tmp_path / f"{name}.png"
        plt.close(bn.plot_individual_fits(model, df, fit, output=name, path=path, n_draws=10))
        assert path.stat().st_size > 0
    with pytest.raises(ValueError, match="not one of the model's outputs"):
        bn.plot_individual_fits(model, df, fit, output="pd")


def test_vpc_counts_censored_observations_below_the_limit():
    from bayes_nlme.plots import plot_vpc

    df, _ = _censored_study(n_id=6)
    fit = bn.fit(_pk_model(), df, chains=1, warmup=30, samples=20, progress_bar=False)
    st_ = plot_vpc(_pk_model(), df, fit, n_sim=20, bins=3).vpc_stats
    assert st_.attrs["lloq"]
    obs = df[df.EVID == 0]
    assert float(st_["obs_blq"].sum()) > 0
    # the observed BLQ fraction per bin counts the CENS=1 records
    frac = np.nansum(st_["obs_blq"].values * np.bincount(st_["bin_index"].values)[None])
    assert frac == pytest.approx(obs.CENS.sum())
