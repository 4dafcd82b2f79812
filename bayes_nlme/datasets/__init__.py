"""Real PK datasets bundled with the package, as raw NONMEM-style tables.

:func:`load` returns the table exactly as distributed (a pandas DataFrame); pass it to
:func:`bayes_nlme.read_nonmem` to validate it and get a :class:`~bayes_nlme.data.Dataset`.
:func:`names` lists what is bundled. Sources and units are given in :func:`load` and in
``files/README.md`` next to the CSV files.

Examples
--------
>>> from bayes_nlme import datasets
>>> datasets.names()
('theophylline', 'warfarin', 'pheno')
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
}


def names() -> tuple[str, ...]:
    """Canonical names of the bundled datasets (each accepted by :func:`load`).

    Returns
    -------
    tuple of str
        ``("theophylline", "warfarin", "pheno")``. Aliases: ``"theo_sd"`` for
        theophylline, ``"phenobarbital"`` for pheno.
    """
    return tuple(_BUNDLED)


def load(name: str) -> pd.DataFrame:
    """Load a bundled dataset as the raw table (one row per record, as distributed).

    Parameters
    ----------
    name : str
        ``"theophylline"`` (alias ``"theo_sd"``), ``"warfarin"`` or ``"pheno"`` (alias
        ``"phenobarbital"``); case-insensitive.

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
