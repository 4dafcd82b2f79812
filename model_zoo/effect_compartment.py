"""Effect compartment: PK/PD with hysteresis, 1-cpt oral PK and a sigmoid Emax effect (simulated).

Data: simulated by :func:`data` with ``bn.simulate`` from this model at the known truth
``TRUTH`` (seed 2024): ``n_id`` subjects (default 15) in three dose groups of 20, 100 and
500 mg (one oral dose at t = 0 into the depot, CMT 1). Two endpoints, told apart by the
DVID column: plasma concentrations in mg/L (``DVID = 1``, output ``cp``) at 0.5, 1, 2, 3, 4,
6, 8, 12 and 24 h, and the effect (``DVID = 2``, output ``effect``, score units) at the same
times plus a pre-dose baseline at t = 0. The dose range puts the effect-site
concentrations from well below to several times ``EC50``, which makes ``EMAX`` and
``EC50`` identifiable; the effect peaks later than the concentration (hysteresis), which
identifies ``KE0``.

Model (``bn.pk.effect_compartment()``, Sheiner et al. 1979)::

    dDepot/dt   = -KA Depot
    dCentral/dt =  KA Depot - CL / V Central,            C = Central / V
    dEffect/dt  =  KE0 (C - Effect)                      (Effect = Ce, mg/L)
    effect      =  E0 + EMAX Ce^hill / (EC50^hill + Ce^hill)   (bn.pk.sigmoid_emax)

- IIV: log-normal on CL, V and EC50 (diagonal OMEGA, MU-referenced, ``bn.IIV(mu=...)``:
  every subject has nine concentrations and ten effects, so the log individual parameters
  are sampled directly; non-centred took 1.4 times the gradient evaluations per draw of
  centred); none on KA, KE0, E0, EMAX, hill. The population-only PD parameters (E0, EMAX,
  hill) are used in ``derived`` straight from ``p`` rather than passed through ``pre``:
  every individual parameter from ``pre`` enters the ODE's forward sensitivities, so this
  keeps the solve smaller.
- Residual: proportional for ``cp`` (``cp_prop_sd``, fraction), additive for ``effect``
  (``effect_add_sd``, score units).

Parameters: ``tvka`` (1/h), ``tvcl`` (L/h), ``tvv`` (L), ``tvke0`` (1/h, effect-site
equilibration rate constant; equilibration half-life ``log(2) / KE0``), ``tve0`` (baseline
effect), ``tvemax`` (maximal drug effect, added to the baseline), ``tvec50`` (mg/L,
effect-site concentration at half-maximal effect), ``hill`` (Hill coefficient, estimated);
``omega_cl_sd``, ``omega_v_sd``, ``omega_ec50_sd`` (SDs of the ETAs, log scale);
``cp_prop_sd``, ``effect_add_sd``.

Truth (``TRUTH``): tvka 1 1/h, tvcl 5 L/h, tvv 50 L (elimination half-life 6.9 h), tvke0
0.4 1/h (equilibration half-life 1.7 h), tve0 20, tvemax 60, tvec50 1.5 mg/L, hill 1.5,
omega_cl_sd 0.3, omega_v_sd 0.2, omega_ec50_sd 0.35, cp_prop_sd 0.12, effect_add_sd 3.

Run: ``bayes-nlme fit effect_compartment`` (or ``python model_zoo/effect_compartment.py``).
"""

import jax.numpy as jnp
import numpy as np
import pandas as pd

import bayes_nlme as bn
from bayes_nlme import dist

TRUTH = dict(
    tvka=1.0,
    tvcl=5.0,
    tvv=50.0,
    tvke0=0.4,
    tve0=20.0,
    tvemax=60.0,
    tvec50=1.5,
    hill=1.5,
    omega_cl_sd=0.3,
    omega_v_sd=0.2,
    omega_ec50_sd=0.35,
    cp_prop_sd=0.12,
    effect_add_sd=3.0,
)


def _pre(p, eta, cov):
    return dict(
        KA=p.tvka,
        CL=p.tvcl * jnp.exp(eta.cl),
        V=p.tvv * jnp.exp(eta.v),
        KE0=p.tvke0,
        EC50=p.tvec50 * jnp.exp(eta.ec50),
    )


