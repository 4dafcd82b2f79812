"""Per-ETA centring (``IIV(centered=[names])``): some ETAs centred, the rest non-centred.

The sampled site ``eta_partial`` holds MU + ETA in the centred columns and the standard
normal z (ETA = L z) in the others. The model is the same as all-centred; only the sampled
variable changes, so the joint log densities differ by exactly the Jacobian of z -> ETA,
``n_id * log|det L_nc|`` (L_nc the Cholesky factor of OMEGA's non-centred block). Checked
for a diagonal OMEGA, a block OMEGA with the block centred and with it non-centred, and
with MU-referencing; plus initialisation at ETA = 0, a short fit whose fitted-ETA
simulation reproduces its IPRED, and the declaration errors.
"""

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from numpyro import handlers
from numpyro.infer.util import log_density

import bayes_nlme as bn
from bayes_nlme import dist
from bayes_nlme.infer._fit import init_to_typical

TIMES = (0.5, 1.0, 2.0, 4.0, 8.0, 24.0)
NAMES = ("ka", "cl", "v")


def _design(n_id=8):
    rows = []
    for i in range(1, n_id + 1):
        wt = 50.0 + 40.0 * (i - 1) / max(n_id - 1, 1)
        rows.append(dict(ID=i, TIME=0.0, AMT=100.0, DV=0.0, EVID=1, CMT=1, WT=wt))
        rows += [dict(ID=i, TIME=t, AMT=0.0, DV=0.0, EVID=0, CMT=2, WT=wt) for t in TIMES]
    return pd.DataFrame(rows)


def _pre(p, eta, cov):
    return dict(
        KA=p.tvka * jnp.exp(eta.ka),
        CL=p.tvcl * (cov.WT / 70.0) ** 0.75 * jnp.exp(eta.cl),
        V=p.tvv * jnp.exp(eta.v),
    )


def _model(**iiv):
    return bn.Model(
        params=dict(
            tvka=bn.Param(dist.LogNormal(jnp.log(1.0), 1.0), unit="1/h"),
            tvcl=bn.Param(dist.LogNormal(jnp.log(3.0), 1.0), unit="L/h"),
            tvv=bn.Param(dist.LogNormal(jnp.log(30.0), 1.0), unit="L"),
            prop_sd=bn.Param(dist.HalfNormal(0.3)),
        ),
        random=bn.IIV(list(NAMES), sd=dist.HalfNormal(0.5), **iiv),
        covariates=["WT"],
        pre=_pre,
        dynamics=bn.pk.Depots1Central1(),
        derived=lambda p, a, ind: dict(DV=bn.error.Proportional(a.Central / ind.V, sd=p.prop_sd)),
    )


TRUTH = dict(tvka=1.2, tvcl=3.0, tvv=30.0, prop_sd=0.1, omega_ka_sd=0.4, omega_cl_sd=0.3)
TRUTH["omega_v_sd"] = 0.2


@pytest.fixture(scope="module")
def data():
    design = _design()
    sim = bn.simulate(_model(centered=True), design, TRUTH, seed=1)
    out = design.copy()
    out.loc[out.EVID == 0, "DV"] = np.asarray(sim.predictions["DV"].values[0, 0])
    return out


def _theta(model):
    theta = dict(tvka=1.1, tvcl=2.5, tvv=35.0, prop_sd=0.15)
    theta.update(omega_ka_sd=0.45, omega_cl_sd=0.35, omega_v_sd=0.25)
    if model.random.corr is not None:
        theta["omega_corr_chol"] = np.linalg.cholesky(
            np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.6], [0.0, 0.6, 1.0]])
        )
    return theta


def _mu_cov(p, cov):
    return dict(cl=jnp.log(p.tvcl) + 0.75 * jnp.log(cov.WT / 70.0), v=jnp.log(p.tvv))


