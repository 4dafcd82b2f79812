"""Covariate-model helpers (bn.covariate): hand values, jit/vmap/grad, errors, and a
simulate-then-recover fit of an allometric exponent and a 3-level categorical effect."""

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import bayes_nlme as bn
from bayes_nlme import dist
from bayes_nlme.covariate import categorical, exponential, linear, power


# --------------------------------------------------------------------------- hand values
def test_power_hand_values():
    np.testing.assert_allclose(power(35.0, 70.0, 0.75), 0.5**0.75, rtol=1e-14)
    np.testing.assert_allclose(power(140.0, 70.0, 1), 2.0, rtol=0)
    np.testing.assert_allclose(power(70.0, 70.0, jnp.asarray(0.6)), 1.0, rtol=1e-14)
    wt = jnp.array([10.0, 70.0, 105.0])
    np.testing.assert_allclose(power(wt, 70, 0.75), (np.asarray(wt) / 70) ** 0.75, rtol=1e-14)
    # a THETA exponent is differentiable: d/dθ (x/r)^θ = log(x/r)·(x/r)^θ
    g = jax.grad(lambda th: power(35.0, 70.0, th))(0.75)
    np.testing.assert_allclose(g, np.log(0.5) * 0.5**0.75, rtol=1e-12)


def test_linear_and_exponential_hand_values():
    np.testing.assert_allclose(linear(50.0, 40.0, 0.01), 1.1, rtol=1e-14)
    np.testing.assert_allclose(linear(30.0, 40.0, 0.02), 0.8, rtol=1e-14)
    np.testing.assert_allclose(exponential(50.0, 40.0, 0.01), np.exp(0.1), rtol=1e-14)
    np.testing.assert_allclose(exponential(30.0, 40.0, -0.05), np.exp(0.5), rtol=1e-14)
    np.testing.assert_allclose(exponential(40.0, 40.0, 3.0), 1.0, rtol=0)


def test_categorical_hand_values_mapping_and_sequence():
    codes = jnp.array([0.0, 1.0, 2.0])
    np.testing.assert_allclose(categorical(codes, {1: 0.2, 2: -0.3}), [1.0, 1.2, 0.7])
    np.testing.assert_allclose(categorical(codes, [0.2, -0.3]), [1.0, 1.2, 0.7])
    # reference level 1: the list gives the thetas of levels 0 and 2
    np.testing.assert_allclose(categorical(codes, [0.5, -0.3], reference=1), [1.5, 1.0, 0.7])
    # a boolean indicator is a two-level covariate
    np.testing.assert_allclose(categorical(jnp.array([True, False]), {1: 0.25}), [1.25, 1.0])
    # an undeclared level gives NaN, not the reference value
    out = categorical(jnp.array([0.0, 3.0]), {1: 0.2, 2: -0.3})
    assert out[0] == 1.0 and np.isnan(out[1])


def test_categorical_under_jit_vmap_and_grad():
    f = jax.jit(jax.vmap(lambda code, a, b: categorical(code, {1: a, 2: b})))
    out = f(jnp.array([2.0, 0.0, 1.0]), jnp.full(3, 0.4), jnp.full(3, -0.1))
    np.testing.assert_allclose(out, [0.9, 1.0, 1.4], rtol=1e-14)
    g = jax.grad(lambda th: jnp.sum(categorical(jnp.array([0.0, 1.0, 1.0, 2.0]), [th, 0.3])))
    np.testing.assert_allclose(g(0.2), 2.0)  # two subjects at level 1


def test_helpers_reject_bad_declarations():
    with pytest.raises(bn.ModelError, match="ref must be > 0"):
        power(70.0, 0.0, 0.75)
    with pytest.raises(bn.ModelError, match="ref must be finite"):
        linear(70.0, float("nan"), 0.1)
    with pytest.raises(bn.ModelError, match="reference.*cannot also have an effect"):
        categorical(1.0, {0: 0.2, 1: 0.1})
    with pytest.raises(bn.ModelError, match="integer level code"):
        categorical(1.0, {1.5: 0.2})
    with pytest.raises(bn.ModelError, match="effects is empty"):
        categorical(1.0, {})
    with pytest.raises(bn.ModelError, match="must be one of them"):
        categorical(1.0, [0.1, 0.2], reference=5)
    with pytest.raises(bn.ModelError, match="effects maps"):
        categorical(1.0, 0.2)


