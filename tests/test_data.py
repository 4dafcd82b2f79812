"""Tests of bayes_nlme.data: validation rules, NONMEM conventions, padding, real datasets."""

from __future__ import annotations

import dataclasses
import doctest
import pickle
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bayes_nlme import datasets
from bayes_nlme.data import Dataset, DatasetError, Violation, read_nonmem
from bayes_nlme.data import _read as read_module
from bayes_nlme.data._rules import RULES

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def small(**columns) -> pd.DataFrame:
    """Two subjects, one dose and two observations each; ``columns`` replace or add."""
    df = pd.DataFrame(
        {
            "ID": [1, 1, 1, 2, 2, 2],
            "TIME": [0.0, 1.0, 2.0, 0.0, 1.0, 2.0],
            "DV": [0.0, 5.0, 3.0, 0.0, 6.0, 4.0],
            "AMT": [100.0, 0, 0, 200.0, 0, 0],
            "EVID": [1, 0, 0, 1, 0, 0],
            "WT": [70.0, 70, 70, 80, 80, 80],
        }
    )
    for name, values in columns.items():
        if values is None:
            df = df.drop(columns=name)
        else:
            df[name] = values
    return df


def read_quiet(data, **kwargs) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return read_nonmem(data, **kwargs)


# ---------------------------------------------------------------------------------------
# every rule, one malformed table each

