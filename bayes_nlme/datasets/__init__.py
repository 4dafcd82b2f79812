"""Real PK datasets bundled with the package, as raw NONMEM-style tables.

:func:`load` returns the table exactly as distributed (a pandas DataFrame); pass it to
:func:`bayes_nlme.read_nonmem` to validate it and get a :class:`~bayes_nlme.data.Dataset`.
:func:`names` lists what is bundled. Sources and units are given in :func:`load` and in
``files/README.md`` next to the CSV files.

Examples
--------
>>> from bayes_nlme import datasets
>>> datasets.names()
('theophylline', 'warfarin', 'pheno', 'acop_infusion_2cpt', 'mavoglurant', ..., 'acop_bolus_1cptmm')
>>> datasets.load("theophylline").columns.tolist()
['ID', 'TIME', 'DV', 'AMT', 'EVID', 'CMT', 'WT']
"""

from __future__ import annotations

from importlib import resources

import pandas as pd

__all__ = ["load", "names"]

#: Canonical name -> (file under files/, aliases).
_BUNDLED: dict[str, tuple[str, tuple[str, ...]]] = {
    "theophylline": ("theo_sd.csv", ("theo_sd",)),
    "warfarin": ("warfarin.csv", ()),
    "pheno": ("pheno.csv", ("phenobarbital",)),
    "acop_infusion_2cpt": ("Infusion_2CPT.csv", ("infusion_2cpt",)),
    "mavoglurant": ("mavoglurant.csv", ()),
    "theo_md": ("theo_md.csv", ()),
    "acop_bolus_1cptmm": ("Bolus_1CPTMM.csv", ("bolus_1cptmm",)),
}


def names() -> tuple[str, ...]:
    """Canonical names of the bundled datasets (each accepted by :func:`load`).

    Returns
    -------
    tuple of str
        ``("theophylline", "warfarin", "pheno", "acop_infusion_2cpt", "mavoglurant",
        "theo_md", "acop_bolus_1cptmm")``. Aliases:
        ``"theo_sd"`` for theophylline, ``"phenobarbital"`` for pheno, ``"infusion_2cpt"``
        for acop_infusion_2cpt, ``"bolus_1cptmm"`` for acop_bolus_1cptmm.
    """
    return tuple(_BUNDLED)


