"""Reading a NONMEM-style table into a validated, padded :class:`Dataset`.

The pipeline is: load (CSV or DataFrame) -> map the reserved columns case-insensitively ->
parse numbers and apply NONMEM defaults -> recode (``evid_map``, ``ss_map``, EVID 101) ->
run every rule of :data:`~bayes_nlme.data._rules.RULES` -> pad per subject. pandas stops
here: the :class:`Dataset` holds NumPy arrays only.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ._dataset import Dataset
from ._rules import NUMERIC_ITEMS, RESERVED_ITEMS, DatasetError, Table, Violation, check

__all__ = ["read_nonmem"]

#: Dose items NONMEM reads as 0 when blank or "." (and when the column is absent).
_ZERO_WHEN_MISSING = ("RATE", "II", "ADDL", "SS", "CMT", "CENS")
#: What pandas raises for a file that is missing, unreadable or not CSV.
_READ_ERRORS = (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError)


def read_nonmem(
    data: str | os.PathLike | pd.DataFrame,
    *,
    evid_map: Mapping[float, float] | None = None,
    ss_map: Mapping[float, float] | None = None,
    covariates: Sequence[str] | None = None,
    reset_on_time_decrease: bool = False,
    fill_covariates: str | None = None,
) -> Dataset:
    """Read and validate a NONMEM-style dataset into padded per-subject arrays.

    One record (row) per event: observations (EVID=0), doses (EVID=1) and other events
    (EVID=2), sorted by subject and time, as for NONMEM's ``$DATA``.

    Parameters
    ----------
    data : str, os.PathLike or pandas.DataFrame
        A CSV file with a header line, or a DataFrame (never modified). Reserved columns are
        matched case-insensitively (``ID``, ``id`` and ``Id`` are all the subject column):

        ========  ======================================================================
        ID        subject identifier (numbers or strings); required
        TIME      record time (any unit, usually h; the unit of the model's rates); required
        DV        observed value (concentration, ...); "." or blank = missing; required if
                  there are observation records
        AMT       dose amount (before bioavailability F); required if EVID has doses
        EVID      event: 0 observation, 1 dose, 2 other (ignored); default: 1 where
                  AMT > 0, else 2 where MDV=1, else 0
        MDV       1 = not an observation; default: 1 where EVID != 0, else 0
        CMT       1-based compartment of a dose or observation; default 0 = the model's
                  default compartment
        RATE      zero-order infusion rate (amount/time; duration = F*AMT/RATE); -1: rate
                  modeled (parameter R<n>, n = CMT), -2: duration modeled (D<n>); default 0
        II, ADDL  dosing interval (time) and number of additional doses; default 0
        SS        steady-state flag: 0 ordinary dose, 1 steady state after a reset, 2
                  steady state added to the earlier doses (needs II > 0); default 0
        DVID      observation type (numbers or labels such as ``cp``/``pca``); maps each
                  observation to a model output (see :class:`bayes_nlme.Model`, ``dvid``)
        CENS      1 = the observation is below the lower limit of quantification (BLQ,
                  left-censored; Monolix/nlmixr2 convention), 0 = observed; default 0
        LLOQ      the limit of quantification; default: DV on CENS=1 rows
        ========  ======================================================================

        Every other column is a covariate.
    evid_map : mapping of float to float, optional
        Recode EVID values before validation, e.g. ``{5: 2}``. Applied before the EVID=101
        mapping below (so ``{101: 1}`` keeps CMT as written).
    ss_map : mapping of float to float, optional
        Recode SS values before validation, e.g. ``{99: 0}`` for the ACOP 2016 sets' SS=99
        placeholder.
    covariates : sequence of str, optional
        Names of the covariate columns to keep (exactly as written in the input). Default:
        all columns that are not reserved.
    reset_on_time_decrease : bool, default False
        Read a dose record (EVID=1) where TIME decreases within a subject as EVID=4 (reset
        and dose): the convention of datasets whose occasions restart the clock at 0 without
        a reset code (e.g. mavoglurant). Recorded in ``notes``. Without it, such a record is
        a ``time-order`` error.
    fill_covariates : {None, "locf"}, default None
        How to fill missing (blank, ".", NaN) covariate values. None: keep them missing
        (NaN); a model that uses the covariate then refuses the dataset and names the rows.
        ``"locf"``: within each subject, a missing value takes the subject's last value
        before it (last observation carried forward), and missing values before the
        subject's first given value take that first value; subjects with no value at all
        stay missing. The number of filled cells is recorded in ``notes``.

    Returns
    -------
    Dataset
        ``n_id`` subjects in order of first appearance; doses (ADDL/II expanded, sorted by
        time) and observations (EVID=0 and MDV=0 records, in record order) padded to the
        largest subject and masked; baseline covariates; and the recodings applied in
        ``notes``.

    Raises
    ------
    DatasetError
        If the file cannot be read, the table is empty, a name in ``covariates`` is not a
        covariate column, or the table breaks any rule of
        :data:`bayes_nlme.data._rules.RULES`. All broken rules are reported at once:
        ``err.violations`` lists them, and the message gives for each the column, the row
        labels (and CSV line numbers when read from a file), what is wrong and the fix.
    TypeError
        If ``data`` is neither a path nor a DataFrame, or a recoding map is not numeric.
    ValueError
        If ``fill_covariates`` is not None or ``"locf"``.

    Warns
    -----
    UserWarning
        When EVID=101 records are recoded (once, with the number of rows).

    Notes
    -----
    Conventions follow NONMEM/PREDPP (NONMEM Users Guides IV-VI; the ``EVID``, ``MDV`` and
    ``DV`` help entries):

    - An observation is a record with EVID=0 and MDV=0; EVID=0 with MDV=1 is not one.
      EVID=2 records are checked, then dropped. Dose, other and reset records need MDV=1.
    - Dose items (AMT, RATE, II, ADDL, SS) must be 0 on non-dose records; blank or "." in
      RATE, II, ADDL, SS and CMT reads as 0, as in NONMEM.
    - A dose with ADDL=n and II=ii stands for n+1 doses at TIME, TIME+ii, ..., TIME+n*ii,
      each with the same AMT, RATE and CMT. The first keeps the record's SS and II; the n
      additional doses are ordinary doses (SS 0, II 0 in ``dose_ss``/``dose_ii``), as in
      NONMEM.
    - RATE=-1 / RATE=-2 on a dose record (NONMEM modeled infusion): the rate, resp. the
      duration, of the infusion is the model parameter ``R<n>``, resp. ``D<n>``, of the
      dose's compartment ``n`` (duration ``F<n> AMT / R<n>``, resp. rate
      ``F<n> AMT / D<n>``); the code is kept as is in ``dose_rate``. Other negative RATE
      values are errors.
    - Steady state (``dose_ss``, ``dose_ii``): SS=1 or SS=2 on a dose record with II > 0 is
      a steady-state dose, the last of an infinite train of implied doses every II (bolus,
      oral, or infusion with RATE > 0, -1 or -2; an infusion may last longer than II). SS=1 resets
      the system at TIME first (earlier doses, and doses at the same TIME on earlier
      records, stop contributing); SS=2 adds the steady state to them. The steady-state
      constant infusion (SS=1, II=0, AMT=0, RATE > 0) is not supported yet; SS > 0 with
      II=0 otherwise is an error. Doses are sorted by time with a stable sort, so doses at
      the same time keep their record order (which decides what an SS=1 dose resets).
    - TIME must not decrease within a subject, and a subject's records must be contiguous
      (NONMEM starts a new individual wherever ID changes).
    - EVID=101 is rxode2's "classic" code for a bolus into compartment 1 (nlmixr2data's
      theophylline data uses it); it is read as EVID=1 with CMT=1, recorded in
      ``Dataset.notes`` and warned about.
    - Reset events: EVID=3 (reset) and EVID=4 (reset and dose) set every compartment to 0
      at their TIME, and TIME may restart (decrease) there. Each reset starts a new
      *segment* of the subject (``dose_seg``, ``obs_seg``, numbered from 0): doses of one
      segment never contribute to the observations of another (NONMEM: a reset also
      cancels the additional doses still pending from ADDL).
    - Censoring (BLQ): an observation with CENS=1 lies below the lower limit of
      quantification, LLOQ (the LLOQ column, or DV on that row, the Monolix/nlmixr2
      convention). ``obs_lloq`` holds the limit of every observation of an endpoint when it
      is known: the LLOQ column where present, else the smallest limit of that DVID's
      censored rows (noted in ``notes``); NaN when unknown.
    - Not supported yet (reported as such): the steady-state constant infusion (SS 1/2
      with II=0, AMT=0, RATE > 0) and upper-limit censoring (CENS=-1).
    - Covariates: ``covariates`` holds the value on the subject's first record (baseline)
      and ``segment_covariates`` the value on the first record of each segment (e.g. the
      occasion column, OCC, for IOV). Every record (EVID 0-4, so also EVID=2 records,
      NONMEM's way to say "a physiological variable changes") keeps its value in
      ``record_covariates`` for the covariates that change within a segment
      (``segment_varying``); ``notes`` names them. A :class:`bayes_nlme.Model` that
      declares such a covariate uses it as *time-varying*: piecewise constant, each
      record's value applying from that record's TIME until the next change (last
      observation carried forward, LOCF, as in Monolix and rxode2's default; where several
      records share a TIME, the last one's value applies from that TIME). NONMEM's
      PREDPP instead advances the system from one record to the next with the values of
      the later record (NONMEM Users Guide VI; "next observation carried backward");
      shift the covariate column one record back to reproduce that. To use only the
      baseline, add a column holding the first value (e.g.
      ``df.groupby("ID").WT.transform("first")``) and declare that one. Non-numeric
      covariates are coded ``0, 1, ...`` in sorted order of their levels
      (``covariate_levels``); missing values are NaN (see ``fill_covariates``).
    - ``obs_row`` holds the input's index labels when they are unique integers (a CSV's
      0-based data-row numbers), otherwise 0-based positions (noted in ``notes``).

    Examples
    --------
    >>> import warnings
    >>> from bayes_nlme.data import read_nonmem
    >>> from bayes_nlme.datasets import load
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")  # the EVID=101 recoding is warned about
    ...     ds = read_nonmem(load("theophylline"))
    >>> ds
    Dataset(12 subjects, 132 observations, 12 dose events; covariates: WT)
    >>> ds.obs_dv.shape, ds.dose_cmt[0, 0], ds.covariates["WT"][0]
    ((12, 11), np.int32(1), np.float64(79.6))

    Repeated doses and a covariate column named in lower case:

    >>> pheno = read_nonmem(load("pheno"), covariates=["WT", "APGR"])
    >>> pheno.n_id, pheno.n_obs, pheno.dose_time.shape  # up to 15 doses per subject
    (59, 155, (59, 15))
    """
    if fill_covariates not in (None, "locf"):
        raise ValueError(f"fill_covariates must be None or 'locf'; got {fill_covariates!r}.")
    frame, source = _load(data)
    table, recodings = _parse(frame, evid_map, ss_map, reset_on_time_decrease)
    cov_columns, violations = _covariate_columns(frame, covariates)
    violations += check(table)
    if violations:
        raise DatasetError.from_violations(violations, source)
    notes = []
    for note, warn in recodings:
        notes.append(note)
        if warn:
            warnings.warn(note, UserWarning, stacklevel=2)
    return _to_dataset(frame, table, cov_columns, notes, source, fill_covariates)


# ---------------------------------------------------------------------------------------
# loading and parsing


def _load(data: Any) -> tuple[pd.DataFrame, str | None]:
    if isinstance(data, pd.DataFrame):
        frame, source, where = data, None, "the DataFrame"
    elif isinstance(data, (str, os.PathLike)):
        source = os.fspath(data)
        where = f"{source!r}"
        try:
            frame = pd.read_csv(source)
        except _READ_ERRORS as err:
            raise DatasetError(
                f"could not read the dataset file {source!r}: {type(err).__name__}: {err}. "
                "read_nonmem reads a comma-separated file whose first line names the columns "
                "(ID, TIME, DV, AMT, EVID, ...), or a pandas DataFrame; check the path, or "
                "read the file with pandas and pass the DataFrame.",
                source=source,
            ) from err
    else:
        raise TypeError(
            "read_nonmem: data must be a path to a CSV file or a pandas DataFrame, got "
            f"{type(data).__name__}"
        )
    dup = frame.columns[frame.columns.duplicated()].tolist()
    if dup:
        raise DatasetError(
            f"{where} has several columns named {', '.join(map(repr, dup))}; "
            "give each column its own name",
            source=source,
        )
    if len(frame) == 0 or len(frame.columns) == 0:
        raise DatasetError(
            f"{where} has no records ({len(frame)} rows, {len(frame.columns)} columns); "
            "a NONMEM-style dataset needs one row per observation or dose",
            source=source,
        )
    return frame, source


def _blank(col: pd.Series) -> np.ndarray:
    """Missing cells: NaN/None, or a string that is empty or "." (NONMEM's missing)."""
    obj = col.astype(object)
    text = obj.map(lambda v: v.strip() if isinstance(v, str) else v)
    return (obj.isna() | text.isin(["", "."])).to_numpy()


def _parse_numeric(col: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """float64 values (NaN where missing or not a number), and the not-a-number cells."""
    missing = _blank(col)
    obj = col.astype(object).where(~missing, None)
    values = pd.to_numeric(obj, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return values, np.isnan(values) & ~missing


def _n_rows(mask: np.ndarray) -> str:
    n = int(np.sum(mask))
    return f"{n} row" if n == 1 else f"{n} rows"


def _recoding(mapping: Mapping | None, name: str) -> list[tuple[float, float]]:
    """``evid_map``/``ss_map`` as ``(old, new)`` float pairs; TypeError if not numeric."""
    if mapping is None:
        return []
    if not isinstance(mapping, Mapping):
        raise TypeError(f"{name} must be a mapping such as {{99: 0}}, got {type(mapping).__name__}")
    try:
        return [(float(old), float(new)) for old, new in mapping.items()]
    except (TypeError, ValueError):
        raise TypeError(f"{name} must map numbers to numbers, got {dict(mapping)!r}") from None


def _parse(
    frame: pd.DataFrame, evid_map, ss_map, reset_on_time_decrease=False
) -> tuple[Table, list[tuple[str, bool]]]:
    """Map the reserved columns, parse them, apply defaults and recodings.

    Returns the table for the rules and the recodings as ``(note, warn)`` pairs.
    """
    cols: dict[str, Any] = {}
    duplicates: dict[str, tuple[str, ...]] = {}
    for col in frame.columns:
        item = str(col).strip().upper()
        if item not in RESERVED_ITEMS:
            continue
        if item in cols:
            duplicates[item] = (*duplicates.get(item, (str(cols[item]),)), str(col))
        else:
            cols[item] = col

    n = len(frame)
    raw = {item: frame[cols[item]].reset_index(drop=True) for item in NUMERIC_ITEMS if item in cols}
    values, nonnumeric = {}, {}
    for item in NUMERIC_ITEMS:
        if item in raw:
            values[item], nonnumeric[item] = _parse_numeric(raw[item])
        else:
            values[item], nonnumeric[item] = np.full(n, np.nan), np.zeros(n, bool)
    for item in _ZERO_WHEN_MISSING:
        values[item] = np.where(np.isnan(values[item]) & ~nonnumeric[item], 0.0, values[item])
    if "AMT" not in raw:
        values["AMT"] = np.zeros(n)
    if "EVID" not in raw:
        values["EVID"] = np.where(
            np.nan_to_num(values["AMT"]) > 0, 1.0, np.where(values["MDV"] == 1, 2.0, 0.0)
        )

    recodings: list[tuple[str, bool]] = []
    for item, mapping, name in (("EVID", evid_map, "evid_map"), ("SS", ss_map, "ss_map")):
        pairs = _recoding(mapping, name)
        if mapping is None:
            continue
        if item not in raw:
            recodings.append((f"{name} not applied: the table has no {item} column", False))
            continue
        old_values = values[item].copy()  # all pairs apply at once: {1: 2, 2: 1} swaps
        done = []
        for old, new in pairs:
            hit = old_values == old
            values[item][hit] = new
            done.append(f"{old:g} -> {new:g} on {_n_rows(hit)}")
        recodings.append((f"{name} recoded {item} " + ", ".join(done), False))

    evid101 = values["EVID"] == 101
    if evid101.any():
        values["EVID"] = np.where(evid101, 1.0, values["EVID"])
        values["CMT"] = np.where(evid101 & (values["CMT"] == 0), 1.0, values["CMT"])
        recodings.append(
            (
                f"EVID=101 (rxode2's 'classic' code for a bolus into compartment 1) was read as "
                f"EVID=1 with CMT=1 on {_n_rows(evid101)}; NONMEM writes such doses as "
                "EVID=1, CMT=1",
                True,
            )
        )
    if "MDV" not in raw:
        values["MDV"] = (values["EVID"] != 0).astype(np.float64)

    ids = None
    if "ID" in cols:
        ids = frame[cols["ID"]].reset_index(drop=True)
        ids = ids.where(~_blank(ids))
    if reset_on_time_decrease and ids is not None:
        time = pd.Series(values["TIME"])
        prev = time.groupby(ids.astype(object).fillna("<missing>").to_numpy()).shift()
        restart = (time < prev).to_numpy() & (values["EVID"] == 1)
        if restart.any():
            values["EVID"] = np.where(restart, 4.0, values["EVID"])
            recodings.append(
                (
                    f"reset_on_time_decrease: on {_n_rows(restart)}, dose records where TIME "
                    "decreases were read as EVID=4 (reset and dose)",
                    False,
                )
            )
    table = Table(
        index=frame.index,
        available=tuple(map(str, frame.columns)),
        names={item: str(col) for item, col in cols.items()},
        duplicates=duplicates,
        ids=ids,
        values=pd.DataFrame(values),
        nonnumeric=nonnumeric,
        raw=raw,
        evid101=evid101,
    )
    return table, recodings


def _covariate_columns(frame: pd.DataFrame, covariates) -> tuple[list[Any], list[Violation]]:
    """The input columns to keep as covariates, and the names in ``covariates`` that are not."""
    candidates = [c for c in frame.columns if str(c).strip().upper() not in RESERVED_ITEMS]
    if covariates is None:
        return candidates, []
    if isinstance(covariates, str):
        covariates = [covariates]
    by_name = {str(c): c for c in candidates}
    available = ", ".join(by_name) or "none"
    problems = []
    for name in covariates:
        if name in by_name:
            continue
        if str(name).strip().upper() in RESERVED_ITEMS:
            what = f"{name!r} is a reserved NONMEM data item, not a covariate"
        else:
            close = [c for c in by_name if c.lower() == str(name).lower()]
            hint = f"; did you mean {close[0]!r}?" if close else ""
            what = f"{name!r} is not a column of the table{hint}"
        problems.append(
            Violation(
                "covariates",
                str(name),
                (),
                what,
                f"name covariate columns as written in the input; the covariate columns are: "
                f"{available}",
            )
        )
    return [by_name[name] for name in covariates if name in by_name], problems


# ---------------------------------------------------------------------------------------
# padding


def _slots(subject: np.ndarray) -> np.ndarray:
    """Position of each event within its subject, for non-decreasing ``subject``."""
    return np.arange(len(subject)) - np.searchsorted(subject, subject, side="left")


def _pad(subject, slot, values, shape, dtype, fill=0):
    out = np.full(shape, fill, dtype=dtype)
    out[subject, slot] = values
    return out


def _to_dataset(
    frame: pd.DataFrame,
    table: Table,
    cov_columns: list,
    notes: list[str],
    source: str | None = None,
    fill: str | None = None,
) -> Dataset:
    codes, uniques = pd.factorize(table.ids, sort=False)
    # Subjects are contiguous (validated), so codes never decrease along the rows.
    ids = np.asarray(uniques.tolist())
    n_id = len(ids)
    time, evid = table.num("TIME"), table.num("EVID")

    # Observations, in record order.
    obs = np.flatnonzero(table.obs)
    o_sub = codes[obs]
    o_slot = _slots(o_sub)
    n_obs = max(1, int(np.bincount(o_sub, minlength=n_id).max(initial=0)))
    if pd.api.types.is_integer_dtype(frame.index) and frame.index.is_unique:
        labels = frame.index.to_numpy(np.int64)
    else:
        labels = np.arange(len(frame), dtype=np.int64)
        notes.append(
            "the input's index is not unique integers: obs_row holds 0-based row "
            "positions (use DataFrame.iloc)"
        )
    o_shape = (n_id, n_obs)

    # Segments: a reset (EVID 3 or 4) starts a new one; numbered from 0 within a subject.
    reset = np.isin(evid, (3, 4)).astype(np.int64)
    cum = np.cumsum(reset)
    start = np.searchsorted(codes, codes, side="left")  # each row's subject's first row
    seg = cum - cum[start] + reset[start]  # resets since that row, itself included

    # Doses: ADDL/II expanded into single events, then sorted by time within a segment.
    dose = np.flatnonzero(np.isin(evid, (1, 4)))
    reps = table.num("ADDL")[dose].astype(np.int64) + 1
    rows = np.repeat(dose, reps)
    k = np.arange(len(rows)) - np.repeat(np.cumsum(reps) - reps, reps)
    d_time = time[rows] + k * table.num("II")[rows]
    d_sub = codes[rows]
    d_seg = seg[rows]
    order = np.lexsort((d_time, d_seg, d_sub))  # stable: equal times keep the record order
    rows, d_time, d_sub, d_seg, k = rows[order], d_time[order], d_sub[order], d_seg[order], k[order]
    # the ADDL repeats (k > 0) of a steady-state record are ordinary doses
    d_ss = np.where(k == 0, table.num("SS")[rows], 0.0)
    d_ii = np.where(k == 0, table.num("II")[rows], 0.0)
    d_slot = _slots(d_sub)
    n_dose = max(1, int(np.bincount(d_sub, minlength=n_id).max(initial=0)))
    d_shape = (n_id, n_dose)

    dvid_codes, dvid_levels = _dvid(frame, table, obs)
    cens = table.num("CENS")[obs] == 1
    lloq = _lloq(table, obs, cens, dvid_codes, dvid_levels, notes)

    n_seg = int(seg.max(initial=0)) + 1
    covs, levels, varying, seg_covs, seg_varying, per_record = _covariates(
        frame, cov_columns, codes, n_id, seg, n_seg, fill, notes
    )
    if varying:
        between = [c for c in varying if c not in seg_varying]
        text = f"covariates {', '.join(varying)} change within subjects"
        if seg_varying:
            text += (
                f"; {', '.join(seg_varying)} within segments: a model that declares them uses "
                "them as time-varying (piecewise constant, each record's value from its TIME "
                "on: last observation carried forward); declare a baseline column instead to "
                "use the first value"
            )
        if between:
            text += (
                f"; {', '.join(between)} only between segments (reset records): the value at "
                "the start of each segment is used"
            )
        notes.append(text)
    # every record (all EVIDs), in record order, for time-varying covariates and messages
    r_slot = _slots(codes)
    r_shape = (n_id, max(1, int(np.bincount(codes, minlength=n_id).max(initial=0))))
    return Dataset(
        ids=ids,
        dose_time=_pad(d_sub, d_slot, d_time, d_shape, np.float64),
        dose_amt=_pad(d_sub, d_slot, table.num("AMT")[rows], d_shape, np.float64),
        dose_rate=_pad(d_sub, d_slot, table.num("RATE")[rows], d_shape, np.float64),
        dose_cmt=_pad(d_sub, d_slot, table.num("CMT")[rows], d_shape, np.int32),
        dose_mask=_pad(d_sub, d_slot, True, d_shape, bool, False),
        dose_ss=_pad(d_sub, d_slot, d_ss, d_shape, np.int32),
        dose_ii=_pad(d_sub, d_slot, d_ii, d_shape, np.float64),
        obs_time=_pad(o_sub, o_slot, time[obs], o_shape, np.float64),
        obs_dv=_pad(o_sub, o_slot, table.num("DV")[obs], o_shape, np.float64),
        obs_cmt=_pad(o_sub, o_slot, table.num("CMT")[obs], o_shape, np.int32),
        obs_mask=_pad(o_sub, o_slot, True, o_shape, bool, False),
        obs_row=_pad(o_sub, o_slot, labels[obs], o_shape, np.int64, -1),
        covariates=covs,
        covariate_levels=levels,
        notes=tuple(notes),
        obs_dvid=_pad(o_sub, o_slot, dvid_codes, o_shape, np.int32),
        dvid_levels=dvid_levels,
        obs_cens=_pad(o_sub, o_slot, cens, o_shape, bool, False),
        obs_lloq=_pad(o_sub, o_slot, lloq, o_shape, np.float64, np.nan),
        dose_seg=_pad(d_sub, d_slot, d_seg, d_shape, np.int32),
        obs_seg=_pad(o_sub, o_slot, seg[obs], o_shape, np.int32),
        segment_covariates=seg_covs,
        segment_varying=tuple(seg_varying),
        dose_row=_pad(d_sub, d_slot, labels[rows], d_shape, np.int64, -1),
        record_time=_pad(codes, r_slot, time, r_shape, np.float64),
        record_seg=_pad(codes, r_slot, seg, r_shape, np.int32),
        record_row=_pad(codes, r_slot, labels, r_shape, np.int64, -1),
        record_mask=_pad(codes, r_slot, True, r_shape, bool, False),
        record_covariates={
            name: _pad(codes, r_slot, per_record[name], r_shape, np.float64, np.nan)
            for name in seg_varying
        },
        source=source,
    )


def _dvid(frame, table: Table, obs: np.ndarray) -> tuple[np.ndarray, tuple[str, ...]]:
    """Integer code of each observation's DVID, and the level labels (strings)."""
    if not table.has("DVID"):
        return np.zeros(len(obs), np.int64), ()
    values = frame[table.names["DVID"]].reset_index(drop=True).iloc[obs]
    nums, nonnum = _parse_numeric(values)
    if not nonnum.any() and not np.isnan(nums).any():
        labels = [f"{v:g}" for v in nums]
        uniq = sorted(set(nums.tolist()))
        levels = tuple(f"{v:g}" for v in uniq)
    else:
        labels = [str(v).strip() for v in values.astype(object)]
        levels = tuple(sorted(set(labels)))
    lookup = {level: k for k, level in enumerate(levels)}
    return np.asarray([lookup[x] for x in labels], np.int64), levels


def _lloq(table, obs, cens, dvid_codes, dvid_levels, notes) -> np.ndarray:
    """The LLOQ of each observation (NaN where unknown); see read_nonmem's Notes."""
    if table.has("LLOQ"):
        return table.num("LLOQ")[obs].astype(np.float64)
    lloq = np.full(len(obs), np.nan)
    if not cens.any():
        return lloq
    dv = table.num("DV")[obs]
    lloq[cens] = dv[cens]
    for code in np.unique(dvid_codes[cens]):
        same = dvid_codes == code
        limit = float(np.min(dv[cens & same]))
        lloq[same & ~cens] = limit
        which = f" of DVID {dvid_levels[code]}" if dvid_levels else ""
        notes.append(
            f"LLOQ of the uncensored observations{which} taken as {limit:g}, the smallest "
            "DV of its CENS=1 rows (no LLOQ column)"
        )
    return lloq


def _covariates(frame, columns, codes, n_id, seg, n_seg, fill=None, notes=None):
    """Baseline value of each covariate column, levels of the non-numeric ones, the names
    that vary within subjects; the value at each segment's first record, the names that
    vary within segments, and every record's value (after ``fill``)."""
    first = np.searchsorted(codes, np.arange(n_id))
    unit = codes * n_seg + seg
    units, seg_first = np.unique(unit, return_index=True)
    covs, levels, varying, seg_covs, seg_varying, per_record = {}, {}, [], {}, [], {}
    filled = {}
    for col in columns:
        name = str(col)
        series = frame[col].reset_index(drop=True)
        values, nonnumeric = _parse_numeric(series)
        if nonnumeric.any():
            present = ~_blank(series)
            text = series.astype(object)[present].map(str)
            levels[name] = tuple(sorted(set(text)))
            lookup = {level: float(k) for k, level in enumerate(levels[name])}
            values = np.full(len(series), np.nan)
            values[present] = text.map(lookup).to_numpy(np.float64)
        if fill == "locf" and np.isnan(values).any():
            by_subject = pd.Series(values).groupby(codes)
            new = by_subject.ffill().groupby(codes).bfill().to_numpy(np.float64)
            n_filled = int(np.sum(np.isnan(values) & ~np.isnan(new)))
            if n_filled:
                filled[name] = n_filled
            values = new
        per_record[name] = values
        covs[name] = values[first]
        by_seg = np.full((n_id, n_seg), np.nan)
        by_seg[units // n_seg, units % n_seg] = values[seg_first]
        seg_covs[name] = by_seg
        if (pd.Series(values).groupby(codes).nunique(dropna=False) > 1).any():
            varying.append(name)
            if (pd.Series(values).groupby(unit).nunique(dropna=False) > 1).any():
                seg_varying.append(name)
    if filled and notes is not None:
        notes.append(
            "fill_covariates='locf' filled missing covariate values within subjects: "
            + ", ".join(f"{k} on {_n_rows(np.ones(v, bool))}" for k, v in filled.items())
        )
    return covs, levels, varying, seg_covs, seg_varying, per_record