RULE_CASES = [
    # (rule, columns for small(), regex the message must match)
    ("required-columns", {"ID": None}, r"ID: required column ID .* the columns are: TIME, DV"),
    ("required-columns", {"TIME": None}, r"required column TIME"),
    ("required-columns", {"DV": None}, r"required column DV .*observation records"),
    ("required-columns", {"AMT": None}, r"required column AMT .*EVID 1 dose records"),
    ("ambiguous-columns", {"time": [0.0] * 6}, r"columns 'TIME', 'time' all match .* TIME"),
    (
        "numeric",
        {"TIME": ["0", "1", "x", "0", "1", "2"]},
        r"TIME, row 2: TIME must be numeric, found 'x'",
    ),
    ("numeric", {"AMT": ["100", "0", "0", "mg", "0", "0"]}, r"AMT, row 3: .*found 'mg'"),
    ("id-missing", {"ID": [1, 1, 1, None, 2, 2]}, r"ID, row 3: ID is missing"),
    ("time-missing", {"TIME": [0.0, np.nan, 2, 0, 1, 2]}, r"TIME, row 1: TIME is missing"),
    (
        "time-order",
        {"TIME": [0.0, 2, 1, 0, 1, 2]},
        r"TIME, row 2: TIME decreases within subject 1 \(row 2: 1 after 2\).*sort the records",
    ),
    (
        "id-contiguous",
        {"ID": [1, 1, 2, 2, 1, 1], "TIME": [0.0, 1, 0, 1, 2, 3]},
        r"ID, row 4: the records of subject 1 are split into separate blocks.*sort .* by ID",
    ),
    (
        "evid-code",
        {"EVID": [1, 0, 7, 1, 0, 0]},
        r"EVID, row 2: EVID must be a NONMEM event code 0-4, found 7.*evid_map",
    ),
    (
        "cens",
        {"CENS": [0, 0, 2, 0, 0, 0]},
        r"CENS, row 2: CENS must be 0 .* or 1 .*found 2",
    ),
    (
        "cens",
        {"CENS": [1, 0, 0, 0, 0, 0]},
        r"CENS, row 0: CENS is 1 on records that are not observations",
    ),
    (
        "lloq",
        {"CENS": [0, 1, 0, 0, 0, 0], "LLOQ": [np.nan] * 6},
        r"LLOQ, row 1: LLOQ is missing on censored observations",
    ),
    (
        "evid101-cmt",
        {"EVID": [101, 0, 0, 101, 0, 0], "CMT": [2, 2, 2, 1, 2, 2]},
        r"CMT, row 0: EVID=101 .* but CMT is 2 .*evid_map=\{101: 1\}",
    ),
    ("mdv-code", {"MDV": [1, 0, 0, 1, 0, 5]}, r"MDV, row 5: MDV must be 0 or 1, found 5"),
    (
        "mdv-event",
        {"MDV": [0, 0, 0, 1, 0, 0]},
        r"MDV, row 0: MDV=0 on dose .*requires MDV=1.*split it",
    ),
    (
        "dv-missing",
        {"DV": [0.0, np.nan, 3, 0, 6, 4]},
        r"DV, row 1: DV is missing on observation records.*set MDV=1",
    ),
    ("dv-missing", {"DV": ["0", "5", "3", "0", ".", "4"]}, r"DV, row 4: DV is missing"),
    (
        "dose-amount",
        {"AMT": [100.0, 0, 0, 0, 0, 0]},
        r"AMT, row 3: AMT must be positive on dose records .* found 0",
    ),
    ("dose-amount", {"AMT": [100.0, 0, 0, np.nan, 0, 0]}, r"AMT, row 3: .* found missing"),
    (
        "rate",
        {"RATE": [-5.0, 0, 0, 0, 0, 0]},
        r"RATE, row 0: RATE must be 0 \(bolus\), a positive infusion rate, -1 .*found -5",
    ),
    ("addl", {"ADDL": [-1, 0, 0, 0, 0, 0]}, r"ADDL, row 0: .*non-negative integer, found -1"),
    (
        "addl",
        {"ADDL": [1.5, 0, 0, 0, 0, 0], "II": [12.0, 0, 0, 0, 0, 0]},
        r"ADDL, row 0: .*found 1.5",
    ),
    ("addl-ii", {"ADDL": [0, 0, 0, 2, 0, 0]}, r"II, row 3: ADDL > 0 needs a positive .*no II"),
    ("ii", {"II": [-12.0, 0, 0, 0, 0, 0]}, r"II, row 0: II .* must not be negative"),
    (
        "ss-code",
        {"SS": [99, 99, 99, 0, 0, 0]},
        r"SS, rows 0, 1, 2: SS must be a NONMEM steady-state code .* found 99.*ss_map=\{99: 0\}",
    ),
    (
        "ss-ii",
        {"SS": [1, 0, 0, 2, 0, 0]},
        r"II, rows 0, 3: a steady-state dose \(SS=1 or 2\) needs a positive dosing interval "
        r"II, found no II column",
    ),
    (
        "ss-infusion",
        {"SS": [1, 0, 0, 0, 0, 0], "AMT": [0.0, 0, 0, 200, 0, 0], "RATE": [5.0, 0, 0, 0, 0, 0]},
        r"SS, row 0: the steady-state constant infusion .* not supported yet.*AMT = RATE \* II",
    ),
    ("cmt", {"CMT": [1, 2, 2, 1, 2.5, 2]}, r"CMT, row 4: CMT must be a compartment number .*2.5"),
    ("cmt", {"CMT": [-1, 2, 2, 1, 2, 2]}, r"CMT, row 0: .*found -1"),
    (
        "nondose-items",
        {"AMT": [100.0, 0, 5, 200, 0, 0]},
        r"AMT, row 2: AMT is 5 on records that are not doses",
    ),
]


@pytest.mark.parametrize(("rule", "columns", "match"), RULE_CASES)
def test_rule_reports_violation(rule, columns, match):
    with pytest.raises(DatasetError, match=match) as info:
        read_quiet(small(**columns))
    assert [v.rule for v in info.value.violations] == [rule]


def test_every_rule_has_a_failing_case():
    assert {r.name for r in RULES} == {case[0] for case in RULE_CASES}


