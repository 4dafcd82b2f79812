"""Phenobarbital in neonates: the classic NONMEM covariate model (Grasela & Donn 1985).

Data: the bundled ``pheno`` dataset (59 neonates, 155 serum concentrations in mg/L, repeated
IV bolus doses in mg, sparse sampling of 1-6 samples per subject). Model, as in the NONMEM
tutorial:

- structural: one compartment, IV bolus (``bn.pk.Central1``);
- covariates: CL and V proportional to body weight (WT, kg); V larger by the fraction
  ``apgar_v`` when the 5-minute Apgar score is below 5:
  ``CL = tvcl·WT·exp(ETA_CL)``, ``V = tvv·WT·(1 + apgar_v·[APGR < 5])·exp(ETA_V)``,
  written with ``bn.covariate.power`` and ``bn.covariate.categorical``;
- IIV: log-normal on CL and V, diagonal OMEGA; residual: proportional (``prop_sd``).

Parameters: ``tvcl`` (L/h per kg), ``tvv`` (L per kg), ``apgar_v`` (fraction, > -0.9),
``omega_cl_sd``, ``omega_v_sd`` (log scale), ``prop_sd`` (fraction of IPRED).

Run: ``bayes-nlme fit pheno``.
"""

import jax.numpy as jnp

import bayes_nlme as bn
from bayes_nlme import dist
from bayes_nlme.covariate import categorical, power

model = bn.Model(
    name="pheno",
    params=dict(
        tvcl=bn.Param(dist.LogNormal(jnp.log(0.005), 1.0), unit="L/h/kg", label="clearance"),
        tvv=bn.Param(dist.LogNormal(jnp.log(1.0), 1.0), unit="L/kg", label="volume"),
        apgar_v=bn.Param(
            dist.TruncatedNormal(0.0, 0.5, low=-0.9), label="fractional change of V, Apgar < 5"
        ),
        prop_sd=bn.Param(dist.HalfNormal(0.3), label="proportional residual SD"),
    ),
    random=bn.IIV(["cl", "v"], sd=dist.HalfNormal(0.5)),
    # CL and V proportional to WT: a power model with exponent 1 and reference 1 kg (tvcl,
    # tvv are per kg); Apgar < 5 as a two-level categorical effect (level 1 = Apgar < 5).
    pre=lambda p, eta, cov: dict(
        CL=p.tvcl * power(cov.WT, 1.0, 1) * jnp.exp(eta.cl),
        V=p.tvv
        * power(cov.WT, 1.0, 1)
        * categorical(cov.APGR < 5, {1: p.apgar_v})
        * jnp.exp(eta.v),
    ),
    dynamics=bn.pk.Central1(),
    derived=lambda p, a, ind: dict(DV=bn.error.Proportional(a.Central / ind.V, sd=p.prop_sd)),
    covariates=["WT", "APGR"],
)

plot_labels = dict(dv_label="Phenobarbital (mg/L)", time_label="Time (h)")


def data():
    """The default dataset: bundled phenobarbital (pheno_sd)."""
    return bn.datasets.load("pheno")


if __name__ == "__main__":
    import sys

    from bayes_nlme._cli import main

    sys.exit(main(["fit", __file__, *sys.argv[1:]]))
