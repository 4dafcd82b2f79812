"""Friberg myelosuppression: neutropenia over two cycles of a cytotoxic drug (simulated data).

Data: simulated by :func:`data` with ``bn.simulate`` from this model at the known truth
``TRUTH`` (seed 1): ``n_id`` patients (default 12, a small phase I dose escalation) in three
dose cohorts of 50, 100 and 200 mg, each patient given the drug as an IV bolus (into
``Central``, CMT 1) on day 0 of two 21-day cycles (t = 0 and 504 h). Absolute neutrophil
counts (ANC, 10^9/L; CMT 6 on the observation rows) on days 0 (baseline, before the dose),
7, 10, 14 and 17 of each cycle and on day 21 of the second cycle (11 per patient): the
nadir (about day 9), the recovery and the rebound above baseline (about day 21) are all
sampled. At the truth the typical patient's nadir (first cycle, day 8.5-9.5) is 65%, 42%
and 19% of baseline at 50, 100 and 200 mg (about 0.95 10^9/L at the top dose, grade 3
neutropenia; the top-dose patients' lowest simulated counts are 0.3-0.7 10^9/L, grade 3-4):
the dose range identifies ``SLOPE``, the nadir time ``MTT`` and the rebound (up to 1.24
times baseline on day 21) ``GAMMA``. Time is in hours.

PK, sequential approach with individual PK parameters (IPP; Zhang, Beal & Sheiner 2003,
as in Friberg et al. 2002): each patient's clearance and volume are known from an earlier
population PK analysis and enter as the dataset columns ``ICL`` (L/h) and ``IV`` (L);
only the PD is estimated (8 population parameters: a fast, well-identified fit).
:func:`design` draws them from a log-normal population (CL 5 L/h, 25% CV; V 50 L, 20% CV;
half-life about 7 h; fixed seed ``PK_SEED``).

Model (``bn.pk.friberg()``, Friberg et al. 2002, J Clin Oncol 20:4713)::

    dCentral/dt = -CL / V Central,                          C = Central / V
    dProl/dt    =  KTR Prol (1 - SLOPE C) (CIRC0 / Circ)^GAMMA - KTR Prol
    dTransit{i}/dt = KTR (previous - Transit{i})  (i = 1, 2, 3),   KTR = 4 / MTT
    dCirc/dt    =  KTR (Transit3 - Circ)
    ANC         =  Circ

solved for the cell states relative to the baseline ``CIRC0`` (``ANC = CIRC0 (1 +
a.Circ)`` in ``derived``; ``CIRC0`` does not enter the ODE).

- IIV: log-normal on CIRC0, MTT and SLOPE (diagonal OMEGA, MU-referenced, see
  ``bn.IIV(mu=...)``): every patient has 11 counts, which pin down its own CIRC0; with
  centred ETAs the typical values and all ETAs were strongly correlated (R-hat 1.05, bulk
  ESS 41-50 for tvcirc0, tvmtt and tvslope in a short run of 2 chains x (150 + 150),
  against ESS 150-300 MU-referenced), and non-centred mixed worst (R-hat 1.49 for
  tvcirc0). None on GAMMA.
- Residual: exponential (log-normal, ``log ANC_obs = log ANC + EPS``), ``exp_sd`` (log
  scale).
- ODE tolerances ``rtol = atol = 1e-5``: against a reference solve (1e-10) the error in
  log ANC is below 1e-4 at the truth (2.5e-3 at a nadir of 1% of baseline), far below the
  residual error, with 20-35% fewer steps than 1e-6.

Parameters: ``tvcirc0`` (10^9/L, baseline ANC), ``tvmtt`` (h, mean transit time through
the maturation chain), ``tvgamma`` (feedback exponent), ``tvslope`` (L/mg, linear drug
effect on proliferation); ``omega_circ0_sd``, ``omega_mtt_sd``, ``omega_slope_sd`` (SDs of
the ETAs, log scale); ``exp_sd``.

Truth (``TRUTH``, typical of Friberg et al. 2002): tvcirc0 5 10^9/L, tvmtt 110 h, tvgamma
0.17, tvslope 1.5 L/mg (drug effect ``SLOPE C`` of about 6 at the peak of the top dose),
omega_circ0_sd 0.3, omega_mtt_sd 0.15, omega_slope_sd 0.3, exp_sd 0.15.

Run: ``bayes-nlme fit friberg`` (or ``python model_zoo/friberg.py``).
"""

import jax.numpy as jnp
import numpy as np
import pandas as pd

import bayes_nlme as bn
from bayes_nlme import dist

