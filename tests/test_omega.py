"""OMEGA structures: block-diagonal LKJ prior and its bijection, Half-Student-t SD priors,
the OMEGA table (variances, CV%, correlations), and fits that recover a CL-V correlation
and keep off-block correlations at exactly 0."""

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
import scipy.stats as st
from numpyro.distributions.transforms import biject_to

import bayes_nlme as bn
from bayes_nlme import dist
from bayes_nlme.population import BlockCorrCholeskyTransform, BlockLKJCholesky, HalfStudentT

BLOCKS = [[0, 3], [1, 2, 4]]  # non-contiguous blocks of a 5 x 5 correlation matrix


def _sub(L, b):
    b = np.asarray(b)
    return L[..., b[:, None], b[None, :]]


# --------------------------------------------------------------------------- distribution
def test_block_lkj_log_prob_is_sum_of_block_lkj_log_probs():
    d = BlockLKJCholesky(5, BLOCKS, concentration=2.5)

    @jax.jit  # one compilation instead of hundreds of eager ones
    def run(key):
        L = d.sample(key, (7,))
        ref = sum(dist.LKJCholesky(len(b), concentration=2.5).log_prob(_sub(L, b)) for b in BLOCKS)
        return L, d.log_prob(L), ref, d.support(L)

    L, lp, ref, ok = run(jax.random.PRNGKey(0))
    assert L.shape == (7, 5, 5)
    np.testing.assert_allclose(lp, ref, rtol=1e-12)
    assert np.all(np.isfinite(lp))
    # samples are valid block-diagonal Cholesky factors: off-block zeros, R = L L^T
    assert bool(np.all(ok))
    L = np.asarray(L)
    R = L @ np.swapaxes(L, -1, -2)
    np.testing.assert_allclose(np.diagonal(R, axis1=-2, axis2=-1), 1.0, atol=1e-12)
    np.testing.assert_array_equal(R[:, 0, [1, 2, 4]], 0.0)
    np.testing.assert_array_equal(R[:, 3, [1, 2, 4]], 0.0)
    # each block of R is reproduced by its own Cholesky factor
    Lb = _sub(L, BLOCKS[1])
    np.testing.assert_allclose(_sub(R, BLOCKS[1]), Lb @ np.swapaxes(Lb, -1, -2), atol=1e-14)


def test_block_lkj_marginal_matches_lkj_of_each_block():
    """A 2 x 2 LKJ(eta) block has correlation r with (r + 1)/2 ~ Beta(eta, eta)."""
    d = BlockLKJCholesky(3, [[0, 2]], concentration=3.0)
    L = d.sample(jax.random.PRNGKey(1), (4000,))
    r = np.asarray((L @ jnp.swapaxes(L, -1, -2))[:, 2, 0])
    assert st.kstest((r + 1) / 2, st.beta(3.0, 3.0).cdf).pvalue > 0.01


def test_support_rejects_off_block_values():
    d = BlockLKJCholesky(3, [[0, 1]])
    ok = jnp.array([[1.0, 0, 0], [0.6, 0.8, 0], [0, 0, 1.0]])
    bad = jnp.array([[1.0, 0, 0], [0.6, 0.8, 0], [0.6, 0, 0.8]])  # (2, 0) is off-block
    assert bool(d.support(ok)) and not bool(d.support(bad))
    with pytest.raises(ValueError, match="overlap"):
        BlockLKJCholesky(3, [[0, 1], [1, 2]])
    with pytest.raises(ValueError, match="two or more"):
        BlockLKJCholesky(3, [[0], [1]])
    with pytest.raises(ValueError, match="scalar"):
        BlockLKJCholesky(3, [[0, 1]], concentration=jnp.ones(2))


