"""Power and Student-t residual error models."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats as st
from numpyro import handlers

import bayes_nlme as bn
from bayes_nlme.model_zoo import theophylline as zoo

IPRED = np.array([0.3, 1.0, 2.5, 8.0, 12.0])
DV = np.array([0.35, 0.9, 3.1, 7.2, 12.5])


def test_exported():
    assert bn.error.Power is bn.population.Power
    assert bn.error.StudentT is bn.population.StudentT


@pytest.mark.parametrize("exponent", [0.0, 0.5, 1.0, 1.7])
def test_power_loglik_matches_scipy(exponent):
    err = bn.error.Power(jnp.asarray(IPRED), sd=0.2, exponent=exponent)
    got = np.asarray(err.distribution().log_prob(jnp.asarray(DV)))
    want = st.norm.logpdf(DV, IPRED, 0.2 * np.abs(IPRED) ** exponent)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(err.scale()), 0.2 * np.abs(IPRED) ** exponent, rtol=1e-12)


def test_power_special_cases():
    ipred, dv = jnp.asarray(IPRED), jnp.asarray(DV)
    p1 = bn.error.Power(ipred, sd=0.15, exponent=1.0).distribution().log_prob(dv)
    pr = bn.error.Proportional(ipred, sd=0.15).distribution().log_prob(dv)
    np.testing.assert_allclose(np.asarray(p1), np.asarray(pr), rtol=1e-12)
    p0 = bn.error.Power(ipred, sd=0.5, exponent=0.0).distribution().log_prob(dv)
    ad = bn.error.Additive(ipred, sd=0.5).distribution().log_prob(dv)
    np.testing.assert_allclose(np.asarray(p0), np.asarray(ad), rtol=1e-12)


def test_power_at_zero_ipred_is_finite_with_finite_gradient():
    ipred = jnp.array([0.0, 2.0])

    def lp(sd, e):
        return bn.error.Power(ipred, sd=sd, exponent=e).distribution().log_prob(0.0).sum()

    # exponent 0: plain additive SD at IPRED = 0
    assert np.isclose(float(bn.error.Power(ipred, sd=0.5, exponent=0.0).scale()[0]), 0.5)
    g = jax.grad(lp, argnums=(0, 1))(0.3, 0.8)
    assert all(np.isfinite(float(x)) for x in g)


@pytest.mark.parametrize("df", [1.0, 4.0, 30.0])
def test_student_t_loglik_matches_scipy(df):
    err = bn.error.StudentT(jnp.asarray(IPRED), sd=0.4, df=df)
    got = np.asarray(err.distribution().log_prob(jnp.asarray(DV)))
    want = st.t.logpdf(DV, df, loc=IPRED, scale=0.4)
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_vmap_pytree():
    sds = jnp.array([0.1, 0.2, 0.3])

    def lp_power(sd):
        return bn.error.Power(jnp.asarray(IPRED), sd=sd, exponent=0.8).distribution().log_prob(DV)

    def lp_t(sd):
        return bn.error.StudentT(jnp.asarray(IPRED), sd=sd, df=5.0).distribution().log_prob(DV)

    got_p = np.asarray(jax.vmap(lp_power)(sds))
    got_t = np.asarray(jax.vmap(lp_t)(sds))
    for i, sd in enumerate(np.asarray(sds)):
        np.testing.assert_allclose(got_p[i], st.norm.logpdf(DV, IPRED, sd * IPRED**0.8), rtol=1e-12)
        np.testing.assert_allclose(got_t[i], st.t.logpdf(DV, 5.0, IPRED, sd), rtol=1e-12)

    # the error objects themselves pass through vmap as pytrees
    errs = jax.vmap(lambda sd: bn.error.StudentT(jnp.asarray(IPRED), sd=sd, df=5.0))(sds)
    assert isinstance(errs, bn.error.StudentT) and errs.sd.shape == (3,)
    leaves = jax.tree_util.tree_leaves(bn.error.Power(jnp.asarray(IPRED), 0.1, 1.0))
    assert len(leaves) == 3


def _trace(model, ds):
    tr = handlers.trace(handlers.seed(model.numpyro_model, 0)).get_trace(
        model.model_data(ds), DV=jnp.asarray(ds.dv)
    )
    return tr


def _zoo_model(derived):
    m = zoo.model
    return bn.Model(
        params=m.params, random=m.random, pre=m.pre, dynamics=m.dynamics, derived=derived
    )


@pytest.mark.parametrize("kind", ["t", "power"])
def test_in_model_loglik(kind):
    with pytest.warns(UserWarning, match="EVID=101"):
        ds = bn.read_nonmem(bn.datasets.load("theophylline"))
    if kind == "t":
        derived = lambda p, a, ind: dict(  # noqa: E731
            DV=bn.error.StudentT(a.Central / ind.V, sd=p.add_sd, df=4.0)
        )
    else:
        derived = lambda p, a, ind: dict(  # noqa: E731
            DV=bn.error.Power(a.Central / ind.V, sd=p.add_sd, exponent=0.6)
        )
    tr = _trace(_zoo_model(derived), ds)
    ipred = np.asarray(tr["IPRED"]["value"])
    sd = float(tr["add_sd"]["value"])
    dv = np.asarray(ds.dv)
    if kind == "t":
        want = st.t.logpdf(dv, 4.0, loc=ipred, scale=sd)
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            want = st.norm.logpdf(dv, ipred, sd * np.abs(ipred) ** 0.6)
    got = np.asarray(tr["loglik_DV"]["value"])
    pos = ipred > 0  # pre-dose rows: IPRED = 0, where Power's SD is floored (scipy gives nan)
    assert pos.sum() > 100
    np.testing.assert_allclose(got[pos], want[pos], rtol=1e-12)
    if kind == "t":
        np.testing.assert_allclose(got, want, rtol=1e-12)
    else:
        assert np.all(np.isfinite(got))
