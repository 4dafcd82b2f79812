"""TMDD, quasi-steady-state approximation: a monoclonal antibody and its soluble target (simulated).

Data: simulated by :func:`data` with ``bn.simulate`` from this model at the known truth
``TRUTH`` (seed 1): ``n_id`` subjects (default 16, a single-ascending-dose study) in four
dose cohorts of 100, 300, 1000 and 3000 nmol (15, 45, 150 and 450 mg of a 150 kDa
antibody), one IV dose at t = 0 into ``Central`` (CMT 1; given as a bolus: a 1-hour
infusion is short on a time scale of weeks). Molar units throughout (dose in nmol, volume
in L, concentrations in nM); time in days. Two endpoints, told apart by the DVID column
``DVID``: free drug ``drug`` (nM, CMT 1) at 1 h, 6 h and 1, 2, 4, 7, 10, 14, 21, 28, 42 and
56 days, and total target ``target`` (free + bound, nM, CMT 2) before the dose (t = 0)
and at 1, 2, 4, 7, 14, 21, 28, 42 and 56 days. Free drug below the assay's lower limit of
quantification (``LLOQ``, 0.1 nM = 15 ng/mL) is censored (``CENS = 1``, ``DV = LLOQ``;
about 16% of the drug samples, mostly in the low cohorts once target-mediated elimination
takes over) and enters the likelihood as ``P(DV < LLOQ)`` (Beal's M3, the model's default).

The dose range spans target-mediated and linear kinetics: at 100 nmol (3000 nmol) the
typical total drug starts at 33 nM (1000 nM); below a few nM the target-mediated
elimination dominates and the concentration falls steeply (the TMDD "hockey stick"),
which identifies ``KSS``, while the high cohorts stay in the linear range for weeks and
identify ``CL`` and ``V``. Total target accumulates (the complex is eliminated more
slowly than the free target, ``KINT < KDEG``) up to ``R0 KDEG / KINT`` (2.7 ``R0``) under
saturation, which identifies ``KINT`` and ``KDEG``; the pre-dose sample gives ``R0``.

Model (``bn.pk.tmdd_qss()``, Gibiansky et al. 2008, one compartment)::

    C        = 0.5 [(Ctot - Rtot - KSS) + sqrt((Ctot - Rtot - KSS)^2 + 4 KSS Ctot)]
    dCtot/dt = -CL/V C - KINT (Ctot - C)                  (free drug C, complex Ctot - C)
    dRtot/dt =  KDEG R0 - KDEG Rtot - (KINT - KDEG)(Ctot - C)

solved for ``Central = V Ctot`` (total drug amount, nmol) and ``Target = Rtot - R0``;
``bn.pk.tmdd_qss_concentrations`` gives the free drug and total target in ``derived``.
The QSS approximation holds for fast binding (the usual case for antibodies) and is not
stiff: the explicit default solver (``Tsit5``) at ``rtol = atol = 1e-6`` (``atol`` in nmol
and nM) takes 50-60 steps over a subject's 56 days (plus the steps that end on a sampling
time).

- IIV: log-normal on CL, V and R0 (diagonal OMEGA), MU-referenced (``bn.IIV(mu=...)``):
  every subject has 12 drug and 10 target samples, which pin down its own parameters.
  Measured on these data with the test's settings (2 chains x (200 + 150), tree depth
  <= 5, 31 leapfrog steps per draw in all three): non-centred ETAs max R-hat 1.25 and
  bulk ESS 6-9 for tvcl, tvv, tvr0 and omega_v_sd; centred ETAs R-hat 1.27 and bulk ESS
  6-9 for tvv and tvr0 (the typical value moves only with all ETAs); MU-referenced max
  R-hat 1.03 and bulk ESS >= 78. Without the depth limit (depth <= 7, 2 x (200 + 200))
  non-centred and centred ETAs took 127 leapfrog steps per draw, MU-referenced 31. None
  on KSS, KINT, KDEG.
- Residual: proportional for ``drug`` (``drug_prop_sd``, fraction) and for ``target``
  (``target_prop_sd``).

Parameters: ``tvcl`` (L/day, linear clearance of the free drug), ``tvv`` (L, central
volume), ``tvkss`` (nM, quasi-steady-state constant ``(KOFF + KINT) / KON``), ``tvkint``
(1/day, elimination (internalisation) of the complex), ``tvkdeg`` (1/day, degradation of
the free target), ``tvr0`` (nM, baseline target); ``omega_cl_sd``, ``omega_v_sd``,
``omega_r0_sd`` (SDs of the ETAs, log scale); ``drug_prop_sd``, ``target_prop_sd``.

Truth (``TRUTH``): tvcl 0.2 L/day, tvv 3 L (linear half-life 10.4 days), tvkss 1 nM,
tvkint 0.3 /day, tvkdeg 0.8 /day (free-target half-life 21 h), tvr0 4 nM (target-mediated
clearance ``KINT R0 V / KSS`` = 3.6 L/day at low concentrations, 18 times CL),
omega_cl_sd 0.25, omega_v_sd 0.2, omega_r0_sd 0.2, drug_prop_sd 0.15, target_prop_sd 0.1.

Run: ``bayes-nlme fit tmdd_qss`` (or ``python model_zoo/tmdd_qss.py``).
"""

import jax.numpy as jnp
import numpy as np
import pandas as pd

