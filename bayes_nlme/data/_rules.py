"""Validation rules for NONMEM-style datasets, as a declarative list.

Every rule is a :class:`Rule`: a name, what a valid dataset satisfies, how to fix a
violation, and a check that looks at the whole parsed table (:class:`Table`) and yields the
offending rows with a message quoting the values. The reader runs :data:`RULES` once,
collects every :class:`Violation` and raises one :class:`DatasetError` that lists them all,
so a user fixes a dataset in one round instead of one error at a time.

A rule skips columns that are absent (the ``required-columns`` rule reports those) and
values that are not numbers (the ``numeric`` rule reports those), so one bad cell is reported
once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .._errors import BayesNLMEError

__all__ = ["RULES", "DatasetError", "Rule", "Table", "Violation", "check"]

#: Reserved NONMEM data items read as numbers, in the order they are reported.
NUMERIC_ITEMS = (
    "TIME",
    "DV",
    "AMT",
    "EVID",
    "MDV",
    "CMT",
    "RATE",
    "II",
    "ADDL",
    "SS",
    "CENS",
    "LLOQ",
)
#: All reserved items. DVID (observation type: numbers or labels) is never a covariate.
RESERVED_ITEMS = ("ID", *NUMERIC_ITEMS, "DVID")

EVID_CODES = (0, 1, 2, 3, 4)
SS_CODES = (0, 1, 2)


@dataclasses.dataclass(frozen=True)
class Violation:
    """One problem found in a dataset.

    Attributes
    ----------
    rule : str
        Name of the rule that found it (see :data:`RULES`), e.g. ``"time-order"``.
    column : str
        The column concerned, as written in the input (e.g. ``"time"``), or the reserved
        item's name (e.g. ``"DV"``) when the column is absent.
    rows : tuple
        Row labels (the input table's index labels) of the offending records; empty when the
        problem concerns the whole column.
    message : str
        What is wrong, quoting the offending values.
    fix : str
        How to fix it.
    """

    rule: str
    column: str
    rows: tuple[Hashable, ...]
    message: str
    fix: str

    def describe(self, *, csv: bool = False) -> str:
        """One line: column, rows, what is wrong, and the fix.

        Parameters
        ----------
        csv : bool
            The table was read from a CSV file with a default index: also give the CSV line
            numbers (row label + 2, for the header line and 0-based labels).
        """
        where = self.column
        if self.rows:
            where += ", " + _rows_text(self.rows, csv=csv)
        return f"{where}: {self.message}. Fix: {self.fix}"

    def __str__(self) -> str:
        return self.describe()


class DatasetError(BayesNLMEError, ValueError):
    """A dataset that cannot be read as a NONMEM-style dataset.

    Attributes
    ----------
    violations : tuple of Violation
        Every problem found (empty when the file itself could not be read).
    source : str or None
        The CSV path the table was read from, or None for a DataFrame.
    """

    def __init__(
        self, message: str, violations: Sequence[Violation] = (), source: str | None = None
    ) -> None:
        super().__init__(message)
        self.violations = tuple(violations)
        self.source = source

    def __reduce__(self):  # keep the violations when pickled (e.g. across processes)
        return (type(self), (str(self), self.violations, self.source))

    @classmethod
    def from_violations(
        cls, violations: Sequence[Violation], source: str | None = None
    ) -> DatasetError:
        """Build the error listing all ``violations``, one numbered line each."""
        where = f"the CSV file {source!r}" if source is not None else "the DataFrame"
        n = len(violations)
        head = (
            f"{n} problem{'s' if n != 1 else ''} in {where} "
            "(all are listed; rows are the table's index labels):"
        )
        csv = source is not None
        lines = [f"  {k}. {v.describe(csv=csv)}" for k, v in enumerate(violations, 1)]
        return cls("\n".join([head, *lines]), violations, source)


@dataclasses.dataclass(frozen=True, eq=False)
class Table:
    """The input table as the rules see it: columns mapped, values parsed, codes recoded.

    Attributes
    ----------
    index : pandas.Index
        The input's row labels.
    available : tuple of str
        All column names of the input, as written.
    names : dict of str to str
        Reserved item (e.g. ``"TIME"``) to the input column matched to it (e.g. ``"time"``).
    duplicates : dict of str to tuple of str
        Reserved items matched by more than one column (the first one is used).
    ids : pandas.Series or None
        The ID column as given (None when absent).
    values : pandas.DataFrame
        float64 column per item of :data:`NUMERIC_ITEMS`, after NONMEM defaults for absent
        columns and missing dose items, and after recodings (``evid_map``, ``ss_map``,
        EVID 101). NaN marks a missing or non-numeric value.
    nonnumeric : dict of str to ndarray of bool
        Per numeric item, the cells that were neither a number nor missing (all False for
        an absent column).
    raw : dict of str to pandas.Series
        Per present numeric item, the column as given (to quote values in messages).
    evid101 : ndarray of bool
        Rows recoded from EVID=101 to EVID=1.
    """

    index: pd.Index
    available: tuple[str, ...]
    names: Mapping[str, str]
    duplicates: Mapping[str, tuple[str, ...]]
    ids: pd.Series | None
    values: pd.DataFrame
    nonnumeric: Mapping[str, np.ndarray]
    raw: Mapping[str, pd.Series]
    evid101: np.ndarray

    def has(self, item: str) -> bool:
        """Whether the input has a column for reserved ``item``."""
        return item in self.names

    def label(self, item: str) -> str:
        """The input's name for ``item`` (the item itself when absent)."""
        return self.names.get(item, item)

    def num(self, item: str) -> np.ndarray:
        """Parsed values of ``item``, float64 with NaN for missing or non-numeric."""
        return self.values[item].to_numpy()

    def missing(self, item: str) -> np.ndarray:
        """Cells of ``item`` that are missing (NaN, empty or "."), not non-numeric."""
        return np.isnan(self.num(item)) & ~self.nonnumeric[item]

    @property
    def id_missing(self) -> np.ndarray:
        return self.ids.isna().to_numpy() if self.ids is not None else np.zeros(len(self), bool)

    @property
    def dose(self) -> np.ndarray:
        """Dose records: EVID 1 or 4."""
        return np.isin(self.num("EVID"), (1, 4))

    @property
    def obs(self) -> np.ndarray:
        """Observation records: EVID 0 and MDV 0."""
        return (self.num("EVID") == 0) & (self.num("MDV") == 0)

    def blocks(self) -> np.ndarray:
        """Block number of each row: a new block starts where ID changes (-1: ID missing)."""
        out = np.full(len(self), -1)
        if self.ids is None:
            return out
        keep = ~self.id_missing
        ids = self.ids[keep]
        out[keep] = np.cumsum((ids != ids.shift()).to_numpy()) - 1
        return out

    def quote(self, item: str, mask: np.ndarray, limit: int = 4) -> str:
        """The distinct values of ``item`` on ``mask`` rows as given, e.g. ``"99, 1"``."""
        seen: list[str] = []
        col = self.raw[item] if item in self.raw else self.values[item]
        for v in col[mask]:
            text = "missing" if _is_missing(v) else _fmt(v)
            if text not in seen:
                seen.append(text)
        more = ", ..." if len(seen) > limit else ""
        return ", ".join(seen[:limit]) + more

    def rows(self, mask: np.ndarray) -> tuple[Hashable, ...]:
        return tuple(self.index[np.asarray(mask, bool)].tolist())

    def __len__(self) -> int:
        return len(self.index)


#: What a check yields: the reserved item concerned, the offending rows (a boolean mask over
#: the table, or None for the whole column) and what is wrong.
Finding = tuple[str, np.ndarray | None, str]


@dataclasses.dataclass(frozen=True)
class Rule:
    """A named dataset check.

    Attributes
    ----------
    name : str
        Short identifier, e.g. ``"time-order"`` (the ``rule`` of its violations).
    summary : str
        What a valid dataset satisfies, in a few words.
    fix : str
        How to fix a violation; ``{column}`` is replaced by the column's name.
    check : callable
        ``check(table)`` yields ``(item, rows, message)`` findings (see :data:`Finding`);
        a finding with an empty row mask is not a violation.
    """

    name: str
    summary: str
    fix: str
    check: Callable[[Table], Iterable[Finding]]

    def __call__(self, table: Table) -> list[Violation]:
        out = []
        for item, mask, message in self.check(table):
            if mask is not None and not np.any(mask):
                continue
            column = table.label(item)
            rows = table.rows(mask) if mask is not None else ()
            out.append(
                Violation(self.name, column, rows, message, self.fix.replace("{column}", column))
            )
        return out


def check(table: Table, rules: Sequence[Rule] | None = None) -> list[Violation]:
    """Run every rule over ``table``; return all violations, in rule order."""
    return [v for rule in (RULES if rules is None else rules) for v in rule(table)]


# ---------------------------------------------------------------------------------------
# helpers


def _is_missing(v: Any) -> bool:
    return (
        v is None
        or v is pd.NA
        or (isinstance(v, float) and np.isnan(v))
        or (isinstance(v, str) and v.strip() in ("", "."))
    )


def _fmt(v: Any) -> str:
    if isinstance(v, str):
        return repr(v)
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    return str(v)


def _rows_text(rows: Sequence[Hashable], *, csv: bool) -> str:
    """``rows 5, 6 (CSV lines 7, 8)``, or ``rows 3, 4, 5, ... (120 rows)`` when long."""
    n = len(rows)
    shown = list(rows) if n <= 5 else list(rows[:3])
    etc = ", ..." if n > 5 else ""
    text = f"row{'s' if n != 1 else ''} " + ", ".join(map(str, shown)) + etc
    extra = [f"{n} rows"] if n > 5 else []
    if csv:
        lines = ", ".join(str(r + 2) for r in shown) + etc
        extra.append(f"CSV line{'s' if n != 1 else ''} {lines}")
    return text + (f" ({'; '.join(extra)})" if extra else "")


def _subjects(table: Table, mask: np.ndarray, limit: int = 4) -> str:
    """``subject 3``, or ``2 subjects (IDs 3, 7)``."""
    ids = [_fmt(i) for i in dict.fromkeys(table.ids[mask].tolist())]
    if len(ids) == 1:
        return f"subject {ids[0]}"
    more = ", ..." if len(ids) > limit else ""
    return f"{len(ids)} subjects (IDs {', '.join(ids[:limit])}{more})"


# ---------------------------------------------------------------------------------------
# the checks, in the order of RULES


def _required_columns(t: Table) -> Iterator[Finding]:
    needed = {"ID": "the subject identifier", "TIME": "the record time"}
    if t.obs.any():
        needed["DV"] = "the observed value; the table has observation records"
    if t.has("EVID") and t.dose.any():
        needed["AMT"] = "the dose amount; the table has EVID 1 dose records"
    for item, what in needed.items():
        if not t.has(item):
            msg = f"required column {item} ({what}) is missing; the columns are: "
            yield item, None, msg + ", ".join(t.available)


def _ambiguous_columns(t: Table) -> Iterator[Finding]:
    for item, cols in t.duplicates.items():
        msg = f"columns {', '.join(map(repr, cols))} all match the reserved item {item}"
        yield item, None, f"{msg}; {cols[0]!r} was used"


def _numeric(t: Table) -> Iterator[Finding]:
    for item in NUMERIC_ITEMS:
        bad = t.nonnumeric[item]
        yield item, bad, f"{t.label(item)} must be numeric, found {t.quote(item, bad)}"


def _id_missing(t: Table) -> Iterator[Finding]:
    yield "ID", t.id_missing, "ID is missing"


def _time_missing(t: Table) -> Iterator[Finding]:
    if t.has("TIME"):
        yield "TIME", t.missing("TIME"), "TIME is missing"


def _time_order(t: Table) -> Iterator[Finding]:
    if not (t.has("TIME") and t.ids is not None):
        return
    time = pd.Series(t.num("TIME"))
    block = pd.Series(t.blocks())
    ok = time.notna() & (block >= 0)
    prev = time[ok].groupby(block[ok]).shift()  # previous timed record of the same block
    down = np.zeros(len(t), bool)
    down[prev.index[(time[prev.index] < prev).to_numpy()]] = True
    down &= ~np.isin(t.num("EVID"), (3, 4))  # time may restart at a reset (NONMEM)
    if down.any():
        i = int(np.flatnonzero(down)[0])
        example = f"row {t.index[i]}: {_fmt(time[i])} after {_fmt(prev[i])}"
        yield "TIME", down, f"TIME decreases within {_subjects(t, down)} ({example})"


def _id_contiguous(t: Table) -> Iterator[Finding]:
    if t.ids is None:
        return
    block = t.blocks()
    keep = block >= 0
    starts = np.zeros(len(t), bool)
    starts[keep] = np.r_[True, np.diff(block[keep]) != 0]
    again = np.zeros(len(t), bool)
    again[np.flatnonzero(starts)[t.ids[starts].duplicated().to_numpy()]] = True
    if again.any():
        msg = (
            f"the records of {_subjects(t, again)} are split into separate blocks (the rows "
            "given start a later block); NONMEM would read each block as another subject"
        )
        yield "ID", again, msg


def _evid_code(t: Table) -> Iterator[Finding]:
    if t.has("EVID"):
        bad = ~np.isin(t.num("EVID"), EVID_CODES) & ~t.nonnumeric["EVID"]
        yield "EVID", bad, f"EVID must be a NONMEM event code 0-4, found {t.quote('EVID', bad)}"


def _cens(t: Table) -> Iterator[Finding]:
    if not t.has("CENS"):
        return
    cens = t.num("CENS")
    bad = t.obs & ~np.isin(cens, (0, 1)) & ~t.nonnumeric["CENS"]
    msg = "CENS must be 0 (observed) or 1 (below the LLOQ, left-censored), found"
    yield "CENS", bad, f"{msg} {t.quote('CENS', bad)}"
    off = ~t.obs & ~np.isnan(cens) & (cens != 0)
    yield "CENS", off, f"CENS is {t.quote('CENS', off)} on records that are not observations"


def _lloq(t: Table) -> Iterator[Finding]:
    if not t.has("LLOQ"):
        return
    censored = t.obs & (t.num("CENS") == 1)
    bad = censored & ~np.isfinite(t.num("LLOQ")) & ~t.nonnumeric["LLOQ"]
    yield "LLOQ", bad, "LLOQ is missing on censored observations (CENS=1)"


def _evid101_cmt(t: Table) -> Iterator[Finding]:
    if t.has("CMT"):
        bad = t.evid101 & ~np.isin(t.num("CMT"), (0, 1)) & ~t.nonnumeric["CMT"]
        msg = "EVID=101 is rxode2's code for a bolus into compartment 1, but CMT is"
        yield "CMT", bad, f"{msg} {t.quote('CMT', bad)} on these rows"


def _mdv_code(t: Table) -> Iterator[Finding]:
    if t.has("MDV"):
        bad = ~np.isin(t.num("MDV"), (0, 1)) & ~t.nonnumeric["MDV"]
        yield "MDV", bad, f"MDV must be 0 or 1, found {t.quote('MDV', bad)}"


def _mdv_event(t: Table) -> Iterator[Finding]:
    if t.has("MDV"):
        bad = np.isin(t.num("EVID"), (1, 2, 3, 4)) & (t.num("MDV") == 0)
        derived = "" if t.has("EVID") else " (no EVID column: EVID=1 comes from AMT > 0)"
        msg = f"MDV=0 on dose or other non-observation records (EVID 1-4){derived}"
        yield "MDV", bad, f"{msg}; NONMEM requires MDV=1 there"


def _dv_missing(t: Table) -> Iterator[Finding]:
    if t.has("DV"):
        msg = "DV is missing on observation records (EVID=0, MDV=0)"
        yield "DV", t.obs & t.missing("DV"), msg


def _ss_constant_infusion(t: Table) -> np.ndarray:
    """Steady-state constant-infusion records: SS 1/2, II=0, AMT=0, RATE > 0 (EVID 1)."""
    return (
        t.dose
        & np.isin(t.num("SS"), (1, 2))
        & (t.num("II") == 0)
        & (t.num("AMT") == 0)
        & (t.num("RATE") > 0)
    )


def _dose_amount(t: Table) -> Iterator[Finding]:
    if t.has("AMT"):
        # a steady-state constant infusion has AMT=0 by design; ss-infusion reports it
        bad = t.dose & (t.missing("AMT") | (t.num("AMT") <= 0)) & ~_ss_constant_infusion(t)
        msg = "AMT must be positive on dose records (EVID 1), found"
        yield "AMT", bad, f"{msg} {t.quote('AMT', bad)}"


def _rate(t: Table) -> Iterator[Finding]:
    rate = t.num("RATE")
    bad = t.dose & (rate < 0) & ~np.isin(rate, (-1, -2))
    msg = (
        "RATE must be 0 (bolus), a positive infusion rate, -1 (rate modeled by R<n>) or "
        "-2 (duration modeled by D<n>), found"
    )
    yield "RATE", bad, f"{msg} {t.quote('RATE', bad)}"


def _addl(t: Table) -> Iterator[Finding]:
    addl = t.num("ADDL")
    bad = t.dose & ~t.nonnumeric["ADDL"] & ((addl < 0) | (addl != np.round(addl)))
    msg = "ADDL (number of additional doses) must be a non-negative integer, found"
    yield "ADDL", bad, f"{msg} {t.quote('ADDL', bad)}"


def _addl_ii(t: Table) -> Iterator[Finding]:
    ii = t.num("II")
    bad = t.dose & (t.num("ADDL") > 0) & ~(ii > 0) & ~t.nonnumeric["II"]
    found = t.quote("II", bad) if t.has("II") else "no II column"
    yield "II", bad, f"ADDL > 0 needs a positive dosing interval II, found {found}"


def _ii(t: Table) -> Iterator[Finding]:
    bad = t.dose & (t.num("II") < 0)
    yield "II", bad, f"II (dosing interval) must not be negative, found {t.quote('II', bad)}"


def _ss_code(t: Table) -> Iterator[Finding]:
    bad = ~np.isin(t.num("SS"), SS_CODES) & ~t.nonnumeric["SS"]
    msg = "SS must be a NONMEM steady-state code 0, 1 or 2, found"
    yield "SS", bad, f"{msg} {t.quote('SS', bad)}"


def _ss_infusion(t: Table) -> Iterator[Finding]:
    msg = (
        "the steady-state constant infusion (SS=1 or 2 with II=0, AMT=0, RATE > 0) is not "
        "supported yet"
    )
    yield "SS", _ss_constant_infusion(t), msg


def _ss_ii(t: Table) -> Iterator[Finding]:
    ss = t.num("SS")
    bad = (
        t.dose
        & np.isin(ss, (1, 2))
        & ~(t.num("II") > 0)
        & ~t.nonnumeric["II"]
        & ~_ss_constant_infusion(t)
    )
    found = t.quote("II", bad) if t.has("II") else "no II column"
    msg = "a steady-state dose (SS=1 or 2) needs a positive dosing interval II, found"
    yield "II", bad, f"{msg} {found}"


def _cmt(t: Table) -> Iterator[Finding]:
    cmt = t.num("CMT")
    bad = (t.dose | t.obs) & ~t.nonnumeric["CMT"] & ((cmt < 0) | (cmt != np.round(cmt)))
    msg = (
        "CMT must be a compartment number 1, 2, ... (or 0 for the model's default) on dose "
        "and observation records, found"
    )
    yield "CMT", bad, f"{msg} {t.quote('CMT', bad)}"


def _nondose_items(t: Table) -> Iterator[Finding]:
    nondose = np.isin(t.num("EVID"), (0, 2, 3))
    rule = "NONMEM requires the dose items AMT, RATE, II, ADDL, SS to be 0 there"
    for item in ("AMT", "RATE", "II", "ADDL", "SS"):
        v = t.num(item)
        bad = nondose & ~np.isnan(v) & (v != 0)
        if item == "SS":  # other SS values are reported by ss-code
            bad &= np.isin(v, SS_CODES)
        msg = (
            f"{t.label(item)} is {t.quote(item, bad)} on records that are not doses (EVID 0, 2, 3)"
        )
        yield item, bad, f"{msg}; {rule}"


_SORT = "sort the records by ID, then TIME (a stable sort keeps the record order)"
_OCCASIONS = (
    "if time restarts at a new occasion, start the occasion with a reset record: EVID=4 on "
    "its first dose (reset and dose) or an EVID=3 record (reset); "
    "read_nonmem(..., reset_on_time_decrease=True) reads a dose where TIME decreases as EVID=4"
)

#: The rules :func:`bayes_nlme.read_nonmem` applies, in the order violations are reported.
RULES: tuple[Rule, ...] = (
    Rule(
        "required-columns",
        "ID and TIME are present; DV if there are observations; AMT if there are doses",
        "name the column {column} (names are matched case-insensitively)",
        _required_columns,
    ),
    Rule(
        "ambiguous-columns",
        "no two columns match one reserved item (names are matched case-insensitively)",
        "rename or drop the extra columns",
        _ambiguous_columns,
    ),
    Rule(
        "numeric",
        "reserved items TIME, DV, AMT, EVID, MDV, CMT, RATE, II, ADDL, SS are numbers",
        "write numbers; write a missing value as an empty cell or '.'",
        _numeric,
    ),
    Rule("id-missing", "every record has an ID", "give every record its subject's ID", _id_missing),
    Rule(
        "time-missing",
        "every record has a TIME",
        "give every record its time (usually h since the first dose)",
        _time_missing,
    ),
    Rule(
        "time-order",
        "TIME does not decrease within a subject",
        f"{_SORT}; {_OCCASIONS}",
        _time_order,
    ),
    Rule(
        "id-contiguous",
        "each subject's records form one block",
        f"{_SORT}, or give each block its own ID if they are different subjects",
        _id_contiguous,
    ),
    Rule(
        "evid-code",
        "EVID is a NONMEM event code 0-4",
        "use 0 (observation), 1 (dose), 2 (other event), 3 (reset) or 4 (reset and dose); "
        "recode another tool's codes with "
        "read_nonmem(..., evid_map={old: new})",
        _evid_code,
    ),
    Rule(
        "evid101-cmt",
        "EVID=101 doses go to CMT 1 (or 0)",
        "write these doses as EVID=1 with their CMT, or pass evid_map={101: 1} to keep CMT "
        "as written",
        _evid101_cmt,
    ),
    Rule(
        "mdv-code",
        "MDV is 0 or 1",
        "use MDV=0 for an observation and MDV=1 for any other record",
        _mdv_code,
    ),
    Rule(
        "mdv-event",
        "MDV is 1 on non-observation records (EVID 1-4)",
        "set MDV=1; if the record also holds a measurement, split it into an observation "
        "record (EVID=0, MDV=0) and a dose record (EVID=1, MDV=1) at the same TIME",
        _mdv_event,
    ),
    Rule(
        "dv-missing",
        "observation records have a DV",
        "set MDV=1 on records without a measurement, or drop them",
        _dv_missing,
    ),
    Rule(
        "dose-amount",
        "dose records have AMT > 0",
        "give each dose its amount, or set EVID=0 or 2 if the record is not a dose",
        _dose_amount,
    ),
    Rule(
        "rate",
        "RATE on dose records is 0 (bolus), positive (zero-order infusion), -1 (modeled "
        "rate) or -2 (modeled duration)",
        "set RATE=0 for a bolus or oral dose, RATE = AMT / duration for an infusion, or -1/-2 "
        "with the model parameter R<n> (rate) / D<n> (duration) of the dose's CMT n",
        _rate,
    ),
    Rule(
        "addl",
        "ADDL on dose records is a non-negative integer",
        "write the number of additional doses (0 for none)",
        _addl,
    ),
    Rule(
        "addl-ii",
        "a dose with ADDL > 0 has II > 0",
        "give II, the time between the additional doses (same unit as TIME)",
        _addl_ii,
    ),
    Rule(
        "ii",
        "II on dose records is not negative",
        "give the dosing interval as a positive time (0 for a single dose)",
        _ii,
    ),
    Rule(
        "ss-code",
        "SS is a NONMEM steady-state code 0, 1 or 2",
        "recode placeholders with read_nonmem(..., ss_map={old: new}); e.g. the ACOP 2016 "
        "validation sets write SS=99 for 'not part of the steady-state subset': read them "
        "with ss_map={99: 0}",
        _ss_code,
    ),
    Rule(
        "ss-ii",
        "a steady-state dose (SS 1 or 2) has II > 0",
        "give II, the interval of the implied doses before the steady-state dose (same unit "
        "as TIME), or set SS=0 for an ordinary dose",
        _ss_ii,
    ),
    Rule(
        "ss-infusion",
        "no steady-state constant infusion, SS 1/2 with II=0, AMT=0, RATE > 0 (not supported yet)",
        "write it as a steady-state infusion over one interval: AMT = RATE * II with a "
        "chosen II > 0 (e.g. 24), SS=1, and ADDL = the number of further intervals the "
        "infusion keeps running",
        _ss_infusion,
    ),
    Rule(
        "cens",
        "CENS is 0 or 1 on observation records, 0 or missing elsewhere",
        "write CENS=1 on observations below the lower limit of quantification (DV or the "
        "LLOQ column holds the limit), 0 otherwise; upper-limit censoring (CENS=-1) is not "
        "supported",
        _cens,
    ),
    Rule(
        "lloq",
        "censored observations have an LLOQ when the table has an LLOQ column",
        "give the limit of quantification on every CENS=1 row",
        _lloq,
    ),
    Rule(
        "cmt",
        "CMT is a non-negative integer on dose and observation records",
        "write the 1-based compartment number (NONMEM's CMT)",
        _cmt,
    ),
    Rule(
        "nondose-items",
        "AMT, RATE, II, ADDL, SS are 0 on non-dose records (EVID 0, 2)",
        "set {column} to 0 on these records, or EVID=1 if they are doses",
        _nondose_items,
    ),
)