def _derived(p, a, ind):
    effect = bn.pk.sigmoid_emax(a.Effect, p.tve0, p.tvemax, ind.EC50, p.hill)
    return dict(
        cp=bn.error.Proportional(a.Central / ind.V, sd=p.cp_prop_sd),
        effect=bn.error.Additive(effect, sd=p.effect_add_sd),
    )


model = bn.Model(
    name="effect_compartment",
    params=dict(
        tvka=bn.Param(dist.LogNormal(jnp.log(0.7), 1.0), unit="1/h", label="absorption rate"),
        tvcl=bn.Param(dist.LogNormal(jnp.log(4.0), 1.0), unit="L/h", label="clearance"),
        tvv=bn.Param(dist.LogNormal(jnp.log(40.0), 1.0), unit="L", label="volume"),
        tvke0=bn.Param(
            dist.LogNormal(jnp.log(0.3), 1.0), unit="1/h", label="effect-site equilibration rate"
        ),
        tve0=bn.Param(dist.Normal(15.0, 20.0), label="baseline effect"),
        tvemax=bn.Param(dist.Normal(50.0, 50.0), label="maximal drug effect"),
        tvec50=bn.Param(dist.LogNormal(jnp.log(2.0), 1.0), unit="mg/L", label="EC50"),
        hill=bn.Param(dist.LogNormal(0.0, 0.5), label="Hill coefficient"),
        cp_prop_sd=bn.Param(dist.HalfNormal(0.3), label="cp proportional residual SD"),
        effect_add_sd=bn.Param(dist.HalfNormal(10.0), label="effect additive residual SD"),
    ),
    random=bn.IIV(
        ["cl", "v", "ec50"], sd=dist.HalfNormal(0.5), mu=dict(cl="tvcl", v="tvv", ec50="tvec50")
    ),
    pre=_pre,
    dynamics=bn.pk.effect_compartment(rtol=1e-6, atol=1e-8),  # atol in mg (doses 20-500 mg)
    derived=_derived,
    dvid={1: "cp", 2: "effect"},
)

read_options: dict = {}
plot_labels = dict(dv_label="Concentration (mg/L) / effect", time_label="Time after dose (h)")

DOSES = (20.0, 100.0, 500.0)
TIMES = (0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 24.0)


def design(n_id: int = 15) -> pd.DataFrame:
    """The NONMEM-format design (DV = 0): subject ``i`` gets ``DOSES[(i - 1) % 3]`` mg;
    DVID 1 rows are concentrations (CMT 2), DVID 2 rows effects (CMT 3)."""
    rows = []
    for i in range(1, n_id + 1):
        dose = DOSES[(i - 1) % len(DOSES)]
        rows.append(dict(ID=i, TIME=0.0, AMT=0.0, DV=0.0, EVID=0, MDV=0, CMT=3, DVID=2))
        rows.append(dict(ID=i, TIME=0.0, AMT=dose, DV=0.0, EVID=1, MDV=1, CMT=1, DVID=0))
        for t in TIMES:
            rows.append(dict(ID=i, TIME=t, AMT=0.0, DV=0.0, EVID=0, MDV=0, CMT=2, DVID=1))
            rows.append(dict(ID=i, TIME=t, AMT=0.0, DV=0.0, EVID=0, MDV=0, CMT=3, DVID=2))
    return pd.DataFrame(rows)


def data(n_id: int = 15, seed: int = 2024) -> pd.DataFrame:
    """The default dataset: ``n_id`` subjects simulated at ``TRUTH`` (NONMEM format)."""
    table = design(n_id)
    sim = bn.simulate(model, table, TRUTH, seed=seed)
    obs = table.EVID == 0
    table.loc[obs, "DV"] = np.asarray(sim.predictions["DV"].values[0, 0])
    return table


if __name__ == "__main__":
    import sys

    from bayes_nlme._cli import main

    sys.exit(main(["fit", __file__, *sys.argv[1:]]))
