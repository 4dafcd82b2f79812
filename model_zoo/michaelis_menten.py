"""Michaelis-Menten elimination: saturable one-compartment PK after IV doses (simulated data).

Data: simulated by :func:`data` with ``bn.simulate`` from this model at the known truth
``TRUTH`` (seed 2024): ``n_id`` subjects (default 24) in three dose groups of 50, 200 and
800 mg (one IV bolus at t = 0 into the central compartment, CMT 1), concentrations in mg/L
(CMT 1) at 0.25, 0.5, 1, 2, 4, 8, 12 and 24 h, plus 36 and 48 h in the 800 mg group. The
dose range spans concentrations from well below ``KM`` (linear, ``CL = VM / KM``) to about
ten times ``KM`` (near zero-order elimination), which makes ``VM`` and ``KM`` identifiable.

Model (``bn.pk.michaelis_menten("iv")``, NONMEM ADVAN10-like)::

    dCentral/dt = -VM C / (KM + C),   C = Central / V

- IIV: log-normal on V and VM (diagonal OMEGA, non-centred); none on KM.
- Residual: proportional, ``prop_sd`` (fraction).

Parameters: ``tvv`` (L), ``tvvm`` (mg/h, maximal elimination rate), ``tvkm``
(mg/L, concentration at half-maximal elimination); ``omega_v_sd``, ``omega_vm_sd`` (SDs of
the ETAs, log scale); ``prop_sd``.

Truth (``TRUTH``): tvv 30 L, tvvm 20 mg/h, tvkm 2 mg/L (low-concentration clearance
10 L/h), omega_v_sd 0.2, omega_vm_sd 0.25, prop_sd 0.1.

Run: ``bayes-nlme fit michaelis_menten`` (or ``python model_zoo/michaelis_menten.py``).
"""

import jax.numpy as jnp
import numpy as np
import pandas as pd

import bayes_nlme as bn
from bayes_nlme import dist

TRUTH = dict(
    tvv=30.0,
    tvvm=20.0,
    tvkm=2.0,
    omega_v_sd=0.2,
    omega_vm_sd=0.25,
    prop_sd=0.1,
)

model = bn.Model(
    name="michaelis_menten",
    params=dict(
        tvv=bn.Param(dist.LogNormal(jnp.log(25.0), 1.0), unit="L", label="volume"),
        tvvm=bn.Param(
            dist.LogNormal(jnp.log(15.0), 1.0), unit="mg/h", label="maximal elimination rate"
        ),
        tvkm=bn.Param(dist.LogNormal(jnp.log(3.0), 1.0), unit="mg/L", label="Michaelis constant"),
        prop_sd=bn.Param(dist.HalfNormal(0.3), label="proportional residual SD"),
    ),
    random=bn.IIV(["v", "vm"], sd=dist.HalfNormal(0.5)),
    pre=lambda p, eta, cov: dict(
        V=p.tvv * jnp.exp(eta.v),
        VM=p.tvvm * jnp.exp(eta.vm),
        KM=p.tvkm,
    ),
    dynamics=bn.pk.michaelis_menten("iv", rtol=1e-6, atol=1e-6),  # atol in mg
    derived=lambda p, a, ind: dict(DV=bn.error.Proportional(a.Central / ind.V, sd=p.prop_sd)),
)

read_options: dict = {}
plot_labels = dict(dv_label="Concentration (mg/L)", time_label="Time after dose (h)")

DOSES = (50.0, 200.0, 800.0)


def design(n_id: int = 24) -> pd.DataFrame:
    """The NONMEM-format design (DV = 0): subject ``i`` gets ``DOSES[(i - 1) % 3]`` mg."""
    rows = []
    for i in range(1, n_id + 1):
        dose = DOSES[(i - 1) % len(DOSES)]
        times = [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 12.0, 24.0] + ([36.0, 48.0] if dose >= 800 else [])
        rows.append(dict(ID=i, TIME=0.0, AMT=dose, DV=0.0, EVID=1, MDV=1, CMT=1))
        rows += [dict(ID=i, TIME=t, AMT=0.0, DV=0.0, EVID=0, MDV=0, CMT=1) for t in times]
    return pd.DataFrame(rows)


def data(n_id: int = 24, seed: int = 2024) -> pd.DataFrame:
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
