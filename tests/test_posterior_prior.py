"""bn.posterior_as_prior: priors fitted to a previous fit's marginal posteriors (moments on the
unconstrained scale), and sequential fits of two halves of a dataset vs one pooled fit."""

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from numpyro.distributions.transforms import biject_to

import bayes_nlme as bn
from bayes_nlme import dist


def _model(**params):
    base = dict(
        tvcl=bn.Param(dist.LogNormal(jnp.log(3.0), 1.0), unit="L/h", label="clearance"),
        tvv=bn.Param(dist.LogNormal(jnp.log(30.0), 1.0), unit="L"),
        prop_sd=bn.Param(dist.HalfNormal(0.3)),
    )
    base.update(params)
    return bn.Model(
        params=base,
        random=bn.IIV(["cl", "v"], sd=dist.HalfNormal(0.5)),
        pre=lambda p, eta, cov: dict(CL=p.tvcl * jnp.exp(eta.cl), V=p.tvv * jnp.exp(eta.v)),
        dynamics=bn.pk.Central1(),
        derived=lambda p, a, ind: dict(DV=bn.error.Proportional(a.Central / ind.V, sd=p.prop_sd)),
        name="iv1",
    )


def _fake_idata(rng):
    """Posterior draws of known shape: log-normal tvcl, shifted log-normal shift_v (support
    > -0.9), normal slope, half-normal-like SDs; 2 chains x 400 draws."""
    shape = (2, 400)
    post = dict(
        tvcl=np.exp(rng.normal(np.log(2.8), 0.08, shape)),
        tvv=np.exp(rng.normal(np.log(31.0), 0.05, shape)),
        prop_sd=np.exp(rng.normal(np.log(0.12), 0.1, shape)),
        shift_v=-0.9 + np.exp(rng.normal(np.log(1.1), 0.2, shape)),
        slope=rng.normal(0.3, 0.1, shape),
        omega_cl_sd=np.exp(rng.normal(np.log(0.3), 0.15, shape)),
        omega_v_sd=np.exp(rng.normal(np.log(0.2), 0.2, shape)),
    )
    return az.from_dict(posterior=post), post


def test_fitted_priors_match_unconstrained_moments():
    rng = np.random.default_rng(0)
    idata, post = _fake_idata(rng)
    model = _model(
        shift_v=bn.Param(dist.TruncatedNormal(0.0, 0.5, low=-0.9)),
        slope=bn.Param(dist.Normal(0.0, 1.0), unit="1/kg"),
        fixed_ka=bn.Param.fixed(1.5, unit="1/h"),
    )
    new = bn.posterior_as_prior(idata, model, inflate=1.5)
    assert new is not model and new.pre is model.pre and new.dynamics is model.dynamics
    assert model.params["tvcl"].prior.loc == pytest.approx(np.log(3.0))  # original untouched
    for name in ("tvcl", "tvv", "prop_sd", "shift_v", "slope"):
        old_prior = model.params[name].prior
        u = np.asarray(biject_to(old_prior.support).inv(post[name].ravel()))
        prior = new.params[name].prior
        base = getattr(prior, "base_dist", prior)
        np.testing.assert_allclose(base.loc, u.mean(), rtol=1e-10)
        np.testing.assert_allclose(base.scale, 1.5 * u.std(ddof=1), rtol=1e-10)
        # same bijection as before (support > -0.9 is GreaterThan, was GreaterThanEq)
        x = np.array([-2.0, 0.0, 1.5])
        np.testing.assert_allclose(
            biject_to(prior.support)(x), biject_to(old_prior.support)(x), rtol=1e-14
        )
    assert isinstance(new.params["tvcl"].prior, dist.LogNormal)
    assert isinstance(new.params["slope"].prior, dist.Normal)
    assert isinstance(new.params["shift_v"].prior, dist.TransformedDistribution)
    # the shifted log-normal puts its mass above -0.9 and matches the draws' median
    s = np.asarray(new.params["shift_v"].prior.sample(jax.random.PRNGKey(0), (20000,)))
    assert s.min() > -0.9
    np.testing.assert_allclose(np.median(s), np.median(post["shift_v"]), atol=0.03)
    assert new.params["tvcl"].unit == "L/h" and new.params["tvcl"].label == "clearance"
    assert new.params["fixed_ka"].is_fixed and new.params["fixed_ka"].value == 1.5
    for e in ("cl", "v"):
        u = np.log(post[f"omega_{e}_sd"].ravel())
        prior = new.random.sd_prior(e)
        assert isinstance(prior, dist.LogNormal)
        np.testing.assert_allclose(prior.loc, u.mean(), rtol=1e-10)
        np.testing.assert_allclose(prior.scale, 1.5 * u.std(ddof=1), rtol=1e-10)
    assert new.random.names == model.random.names and new.random.corr is None


