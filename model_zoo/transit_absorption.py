"""Transit-compartment absorption: delayed oral absorption into one compartment (simulated data).

Data: simulated by :func:`data` with ``bn.simulate`` from this model at the known truth
``TRUTH`` (seed 2024): ``n_id`` subjects (default 16), one oral dose of 100 mg at t = 0 into
the first transit compartment (CMT 1), concentrations in mg/L (CMT 5, ``Central``) at 0.25,
0.5, 0.75, 1, 1.5, 2, 3, 4, 6, 8, 12 and 24 h. The dense sampling over the first 2 h shows
the absorption delay (a near-zero concentration at 0.25 h, then a sigmoid rise) that
separates the transit rate ``KTR`` from the absorption rate ``KA``.

Model (``bn.pk.transit_absorption(3)``, Savic et al. 2007, explicit chain)::

    dTransit1/dt = -KTR Transit1
    dTransit2/dt =  KTR Transit1 - KTR Transit2
    dTransit3/dt =  KTR Transit2 - KTR Transit3
    dDepot/dt    =  KTR Transit3 - KA Depot
    dCentral/dt  =  KA Depot - CL / V Central,       C = Central / V

with mean transit time ``MTT = 3 / KTR`` (1 h at the truth).

- IIV: log-normal on KTR, CL and V (diagonal OMEGA, non-centred); none on KA (one typical
  value: with one dose per subject, ETAs on both KTR and KA are poorly identified).
- Residual: proportional, ``prop_sd`` (fraction).

Parameters: ``tvktr`` (1/h, transit rate constant), ``tvka`` (1/h), ``tvcl`` (L/h),
``tvv`` (L); ``omega_ktr_sd``, ``omega_cl_sd``, ``omega_v_sd`` (SDs of the ETAs, log scale);
``prop_sd``.

Truth (``TRUTH``): tvktr 3 /h (MTT 1 h), tvka 1 /h, tvcl 5 L/h, tvv 50 L (half-life 6.9 h),
omega_ktr_sd 0.3, omega_cl_sd 0.25, omega_v_sd 0.2, prop_sd 0.1.

Run: ``bayes-nlme fit transit_absorption`` (or ``python model_zoo/transit_absorption.py``).
"""

import jax.numpy as jnp
import numpy as np
import pandas as pd

import bayes_nlme as bn
from bayes_nlme import dist

N_TRANSIT = 3

TRUTH = dict(
    tvktr=3.0,
    tvka=1.0,
    tvcl=5.0,
    tvv=50.0,
    omega_ktr_sd=0.3,
    omega_cl_sd=0.25,
    omega_v_sd=0.2,
    prop_sd=0.1,
)

model = bn.Model(
    name="transit_absorption",
    params=dict(
        tvktr=bn.Param(
            dist.LogNormal(jnp.log(2.0), 1.0), unit="1/h", label="transit rate constant"
        ),
        tvka=bn.Param(dist.LogNormal(jnp.log(1.0), 1.0), unit="1/h", label="absorption rate"),
        tvcl=bn.Param(dist.LogNormal(jnp.log(4.0), 1.0), unit="L/h", label="clearance"),
        tvv=bn.Param(dist.LogNormal(jnp.log(40.0), 1.0), unit="L", label="volume"),
        prop_sd=bn.Param(dist.HalfNormal(0.3), label="proportional residual SD"),
    ),
    random=bn.IIV(["ktr", "cl", "v"], sd=dist.HalfNormal(0.5)),
    pre=lambda p, eta, cov: dict(
        KTR=p.tvktr * jnp.exp(eta.ktr),
        KA=p.tvka,
        CL=p.tvcl * jnp.exp(eta.cl),
        V=p.tvv * jnp.exp(eta.v),
    ),
    dynamics=bn.pk.transit_absorption(N_TRANSIT, rtol=1e-6, atol=1e-6),  # atol in mg
    derived=lambda p, a, ind: dict(DV=bn.error.Proportional(a.Central / ind.V, sd=p.prop_sd)),
)

read_options: dict = {}
plot_labels = dict(dv_label="Concentration (mg/L)", time_label="Time after dose (h)")

DOSE = 100.0
TIMES = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 24.0)
OBS_CMT = N_TRANSIT + 2  # Central


def design(n_id: int = 16) -> pd.DataFrame:
    """The NONMEM-format design (DV = 0): one ``DOSE`` mg oral dose per subject at t = 0."""
    rows = []
    for i in range(1, n_id + 1):
        rows.append(dict(ID=i, TIME=0.0, AMT=DOSE, DV=0.0, EVID=1, MDV=1, CMT=1))
        rows += [dict(ID=i, TIME=t, AMT=0.0, DV=0.0, EVID=0, MDV=0, CMT=OBS_CMT) for t in TIMES]
    return pd.DataFrame(rows)


def data(n_id: int = 16, seed: int = 2024) -> pd.DataFrame:
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