def test_all_violations_reported_at_once():
    df = small(
        TIME=[0.0, 2, 1, 0, 1, 2],  # time-order, subject 1, row 2
        DV=[0.0, 5, 3, 0, np.nan, 4],  # dv-missing, row 4
        EVID=[1, 0, 0, 1, 0, 9],  # evid-code, row 5
        SS=[99, 99, 0, 0, 0, 0],  # ss-code, rows 0, 1
    )
    with pytest.raises(DatasetError) as info:
        read_nonmem(df)
    err = info.value
    got = [(v.rule, v.column, v.rows) for v in err.violations]
    assert got == [
        ("time-order", "TIME", (2,)),
        ("evid-code", "EVID", (5,)),
        ("dv-missing", "DV", (4,)),
        ("ss-code", "SS", (0, 1)),
    ]
    text = str(err)
    assert text.startswith("4 problems in the DataFrame")
    for line, fragment in zip(
        text.splitlines()[1:],
        ["TIME, row 2:", "EVID, row 5:", "DV, row 4:", "SS, rows 0, 1:"],
        strict=True,
    ):
        assert fragment in line and "Fix:" in line


def test_message_gives_csv_lines_and_abbreviates(tmp_path):
    df = datasets.load("theophylline")
    df.loc[[5, 6], "TIME"] = [0.1, 0.05]  # subject 1 goes back in time at rows 5 and 6
    df.loc[20:30, "EVID"] = 7
    path = tmp_path / "theo_bad.csv"
    df.to_csv(path, index=False)
    with pytest.raises(DatasetError) as info:
        read_nonmem(path)
    text = str(info.value)
    assert f"2 problems in the CSV file '{path}'" in text
    assert "TIME, rows 5, 6 (CSV lines 7, 8): TIME decreases within subject 1 (row 5:" in text
    assert "EVID, rows 20, 21, 22, ... (11 rows; CSV lines 22, 23, 24, ...)" in text
    assert info.value.source == str(path)


def test_dataframe_rows_are_index_labels():
    df = small(TIME=[0.0, 2, 1, 0, 1, 2])
    df.index = [10, 11, 12, 13, 14, 15]
    with pytest.raises(DatasetError, match=r"TIME, row 12: .*\(row 12: 1 after 2\)") as info:
        read_nonmem(df)
    assert "CSV" not in str(info.value)


def test_violation_and_error_basics():
    v = Violation("time-order", "TIME", (3,), "TIME decreases", "sort")
    assert str(v) == "TIME, row 3: TIME decreases. Fix: sort"
    with pytest.raises(dataclasses.FrozenInstanceError):
        v.rows = ()  # type: ignore[misc]
    err = DatasetError.from_violations([v])
    assert isinstance(err, ValueError)
    again = pickle.loads(pickle.dumps(err))
    assert again.violations == (v,) and str(again) == str(err)


def test_empty_and_unreadable_inputs(tmp_path):
    with pytest.raises(DatasetError, match=r"has no records \(0 rows"):
        read_nonmem(small().iloc[:0])
    missing = tmp_path / "nope.csv"
    with pytest.raises(DatasetError, match=r"could not read the dataset file .*nope\.csv"):
        read_nonmem(missing)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DatasetError, match=r"empty\.csv"):
        read_nonmem(str(empty))
    with pytest.raises(TypeError, match=r"path to a CSV file or a pandas DataFrame, got list"):
        read_nonmem([1, 2])  # type: ignore[arg-type]
    with pytest.raises(DatasetError, match=r"several columns named 'WT'"):
        read_nonmem(pd.concat([small(), small()[["WT"]]], axis=1))


def test_covariates_argument():
    ds = read_nonmem(small(AGE=[30.0] * 3 + [40.0] * 3), covariates=["AGE"])
    assert list(ds.covariates) == ["AGE"]
    assert read_nonmem(small(), covariates=[]).covariates == {}
    with pytest.raises(DatasetError, match=r"'wt' is not a column .*did you mean 'WT'\?"):
        read_nonmem(small(), covariates=["wt"])
    with pytest.raises(DatasetError, match=r"'AMT' is a reserved NONMEM data item"):
        read_nonmem(small(), covariates=["AMT"])
    with pytest.raises(DatasetError, match=r"covariate columns are: WT"):
        read_nonmem(small(), covariates=["HT"])


