"""Fixed population parameters: ``bn.Param.fixed`` (NONMEM ``FIX``)."""

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from numpyro import handlers

import bayes_nlme as bn
from bayes_nlme import dist
from bayes_nlme.model_zoo import theophylline as zoo


def _fixed_model():
    m = zoo.model
    return bn.Model(
        params={**m.params, "add_sd": bn.Param.fixed(0.7, unit="mg/L")},
        random=m.random,
        pre=m.pre,
        dynamics=m.dynamics,
        derived=m.derived,
    )


@pytest.fixture(scope="module")
def ds():
    with pytest.warns(UserWarning):
        return bn.read_nonmem(bn.datasets.load("theophylline"))


def test_param_fixed_declaration():
    p = bn.Param.fixed(0.7, unit="mg/L", label="additive SD")
    assert p.is_fixed and p.prior is None and p.value == 0.7
    assert p.unit == "mg/L" and p.label == "additive SD"
    assert repr(p) == "Param(fixed=0.7, unit='mg/L')"
    assert bn.Param.fixed(np.float32(2.0)).value == 2.0
    assert isinstance(bn.Param.fixed(1).value, float)
    est = bn.Param(dist.HalfNormal(1.0))
    assert not est.is_fixed and est.value is None


def test_param_validation():
    with pytest.raises(ValueError, match="exactly one of a prior .* got neither"):
        bn.Param()
    with pytest.raises(ValueError, match="exactly one of a prior .* got both"):
        bn.Param(dist.HalfNormal(1.0), value=0.5)
    with pytest.raises(ValueError, match="must be finite"):
        bn.Param.fixed(float("nan"))
    with pytest.raises(ValueError, match="must be finite"):
        bn.Param.fixed(np.inf)
    with pytest.raises(TypeError, match="takes a real number"):
        bn.Param.fixed("0.7")
    with pytest.raises(TypeError, match="takes a real number"):
        bn.Param.fixed(True)
    with pytest.raises(ValueError, match="takes a scalar"):
        bn.Param.fixed(np.array([0.1, 0.2]))
    with pytest.raises(TypeError, match="numpyro distribution"):
        bn.Param(0.7)


def test_fixed_is_deterministic_site(ds):
    model = _fixed_model()
    tr = handlers.trace(handlers.seed(model.numpyro_model, 0)).get_trace(
        model.model_data(ds), DV=jnp.asarray(ds.dv)
    )
    assert tr["add_sd"]["type"] == "deterministic"
    assert float(tr["add_sd"]["value"]) == 0.7
    assert tr["tvcl"]["type"] == "sample"
    assert "add_sd" in model.population_names()
    assert model.units()["add_sd"] == "mg/L"


def test_fit_and_simulate_with_fixed_param(ds):
    model = _fixed_model()
    idata = bn.fit(model, ds, chains=1, warmup=30, samples=10, seed=0, progress_bar=False)
    post = idata.posterior
    assert np.all(post["add_sd"].values == 0.7)
    assert post["tvcl"].values.std() > 0

    est = {k: float(post[k].median()) for k in ["tvka", "tvcl", "tvv"]}
    est.update({n: float(post[n].median()) for n in model.omega_sd_names()})
    # only the estimated parameters are needed
    sim = bn.simulate(model, ds, est, seed=0)
    dv = np.asarray(sim.predictions["DV"]).ravel()
    assert np.isfinite(dv).all()
    # the fixed value drives the simulated residual, whatever value the dict carries
    sim2 = bn.simulate(model, ds, {**est, "add_sd": 123.0}, seed=0)
    np.testing.assert_array_equal(np.asarray(sim2.predictions["DV"]).ravel(), dv)


def test_fixed_parameter_in_ofv_and_aic(ds):
    """A FIXed parameter is not needed in ``params`` and not counted in AIC/BIC."""
    from bayes_nlme.diagnostics import laplace_ofv
    from bayes_nlme.model_zoo import theophylline as zoo

    model = _fixed_model()
    est = dict(
        tvka=1.59, tvcl=2.751, tvv=31.81, omega_ka_sd=0.634, omega_cl_sd=0.263, omega_v_sd=0.139
    )
    fixed = laplace_ofv(model, ds, est)
    full = laplace_ofv(zoo.model, ds, {**est, "add_sd": 0.7})
    np.testing.assert_allclose(fixed.ofv, full.ofv, rtol=1e-10)
    assert fixed.n_params == full.n_params - 1
    np.testing.assert_allclose(fixed.aic, full.aic - 2, rtol=1e-12)


def test_fixed_omega_sd_is_deterministic_and_not_counted():
    from bayes_nlme.diagnostics._ofv import _n_params

    def model(sd):
        return bn.Model(
            params=dict(
                tvcl=bn.Param(dist.LogNormal(jnp.log(3.0), 1.0)),
                add_sd=bn.Param(dist.HalfNormal(1.0)),
            ),
            random=bn.IIV(["cl", "v"], sd=sd),
            pre=lambda p, eta, cov: dict(CL=p.tvcl * jnp.exp(eta.cl), V=30.0 * jnp.exp(eta.v)),
            dynamics=bn.pk.Central1(),
            derived=lambda p, a, ind: dict(DV=bn.error.Additive(a.Central / ind.V, sd=p.add_sd)),
        )

    fixed = model({"cl": dist.HalfNormal(0.5), "v": 0.2})
    assert fixed.fixed_values() == {"omega_v_sd": 0.2}
    assert _n_params(fixed) == _n_params(model(dist.HalfNormal(0.5))) - 1
    df = pd.DataFrame(
        dict(ID=[1, 1, 1], TIME=[0.0, 1, 2], DV=[0, 3, 2], AMT=[100.0, 0, 0], EVID=[1, 0, 0])
    )
    md = fixed.model_data(bn.read_nonmem(df))
    tr = handlers.trace(handlers.seed(fixed.numpyro_model, 0)).get_trace(md)
    assert tr["omega_v_sd"]["type"] == "deterministic" and float(tr["omega_v_sd"]["value"]) == 0.2
    assert tr["omega_cl_sd"]["type"] == "sample"
    # a fixed SD fixes the ETA's spread; simulate() does not ask for it
    truth = dict(tvcl=3.0, add_sd=0.1, omega_cl_sd=0.3)
    sim = bn.simulate(fixed, df, truth, seed=0).predictions
    assert "eta_v" in sim
    with pytest.raises(ValueError, match="fixed IIV SD must be finite and >= 0"):
        bn.IIV(["cl"], sd={"cl": -0.1})
    ofv = bn.diagnostics.laplace_ofv(fixed, df, dict(tvcl=3.0, add_sd=0.5, omega_cl_sd=0.3))
    assert np.isfinite(ofv.ofv)