def load(name: str) -> pd.DataFrame:
    """Load a bundled dataset as the raw table (one row per record, as distributed).

    Parameters
    ----------
    name : str
        ``"theophylline"`` (alias ``"theo_sd"``), ``"warfarin"``, ``"pheno"`` (alias
        ``"phenobarbital"``), ``"acop_infusion_2cpt"`` (alias ``"infusion_2cpt"``),
        ``"mavoglurant"``, ``"theo_md"`` or ``"acop_bolus_1cptmm"`` (alias
        ``"bolus_1cptmm"``); case-insensitive.

    Returns
    -------
    pandas.DataFrame
        A fresh copy of the table; pass it to :func:`bayes_nlme.read_nonmem`.

    Raises
    ------
    ValueError
        If ``name`` is not a bundled dataset (the message lists them).

    Notes
    -----
    **theophylline** (``theo_sd.csv``) -- Theophylline, single oral dose (12 subjects, 132
    concentrations).
    Source: R ``datasets::Theoph`` (Boeckmann, Sheiner & Beal, NONMEM Users Guide),
    NONMEM-style copy from the nlmixr2data package (``theo_sd``).
    Columns: ID, TIME (h), DV (mg/L), AMT (mg, = dose mg/kg x WT), EVID, CMT, WT (kg).
    Dose rows use EVID=101, rxode2's "classic" code for a bolus into CMT 1, which
    :func:`~bayes_nlme.read_nonmem` reads as EVID=1 (with a warning); observations are in
    CMT 2. Every subject has a sample at TIME=0 recorded after the dose, nonzero for 3
    subjects. Published estimates for 1-compartment first-order absorption, log-normal IIV on
    KA, CL, V, additive error: NONMEM 7.4.4 FOCE-I (OFV 116.803) KA 1.590 1/h, CL 2.751 L/h,
    V 31.81 L, OMEGA^2 0.402 / 0.0691 / 0.0192, additive SD 0.694 mg/L; nlmixr2 SAEM KA
    1.57, CL 2.76, V 31.5, BSV 71.5% / 27.6% / 13.4%, SD 0.693.

    **warfarin** (``warfarin.csv``) -- Warfarin PK/PD (O'Reilly; 32 subjects).
    Source: nlmixr2data ``warfarin`` (identical to the Monolix demo data).
    Columns (lower case): id, time (h), amt (mg, single oral dose at t=0), dv, dvid
    (``cp`` = concentration mg/L, 251 observations; ``pca`` = prothrombin complex activity %,
    232 observations), evid, wt (kg), age (y), sex (male/female).

    **pheno** (``pheno.csv``) -- Phenobarbital in neonates (59 subjects, 155
    concentrations).
    Source: Grasela & Donn 1985; the NONMEM tutorial dataset (nlmixr2data ``pheno_sd``).
    Columns: ID, TIME (h), AMT (dose per kg of body weight, documented as ug/kg), WT (kg),
    APGR (5-minute Apgar score 1-10), DV (serum concentration; the nlme and nlmixr2data docs
    disagree on its unit), MDV, EVID. Repeated IV bolus doses, sparse sampling (1-6 samples
    per subject).

    **acop_infusion_2cpt** (``Infusion_2CPT.csv``) -- simulated validation set with KNOWN
    TRUTH (ACOP 2016; 120 subjects, 2-compartment model, 1-hour IV infusions).
    Source: ACOP 2016 simulated NLME validation datasets ({Bolus, Infusion, Oral} x {1CPT,
    2CPT, 1CPTMM, 2CPTMM}), Infusion_2CPT, as distributed in the project's shared data.
    Columns: ID, TIME (h), DV (ug/L), LNDV (log DV), MDV, AMT (ug), RATE (ug/h, = AMT: 1-hour
    infusion), EVID, DOSE, the subject's TRUE individual V, CL, Q, V2, SS, II, SD, CMT. 30
    subjects at each of 4 dose levels (10, 30, 60, 120 mg); rows with SD==1 are the
    single-dose part (one infusion at t=0, 19 samples over 72 h), SD==0 the multiple-dose
    part. SS holds 99 as a placeholder ("not in the steady-state subset", not a NONMEM code:
    read with ``ss_map={99: 0}``). Documented truth: CL 4 L/h, V 70 L, Q 4 L/h, V2 40 L,
    IIV 30% on each (diagonal), exponential residual error SD 0.2; the empirical geometric
    means of the individual values are CL 3.98, V 68.5, Q 3.96, V2 52.0 (not the documented
    40: use the empirical value).

    **mavoglurant** (``mavoglurant.csv``) -- Mavoglurant IV infusions (120 subjects).
    Source: Wendling et al. 2016 (mavoglurant population PK), as distributed in the project's
    shared data (nlmixr2data ``mavoglurant``).
    Columns: ID, CMT, EVID, MDV, DV (ng/mL), AMT (mg), TIME (h), DOSE, OCC (occasion), RATE,
    AGE, SEX, WT, HT. 78 subjects have 2 occasions, each a single infusion with TIME restarting
    at 0 (read with ``reset_on_time_decrease=True``): a real IOV case. No published estimates.

    **theo_md** (``theo_md.csv``) -- Theophylline day 1 + simulated once-daily dosing for 7
    days (12 subjects).
    Source: nlmixr2data ``theo_md``, as distributed in the project's shared data.
    Same columns and quirks as theo_sd (EVID=101 doses); 84 doses, 264 observations, TIME up
    to 168.65 h.

    **acop_bolus_1cptmm** (``Bolus_1CPTMM.csv``) -- simulated validation set with KNOWN
    TRUTH (ACOP 2016; 120 subjects, 1-compartment model with Michaelis-Menten elimination, IV
    boluses).
    Source: ACOP 2016 simulated NLME validation datasets ({Bolus, Infusion, Oral} x {1CPT,
    2CPT, 1CPTMM, 2CPTMM}), Bolus_1CPTMM, as distributed in the project's shared data.
    Columns: ID, TIME (h), DV (ug/L, rounded to 0.1), LNDV (log of the unrounded
    concentration), MDV, AMT (ug), EVID, DOSE, the subject's TRUE individual V (L), VM (ug/h),
    KM (ug/L), SD, CMT (all 1). 30 subjects at each of 4 dose levels (10, 20, 40, 80 mg);
    rows with SD==1 are the single-dose part (one bolus at t=0, 19 samples over 72 h), SD==0
    the multiple-dose part (daily doses t=72..216, samples to 288 h). No SS or II column.
    Samples that rounded to DV=0 are EVID=2 records (MDV=1; 10 rows, 6 of them in the
    single-dose part), which :func:`~bayes_nlme.read_nonmem` drops. Documented truth: V 70 L,
    VM 1000 ug/h, KM 250 ug/L, IIV 30% on each (diagonal), exponential residual error SD 0.2;
    the empirical geometric means of the individual values are V 66.50, VM 1000.5, KM 251.9
    (log-scale SDs 0.30, 0.30, 0.31).

    Examples
    --------
    >>> from bayes_nlme.datasets import load
    >>> theo = load("theophylline")
    >>> theo.shape, theo["ID"].nunique()
    ((144, 7), 12)
    >>> load("phenobarbital").equals(load("pheno"))
    True
    """
    key = str(name).strip().lower()
    for canonical, (file, aliases) in _BUNDLED.items():
        if key == canonical or key in aliases:
            with (resources.files(__name__) / "files" / file).open("rb") as fh:
                return pd.read_csv(fh)
    listing = ", ".join(
        name + (f" (alias {', '.join(aliases)})" if aliases else "")
        for name, (_, aliases) in _BUNDLED.items()
    )
    raise ValueError(f"no bundled dataset named {name!r}; the bundled datasets are: {listing}")