def test_covariate_problems_reported_with_the_rest():
    with pytest.raises(DatasetError) as info:
        read_nonmem(small(TIME=[0.0, 2, 1, 0, 1, 2]), covariates=["HT"])
    assert [v.rule for v in info.value.violations] == ["covariates", "time-order"]


def test_recoding_map_for_an_absent_column_is_noted():
    ds = read_nonmem(small(), ss_map={99: 0})
    assert ds.notes == ("ss_map not applied: the table has no SS column",)


def test_recoding_maps_are_validated():
    with pytest.raises(TypeError, match="ss_map must map numbers to numbers"):
        read_nonmem(small(), ss_map={"a": 0})
    with pytest.raises(TypeError, match="evid_map must be a mapping"):
        read_nonmem(small(), evid_map=[(5, 2)])


# ---------------------------------------------------------------------------------------
# NONMEM conventions and the arrays


def test_small_dataset_arrays():
    df = small()
    ds = read_nonmem(df)
    assert ds.ids.tolist() == [1, 2] and ds.ids.dtype == np.int64
    np.testing.assert_array_equal(ds.dose_time, [[0.0], [0.0]])
    np.testing.assert_array_equal(ds.dose_amt, [[100.0], [200.0]])
    np.testing.assert_array_equal(ds.obs_dv, [[5.0, 3.0], [6.0, 4.0]])
    np.testing.assert_array_equal(ds.obs_row, [[1, 2], [4, 5]])
    assert ds.dose_cmt.dtype == np.int32 and ds.obs_row.dtype == np.int64
    assert ds.dose_mask.dtype == bool and ds.obs_time.dtype == np.float64
    assert (ds.dose_cmt == 0).all() and (ds.obs_cmt == 0).all()  # no CMT column
    assert ds.covariates["WT"].tolist() == [70.0, 80.0] and ds.notes == ()


def test_addl_ii_expansion_and_padding():
    df = pd.DataFrame(
        {
            "ID": [1, 1, 1, 2, 2],
            "TIME": [0.0, 6, 30, 0, 1],
            "DV": [0, 1.5, 2.5, 0, 9.0],
            "AMT": [50.0, 0, 0, 10, 0],
            "RATE": [0.0, 0, 0, 5, 0],
            "ADDL": [2, 0, 0, 0, 0],
            "II": [12.0, 0, 0, 0, 0],
            "CMT": [1, 2, 2, 1, 2],
        }
    )
    ds = read_nonmem(df)
    np.testing.assert_array_equal(ds.dose_time, [[0, 12, 24], [0, 0, 0]])
    np.testing.assert_array_equal(ds.dose_amt, [[50, 50, 50], [10, 0, 0]])
    np.testing.assert_array_equal(ds.dose_rate, [[0, 0, 0], [5, 0, 0]])
    np.testing.assert_array_equal(ds.dose_cmt, [[1, 1, 1], [1, 0, 0]])
    np.testing.assert_array_equal(ds.dose_mask, [[True] * 3, [True, False, False]])
    np.testing.assert_array_equal(ds.obs_mask, [[True, True], [True, False]])
    np.testing.assert_array_equal(ds.obs_row, [[1, 2], [4, -1]])
    np.testing.assert_array_equal(ds.obs_dv, [[1.5, 2.5], [9.0, 0.0]])
    # obs_row maps each observation back to its record
    s, j = ds.obs_index
    np.testing.assert_array_equal(df.loc[ds.obs_row[s, j], "DV"], ds.dv)
    doses = ds.doses(0)
    np.testing.assert_array_equal(doses.time, [0, 12, 24])


