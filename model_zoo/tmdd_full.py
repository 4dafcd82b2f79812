"""TMDD, full binding model: an antibody binding its target, first-in-human doses (simulated).

Data: simulated by :func:`data` with ``bn.simulate`` from this model at the known truth
``TRUTH`` (seed 1): ``n_id`` subjects (default 12, a first-in-human single-ascending-dose
study with 3 subjects per cohort) in four dose cohorts of 5, 15, 50 and 150 nmol (0.75 to
22.5 mg of a 150 kDa antibody: low, target-engagement-driven starting doses), one IV dose
at t = 0 into ``Central`` (CMT 1; given as a bolus). Molar units throughout (dose in nmol,
volume in L, concentrations in nM); time in days. Two endpoints, told apart by the DVID
column ``DVID``: total drug ``drug`` (free + bound, nM, CMT 1) at 1 h, 6 h and 1, 2, 4, 7,
10, 14, 21, 28, 42 and 56 days, and free target ``target`` (nM, CMT 2) before the dose
(t = 0) and at 1 h, 6 h and 1, 2, 4, 7, 14, 21, 28, 42 and 56 days. Values below the
assays' lower limits of quantification (``LLOQ``: 0.1 nM for the drug, 0.01 nM for the
free target) are censored (``CENS = 1``, ``DV = LLOQ``; about 20% of the drug samples,
late, mostly in the low cohorts; no target sample at the default seed) and enter the
likelihood as ``P(DV < LLOQ)`` (Beal's M3, the model's default).

At the truth the typical free target falls within hours of the dose, to 50% (5 nmol) to
2% (150 nmol) of its baseline; its fall in the first 6 h (sampled at 1 and 6 h) shows the
binding rate ``KON``, the depth and duration of the suppression ``KD``, ``KINT`` and
``KDEG``, its recovery the return of the drug below ``KD``. Total drug shows the
target-mediated elimination at the low doses and linear kinetics at the top dose (free
drug above the target-mediated elimination capacity ``R0 KDEG V / CL`` = 6 nM for three
weeks: 50 nM at the start, 17 nM on day 14).

Model (``bn.pk.tmdd_full()``, Mager & Jusko 2001, one compartment)::

    dC/dt  = -CL/V C - KON C R + KOFF RC        (+ doses / V)
    dR/dt  =  KDEG R0 - KDEG R - KON C R + KOFF RC
    dRC/dt =  KON C R - KOFF RC - KINT RC

solved for ``Central`` (free drug amount, nmol), ``Target = R - R0`` and ``Complex = RC``;
``bn.pk.tmdd_full_concentrations`` gives total drug ``C + RC`` and free target ``R`` in
``derived``.

- KOFF is fixed at 0.5 /day (5.8e-6 /s; ``KD = KOFF / KON`` = 0.5 nM at the truth), as
  if measured in vitro (surface plasmon resonance), the usual remedy: binding
  equilibrates within about 1 h (150 nmol) to 18 h (5 nmol), fast against the weeks of
  sampling, so the concentrations carry ``KON`` and ``KOFF`` mostly as ``KSS = (KOFF +
  KINT) / KON`` (the quasi-steady-state limit, ``model_zoo/tmdd_qss.py``) and only the
  samples of the first day show the binding rate itself.
- Binding rate and solver. ``KON`` = 1 /(nM day) (1.2e4 /M/s) is at the slow end of
  antibody association rates; it is chosen so that the model stays cheap to solve. The
  fastest rate, ``KON (C + R) + KOFF`` (up to 50 /day here), makes the system stiff as
  ``KON`` or the dose grows: with the explicit ``Tsit5`` (``rtol = 1e-6, atol = 1e-8``,
  ``atol`` in nmol and nM) the 150-nmol subject takes 273 steps at this ``KON``, 2,226 at
  10 /(nM day) and 21,501 at 100 /(nM day) (beyond ``max_steps``); ``diffrax.Kvaerno5()``
  (implicit, the library's advice for fast binding) takes 699, 1,156 and 1,937 steps, but
  each is far dearer: at this ``KON`` the log density and gradient of the 12 subjects
  took 3 ms with ``Tsit5`` against 360 ms with ``Kvaerno5`` (2-core CPU, same value to
  1e-6). For realistic fast binding (1e5-1e6 /M/s) fit the QSS model instead.
- IIV: log-normal on CL, V and R0 (diagonal OMEGA), MU-referenced (``bn.IIV(mu=...)``):
  every subject has 12 drug and 12 target samples, which pin down its own parameters.
  Measured on these data with the test's settings (2 chains x (200 + 150), tree depth
  <= 5, 31 leapfrog steps per draw in all three): non-centred ETAs max R-hat 1.28 and
  bulk ESS 6-9 for tvcl, tvkint, tvr0 and omega_cl_sd; centred ETAs R-hat 1.35 and bulk
  ESS 5 for tvr0 (the typical value moves only with all ETAs); MU-referenced max R-hat
  1.02 and bulk ESS >= 145. None on KON, KINT, KDEG.
- Residual: proportional for ``drug`` (``drug_prop_sd``, fraction) and for ``target``
  (``target_prop_sd``).

Parameters: ``tvcl`` (L/day, linear clearance of the free drug), ``tvv`` (L, central
volume), ``tvkon`` (1/(nM day), association rate constant), ``tvkoff`` (1/day,
dissociation rate constant, fixed at 0.5), ``tvkint`` (1/day, elimination
(internalisation) of the complex), ``tvkdeg`` (1/day, degradation of the free target),
``tvr0`` (nM, baseline free target); ``omega_cl_sd``, ``omega_v_sd``, ``omega_r0_sd``
(SDs of the ETAs, log scale); ``drug_prop_sd``, ``target_prop_sd``.

Truth (``TRUTH``, the estimated parameters; KOFF is fixed at 0.5 /day in the model): tvcl
0.2 L/day, tvv 3 L (linear half-life 10.4 days), tvkon 1 /(nM day) (``KD`` 0.5 nM, ``KSS``
0.8 nM), tvkint 0.3 /day, tvkdeg 0.4 /day (free-target half-life 1.7 days), tvr0 1 nM
(target-mediated clearance ``KINT R0 V / KSS`` = 1.1 L/day at low concentrations, 5.6
times CL), omega_cl_sd 0.25, omega_v_sd 0.2, omega_r0_sd 0.2, drug_prop_sd 0.15,
target_prop_sd 0.1.

Run: ``bayes-nlme fit tmdd_full`` (or ``python model_zoo/tmdd_full.py``).
"""

