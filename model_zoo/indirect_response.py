"""Indirect response (turnover) PK/PD: stimulation of the response's production (simulated data).

Data: simulated by :func:`data` with ``bn.simulate`` from this model at the known truth
``TRUTH`` (seed 2024): ``n_id`` subjects (default 12) in three dose groups of 20, 60 and
200 mg (one oral dose at t = 0 into the depot, CMT 1). Two endpoints, told apart by the
DVID column ``DVID``: drug concentrations ``cp`` in mg/L (CMT 2) at 1, 4, 12 and 24 h, and
the response ``resp`` (arbitrary units, CMT 3) before the dose (t = 0) and at 4, 8, 12, 24
and 36 h. Peak concentrations span about 0.4 to 4 times ``EC50``, which makes ``EMAX`` and
``EC50`` identifiable; the baseline sample and the return towards baseline identify ``R0``
and ``KOUT``. The sparse PK sampling (one sample in the absorption phase) does not identify
``KA``: it is fixed at its true value.

Model (``bn.pk.indirect_response(3)``, Dayneka, Garg & Jusko 1993, type III)::

    dDepot/dt   = -KA Depot
    dCentral/dt =  KA Depot - CL / V Central,          C = Central / V
    dR/dt       =  KIN (1 + EMAX C / (EC50 + C)) - KOUT R,   KIN = R0 KOUT, R(0) = R0

solved for the deviation ``Response = R - R0`` (zero at baseline); ``resp = R0 + Response``.

- IIV: log-normal on CL, V and R0 (diagonal OMEGA, MU-referenced, ``bn.IIV(mu=...)``: the
  baseline sample and five responses pin down each R0, and non-centred ETAs gave R-hat 1.07
  for ``tvr0`` in the recovery test's short run); none on KOUT, EMAX, EC50.
- Residual: proportional for ``cp`` (``cp_prop_sd``, fraction), additive for ``resp``
  (``resp_add_sd``, response units).

Parameters: ``tvka`` (1/h, fixed at 1), ``tvcl`` (L/h), ``tvv`` (L), ``tvr0`` (baseline
response, units), ``tvkout`` (1/h, response turnover rate), ``tvemax`` (maximal fractional
stimulation of KIN, dimensionless), ``tvec50`` (mg/L); ``omega_cl_sd``, ``omega_v_sd``,
``omega_r0_sd`` (SDs of the ETAs, log scale); ``cp_prop_sd``, ``resp_add_sd``.

Truth (``TRUTH``, the estimated parameters; KA is fixed at 1 /h in the model): tvcl 2 L/h,
tvv 20 L (half-life 6.9 h), tvr0 10, tvkout 0.2 /h (response half-life 3.5 h), tvemax 2,
tvec50 2 mg/L, omega_cl_sd 0.25, omega_v_sd 0.2, omega_r0_sd 0.15, cp_prop_sd 0.1,
resp_add_sd 0.5.

Run: ``bayes-nlme fit indirect_response`` (or ``python model_zoo/indirect_response.py``).
"""

import jax.numpy as jnp
import numpy as np
import pandas as pd

import bayes_nlme as bn
from bayes_nlme import dist

TRUTH = dict(
    tvcl=2.0,
    tvv=20.0,
    tvr0=10.0,
    tvkout=0.2,
    tvemax=2.0,
    tvec50=2.0,
    omega_cl_sd=0.25,
    omega_v_sd=0.2,
    omega_r0_sd=0.15,
    cp_prop_sd=0.1,
    resp_add_sd=0.5,
)


def _derived(p, a, ind):
    return dict(
        cp=bn.error.Proportional(a.Central / ind.V, sd=p.cp_prop_sd),
        resp=bn.error.Additive(ind.R0 + a.Response, sd=p.resp_add_sd),
    )


model = bn.Model(
    name="indirect_response",
    params=dict(
        # fixed: the sparse PK sampling (one sample before the peak) cannot identify KA
        tvka=bn.Param.fixed(1.0, unit="1/h", label="absorption rate"),
        tvcl=bn.Param(dist.LogNormal(jnp.log(3.0), 1.0), unit="L/h", label="clearance"),
        tvv=bn.Param(dist.LogNormal(jnp.log(30.0), 1.0), unit="L", label="volume"),
        tvr0=bn.Param(dist.LogNormal(jnp.log(10.0), 1.0), label="baseline response"),
        tvkout=bn.Param(
            dist.LogNormal(jnp.log(0.3), 1.0), unit="1/h", label="response turnover rate"
        ),
        tvemax=bn.Param(
            dist.LogNormal(jnp.log(1.5), 1.0), label="maximal stimulation of production"
        ),
        tvec50=bn.Param(dist.LogNormal(jnp.log(1.5), 1.0), unit="mg/L", label="EC50"),
        cp_prop_sd=bn.Param(dist.HalfNormal(0.3), label="cp proportional SD"),
        resp_add_sd=bn.Param(dist.HalfNormal(2.0), label="resp additive SD"),
    ),
    random=bn.IIV(
        ["cl", "v", "r0"], sd=dist.HalfNormal(0.5), mu=dict(cl="tvcl", v="tvv", r0="tvr0")
    ),
    pre=lambda p, eta, cov: dict(
        KA=p.tvka,
        CL=p.tvcl * jnp.exp(eta.cl),
        V=p.tvv * jnp.exp(eta.v),
        R0=p.tvr0 * jnp.exp(eta.r0),
        KOUT=p.tvkout,
        EMAX=p.tvemax,
        EC50=p.tvec50,
    ),
    dynamics=bn.pk.indirect_response(3, rtol=1e-6, atol=1e-6),  # atol in mg / response units
    derived=_derived,
)

read_options: dict = {}
plot_labels = dict(dv_label="cp (mg/L) / response", time_label="Time after dose (h)")

DOSES = (20.0, 60.0, 200.0)
CP_TIMES = (1.0, 4.0, 12.0, 24.0)
RESP_TIMES = (0.0, 4.0, 8.0, 12.0, 24.0, 36.0)


def design(n_id: int = 12) -> pd.DataFrame:
    """The NONMEM-format design (DV = 0): subject ``i`` gets ``DOSES[(i - 1) % 3]`` mg; the
    response is sampled before the dose at t = 0 (the baseline), then with ``cp``."""

    def obs(i, t, dvid, cmt):
        return dict(ID=i, TIME=t, AMT=0.0, DV=0.0, EVID=0, MDV=0, CMT=cmt, DVID=dvid)

    rows = []
    for i in range(1, n_id + 1):
        dose = DOSES[(i - 1) % len(DOSES)]
        rows.append(obs(i, 0.0, "resp", 3))  # pre-dose baseline
        rows.append(dict(ID=i, TIME=0.0, AMT=dose, DV=0.0, EVID=1, MDV=1, CMT=1, DVID="cp"))
        for t in sorted({*CP_TIMES, *RESP_TIMES} - {0.0}):
            if t in CP_TIMES:
                rows.append(obs(i, t, "cp", 2))
            if t in RESP_TIMES:
                rows.append(obs(i, t, "resp", 3))
    return pd.DataFrame(rows)


def data(n_id: int = 12, seed: int = 2024) -> pd.DataFrame:
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