def test_expanded_doses_sorted_among_explicit_doses():
    df = pd.DataFrame(
        {
            "ID": [1, 1, 1],
            "TIME": [0.0, 10, 11],
            "DV": [0, 0, 1.0],
            "AMT": [5.0, 7, 0],
            "ADDL": [1, 0, 0],
            "II": [24.0, 0, 0],
        }
    )
    ds = read_nonmem(df)
    np.testing.assert_array_equal(ds.dose_time, [[0, 10, 24]])
    np.testing.assert_array_equal(ds.dose_amt, [[5, 7, 5]])


def test_defaults_without_evid_and_mdv_conventions():
    # No EVID: AMT > 0 is a dose; MDV=1 without AMT is an "other" event (EVID 2).
    df = small(EVID=None, MDV=[1, 0, 1, 1, 0, 0])
    ds = read_nonmem(df)
    assert ds.n_obs == 3  # row 2 (MDV=1) is not an observation
    np.testing.assert_array_equal(ds.obs_row, [[1, -1], [4, 5]])
    assert int(ds.dose_mask.sum()) == 2
    # EVID 2 rows are neither doses nor observations; EVID 0 + MDV 1 is no observation
    ds = read_nonmem(small(EVID=[1, 2, 0, 1, 0, 0], MDV=[1, 1, 1, 1, 0, 0]))
    assert ds.n_obs == 2 and ds.obs_row[0, 0] == -1
    # no doses at all: still one (masked) dose slot per subject
    ds = read_nonmem(small(AMT=None, EVID=None))
    assert ds.dose_time.shape == (2, 1) and not ds.dose_mask.any()
    assert ds.n_obs == 6


def test_dv_not_required_without_observations():
    df = pd.DataFrame({"ID": [1, 2], "TIME": [0.0, 0.0], "AMT": [10.0, 20.0]})
    ds = read_nonmem(df)
    assert ds.obs_dv.shape == (2, 1) and ds.n_obs == 0
    assert ds.obs_row.tolist() == [[-1], [-1]]


def test_dot_dv_and_dot_dose_items_read_as_nonmem_does():
    df = small(
        DV=[".", "5", "3", ".", "6", "4"],
        AMT=["100", ".", ".", "200", "", "."],
        RATE=[".", ".", ".", "0", ".", "."],
    )
    ds = read_nonmem(df)
    np.testing.assert_array_equal(ds.obs_dv, [[5.0, 3.0], [6.0, 4.0]])
    np.testing.assert_array_equal(ds.dose_amt, [[100.0], [200.0]])
    np.testing.assert_array_equal(ds.dose_rate, [[0.0], [0.0]])


def test_input_dataframe_not_mutated():
    df = small(DV=[".", "5", "3", ".", "6", "4"], EVID=[101, 0, 0, 101, 0, 0])
    before = df.copy()
    read_quiet(df)
    pd.testing.assert_frame_equal(df, before)


def test_evid101_recoding_warns_and_notes():
    with pytest.warns(UserWarning, match=r"EVID=101 .* on 2 rows"):
        ds = read_nonmem(small(EVID=[101, 0, 0, 101, 0, 0]))
    assert (ds.dose_cmt == 1).all() and ds.n_obs == 4
    assert any("EVID=101" in note for note in ds.notes)
    # evid_map is applied first and keeps CMT as written, without a warning
    df = small(EVID=[101, 0, 0, 101, 0, 0], CMT=[2, 2, 2, 2, 2, 2])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = read_nonmem(df, evid_map={101: 1})
    assert (ds.dose_cmt == 2).all()
    assert ds.notes[0] == "evid_map recoded EVID 101 -> 1 on 2 rows"


