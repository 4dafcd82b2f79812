"""Population layer: error models, declarations, the compiled NumPyro model."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pandas as pd
import pytest
import scipy.stats as st
from numpyro import handlers

import bayes_nlme as bn
from bayes_nlme import dist
from bayes_nlme.population import Namespace


def _theo_model(**kw):
    spec = dict(
        params=dict(
            tvka=bn.Param(dist.LogNormal(jnp.log(1.5), 1.0), unit="1/h"),
            tvcl=bn.Param(dist.LogNormal(jnp.log(3.0), 1.0), unit="L/h"),
            tvv=bn.Param(dist.LogNormal(jnp.log(30.0), 1.0), unit="L"),
            add_sd=bn.Param(dist.HalfNormal(1.0), unit="mg/L"),
        ),
        random=bn.IIV(["ka", "cl", "v"], sd=dist.HalfNormal(0.5)),
        pre=lambda p, eta, cov: dict(
            KA=p.tvka * jnp.exp(eta.ka), CL=p.tvcl * jnp.exp(eta.cl), V=p.tvv * jnp.exp(eta.v)
        ),
        dynamics=bn.pk.Depots1Central1(),
        derived=lambda p, a, ind: dict(DV=bn.error.Additive(a.Central / ind.V, sd=p.add_sd)),
    )
    spec.update(kw)
    return bn.Model(**spec)


def _design(n_id=3, times=(0.5, 1.0, 2.0, 6.0, 12.0), dose=100.0, wt=None):
    rows = []
    for i in range(1, n_id + 1):
        w = 70.0 if wt is None else wt[i - 1]
        rows.append(dict(ID=i, TIME=0.0, DV=0.0, AMT=dose, EVID=1, CMT=1, WT=w))
        rows += [dict(ID=i, TIME=t, DV=1.0, AMT=0.0, EVID=0, CMT=2, WT=w) for t in times]
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- error models
IPRED = jnp.array([0.5, 2.0, 10.0])
DVS = jnp.array([0.7, 1.5, 12.0])


def test_additive_logpdf_matches_scipy():
    lp = bn.error.Additive(IPRED, sd=0.3).distribution().log_prob(DVS)
    np.testing.assert_allclose(lp, st.norm.logpdf(DVS, IPRED, 0.3), rtol=1e-12)


def test_proportional_logpdf_matches_scipy():
    lp = bn.error.Proportional(IPRED, sd=0.2).distribution().log_prob(DVS)
    np.testing.assert_allclose(lp, st.norm.logpdf(DVS, IPRED, 0.2 * IPRED), rtol=1e-12)


@pytest.mark.parametrize(
    "form, sd",
    [
        ("var", np.sqrt(0.1**2 + (0.2 * IPRED) ** 2)),
        ("combined2", np.sqrt(0.1**2 + (0.2 * IPRED) ** 2)),
        ("sd", 0.1 + 0.2 * IPRED),
        ("combined1", 0.1 + 0.2 * IPRED),
    ],
)
def test_combined_forms(form, sd):
    err = bn.error.Combined(IPRED, add_sd=0.1, prop_sd=0.2, form=form)
    np.testing.assert_allclose(err.scale(), sd, rtol=1e-12)
    np.testing.assert_allclose(err.distribution().log_prob(DVS), st.norm.logpdf(DVS, IPRED, sd))


def test_combined_requires_named_form():
    with pytest.raises(TypeError):
        bn.error.Combined(IPRED, add_sd=0.1, prop_sd=0.2)
    with pytest.raises(ValueError, match="form must be one of.*variances add"):
        bn.error.Combined(IPRED, add_sd=0.1, prop_sd=0.2, form="additive")


def test_exponential_is_lognormal_on_dv_scale():
    lp = bn.error.Exponential(IPRED, sd=0.25).distribution().log_prob(DVS)
    # log DV ~ N(log IPRED, sd), plus the Jacobian -log DV: the density of DV itself
    ref = st.norm.logpdf(np.log(DVS), np.log(IPRED), 0.25) - np.log(DVS)
    np.testing.assert_allclose(lp, ref, rtol=1e-12)


def test_proportional_at_zero_ipred_is_not_nan():
    lp = bn.error.Proportional(jnp.array([0.0]), sd=0.1).distribution().log_prob(jnp.array([1.0]))
    assert np.isfinite(lp).all() or np.isneginf(lp).all()
    assert lp[0] < -1e6


# --------------------------------------------------------------------------- declarations
def test_param_rejects_non_distribution():
    with pytest.raises(TypeError, match="numpyro distribution"):
        bn.Param(3.0)
    with pytest.raises(ValueError, match="scalar"):
        bn.Param(dist.Normal(jnp.zeros(2), 1.0))


def test_iiv_validation():
    with pytest.raises(ValueError, match="unique"):
        bn.IIV(["cl", "cl"])
    with pytest.raises(ValueError, match="missing \\['v'\\]"):
        bn.IIV(["cl", "v"], sd={"cl": dist.HalfNormal(1.0)})
    with pytest.raises(ValueError, match="concentration"):
        bn.IIV(["cl", "v"], corr=0.0)
    with pytest.raises(TypeError, match="LKJ"):
        bn.IIV(["cl", "v"], corr="yes")


def test_model_validation_messages():
    with pytest.raises(bn.ModelError, match="bn.Param"):
        _theo_model(params=dict(tvcl=3.0))
    with pytest.raises(bn.ModelError, match="structural model"):
        _theo_model(dynamics="1cpt")
    with pytest.raises(bn.ModelError, match="identifiers"):
        _theo_model(params={"tv cl": bn.Param(dist.LogNormal(0.0, 1.0))})


def test_namespace_lists_available_names():
    ns = Namespace("eta", {"cl": 1.0, "v": 2.0})
    assert ns.cl == 1.0 and ns["v"] == 2.0
    with pytest.raises(bn.ModelError, match="eta has no 'ka'; available: cl, v"):
        _ = ns.ka


def test_pre_must_return_structural_parameters():
    model = _theo_model(pre=lambda p, eta, cov: dict(KA=p.tvka, CL=p.tvcl))
    ds = bn.read_nonmem(_design())
    with pytest.raises(bn.ModelError, match="missing \\['V'\\]"):
        bn.fit(model, ds, chains=1, warmup=5, samples=5)


def test_missing_covariate_is_named():
    model = _theo_model(covariates=["CRCL"])
    with pytest.raises(bn.ModelError, match="covariates \\['CRCL'\\].*WT"):
        model.model_data(bn.read_nonmem(_design()))


def test_missing_covariate_value_names_subjects():
    df = _design(wt=[70.0, np.nan, 80.0])
    model = _theo_model(covariates=["WT"])
    with pytest.raises(bn.ModelError, match="'WT' is missing.*subjects \\[2\\]"):
        model.model_data(bn.read_nonmem(df))


def test_exponential_error_rejects_nonpositive_dv():
    model = _theo_model(
        derived=lambda p, a, ind: dict(DV=bn.error.Exponential(a.Central / ind.V, sd=p.add_sd))
    )
    df = _design()
    df.loc[2, "DV"] = 0.0
    with pytest.raises(bn.ModelError, match="DV > 0.*rows \\[2\\]"):
        bn.fit(model, bn.read_nonmem(df), chains=1, warmup=5, samples=5)


# --------------------------------------------------------------------------- NumPyro model
def test_numpyro_model_sites_plates_and_shapes():
    model = _theo_model(random=bn.IIV(["ka", "cl", "v"], corr=2.0))
    ds = bn.read_nonmem(_design(n_id=4))
    md = model.model_data(ds)
    tr = handlers.trace(handlers.seed(model.numpyro_model, 0)).get_trace(md, DV=jnp.asarray(ds.dv))
    assert tr["z_eta"]["value"].shape == (4, 3)
    assert [f.name for f in tr["z_eta"]["cond_indep_stack"]] == ["ID"]
    assert [f.name for f in tr["DV"]["cond_indep_stack"]] == ["obs"]
    assert tr["DV"]["value"].shape == (20,)
    assert tr["omega_corr"]["value"].shape == (3, 3)
    for k in ("KA", "CL", "V", "eta_ka", "eta_cl", "eta_v"):
        assert tr[k]["value"].shape == (4,)
    # ETA = diag(sd) L z (non-centred)
    sd = jnp.stack([tr[f"omega_{n}_sd"]["value"] for n in ("ka", "cl", "v")])
    eta = tr["z_eta"]["value"] @ (sd[:, None] * tr["omega_corr_chol"]["value"]).T
    np.testing.assert_allclose(tr["eta_cl"]["value"], eta[:, 1], rtol=1e-12)
    np.testing.assert_allclose(tr["CL"]["value"], tr["tvcl"]["value"] * jnp.exp(eta[:, 1]))


def test_ipred_matches_closed_form_and_loglik_site():
    model = _theo_model()
    ds = bn.read_nonmem(_design(n_id=2))
    md = model.model_data(ds)
    values = dict(
        tvka=1.2,
        tvcl=2.5,
        tvv=30.0,
        add_sd=0.5,
        omega_ka_sd=0.3,
        omega_cl_sd=0.2,
        omega_v_sd=0.1,
        z_eta=jnp.array([[0.5, -1.0, 0.2], [0.0, 0.0, 0.0]]),
    )
    cond = handlers.condition(model.numpyro_model, data=values)
    tr = handlers.trace(handlers.seed(cond, 0)).get_trace(md, DV=jnp.asarray(ds.dv))
    ka = 1.2 * np.exp(0.3 * np.array([0.5, 0.0]))
    cl = 2.5 * np.exp(0.2 * np.array([-1.0, 0.0]))
    v = 30.0 * np.exp(0.1 * np.array([0.2, 0.0]))
    t = ds.obs_time[ds.obs_index]
    s = ds.obs_index[0]
    k = cl / v
    ref = 100 * ka[s] / (v[s] * (ka[s] - k[s])) * (np.exp(-k[s] * t) - np.exp(-ka[s] * t))
    np.testing.assert_allclose(tr["IPRED"]["value"], ref, rtol=1e-10)
    np.testing.assert_allclose(tr["loglik_DV"]["value"], st.norm.logpdf(ds.dv, ref, 0.5))


def test_model_without_iiv_and_with_covariate():
    model = bn.Model(
        params=dict(
            tvcl=bn.Param(dist.LogNormal(0.0, 1.0)),
            tvv=bn.Param(dist.LogNormal(3.0, 1.0)),
            prop_sd=bn.Param(dist.HalfNormal(0.3)),
        ),
        pre=lambda p, eta, cov: dict(CL=p.tvcl * (cov.wt / 70) ** 0.75, V=p.tvv * cov.wt / 70),
        dynamics=bn.pk.Central1(),
        derived=lambda p, a, ind: dict(DV=bn.error.Proportional(a.Central / ind.V, sd=p.prop_sd)),
        covariates=["wt"],  # matches column WT; pre sees it as declared
    )
    ds = bn.read_nonmem(_design(wt=[50.0, 70.0, 90.0]))
    tr = handlers.trace(handlers.seed(model.numpyro_model, 1)).get_trace(model.model_data(ds))
    assert "z_eta" not in tr
    cl = tr["tvcl"]["value"] * (np.array([50.0, 70.0, 90.0]) / 70) ** 0.75
    np.testing.assert_allclose(tr["CL"]["value"], cl, rtol=1e-12)


def test_numpyro_model_is_plain_and_wrappable():
    """A user can wrap the compiled model with ordinary NumPyro handlers and infer with it."""
    model = _theo_model()
    ds = bn.read_nonmem(_design())
    md = model.model_data(ds)
    blocked = handlers.block(model.numpyro_model, hide=["IPRED"])
    tr = handlers.trace(handlers.seed(blocked, 0)).get_trace(md)
    assert "IPRED" not in tr and "DV" in tr
    lp = numpyro.infer.util.log_density(
        model.numpyro_model,
        (md,),
        {"DV": jnp.asarray(ds.dv)},
        {k: v["value"] for k, v in tr.items() if v["type"] == "sample" and k != "DV"},
    )[0]
    assert np.isfinite(lp)


def test_simulate_uses_given_parameters():
    model = _theo_model()
    ds = bn.read_nonmem(_design(n_id=200, times=(1.0,)))
    truth = dict(
        tvka=1.5,
        tvcl=2.8,
        tvv=32.0,
        add_sd=1e-6,
        omega_ka_sd=1e-6,
        omega_cl_sd=0.3,
        omega_v_sd=1e-6,
    )
    sim = bn.simulate(model, ds, truth, seed=3).predictions
    assert sim["DV"].dims == ("chain", "draw", "obs") and sim["DV"].shape == (1, 1, 200)
    cl = sim["CL"].values[0, 0]
    np.testing.assert_allclose(np.std(np.log(cl)), 0.3, rtol=0.15)
    np.testing.assert_allclose(np.median(cl), 2.8, rtol=0.1)
    # no residual error: DV equals IPRED, the closed form at each subject's own CL
    k = cl / 32.0
    ref = 100 * 1.5 / (32.0 * (1.5 - k)) * (np.exp(-k) - np.exp(-1.5))
    np.testing.assert_allclose(sim["IPRED"].values[0, 0], ref, rtol=1e-5)
    np.testing.assert_allclose(sim["DV"].values[0, 0], ref, rtol=1e-4)
    with pytest.raises(bn.ModelError, match="missing \\['omega_v_sd'\\]"):
        bn.simulate(model, ds, {k: v for k, v in truth.items() if k != "omega_v_sd"})


def test_grad_of_log_density_is_finite_at_init():
    model = _theo_model()
    ds = bn.read_nonmem(_design())
    md = model.model_data(ds)
    from numpyro.infer.util import initialize_model

    info = initialize_model(
        jax.random.PRNGKey(0),
        model.numpyro_model,
        model_args=(md,),
        model_kwargs={"DV": jnp.asarray(ds.dv)},
        init_strategy=bn.infer.init_to_typical(),
    )
    z = info.param_info.z
    np.testing.assert_array_equal(z["z_eta"], 0.0)
    g = jax.grad(info.potential_fn)(z)
    assert all(np.isfinite(v).all() for v in jax.tree_util.tree_leaves(g))


def test_centered_iiv_site_and_equivalence():
    """IIV(centered=True) samples ETA ~ N(0, OMEGA) directly; same ETAs give the same model."""
    ds = bn.read_nonmem(_design(n_id=3))
    md = _theo_model().model_data(ds)
    cen = _theo_model(random=bn.IIV(["ka", "cl", "v"], corr=2.0, centered=True))
    assert cen.eta_site == "eta_centered" and _theo_model().eta_site == "z_eta"
    tr = handlers.trace(handlers.seed(cen.numpyro_model, 0)).get_trace(md, DV=jnp.asarray(ds.dv))
    assert "z_eta" not in tr and tr["eta_centered"]["value"].shape == (3, 3)
    assert [f.name for f in tr["eta_centered"]["cond_indep_stack"]] == ["ID"]
    np.testing.assert_allclose(tr["eta_cl"]["value"], tr["eta_centered"]["value"][:, 1])
    sd = jnp.stack([tr[f"omega_{n}_sd"]["value"] for n in ("ka", "cl", "v")])
    chol = sd[:, None] * tr["omega_corr_chol"]["value"]
    ref = st.multivariate_normal(np.zeros(3), np.asarray(chol @ chol.T))
    np.testing.assert_allclose(
        tr["eta_centered"]["fn"].log_prob(tr["eta_centered"]["value"]),
        ref.logpdf(np.asarray(tr["eta_centered"]["value"])),
        rtol=1e-10,
    )


def test_modeled_infusion_needs_its_parameter_from_pre():
    df = _design(n_id=2)
    df.loc[df.EVID == 1, "RATE"] = -2  # duration modelled
    df.loc[df.EVID == 1, "CMT"] = 2  # a zero-order input into the central compartment
    ds = bn.read_nonmem(df)
    with pytest.raises(bn.ModelError, match="D2.*Return it from pre"):
        _theo_model().model_data(ds)
    with_d2 = _theo_model(pre=lambda p, eta, cov: dict(KA=p.tvka, CL=p.tvcl, V=p.tvv, D2=2.0))
    values = dict(
        tvka=1.5,
        tvcl=2.8,
        tvv=32.0,
        add_sd=0.01,
        omega_ka_sd=0.01,
        omega_cl_sd=0.01,
        omega_v_sd=0.01,
    )
    sim = bn.simulate(with_d2, ds, values, seed=0).predictions["IPRED"].values[0, 0]
    # 100 mg over 2 h into V = 32 L, CL 2.8 L/h: check t = 0.5 h during the infusion
    k = 2.8 / 32.0
    ref = 50.0 / 2.8 * (1 - np.exp(-k * 0.5))  # R/CL·(1 − e^{−kt})
    np.testing.assert_allclose(sim[0], ref, rtol=1e-6)
