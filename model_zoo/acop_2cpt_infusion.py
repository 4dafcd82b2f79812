"""ACOP 2016 Infusion_2CPT: recover a known two-compartment model from simulated infusions.

Data: the bundled ``acop_infusion_2cpt`` set (120 simulated subjects, 1-hour IV infusions of
10-120 mg, concentrations in µg/L), single-dose part only (SD == 1: one infusion at t = 0 and
19 samples over 72 h per subject). The SS column's placeholder 99 is read as 0
(``read_options``).

Model (the one that generated the data): two compartments with zero-order input into the
central compartment (``bn.pk.Central1Periph1``), log-normal IIV on CL, V, Q and V2 (diagonal
OMEGA, MU-referenced: ``log CL_i ~ N(log tvcl, omega_cl_sd)`` and so on are sampled, see
``bn.IIV(mu=...)``), exponential residual error (``exp_sd``, log scale).

Parameters: ``tvcl`` (L/h), ``tvv`` (L), ``tvq`` (L/h), ``tvv2`` (L); ``omega_cl_sd``,
``omega_v_sd``, ``omega_q_sd``, ``omega_v2_sd``; ``exp_sd``.
Truth (truth.csv, empirical geometric means of the individual values): CL 3.98, V 68.5,
Q 3.96, V2 52.0; IIV SDs (log scale) 0.30; residual SD 0.2.

Run: ``bayes-nlme fit acop_2cpt_infusion``.
"""

import jax.numpy as jnp

import bayes_nlme as bn
from bayes_nlme import dist

model = bn.Model(
    name="acop_2cpt_infusion",
    params=dict(
        tvcl=bn.Param(dist.LogNormal(jnp.log(5.0), 1.0), unit="L/h", label="clearance"),
        tvv=bn.Param(dist.LogNormal(jnp.log(50.0), 1.0), unit="L", label="central volume"),
        tvq=bn.Param(dist.LogNormal(jnp.log(5.0), 1.0), unit="L/h", label="intercompartmental CL"),
        tvv2=bn.Param(dist.LogNormal(jnp.log(50.0), 1.0), unit="L", label="peripheral volume"),
        exp_sd=bn.Param(dist.HalfNormal(0.5), label="exponential residual SD (log scale)"),
    ),
    # MU-referenced (centred, PHI = log(TV) + ETA sampled): 19 samples per subject
    random=bn.IIV(
        ["cl", "v", "q", "v2"],
        sd=dist.HalfNormal(0.5),
        mu=dict(cl="tvcl", v="tvv", q="tvq", v2="tvv2"),
    ),
    pre=lambda p, eta, cov: dict(
        CL=p.tvcl * jnp.exp(eta.cl),
        V=p.tvv * jnp.exp(eta.v),
        Q=p.tvq * jnp.exp(eta.q),
        V2=p.tvv2 * jnp.exp(eta.v2),
    ),
    dynamics=bn.pk.Central1Periph1(),
    derived=lambda p, a, ind: dict(DV=bn.error.Exponential(a.Central / ind.V, sd=p.exp_sd)),
)

read_options = dict(ss_map={99: 0})
plot_labels = dict(dv_label="Concentration (µg/L)", time_label="Time (h)")


def data():
    """The default dataset: the single-dose part (SD == 1) of ACOP Infusion_2CPT."""
    df = bn.datasets.load("acop_infusion_2cpt")
    return df[df["SD"] == 1].reset_index(drop=True)


if __name__ == "__main__":
    import sys

    from bayes_nlme._cli import main

    sys.exit(main(["fit", __file__, *sys.argv[1:]]))