import bayes_nlme as bn
from bayes_nlme import dist

TRUTH = dict(
    tvcl=0.2,
    tvv=3.0,
    tvkss=1.0,
    tvkint=0.3,
    tvkdeg=0.8,
    tvr0=4.0,
    omega_cl_sd=0.25,
    omega_v_sd=0.2,
    omega_r0_sd=0.2,
    drug_prop_sd=0.15,
    target_prop_sd=0.1,
)


def _pre(p, eta, cov):
    return dict(
        CL=p.tvcl * jnp.exp(eta.cl),
        V=p.tvv * jnp.exp(eta.v),
        KSS=p.tvkss,
        KINT=p.tvkint,
        KDEG=p.tvkdeg,
        R0=p.tvr0 * jnp.exp(eta.r0),
    )


def _derived(p, a, ind):
    conc = bn.pk.tmdd_qss_concentrations(a.Central, a.Target, ind.V, ind.R0, ind.KSS)
    return dict(
        drug=bn.error.Proportional(conc["free_drug"], sd=p.drug_prop_sd),
        target=bn.error.Proportional(conc["total_target"], sd=p.target_prop_sd),
    )


model = bn.Model(
    name="tmdd_qss",
    params=dict(
        tvcl=bn.Param(dist.LogNormal(jnp.log(0.3), 1.0), unit="L/day", label="linear clearance"),
        tvv=bn.Param(dist.LogNormal(jnp.log(4.0), 1.0), unit="L", label="central volume"),
        tvkss=bn.Param(
            dist.LogNormal(jnp.log(0.5), 1.5), unit="nM", label="quasi-steady-state constant"
        ),
        tvkint=bn.Param(
            dist.LogNormal(jnp.log(0.2), 1.0), unit="1/day", label="complex elimination rate"
        ),
        tvkdeg=bn.Param(
            dist.LogNormal(jnp.log(0.5), 1.0), unit="1/day", label="target degradation rate"
        ),
        tvr0=bn.Param(dist.LogNormal(jnp.log(5.0), 1.0), unit="nM", label="baseline target"),
        drug_prop_sd=bn.Param(dist.HalfNormal(0.3), label="free drug proportional SD"),
        target_prop_sd=bn.Param(dist.HalfNormal(0.3), label="total target proportional SD"),
    ),
    random=bn.IIV(
        ["cl", "v", "r0"], sd=dist.HalfNormal(0.5), mu=dict(cl="tvcl", v="tvv", r0="tvr0")
    ),
    pre=_pre,
    dynamics=bn.pk.tmdd_qss(rtol=1e-6, atol=1e-6),  # atol in nmol (Central) and nM (Target)
    derived=_derived,
)

read_options: dict = {}
plot_labels = dict(dv_label="Free drug / total target (nM)", time_label="Time after dose (days)")

DOSES = (100.0, 300.0, 1000.0, 3000.0)
DRUG_TIMES = (1 / 24, 0.25, 1.0, 2.0, 4.0, 7.0, 10.0, 14.0, 21.0, 28.0, 42.0, 56.0)
TARGET_TIMES = (0.0, 1.0, 2.0, 4.0, 7.0, 14.0, 21.0, 28.0, 42.0, 56.0)
LLOQ = {"drug": 0.1, "target": 0.1}  # nM


def design(n_id: int = 16) -> pd.DataFrame:
    """The NONMEM-format design (DV = 0): subject ``i`` gets ``DOSES[(i - 1) % 4]`` nmol IV;
    total target is sampled before the dose at t = 0 (the baseline), then with the drug."""

    def obs(i, t, dvid, cmt):
        return dict(ID=i, TIME=t, AMT=0.0, DV=0.0, EVID=0, MDV=0, CMT=cmt, DVID=dvid)

    rows = []
    for i in range(1, n_id + 1):
        dose = DOSES[(i - 1) % len(DOSES)]
        rows.append(obs(i, 0.0, "target", 2))  # pre-dose baseline
        rows.append(dict(ID=i, TIME=0.0, AMT=dose, DV=0.0, EVID=1, MDV=1, CMT=1, DVID="drug"))
        for t in sorted({*DRUG_TIMES, *TARGET_TIMES} - {0.0}):
            if t in DRUG_TIMES:
                rows.append(obs(i, t, "drug", 1))
            if t in TARGET_TIMES:
                rows.append(obs(i, t, "target", 2))
    return pd.DataFrame(rows)


def data(n_id: int = 16, seed: int = 1) -> pd.DataFrame:
    """The default dataset: ``n_id`` subjects simulated at ``TRUTH`` (NONMEM format), values
    below ``LLOQ`` censored (``CENS = 1``, ``DV = LLOQ``)."""
    table = design(n_id)
    sim = bn.simulate(model, table, TRUTH, seed=seed)
    obs = table.EVID == 0
    table.loc[obs, "DV"] = np.asarray(sim.predictions["DV"].values[0, 0])
    table["LLOQ"] = table.DVID.map(LLOQ)
    blq = obs & (table.DV < table.LLOQ)
    table["CENS"] = blq.astype(int)
    table.loc[blq, "DV"] = table.LLOQ[blq]
    return table


if __name__ == "__main__":
    import sys

    from bayes_nlme._cli import main

    sys.exit(main(["fit", __file__, *sys.argv[1:]]))
