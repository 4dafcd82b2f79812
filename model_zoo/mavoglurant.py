"""Mavoglurant: two-compartment IV infusion model with IIV and inter-occasion variability.

Data: the bundled ``mavoglurant`` set (Wendling et al. 2016; 120 subjects, IV infusions of
25-50 mg, 2427 plasma concentrations in ng/mL). 78 subjects were dosed on two occasions; the
clock restarts at 0 at each occasion, read as a reset-and-dose record
(``read_nonmem(..., reset_on_time_decrease=True)``, i.e. EVID=4), so each occasion is fitted
from zero amounts with its own parameters.

Model: two compartments with zero-order input into the central compartment
(``bn.pk.Central1Periph1``); CL, Q scaled by (WT/70)^0.75 and V, V2 by WT/70 (fixed
allometric exponents); log-normal IIV on CL, V, Q and V2 (diagonal OMEGA); inter-occasion
variability on CL and V (``bn.IOV``, KAPPA per subject and occasion, column ``OCC``);
proportional residual error. Concentration = 1000 · Central / V (mg/L to ng/mL).

Parameters (70 kg subject): ``tvcl`` (L/h), ``tvv`` (L), ``tvq`` (L/h), ``tvv2`` (L);
``omega_<name>_sd``; ``omega_iov_cl_sd``, ``omega_iov_v_sd``; ``prop_sd``. No published
estimates come with the data.

Run: ``bayes-nlme fit mavoglurant``.
"""

import jax.numpy as jnp

import bayes_nlme as bn
from bayes_nlme import dist


def _pre(p, eta, cov):
    return dict(
        CL=p.tvcl * bn.covariate.power(cov.WT, 70.0, 0.75) * jnp.exp(eta.cl + eta.kappa_cl),
        V=p.tvv * bn.covariate.power(cov.WT, 70.0, 1.0) * jnp.exp(eta.v + eta.kappa_v),
        Q=p.tvq * bn.covariate.power(cov.WT, 70.0, 0.75) * jnp.exp(eta.q),
        V2=p.tvv2 * bn.covariate.power(cov.WT, 70.0, 1.0) * jnp.exp(eta.v2),
    )


model = bn.Model(
    name="mavoglurant",
    params=dict(
        tvcl=bn.Param(dist.LogNormal(jnp.log(40.0), 1.0), unit="L/h", label="clearance"),
        tvv=bn.Param(dist.LogNormal(jnp.log(50.0), 1.0), unit="L", label="central volume"),
        tvq=bn.Param(dist.LogNormal(jnp.log(20.0), 1.0), unit="L/h", label="intercompartmental CL"),
        tvv2=bn.Param(dist.LogNormal(jnp.log(100.0), 1.0), unit="L", label="peripheral volume"),
        prop_sd=bn.Param(dist.HalfNormal(0.5), label="proportional residual SD"),
    ),
    random=bn.IIV(["cl", "v", "q", "v2"], sd=dist.HalfNormal(0.5), centered=True),
    iov=bn.IOV(["cl", "v"], occasion="OCC", sd=dist.HalfNormal(0.3)),
    pre=_pre,
    dynamics=bn.pk.Central1Periph1(),
    derived=lambda p, a, ind: dict(
        DV=bn.error.Proportional(1000.0 * a.Central / ind.V, sd=p.prop_sd)
    ),
    covariates=["WT"],
)

read_options = dict(reset_on_time_decrease=True)
plot_labels = dict(dv_label="Mavoglurant (ng/mL)", time_label="Time after dose (h)")


def data():
    """The default dataset: all 120 subjects, both occasions."""
    return bn.datasets.load("mavoglurant")


if __name__ == "__main__":
    import sys

    from bayes_nlme._cli import main

    sys.exit(main(["fit", __file__, *sys.argv[1:]]))