def test_names_selects_parameters_and_errors_are_clear():
    rng = np.random.default_rng(1)
    idata, _ = _fake_idata(rng)
    model = _model(fixed_ka=bn.Param.fixed(1.5))
    new = bn.posterior_as_prior(idata, model, names=["tvcl", "omega_v_sd"])
    assert new.params["tvv"] is model.params["tvv"]  # not selected: prior kept
    assert new.random.sd_prior("cl") is model.random.sd_prior("cl")
    assert new.params["tvcl"].prior is not model.params["tvcl"].prior
    assert new.random.sd_prior("v") is not model.random.sd_prior("v")
    with pytest.raises(bn.ModelError, match="fixed"):
        bn.posterior_as_prior(idata, model, names=["fixed_ka"])
    with pytest.raises(bn.ModelError, match="names \\[.tvq.\\] are not estimated"):
        bn.posterior_as_prior(idata, model, names=["tvq"])
    with pytest.raises(bn.ModelError, match="inflate"):
        bn.posterior_as_prior(idata, model, inflate=0.0)
    with pytest.raises(bn.ModelError, match="posterior lacks \\['tvka'\\]"):
        bn.posterior_as_prior(idata, _model(tvka=bn.Param(dist.LogNormal(0.0, 1.0))))
    const = az.from_dict(
        posterior={k: np.full((1, 10), 0.5) for k in ("tvcl", "tvv", "prop_sd")}
        | {"omega_cl_sd": np.full((1, 10), 0.3), "omega_v_sd": np.full((1, 10), 0.2)}
    )
    with pytest.raises(bn.ModelError, match="all equal"):
        bn.posterior_as_prior(const, _model())


# --------------------------------------------------------------------------- sequential fits
TRUTH = dict(tvcl=3.0, tvv=30.0, prop_sd=0.15, omega_cl_sd=0.3, omega_v_sd=0.25)


def _design(n_id=48, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(1, n_id + 1):
        times = np.sort(rng.choice([0.5, 1.0, 2.0, 4.0, 6.0, 8.0, 12.0, 24.0], 4, replace=False))
        rows.append(dict(ID=i, TIME=0.0, AMT=100.0, DV=0.0, EVID=1, CMT=1))
        rows += [dict(ID=i, TIME=float(t), AMT=0.0, DV=0.0, EVID=0, CMT=1) for t in times]
    return pd.DataFrame(rows)


@pytest.mark.slow
def test_sequential_halves_match_pooled_fit():
    model = _model()
    design = _design()
    sim = bn.simulate(model, design, TRUTH, seed=2)
    data = design.copy()
    data.loc[data.EVID == 0, "DV"] = sim.predictions["DV"].values[0, 0]
    first, second = data[data.ID <= 24], data[data.ID > 24]
    kw = dict(chains=2, warmup=300, samples=300, progress_bar=False)
    fit1 = bn.fit(model, first, seed=1, **kw)
    fit2 = bn.fit(bn.posterior_as_prior(fit1, model), second, seed=2, **kw)
    pooled = bn.fit(model, data, seed=3, **kw)
    seq, full = bn.summary(fit2), bn.summary(pooled)
    print(
        pd.concat({"sequential": seq[["median", "sd"]], "pooled": full[["median", "sd"]]}, axis=1)
    )
    for name in TRUTH:
        diff = abs(seq.loc[name, "median"] - full.loc[name, "median"])
        # within 0.5 posterior SD of the pooled fit (marginal approximation + MC error), and
        # the sequential posterior is about as narrow as the pooled one
        assert diff < 0.5 * full.loc[name, "sd"], (name, seq.loc[name, "median"], full.loc[name])
        assert 0.7 < seq.loc[name, "sd"] / full.loc[name, "sd"] < 1.3, name
