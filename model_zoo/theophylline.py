"""Theophylline, single oral dose: the standard one-compartment population PK model.

Data: the bundled ``theophylline`` dataset (Boeckmann, Sheiner & Beal; 12 subjects, 132
concentrations in mg/L, doses in mg). Model (as in the NONMEM and nlmixr2 tutorials):

- structural: one compartment with first-order absorption (``bn.pk.Depots1Central1``), doses
  into the depot (CMT 1), concentrations ``Central / V``;
- IIV: log-normal on KA, CL and V, diagonal OMEGA, non-centred;
- residual: additive, ``add_sd`` in mg/L.

Parameters: ``tvka`` (1/h), ``tvcl`` (L/h), ``tvv`` (L) on the natural scale; ``omega_ka_sd``,
``omega_cl_sd``, ``omega_v_sd`` (SDs of the ETAs, log scale); ``add_sd`` (mg/L).
Reference (NONMEM 7.4.4 FOCE-I): KA 1.59, CL 2.75, V 31.8, OMEGA² 0.402 / 0.0691 / 0.0192,
additive SD 0.694.

Run: ``bayes-nlme fit theophylline --out runs/theophylline``
(or ``python model_zoo/theophylline.py``).
"""

import jax.numpy as jnp

import bayes_nlme as bn
from bayes_nlme import dist

model = bn.Model(
    name="theophylline",
    params=dict(
        tvka=bn.Param(dist.LogNormal(jnp.log(1.5), 1.0), unit="1/h", label="absorption rate"),
        tvcl=bn.Param(dist.LogNormal(jnp.log(3.0), 1.0), unit="L/h", label="clearance"),
        tvv=bn.Param(dist.LogNormal(jnp.log(30.0), 1.0), unit="L", label="volume"),
        add_sd=bn.Param(dist.HalfNormal(1.0), unit="mg/L", label="additive residual SD"),
    ),
    random=bn.IIV(["ka", "cl", "v"], sd=dist.HalfNormal(0.5)),
    pre=lambda p, eta, cov: dict(
        KA=p.tvka * jnp.exp(eta.ka),
        CL=p.tvcl * jnp.exp(eta.cl),
        V=p.tvv * jnp.exp(eta.v),
    ),
    dynamics=bn.pk.Depots1Central1(),
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
