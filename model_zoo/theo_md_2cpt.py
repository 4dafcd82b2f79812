"""Theophylline, multiple dosing: a two-compartment oral model on day 1 + 7 daily doses.

Data: the bundled ``theo_md`` set (12 subjects; the Theophylline day-1 profiles followed by
simulated once-daily doses for 7 days: 84 doses, 264 concentrations in mg/L, TIME up to
168.65 h). Doses are written as EVID=101 (rxode2's classic bolus code), read as EVID=1 into
CMT 1 with a warning.

Model: first-order absorption into a central compartment with one peripheral compartment
(``bn.pk.Depots1Central1Periph1``), doses superposed; log-normal IIV on KA, CL and V
(non-centred), additive residual error. The peripheral compartment gets informative priors
(log-SD 0.5) because a single day of rich sampling hardly informs it.

Parameters: ``tvka`` (1/h), ``tvcl`` (L/h), ``tvv`` (L), ``tvq`` (L/h), ``tvv2`` (L);
``omega_ka_sd``, ``omega_cl_sd``, ``omega_v_sd``; ``add_sd`` (mg/L).

Run: ``bayes-nlme fit theo_md_2cpt``.
"""

import jax.numpy as jnp

import bayes_nlme as bn
from bayes_nlme import dist

model = bn.Model(
    name="theo_md_2cpt",
    params=dict(
        tvka=bn.Param(dist.LogNormal(jnp.log(1.5), 1.0), unit="1/h", label="absorption rate"),
        tvcl=bn.Param(dist.LogNormal(jnp.log(3.0), 1.0), unit="L/h", label="clearance"),
        tvv=bn.Param(dist.LogNormal(jnp.log(30.0), 1.0), unit="L", label="central volume"),
        tvq=bn.Param(dist.LogNormal(jnp.log(3.0), 0.5), unit="L/h", label="intercompartmental CL"),
        tvv2=bn.Param(dist.LogNormal(jnp.log(10.0), 0.5), unit="L", label="peripheral volume"),
        add_sd=bn.Param(dist.HalfNormal(1.0), unit="mg/L", label="additive residual SD"),
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

read_options: dict = {}
plot_labels = dict(dv_label="Theophylline (mg/L)", time_label="Time (h)")


def data():
    """The default dataset: theo_md, all 12 subjects."""
    return bn.datasets.load("theo_md")


if __name__ == "__main__":
    import sys

    from bayes_nlme._cli import main

    sys.exit(main(["fit", __file__, *sys.argv[1:]]))