CASES = {
    "diagonal": (dict(centered=["cl", "v"]), dict(centered=True)),
    "block centred": (
        dict(centered=["cl", "v"], corr=2.0, blocks=[["cl", "v"], ["ka"]]),
        dict(centered=True, corr=2.0, blocks=[["cl", "v"], ["ka"]]),
    ),
    "block non-centred": (
        dict(centered=["ka"], corr=2.0, blocks=[["cl", "v"], ["ka"]]),
        dict(centered=True, corr=2.0, blocks=[["cl", "v"], ["ka"]]),
    ),
    "mu": (dict(centered=["cl", "v"], mu=_mu_cov), dict(centered=True)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_log_density_differs_from_centred_by_the_jacobian(data, case):
    iiv_partial, iiv_centred = CASES[case]
    partial, centred = _model(**iiv_partial), _model(**iiv_centred)
    assert partial.eta_site == "eta_partial"
    ds = bn.read_nonmem(data)
    mdata = partial.model_data(ds)
    dv = jnp.asarray(ds.dv)
    theta = _theta(partial)
    rng = np.random.default_rng(0)
    # ETAs drawn from OMEGA (so the block case has correlated ETAs)
    sd = np.array([theta[f"omega_{n}_sd"] for n in NAMES])
    chol = sd[:, None] * theta.get("omega_corr_chol", np.eye(3))
    eta = rng.standard_normal((mdata.n_id, 3)) @ chol.T
    lp_c, _ = log_density(centred.numpyro_model, (mdata, dv), {}, {**theta, "eta_centered": eta})
    # the partial site: MU + ETA where centred, z = L_nc^-1 ETA where not
    c = np.array([n in partial.random.centered_names for n in NAMES])
    mu = np.asarray(partial.mu_matrix(theta, mdata))
    u = np.where(c, eta + mu, 0.0)
    nc = ~c
    l_nc = chol[np.ix_(nc, nc)]
    u[:, nc] = np.linalg.solve(l_nc, eta[:, nc].T).T
    lp_p, tr = log_density(partial.numpyro_model, (mdata, dv), {}, {**theta, "eta_partial": u})
    jac = mdata.n_id * np.sum(np.log(np.diag(l_nc)))
    np.testing.assert_allclose(float(lp_p), float(lp_c) + jac, rtol=1e-12)
    for i, n in enumerate(NAMES):  # the ETAs are reported as before
        np.testing.assert_allclose(np.asarray(tr[f"eta_{n}"]["value"]), eta[:, i], atol=1e-12)
    # the same site values read as all-centred would be another model: the test can fail
    lp_wrong, _ = log_density(centred.numpyro_model, (mdata, dv), {}, {**theta, "eta_centered": u})
    assert abs(float(lp_wrong) - float(lp_p)) > 1.0


def test_centered_normalised():
    assert bn.IIV(list(NAMES), centered=["v", "cl"]).centered_names == ("cl", "v")
    full = bn.IIV(list(NAMES), centered=["v", "cl", "ka"])
    assert full.centered is True and not full.is_partially_centered
    assert bn.IIV(list(NAMES), centered=[]).centered is False
    assert bn.IIV(list(NAMES), mu={"cl": "tvcl"}).centered is True  # mu alone implies centred
    assert _model(centered=True).eta_site == "eta_centered"
    assert _model().eta_site == "z_eta"


def test_bad_declarations():
    with pytest.raises(bn.ModelError, match="not declared.*'q'"):
        bn.IIV(list(NAMES), centered=["cl", "q"])
    with pytest.raises(bn.ModelError, match="list of the ETA names"):
        bn.IIV(list(NAMES), centered="cl")
    with pytest.raises(bn.ModelError, match="splits"):
        bn.IIV(list(NAMES), corr=2.0, centered=["cl"])  # one block of all three
    with pytest.raises(bn.ModelError, match="splits.*'cl', 'v'"):
        bn.IIV(list(NAMES), corr=2.0, blocks=[["cl", "v"]], centered=["cl", "ka"])
    with pytest.raises(bn.ModelError, match=r"MU for \['ka'\].*non-centred"):
        bn.IIV(list(NAMES), centered=["cl"], mu={"cl": "tvcl", "ka": "tvka"})
    model = _model(centered=["cl"], mu=lambda p, cov: dict(cl=jnp.log(p.tvcl), v=0.0))
    mdata = model.model_data(bn.read_nonmem(_design(2)))
    with pytest.raises(bn.ModelError, match=r"MU for \['v'\].*non-centred"):
        model.mu_matrix(_theta(model), mdata)


def test_init_starts_at_eta_zero(data):
    model = _model(centered=["cl", "v"], mu=_mu_cov)
    ds = bn.read_nonmem(data)
    mdata = model.model_data(ds)
    seeded = handlers.seed(model.numpyro_model, rng_seed=0)
    init = handlers.substitute(seeded, substitute_fn=init_to_typical())
    tr = handlers.trace(init).get_trace(mdata, jnp.asarray(ds.dv))
    for n in NAMES:
        np.testing.assert_allclose(np.asarray(tr[f"eta_{n}"]["value"]), 0.0, atol=1e-12)
    u = np.asarray(tr["eta_partial"]["value"])
    assert np.all(u[:, 0] == 0.0) and np.ptp(u[:, 1]) > 0.3  # z = 0; PHI = MU varies by WT


def test_short_fit_simulates_its_ipred(data):
    model = _model(centered=["cl", "v"], mu=_mu_cov)
    idata = bn.fit(model, data, chains=1, warmup=60, samples=30, seed=2, progress_bar=False)
    assert idata.posterior["eta_partial"].dims == ("chain", "draw", "ID", "eta")
    assert list(idata.posterior["eta_partial"].coords["eta"].values) == list(NAMES)
    mdata = model.model_data(bn.read_nonmem(data))
    sim = bn.simulate(model, data, idata, etas="fitted", n_draws=5, seed=0)
    fitted = idata.posterior["IPRED"].values.reshape(-1, mdata.n_obs)
    sim_ipred = sim.predictions["IPRED"].values.reshape(-1, mdata.n_obs)
    pick = np.linspace(0, fitted.shape[0] - 1, sim_ipred.shape[0]).round().astype(int)
    np.testing.assert_allclose(sim_ipred, fitted[pick], rtol=1e-8)
    pred = bn.diagnostics.pred(model, data, idata)
    assert np.isfinite(pred).all() and pred.shape == (mdata.n_obs,)