TRUTH = dict(
    tvcirc0=5.0,
    tvmtt=110.0,
    tvgamma=0.17,
    tvslope=1.5,
    omega_circ0_sd=0.3,
    omega_mtt_sd=0.15,
    omega_slope_sd=0.3,
    exp_sd=0.15,
)


def _pre(p, eta, cov):
    return dict(
        CL=cov.ICL,  # individual PK from the earlier PK analysis
        V=cov.IV,
        CIRC0=p.tvcirc0 * jnp.exp(eta.circ0),
        MTT=p.tvmtt * jnp.exp(eta.mtt),
        GAMMA=p.tvgamma,
        SLOPE=p.tvslope * jnp.exp(eta.slope),
    )


model = bn.Model(
    name="friberg",
    params=dict(
        tvcirc0=bn.Param(dist.LogNormal(jnp.log(5.0), 1.0), unit="10^9/L", label="baseline ANC"),
        tvmtt=bn.Param(dist.LogNormal(jnp.log(100.0), 1.0), unit="h", label="mean transit time"),
        tvgamma=bn.Param(dist.LogNormal(jnp.log(0.2), 0.5), label="feedback exponent"),
        tvslope=bn.Param(dist.LogNormal(jnp.log(1.0), 1.0), unit="L/mg", label="drug effect slope"),
        exp_sd=bn.Param(dist.HalfNormal(0.5), label="exponential residual SD (log scale)"),
    ),
    random=bn.IIV(
        ["circ0", "mtt", "slope"],
        sd=dist.HalfNormal(0.5),
        mu=dict(circ0="tvcirc0", mtt="tvmtt", slope="tvslope"),
    ),
    pre=_pre,
    # Central in mg (doses 50-200 mg), the cell states relative to baseline (about -1 to 1)
    dynamics=bn.pk.friberg(rtol=1e-5, atol=1e-5),
    derived=lambda p, a, ind: dict(
        DV=bn.error.Exponential(ind.CIRC0 * (1.0 + a.Circ), sd=p.exp_sd)
    ),
    covariates=["ICL", "IV"],
)

read_options: dict = {}
plot_labels = dict(
    dv_label="Absolute neutrophil count (10^9/L)", time_label="Time after the first dose (h)"
)

DOSES = (50.0, 100.0, 200.0)
N_CYCLES = 2
CYCLE = 21 * 24.0  # h
DAYS = (0.0, 7.0, 10.0, 14.0, 17.0)  # ANC sampling days of each cycle (day 0: pre-dose)
OBS_CMT = 6  # Circ
PK_SEED = 11
PK_TYPICAL = dict(ICL=5.0, IV=50.0)  # L/h, L
PK_OMEGA = dict(ICL=0.25, IV=0.2)  # log-scale SDs


def design(n_id: int = 12) -> pd.DataFrame:
    """The NONMEM-format design (DV = 0): patient ``i`` gets ``DOSES[(i - 1) % 3]`` mg on day
    0 of each cycle; its PK (columns ``ICL``, ``IV``) is drawn with the fixed seed
    ``PK_SEED``."""
    rng = np.random.default_rng(PK_SEED)
    pk = {
        k: np.round(PK_TYPICAL[k] * np.exp(PK_OMEGA[k] * rng.standard_normal(n_id)), 2)
        for k in PK_TYPICAL
    }
    rows = []
    for i in range(1, n_id + 1):
        dose = DOSES[(i - 1) % len(DOSES)]
        cov = {k: float(v[i - 1]) for k, v in pk.items()}
        obs = dict(ID=i, AMT=0.0, DV=0.0, EVID=0, MDV=0, CMT=OBS_CMT, **cov)
        for c in range(N_CYCLES):
            t0 = c * CYCLE
            rows.append(dict(obs, TIME=t0))  # pre-dose count
            rows.append(dict(ID=i, TIME=t0, AMT=dose, DV=0.0, EVID=1, MDV=1, CMT=1, **cov))
            rows += [dict(obs, TIME=t0 + 24.0 * d) for d in DAYS[1:]]
        rows.append(dict(obs, TIME=N_CYCLES * CYCLE))  # day 21 of the last cycle
    return pd.DataFrame(rows)


def data(n_id: int = 12, seed: int = 1) -> pd.DataFrame:
    """The default dataset: ``n_id`` patients simulated at ``TRUTH`` (NONMEM format)."""
    table = design(n_id)
    sim = bn.simulate(model, table, TRUTH, seed=seed)
    obs = table.EVID == 0
    table.loc[obs, "DV"] = np.asarray(sim.predictions["DV"].values[0, 0])
    return table


if __name__ == "__main__":
    import sys

    from bayes_nlme._cli import main

    sys.exit(main(["fit", __file__, *sys.argv[1:]]))