def test_string_ids_and_categorical_covariates():
    df = small(
        ID=["b", "b", "b", "a", "a", "a"],
        SEX=["m", "m", "m", "f", "f", "f"],
        HT=[1.7, 1.7, 1.7, ".", ".", "."],
        OCC=[1, 1, 2, 1, 1, 1],
    )
    ds = read_nonmem(df)
    assert ds.ids.tolist() == ["b", "a"] and ds.ids.dtype.kind == "U"
    assert ds.covariate_levels == {"SEX": ("f", "m")}
    assert ds.covariates["SEX"].tolist() == [1.0, 0.0]
    np.testing.assert_array_equal(ds.covariates["HT"], [1.7, np.nan])
    assert ds.covariates["OCC"].tolist() == [1.0, 1.0]
    assert "covariates OCC change within subjects" in " ".join(ds.notes)
    assert ds.obs_id.tolist() == ["b", "b", "a", "a"]


def test_non_integer_index_gives_positions():
    df = small()
    df.index = list("abcdef")
    ds = read_nonmem(df)
    np.testing.assert_array_equal(ds.obs_row, [[1, 2], [4, 5]])
    assert "0-based row positions" in ds.notes[0]


def test_flat_views_consistent():
    df = datasets.load("pheno")
    ds = read_nonmem(df)
    obs = df[(df["EVID"] == 0) & (df["MDV"] == 0)]
    np.testing.assert_array_equal(ds.dv, obs["DV"].to_numpy())
    np.testing.assert_array_equal(ds.obs_id, obs["ID"].to_numpy())
    s, j = ds.obs_index
    assert len(s) == ds.n_obs == len(ds.dv)
    np.testing.assert_array_equal(ds.ids[s], ds.obs_id)
    np.testing.assert_array_equal(ds.obs_row[s, j], obs.index.to_numpy())
    assert (ds.obs_row[~ds.obs_mask] == -1).all() and (ds.obs_dv[~ds.obs_mask] == 0).all()
    assert (ds.dose_amt[~ds.dose_mask] == 0).all() and (ds.dose_time[~ds.dose_mask] == 0).all()


# ---------------------------------------------------------------------------------------
# real datasets


def test_theophylline():
    df = datasets.load("theophylline")
    with pytest.warns(UserWarning, match=r"EVID=101 .* 12 rows"):
        ds = read_nonmem(df)
    assert ds.n_id == 12 and ds.n_obs == 132 and int(ds.dose_mask.sum()) == 12
    assert ds.ids.tolist() == list(range(1, 13))
    assert ds.dose_mask.shape == (12, 1) and (ds.dose_cmt == 1).all()
    assert (ds.obs_cmt[ds.obs_mask] == 2).all()
    np.testing.assert_array_equal(ds.covariates["WT"], df.groupby("ID")["WT"].first())
    assert ds.covariates["WT"][0] == 79.6
    np.testing.assert_array_equal(ds.dose_amt[:, 0], df.loc[df["EVID"] == 101, "AMT"])
    assert ds.obs_time[0, 0] == 0.0 and ds.obs_dv[0, 0] == 0.74  # sample at t=0 after dose


def test_warfarin_lower_case_columns():
    df = datasets.load("warfarin")
    ds = read_nonmem(df)
    assert ds.n_id == 32 and ds.n_obs == 483  # both dvids: cp and pca
    assert list(ds.covariates) == ["wt", "age", "sex"]  # dvid is reserved
    assert ds.covariate_levels == {"sex": ("female", "male")}
    sex = df.groupby("id", sort=False)["sex"].first().map({"female": 0.0, "male": 1.0})
    np.testing.assert_array_equal(ds.covariates["sex"], sex)
    np.testing.assert_array_equal(ds.dose_amt[:, 0], df.loc[df["evid"] == 1, "amt"])