# --------------------------------------------------------------------------- bijection
def test_transform_round_trip_and_log_det_jacobian():
    d = BlockLKJCholesky(5, BLOCKS, concentration=1.5)
    t = biject_to(d.support)
    assert isinstance(t, BlockCorrCholeskyTransform)
    assert t.n_unconstrained == 1 + 3 and t.inverse_shape((5, 5)) == (4,)
    assert t.forward_shape((6, 4)) == (6, 5, 5)

    def lower_entries(x):  # the strictly-lower entries of each block's factor
        y = t(x)
        return jnp.concatenate(
            [_sub(y, b)[np.tril_indices(len(b), -1)] for b in ((0, 3), (1, 2, 4))]
        )

    @jax.jit
    def run(x, xb):
        L = t(x)
        return (
            L,
            t.inv(L),
            t.inv(t(xb)),
            t.log_abs_det_jacobian(x, L),
            jax.jacobian(lower_entries)(x),
            d.support(L),
        )

    x = jax.random.normal(jax.random.PRNGKey(2), (4,))
    xb = jax.random.normal(jax.random.PRNGKey(3), (6, 4))
    L, x_back, xb_back, ladj, J, ok = run(x, xb)
    assert L.shape == (5, 5) and bool(ok)
    np.testing.assert_allclose(x_back, x, rtol=1e-10)
    np.testing.assert_allclose(xb_back, xb, rtol=1e-10)
    np.testing.assert_allclose(ladj, np.linalg.slogdet(np.asarray(J))[1], rtol=1e-10)


def test_iiv_blocks_declaration_and_prior():
    iiv = bn.IIV(["cl", "v", "ka"], corr=2.0, blocks=[["v", "cl"], ["ka"]])
    assert iiv.blocks == (("cl", "v"), ("ka",))
    assert iiv.block_indices() == ((0, 1), (2,))
    prior = iiv.corr_prior()
    assert isinstance(prior, BlockLKJCholesky) and prior.blocks == ((0, 1),)
    assert prior.concentration == 2.0 and prior.event_shape == (3, 3)
    # names in no block are independent; one block of everything is the full LKJ
    assert bn.IIV(["cl", "ka", "v"], corr=1.0, blocks=[["cl", "v"]]).block_indices() == (
        (0, 2),
        (1,),
    )
    full = bn.IIV(["cl", "v"], corr=2.0, blocks=[["cl", "v"]]).corr_prior()
    assert type(full) is dist.LKJCholesky
    with pytest.raises(bn.ModelError, match="not among the ETA names"):
        bn.IIV(["cl", "v"], corr=2.0, blocks=[["cl", "q"]])
    with pytest.raises(bn.ModelError, match="one IIV block only"):
        bn.IIV(["cl", "v", "ka"], corr=2.0, blocks=[["cl", "v"], ["v", "ka"]])
    with pytest.raises(bn.ModelError, match="give their LKJ prior"):
        bn.IIV(["cl", "v"], blocks=[["cl", "v"]])
    with pytest.raises(bn.ModelError, match="no block of two or more"):
        bn.IIV(["cl", "v"], corr=2.0, blocks=[["cl"], ["v"]])
    with pytest.raises(bn.ModelError, match="list of lists"):
        bn.IIV(["cl", "v"], corr=2.0, blocks="cl,v")
    with pytest.raises(bn.ModelError, match="blocks=\\[\\['cl', 'v'\\]\\] for one block"):
        bn.IIV(["cl", "v"], corr=2.0, blocks=["cl", "v"])


