"""``fit(init="ebe")``: chains start with the ETAs at their empirical Bayes estimates."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import bayes_nlme as bn
from bayes_nlme.infer._fit import ebe_init_params, prepare, typical_start
from bayes_nlme.model_zoo import theophylline as zoo


@pytest.fixture(scope="module")
def theo():
    model = zoo.model
    ds, mdata = prepare(model, zoo.data())
    return model, mdata, jnp.asarray(np.asarray(ds.dv, float))


def _eta_gradient(potential, z):
    return jax.grad(lambda e: potential({**z, "z_eta": e}))(z["z_eta"])


def test_ebe_start_is_the_mode_over_the_etas(theo):
    model, mdata, dv = theo
    starts = ebe_init_params(model, mdata, dv, seed=3, chains=2)
    keys = jax.random.split(jax.random.PRNGKey(3), 2)
    assert set(starts) >= {"z_eta", "tvcl", "add_sd"}
    assert starts["z_eta"].shape == (2, 12, 3)
    for c in range(2):
        z0, potential = typical_start(keys[c], model, mdata, dv)
        z = {k: v[c] for k, v in starts.items()}
        # THETA/OMEGA/SIGMA stay at the typical start of this chain's key
        for k in z0:
            if k != "z_eta":
                np.testing.assert_allclose(z[k], z0[k], rtol=0, atol=0)
        # the ETAs moved to a stationary point of the joint density over the ETAs
        g0 = _eta_gradient(potential, z0)
        g = _eta_gradient(potential, z)
        assert float(jnp.abs(g0).max()) > 1.0  # ETA = 0 is far from that mode
        assert float(jnp.abs(g).max()) < 1e-4
        assert float(potential(z)) < float(potential(z0)) - 10.0
    # the chains start apart (their THETA jitter differs)
    assert float(starts["tvcl"][0]) != float(starts["tvcl"][1])


def test_one_chain_has_no_chain_axis(theo):
    model, mdata, dv = theo
    z = ebe_init_params(model, mdata, dv, seed=0, chains=1)
    assert z["z_eta"].shape == (12, 3)
    assert np.ndim(z["tvcl"]) == 0
    assert np.isfinite(ravel_pytree(z)[0]).all()


def test_fit_with_ebe_init(theo):
    idata = bn.fit(zoo.model, zoo.data(), chains=2, warmup=40, samples=20, seed=2, init="ebe")
    post = idata.posterior
    assert post.sizes["chain"] == 2 and post.sizes["draw"] == 20
    # a short run from the EBE start is already in the posterior bulk (NONMEM CL 2.75 L/h)
    assert 2.0 < float(post["tvcl"].median()) < 3.6
    assert np.isfinite(idata.sample_stats["lp"].values).all()


def test_init_must_be_known(theo):
    with pytest.raises(bn.ModelError, match="init must be"):
        bn.fit(zoo.model, zoo.data(), chains=1, warmup=5, samples=5, init="map")