def test_pheno_repeated_doses():
    df = datasets.load("pheno")
    ds = read_nonmem(df)
    assert ds.n_id == 59 and ds.n_obs == 155
    per_subject = df[df["EVID"] == 1].groupby("ID").size()
    np.testing.assert_array_equal(ds.dose_mask.sum(axis=1), per_subject)
    assert ds.dose_mask.shape[1] == per_subject.max()
    i = 3
    sub = df[(df["ID"] == ds.ids[i]) & (df["EVID"] == 1)]
    n = len(sub)
    np.testing.assert_array_equal(ds.dose_time[i, :n], sub["TIME"])
    np.testing.assert_array_equal(ds.dose_amt[i, :n], sub["AMT"])
    assert not ds.dose_mask[i, n:].any() and (ds.dose_amt[i, n:] == 0).all()
    assert set(ds.covariates) == {"WT", "APGR"}


def shared(name: str) -> Path:
    path = SHARED / name
    if not path.exists():
        pytest.skip(f"{path} not available")
    return path


def test_theophylline_multiple_dose():
    ds = read_quiet(shared("theo_md.csv"))
    assert ds.n_id == 12 and ds.n_obs == 264 and int(ds.dose_mask.sum()) == 84
    assert np.all(np.diff(ds.dose_time, axis=1)[ds.dose_mask[:, 1:]] > 0)


def test_acop_ss_placeholder():
    path = shared("acop2016/Bolus_1CPT.csv")
    with pytest.raises(
        DatasetError,
        match=r"SS, rows 0, 1, 2, \.\.\. \(5520 rows; CSV lines "
        r"2, 3, 4, \.\.\.\): SS must be .* found 99.*ss_map=\{99: 0\}",
    ):
        read_nonmem(path)
    # the t=216 dose of the multiple-dose subjects is a real steady-state dose (SS=1, II=24)
    ds = read_nonmem(path, ss_map={99: 0})
    df = pd.read_csv(path)
    ss_rows = df[df["SS"] == 1]
    assert len(ss_rows) == 120 and (ss_rows["TIME"] == 216).all()
    assert int((ds.dose_ss == 1).sum()) == 120 and set(ds.dose_ss[ds.dose_mask].tolist()) <= {0, 1}
    sub, slot = np.nonzero(ds.dose_ss == 1)
    np.testing.assert_array_equal(ds.dose_time[sub, slot], 216.0)
    np.testing.assert_array_equal(ds.dose_ii[sub, slot], 24.0)
    assert (ds.dose_ii[ds.dose_ss == 0] == 0).all()
    ds = read_nonmem(df[df["SD"] == 1], ss_map={99: 0})
    assert ds.n_id == 120 and ds.n_obs == int(((df["SD"] == 1) & (df["MDV"] == 0)).sum())
    assert (ds.dose_mask.sum(axis=1) == 1).all()
    assert "ss_map recoded SS 99 -> 0 on 2400 rows" in ds.notes
    assert ds.obs_row.max() < len(df) and ds.obs_row[0, 0] == 1


def test_acop_infusion_rates():
    df = pd.read_csv(shared("acop2016/Infusion_1CPT.csv"))
    ds = read_nonmem(df[df["SD"] == 1], ss_map={99: 0})
    np.testing.assert_array_equal(ds.dose_rate[:, 0], ds.dose_amt[:, 0])  # 1-h infusions


def test_mavoglurant_time_reset_is_rejected():
    match = r"TIME decreases within 78 subjects .*reset_on_time_decrease=True"
    with pytest.raises(DatasetError, match=match) as info:
        read_nonmem(shared("mavoglurant.csv"))
    assert len(info.value.violations[0].rows) == 78


# ---------------------------------------------------------------------------------------


def test_docstring_examples():
    for module in (read_module, datasets):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0 and result.attempted > 0, module.__name__


def test_evid_map_recodes_other_tools_codes():
    ds = read_nonmem(small(EVID=[1, 5, 0, 1, 0, 0]), evid_map={5: 2})
    assert ds.n_obs == 3 and ds.obs_row[0, 0] == 2
    assert ds.notes == ("evid_map recoded EVID 5 -> 2 on 1 row",)