# --------------------------------------------------------------------------- Half-Student-t
def test_half_student_t_matches_scipy():
    h = HalfStudentT(3.0, 0.5)
    x = np.array([1e-3, 0.01, 0.3, 1.0, 4.0, 25.0])
    ref = np.log(2 * st.t.pdf(x, 3.0, scale=0.5))
    np.testing.assert_allclose(h.log_prob(x), ref, rtol=1e-12)
    np.testing.assert_allclose(h.cdf(x), 2 * st.t.cdf(x, 3.0, scale=0.5) - 1, atol=1e-12)
    np.testing.assert_allclose(h.mean, _half_t_mean(3.0, 0.5), rtol=1e-8)
    np.testing.assert_allclose(
        HalfStudentT(5.0, 2.0).variance, 4.0 * 5 / 3 - _half_t_mean(5.0, 2.0) ** 2, rtol=1e-12
    )
    draws = np.asarray(h.sample(jax.random.PRNGKey(0), (4000,)))
    assert draws.min() >= 0
    assert st.kstest(draws, lambda v: 2 * st.t.cdf(v, 3.0, scale=0.5) - 1).pvalue > 0.01
    assert h.support is dist.constraints.positive and bn.HalfStudentT is HalfStudentT
    batch = HalfStudentT(jnp.array([2.0, 4.0]), 1.0)
    assert batch.batch_shape == (2,)


def _half_t_mean(df, s):
    """E|T| by numerical integration of 2 x t-pdf on x >= 0."""
    from scipy.integrate import quad

    return quad(lambda v: v * 2 * st.t.pdf(v, df, scale=s), 0, np.inf)[0]


# --------------------------------------------------------------------------- models
def _oral_model(random):
    return bn.Model(
        params=dict(
            tvka=bn.Param(dist.LogNormal(jnp.log(1.5), 1.0), unit="1/h"),
            tvcl=bn.Param(dist.LogNormal(jnp.log(3.0), 1.0), unit="L/h"),
            tvv=bn.Param(dist.LogNormal(jnp.log(30.0), 1.0), unit="L"),
            add_sd=bn.Param(dist.HalfNormal(1.0), unit="mg/L"),
        ),
        random=random,
        pre=lambda p, eta, cov: dict(
            KA=p.tvka * jnp.exp(eta.ka), CL=p.tvcl * jnp.exp(eta.cl), V=p.tvv * jnp.exp(eta.v)
        ),
        dynamics=bn.pk.Depots1Central1(),
        derived=lambda p, a, ind: dict(DV=bn.error.Additive(a.Central / ind.V, sd=p.add_sd)),
    )


BLOCK_IIV = bn.IIV(
    ["cl", "v", "ka"], sd=HalfStudentT(3.0, 0.5), corr=2.0, blocks=[["cl", "v"], ["ka"]]
)


def test_block_model_compiles_and_samples_prior_predictive():
    model = _oral_model(BLOCK_IIV)
    assert isinstance(model.random.corr_prior(), BlockLKJCholesky)
    assert model.random_site_names()[-1] == "omega_corr_chol"
    ds = bn.read_nonmem(bn.datasets.load("theophylline"))
    prior = bn.sample_prior_predictive(model, ds, draws=200, seed=1)
    assert prior.prior["omega_corr_chol"].shape == (1, 200, 3, 3)
    corr = prior.prior["omega_corr"]
    assert corr.shape == (1, 200, 3, 3)
    np.testing.assert_array_equal(corr.sel(eta="ka", eta_="cl"), 0.0)
    np.testing.assert_array_equal(corr.sel(eta="v", eta_="ka"), 0.0)
    r = corr.sel(eta="v", eta_="cl").values
    assert np.all(np.abs(r) < 1) and r.std() > 0.1  # LKJ(2) in 2-D: sd of r = 1/sqrt(5)
    assert np.isfinite(prior.prior_predictive["DV"].values).all()
    assert np.all(prior.prior["omega_ka_sd"].values > 0)


def test_map_packing_handles_block_omega():
    """The MAP/OFV code maps only the within-block correlation (one coordinate here)."""
    from bayes_nlme.diagnostics._ofv import _Packing

    pack = _Packing(_oral_model(BLOCK_IIV))
    assert pack.n_corr == 1
    values = dict(
        tvka=1.5,
        tvcl=2.8,
        tvv=32.0,
        add_sd=0.5,
        omega_cl_sd=0.3,
        omega_v_sd=0.2,
        omega_ka_sd=0.4,
        omega_corr=np.array([[1.0, 0.5, 0.0], [0.5, 1.0, 0.0], [0.0, 0.0, 1.0]]),
    )
    parts = pack.unconstrained(values)
    assert parts["omega_corr"].shape == (1,)
    back = pack.natural(jnp.concatenate([jnp.atleast_1d(v) for v in parts.values()]))
    np.testing.assert_allclose(back["omega_corr"], values["omega_corr"], atol=1e-12)
    np.testing.assert_allclose(back["tvcl"], 2.8, rtol=1e-12)
    assert np.isfinite(pack.log_prior(back))


