"""Theophylline with a two-compartment model: the alternative to compare against the 1-cpt model.

Same data, IIV and error model as ``theophylline``, with a peripheral compartment
(``bn.pk.Depots1Central1Periph1``; CL, V, Q, V2). Theophylline's disposition is usually
described well by one compartment, so LOO should not prefer this model by a clear margin.

Priors: the data barely inform a peripheral compartment, so Q and V2 get priors with a log-SD
of 0.5 (95% within ×/÷ 2.7 of 2 L/h and 10 L), and KA too: with log-SD 1 on KA, Q and V2
(as in the 1-cpt model) one chain in four settled in a flip-flop mode (V ≈ 2 L) and max
R-hat was 1.54 with default settings; with these priors R-hat ≤ 1.004 and no divergences
(seeds 0 and 1).

Parameters: ``tvka`` (1/h), ``tvcl`` (L/h), ``tvv`` (central volume, L), ``tvq``
(intercompartmental clearance, L/h), ``tvv2`` (peripheral volume, L); IIV SDs
``omega_ka_sd``, ``omega_cl_sd``, ``omega_v_sd`` (log scale); ``add_sd`` (mg/L).

Run: ``bayes-nlme fit theophylline_2cpt``.
"""

import jax.numpy as jnp

import bayes_nlme as bn
from bayes_nlme import dist

model = bn.Model(
    name="theophylline_2cpt",
    params=dict(
        tvka=bn.Param(dist.LogNormal(jnp.log(1.5), 0.5), unit="1/h"),
        tvcl=bn.Param(dist.LogNormal(jnp.log(3.0), 1.0), unit="L/h"),
        tvv=bn.Param(dist.LogNormal(jnp.log(25.0), 1.0), unit="L"),
        tvq=bn.Param(dist.LogNormal(jnp.log(2.0), 0.5), unit="L/h"),
        tvv2=bn.Param(dist.LogNormal(jnp.log(10.0), 0.5), unit="L"),
        add_sd=bn.Param(dist.HalfNormal(1.0), unit="mg/L"),
    ),
    random=bn.IIV(["ka", "cl", "v"], sd=dist.HalfNormal(0.5)),
    pre=lambda p, eta, cov: dict(
        KA=p.tvka * jnp.exp(eta.ka),
        CL=p.tvcl * jnp.exp(eta.cl),
        V=p.tvv * jnp.exp(eta.v),
        Q=p.tvq,
        V2=p.tvv2,
    ),
    dynamics=bn.pk.Depots1Central1Periph1(),
    derived=lambda p, a, ind: dict(DV=bn.error.Additive(a.Central / ind.V, sd=p.add_sd)),
)

plot_labels = dict(dv_label="Theophylline (mg/L)", time_label="Time after dose (h)")


def data():
    """The default dataset: bundled Theophylline (theo_sd)."""
    return bn.datasets.load("theophylline")


if __name__ == "__main__":
    import sys

    from bayes_nlme._cli import main

    sys.exit(main(["fit", __file__, *sys.argv[1:]]))
