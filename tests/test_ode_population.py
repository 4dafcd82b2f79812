"""ODE structural models inside the population model: equal to the analytic path, and a
failed solve is a -inf log density in fitting and a named error in simulation."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer.util import log_density

import bayes_nlme as bn
from bayes_nlme.model_zoo import theophylline as zoo


def one_cpt_oral(t, a, p):
    return dict(Depot=-p.KA * a.Depot, Central=p.KA * a.Depot - p.CL / p.V * a.Central)


def _ode_model(**ode_kw):
    base = zoo.model
    ode = bn.pk.ODE(one_cpt_oral, ("Depot", "Central"), ("KA", "CL", "V"), **ode_kw)
    return bn.Model(
        name="theophylline_ode",
        params=base.params,
        random=base.random,
        pre=base.pre,
        dynamics=ode,
        derived=base.derived,
    )


@pytest.fixture(scope="module")
def theo():
    return bn.read_nonmem(zoo.data())


VALUES = dict(
    tvka=1.5, tvcl=2.8, tvv=32.0, add_sd=0.7, omega_ka_sd=0.6, omega_cl_sd=0.3, omega_v_sd=0.15
)


def _params(n_id, seed=0):
    z = np.random.default_rng(seed).normal(size=(n_id, 3))
    return {**{k: jnp.asarray(v) for k, v in VALUES.items()}, "z_eta": jnp.asarray(z)}


def test_ode_log_density_equals_analytic(theo):
    ode = _ode_model()
    args = (ode.model_data(theo),)
    kw = {"DV": jnp.asarray(theo.dv)}
    lp_ode, tr = log_density(ode.numpyro_model, args, kw, _params(theo.n_id))
    lp_ana, _ = log_density(zoo.model.numpyro_model, args, kw, _params(theo.n_id))
    np.testing.assert_allclose(lp_ode, lp_ana, rtol=1e-7)
    assert bool(np.all(tr["solver_ok"]["value"]))


def test_ode_gradient_equals_analytic(theo):
    ode = _ode_model()
    md = ode.model_data(theo)
    kw = {"DV": jnp.asarray(theo.dv)}

    def lp(model, theta):
        return log_density(model.numpyro_model, (md,), kw, {**_params(theo.n_id), **theta})[0]

    theta = {k: jnp.asarray(VALUES[k]) for k in ("tvka", "tvcl", "tvv")}
    g_ode = jax.grad(lambda th: lp(ode, th))(theta)
    g_ana = jax.grad(lambda th: lp(zoo.model, th))(theta)
    for k in theta:
        np.testing.assert_allclose(g_ode[k], g_ana[k], rtol=1e-5)


def test_ode_fit_runs_and_records_solver_status(theo):
    idata = bn.fit(_ode_model(rtol=1e-6, atol=1e-8), theo, chains=1, warmup=40, samples=15)
    ok = idata.posterior["solver_ok"]
    assert ok.dims == ("chain", "draw", "ID") and bool(ok.all())
    assert np.isfinite(idata.log_likelihood["DV"].values).all()


def test_failed_solve_is_minus_inf_not_nan(theo):
    broken = _ode_model(max_steps=2)  # cannot reach the first observation
    md = broken.model_data(theo)
    kw = {"DV": jnp.asarray(theo.dv)}
    theta = {k: jnp.asarray(VALUES[k]) for k in ("tvka", "tvcl", "tvv")}

    def lp(th):
        return log_density(broken.numpyro_model, (md,), kw, {**_params(theo.n_id), **th})[0]

    value, grad = jax.value_and_grad(lp)(theta)
    assert np.isneginf(value)
    assert all(np.isfinite(g) for g in jax.tree_util.tree_leaves(grad))


def test_failed_solve_in_simulation_names_subjects_and_remedies(theo):
    broken = _ode_model(max_steps=2)
    with pytest.raises(bn.pk.ODESolveError, match=r"(?s)subjects \[1, 2, 3.*max_steps"):
        bn.simulate(broken, theo, VALUES, seed=0)


def test_fit_that_cannot_start_explains_the_solver_remedies(theo):
    broken = _ode_model(max_steps=2)
    with pytest.raises(bn.ModelError, match="(?s)finite log density.*max_steps.*Kvaerno5"):
        bn.fit(broken, theo, chains=1, warmup=5, samples=5)


def test_stiff_solver_option_works_in_a_fit(theo):
    model = _ode_model(solver=diffrax.Kvaerno5(), rtol=1e-6, atol=1e-8)
    sim = bn.simulate(model, theo, VALUES, seed=1).predictions
    ref = bn.simulate(zoo.model, theo, VALUES, seed=1).predictions
    np.testing.assert_allclose(sim["IPRED"].values, ref["IPRED"].values, rtol=1e-4, atol=1e-6)


def test_fit_counts_and_reports_solver_failures(theo):
    """A fit whose proposals sometimes fail to solve (max_steps too small for large KA)
    completes, with valid draws, and reports how many log-density evaluations failed; a
    fit with the default max_steps reports far fewer."""
    import warnings

    df = zoo.data()
    df = df[df["ID"].isin(sorted(df["ID"].unique())[:4])]

    def model(**ode_kw):  # a wide KA prior: large KA need more steps than max_steps=70
        ode = bn.pk.ODE(one_cpt_oral, ("Depot", "Central"), ("KA", "CL", "V"), **ode_kw)
        return bn.Model(
            params=dict(
                tvka=bn.Param(bn.dist.LogNormal(jnp.log(1.5), 1.5)),
                tvcl=bn.Param(bn.dist.LogNormal(jnp.log(2.8), 0.5)),
                tvv=bn.Param(bn.dist.LogNormal(jnp.log(32.0), 0.5)),
                prop_sd=bn.Param(bn.dist.HalfNormal(0.3)),
            ),
            random=bn.IIV(["ka", "cl", "v"], sd=bn.dist.HalfNormal(0.5)),
            pre=lambda p, eta, cov: dict(
                KA=p.tvka * jnp.exp(eta.ka), CL=p.tvcl * jnp.exp(eta.cl), V=p.tvv * jnp.exp(eta.v)
            ),
            dynamics=ode,
            derived=lambda p, a, ind: dict(
                DV=bn.error.Proportional(a.Central / ind.V, sd=p.prop_sd)
            ),
        )

    tight = model(rtol=1e-6, atol=1e-8, max_steps=70)
    with pytest.warns(RuntimeWarning, match=r"(\d+) log-density evaluation\(s\).*max_steps"):
        idata = bn.fit(tight, df, chains=1, warmup=30, samples=20, seed=2)
    n_failed = idata.sample_stats.attrs["ode_solver_failures"]
    assert n_failed > 0
    assert np.all(np.isfinite(idata.posterior["tvka"].values))
    assert bool(np.all(idata.posterior["solver_ok"].values))  # kept draws all solved
    # the default max_steps: far fewer failures (only absurd early-warmup proposals, e.g.
    # KA in the thousands, can still fail)
    roomy = model(rtol=1e-6, atol=1e-8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        idata = bn.fit(roomy, df, chains=1, warmup=30, samples=20, seed=2)
    assert idata.sample_stats.attrs["ode_solver_failures"] < n_failed / 4