# --------------------------------------------------------------------------- OMEGA table
def _fake_idata():
    rng = np.random.default_rng(0)
    sd_cl = rng.uniform(0.2, 0.4, (2, 50))
    sd_v = rng.uniform(0.1, 0.3, (2, 50))
    sd_ka = rng.uniform(0.5, 0.7, (2, 50))
    r = rng.uniform(0.3, 0.7, (2, 50))
    corr = np.broadcast_to(np.eye(3), (2, 50, 3, 3)).copy()
    corr[..., 0, 1] = corr[..., 1, 0] = r
    idata = az.from_dict(
        posterior=dict(
            omega_cl_sd=sd_cl, omega_v_sd=sd_v, omega_ka_sd=sd_ka, omega_corr=corr, tvcl=sd_cl
        ),
        coords=dict(eta=["cl", "v", "ka"], eta_=["cl", "v", "ka"]),
        dims=dict(omega_corr=["eta", "eta_"]),
    )
    idata.posterior.attrs["population_parameters"] = (
        "tvcl,omega_cl_sd,omega_v_sd,omega_ka_sd,omega_corr"
    )
    return idata, sd_cl, sd_v, r


def test_omega_table_formulas():
    idata, sd_cl, sd_v, r = _fake_idata()
    tab = bn.diagnostics.omega_table(idata)
    assert list(tab.columns) == ["eta", "quantity", "mean", "median", "5%", "95%"]
    assert list(tab.index) == [
        "omega_cl_sd",
        "omega_cl_var",
        "omega_cl_cv%",
        "omega_v_sd",
        "omega_v_var",
        "omega_v_cv%",
        "omega_ka_sd",
        "omega_ka_var",
        "omega_ka_cv%",
        "omega_corr[v, cl]",
        "omega_cov[v, cl]",
    ]  # the structural zeros [ka, cl] and [ka, v] are left out
    np.testing.assert_allclose(tab.loc["omega_cl_var", "median"], np.median(sd_cl**2))
    np.testing.assert_allclose(tab.loc["omega_cl_var", "95%"], np.quantile(sd_cl**2, 0.95))
    cv = 100 * np.sqrt(np.exp(sd_v**2) - 1)
    np.testing.assert_allclose(tab.loc["omega_v_cv%", "median"], np.median(cv))
    np.testing.assert_allclose(tab.loc["omega_v_cv%", "5%"], np.quantile(cv, 0.05))
    np.testing.assert_allclose(tab.loc["omega_corr[v, cl]", "mean"], r.mean())
    np.testing.assert_allclose(tab.loc["omega_cov[v, cl]", "median"], np.median(r * sd_cl * sd_v))
    assert tab.loc["omega_cov[v, cl]", "eta"] == "v, cl"
    wide = bn.diagnostics.omega_table(idata, prob=0.5)
    assert list(wide.columns)[-2:] == ["25%", "75%"]
    with pytest.raises(ValueError, match="prob"):
        bn.diagnostics.omega_table(idata, prob=1.5)


# --------------------------------------------------------------------------- fits
def _iv_model(corr, centered=False):
    return bn.Model(
        params=dict(
            tvcl=bn.Param(dist.LogNormal(jnp.log(3.0), 1.0), unit="L/h"),
            tvv=bn.Param(dist.LogNormal(jnp.log(30.0), 1.0), unit="L"),
            prop_sd=bn.Param(dist.HalfNormal(0.3)),
        ),
        random=bn.IIV(["cl", "v"], sd=dist.HalfNormal(0.5), corr=corr, centered=centered),
        pre=lambda p, eta, cov: dict(CL=p.tvcl * jnp.exp(eta.cl), V=p.tvv * jnp.exp(eta.v)),
        dynamics=bn.pk.Central1(),
        derived=lambda p, a, ind: dict(DV=bn.error.Proportional(a.Central / ind.V, sd=p.prop_sd)),
    )