import diffrax
import jax.numpy as jnp
import numpy as np
import pandas as pd

import bayes_nlme as bn
from bayes_nlme import dist

TRUTH = dict(
    tvcl=0.2,
    tvv=3.0,
    tvkon=1.0,
    tvkint=0.3,
    tvkdeg=0.4,
    tvr0=1.0,
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
        KON=p.tvkon,
        KOFF=p.tvkoff,
        KINT=p.tvkint,
        KDEG=p.tvkdeg,
        R0=p.tvr0 * jnp.exp(eta.r0),
    )


def _derived(p, a, ind):
    conc = bn.pk.tmdd_full_concentrations(a.Central, a.Target, a.Complex, ind.V, ind.R0)
    return dict(
        drug=bn.error.Proportional(conc["total_drug"], sd=p.drug_prop_sd),
        target=bn.error.Proportional(conc["free_target"], sd=p.target_prop_sd),
    )


model = bn.Model(
    name="tmdd_full",
    params=dict(
        tvcl=bn.Param(dist.LogNormal(jnp.log(0.3), 1.0), unit="L/day", label="linear clearance"),
        tvv=bn.Param(dist.LogNormal(jnp.log(4.0), 1.0), unit="L", label="central volume"),
        tvkon=bn.Param(
            dist.LogNormal(jnp.log(2.0), 1.0), unit="1/(nM day)", label="association rate"
        ),
        # fixed: KON and KOFF are not separately identifiable from these data (see above)
        tvkoff=bn.Param.fixed(0.5, unit="1/day", label="dissociation rate"),
        tvkint=bn.Param(
            dist.LogNormal(jnp.log(0.2), 1.0), unit="1/day", label="complex elimination rate"
        ),
        tvkdeg=bn.Param(
            dist.LogNormal(jnp.log(0.5), 1.0), unit="1/day", label="target degradation rate"
        ),
        tvr0=bn.Param(dist.LogNormal(jnp.log(2.0), 1.0), unit="nM", label="baseline target"),
        drug_prop_sd=bn.Param(dist.HalfNormal(0.3), label="total drug proportional SD"),
        target_prop_sd=bn.Param(dist.HalfNormal(0.3), label="free target proportional SD"),
    ),
    random=bn.IIV(
        ["cl", "v", "r0"], sd=dist.HalfNormal(0.5), mu=dict(cl="tvcl", v="tvv", r0="tvr0")
    ),
    pre=_pre,
    # explicit solver: at this KON the system is only mildly stiff (see the docstring)
    dynamics=bn.pk.tmdd_full(solver=diffrax.Tsit5(), rtol=1e-6, atol=1e-8),
    derived=_derived,
)

read_options: dict = {}
plot_labels = dict(dv_label="Total drug / free target (nM)", time_label="Time after dose (days)")

DOSES = (5.0, 15.0, 50.0, 150.0)
DRUG_TIMES = (1 / 24, 0.25, 1.0, 2.0, 4.0, 7.0, 10.0, 14.0, 21.0, 28.0, 42.0, 56.0)
TARGET_TIMES = (0.0, 1 / 24, 0.25, 1.0, 2.0, 4.0, 7.0, 14.0, 21.0, 28.0, 42.0, 56.0)
LLOQ = {"drug": 0.1, "target": 0.01}  # nM


def design(n_id: int = 12) -> pd.DataFrame:
    """The NONMEM-format design (DV = 0): subject ``i`` gets ``DOSES[(i - 1) % 4]`` nmol IV;
    free target is sampled before the dose at t = 0 (the baseline), then with the drug."""

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


def data(n_id: int = 12, seed: int = 1) -> pd.DataFrame:
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