def test_submodule_exports():
    assert bn.covariate.power is power and bn.covariate.categorical is categorical
    assert set(bn.covariate.__all__) == {"power", "linear", "exponential", "categorical"}


# --------------------------------------------------------------------------- recovery
TRUTH = dict(
    tvka=1.2,
    tvcl=3.0,  # L/h for 70 kg, group A
    tvv=30.0,  # L for 70 kg
    wt_cl=0.75,
    grp_b=0.5,  # CL 50 % higher in group B
    grp_c=-0.35,  # CL 35 % lower in group C
    prop_sd=0.1,
    omega_cl_sd=0.2,
    omega_v_sd=0.15,
)


def _cov_model():
    return bn.Model(
        params=dict(
            tvka=bn.Param(dist.LogNormal(jnp.log(1.0), 0.5), unit="1/h"),
            tvcl=bn.Param(dist.LogNormal(jnp.log(3.0), 1.0), unit="L/h"),
            tvv=bn.Param(dist.LogNormal(jnp.log(30.0), 1.0), unit="L"),
            wt_cl=bn.Param(dist.Normal(0.5, 0.5), label="allometric exponent of CL"),
            grp_b=bn.Param(dist.TruncatedNormal(0.0, 0.5, low=-0.9)),
            grp_c=bn.Param(dist.TruncatedNormal(0.0, 0.5, low=-0.9)),
            prop_sd=bn.Param(dist.HalfNormal(0.3)),
        ),
        random=bn.IIV(["cl", "v"], sd=dist.HalfNormal(0.5)),
        pre=lambda p, eta, cov: dict(
            KA=p.tvka,
            CL=p.tvcl
            * power(cov.WT, 70.0, p.wt_cl)
            * categorical(cov.GROUP, [p.grp_b, p.grp_c])
            * jnp.exp(eta.cl),
            V=p.tvv * power(cov.WT, 70.0, 1) * jnp.exp(eta.v),
        ),
        dynamics=bn.pk.Depots1Central1(),
        derived=lambda p, a, ind: dict(DV=bn.error.Proportional(a.Central / ind.V, sd=p.prop_sd)),
        covariates=["WT", "GROUP"],
    )


def _cov_design(n_id=72, seed=0):
    """Weights log-uniform over 25-140 kg; groups A/B/C as text (read_nonmem codes 0/1/2)."""
    rng = np.random.default_rng(seed)
    times = [0.5, 1.0, 2.0, 4.0, 8.0, 12.0, 24.0]
    rows = []
    for i in range(1, n_id + 1):
        wt = float(np.exp(rng.uniform(np.log(25.0), np.log(140.0))))
        grp = "ABC"[(i - 1) % 3]
        rows.append(dict(ID=i, TIME=0.0, AMT=100.0, DV=0.0, EVID=1, CMT=1, WT=wt, GROUP=grp))
        rows += [
            dict(ID=i, TIME=t, AMT=0.0, DV=0.0, EVID=0, CMT=2, WT=wt, GROUP=grp) for t in times
        ]
    return pd.DataFrame(rows)


@pytest.mark.slow
def test_recovers_allometric_exponent_and_categorical_effect():
    model = _cov_model()
    design = _cov_design()
    ds = bn.read_nonmem(design)
    assert ds.covariate_levels["GROUP"] == ("A", "B", "C")
    sim = bn.simulate(model, ds, TRUTH, seed=5)
    data = design.copy()
    data.loc[data.EVID == 0, "DV"] = sim.predictions["DV"].values[0, 0]
    idata = bn.fit(model, data, chains=2, warmup=300, samples=300, seed=3, progress_bar=False)
    table = bn.summary(idata)
    print(table[["median", "5%", "95%", "r_hat"]].to_string())
    assert table["r_hat"].max() < 1.05
    # 90% CrIs cover the truth; medians within 0.15 of it (about 3 posterior SDs: measured
    # SDs ≈ 0.05 for the exponent, weights spread over 25-140 kg, and 0.04-0.08 for the
    # group effects, 24 subjects per group with omega_cl 0.2)
    for name, tol in (("wt_cl", 0.15), ("grp_b", 0.15), ("grp_c", 0.15)):
        lo, med, hi = table.loc[name, ["5%", "median", "95%"]]
        assert lo < TRUTH[name] < hi, (name, lo, TRUTH[name], hi)
        assert abs(med - TRUTH[name]) < tol, (name, med, TRUTH[name])