@pytest.mark.slow
def test_recovers_cl_v_correlation():
    truth = dict(
        tvcl=3.0,
        tvv=30.0,
        prop_sd=0.1,
        omega_cl_sd=0.3,
        omega_v_sd=0.3,
        omega_corr=np.array([[1.0, 0.6], [0.6, 1.0]]),
    )
    times = [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 12.0, 24.0]
    rows = []
    for i in range(1, 101):
        rows.append(dict(ID=i, TIME=0.0, AMT=100.0, DV=0.0, EVID=1, CMT=1))
        rows += [dict(ID=i, TIME=t, AMT=0.0, DV=0.0, EVID=0, CMT=1) for t in times]
    design = pd.DataFrame(rows)
    model = _iv_model(corr=2.0, centered=True)  # rich data: centred ETAs mix better
    sim = bn.simulate(model, design, truth, seed=4)
    data = design.copy()
    data.loc[data.EVID == 0, "DV"] = sim.predictions["DV"].values[0, 0]
    idata = bn.fit(
        model, data, chains=2, warmup=300, samples=300, seed=5, progress_bar=False, dense_mass=True
    )
    tab = bn.diagnostics.omega_table(idata)
    print(tab.to_string())
    lo, med, hi = tab.loc["omega_corr[v, cl]", ["5%", "median", "95%"]]
    assert lo < 0.6 < hi, (lo, med, hi)
    assert abs(med - 0.6) < 0.15, med
    assert bn.summary(idata)["r_hat"].max() < 1.05
    # the OMEGA table and the summary agree on the correlation
    np.testing.assert_allclose(bn.summary(idata).loc["omega_corr[v, cl]", "median"], med)


@pytest.mark.slow
def test_block_diagonal_fit_keeps_off_block_correlations_zero():
    ds = bn.read_nonmem(bn.datasets.load("theophylline"))
    idata = bn.fit(
        _oral_model(BLOCK_IIV), ds, chains=1, warmup=40, samples=30, seed=0, progress_bar=False
    )
    corr = idata.posterior["omega_corr"]
    assert corr.shape == (1, 30, 3, 3)
    for a, b in (("ka", "cl"), ("ka", "v"), ("cl", "ka"), ("v", "ka")):
        np.testing.assert_array_equal(corr.sel(eta=a, eta_=b).values, 0.0)
    r = corr.sel(eta="v", eta_="cl").values
    assert np.all(np.abs(r) < 1) and np.ptp(r) > 0  # the in-block correlation is estimated
    rows = [i for i in bn.summary(idata).index if i.startswith("omega_corr")]
    assert rows == ["omega_corr[v, cl]"]
    tab = bn.diagnostics.omega_table(idata)
    assert [i for i in tab.index if "[" in i] == ["omega_corr[v, cl]", "omega_cov[v, cl]"]


def test_aic_bic_count_only_within_block_correlations():
    from bayes_nlme.diagnostics._ofv import _n_params

    def model(blocks):
        return bn.Model(
            params=dict(a=bn.Param(dist.Normal())),
            random=bn.IIV(["cl", "v", "ka"], corr=1.0, blocks=blocks),
            pre=lambda p, e, c: dict(CL=1.0, V=1.0, KA=1.0),
            dynamics=bn.pk.Depots1Central1(),
            derived=lambda p, a, i: dict(DV=bn.error.Additive(a.Central, sd=1.0)),
        )

    assert _n_params(model(None)) == 1 + 3 + 3
    assert _n_params(model([["cl", "v"], ["ka"]])) == 1 + 3 + 1
