"""Reset records (EVID 3/4), segments, DVID endpoints and censoring (CENS/LLOQ) in the reader."""

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bayes_nlme.data import DatasetError, read_nonmem

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def two_occasions(evid2=4):
    """One subject dosed twice, the clock restarting at the second occasion."""
    return pd.DataFrame(
        {
            "ID": [1] * 8,
            "TIME": [0.0, 1, 2, 24, 0, 1, 2, 5],
            "DV": [0, 5.0, 4, 1, 0, 9, 8, 3],
            "AMT": [100.0, 0, 0, 0, 200, 0, 0, 0],
            "EVID": [1, 0, 0, 0, evid2, 0, 0, 0],
            "OCC": [1, 1, 1, 1, 2, 2, 2, 2],
            "WT": [70.0, 70, 70, 70, 72, 72, 72, 72],
        }
    )


def test_evid4_starts_a_segment_and_time_may_restart():
    ds = read_nonmem(two_occasions())
    assert ds.n_segments.tolist() == [2]
    assert ds.has_resets
    assert ds.dose_seg[0].tolist() == [0, 1]
    assert ds.obs_seg[0].tolist() == [0, 0, 0, 1, 1, 1]
    # doses sorted by segment, then time: the later (EVID 4) dose stays second
    assert ds.dose_time[0].tolist() == [0.0, 0.0] and ds.dose_amt[0].tolist() == [100, 200]
    # covariates at the start of each segment; OCC constant within segments
    assert ds.segment_covariates["OCC"][0].tolist() == [1.0, 2.0]
    assert ds.segment_covariates["WT"][0].tolist() == [70.0, 72.0]
    assert ds.segment_varying == ()


def test_evid3_reset_without_dose():
    df = two_occasions()
    df.loc[4, "EVID"] = 3
    df.loc[4, "AMT"] = 0
    ds = read_nonmem(df)
    assert ds.dose_amt[0].tolist() == [100.0]
    assert ds.obs_seg[0].tolist() == [0, 0, 0, 1, 1, 1]


def test_time_decrease_without_reset_names_the_option():
    with pytest.raises(DatasetError, match=r"TIME, row 4: .*reset_on_time_decrease=True") as e:
        read_nonmem(two_occasions(evid2=1))
    assert e.value.violations[0].rows == (4,)
    ds = read_nonmem(two_occasions(evid2=1), reset_on_time_decrease=True)
    assert ds.n_segments.tolist() == [2]
    assert any("EVID=4" in n for n in ds.notes)


def test_dose_items_on_evid3_rejected():
    df = two_occasions()
    df.loc[4, "EVID"] = 3  # AMT stays 200
    with pytest.raises(DatasetError, match=r"AMT.* on records that are not doses"):
        read_nonmem(df)


def test_occasion_changing_within_segment_is_reported():
    df = two_occasions()
    df.loc[3, "OCC"] = 3
    ds = read_nonmem(df)
    assert ds.segment_varying == ("OCC",)


def test_mavoglurant_occasions():
    ds = read_nonmem(SHARED / "mavoglurant.csv", reset_on_time_decrease=True)
    assert ds.n_id == 120
    assert (ds.n_segments == 2).sum() == 78 and (ds.n_segments == 1).sum() == 42
    occ = ds.segment_covariates["OCC"]
    two = ds.n_segments == 2
    assert np.all(occ[two] == [1, 2])
    assert ds.segment_varying == ()


def test_dvid_labels_and_codes():
    ds = read_nonmem(SHARED / "warfarin.csv")
    assert ds.dvid_levels == ("cp", "pca")
    codes = ds.obs_dvid[ds.obs_mask]
    assert np.bincount(codes).tolist() == [251, 232]
    numeric = pd.DataFrame(
        {
            "ID": [1, 1, 1],
            "TIME": [0.0, 1, 1],
            "DV": [0, 3, 50],
            "AMT": [10.0, 0, 0],
            "EVID": [1, 0, 0],
            "DVID": [1, 1, 2],
        }
    )
    ds = read_nonmem(numeric)
    assert ds.dvid_levels == ("1", "2")
    assert ds.obs_dvid[0].tolist() == [0, 1]


def test_cens_with_and_without_lloq_column():
    df = pd.DataFrame(
        {
            "ID": [1, 1, 1, 1, 2, 2],
            "TIME": [0.0, 1, 2, 3, 0, 1],
            "DV": [0, 5, 0.5, 0.5, 0, 0.4],
            "AMT": [10.0, 0, 0, 0, 10, 0],
            "EVID": [1, 0, 0, 0, 1, 0],
            "CENS": [0, 0, 1, 1, 0, 1],
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = read_nonmem(df)
    s, j = ds.obs_index
    assert ds.obs_cens[s, j].tolist() == [False, True, True, True]
    # CENS rows: the limit is DV; the other rows of the endpoint get the smallest limit
    assert ds.obs_lloq[s, j].tolist() == [0.4, 0.5, 0.5, 0.4]
    assert any("LLOQ" in n for n in ds.notes)
    df["LLOQ"] = 0.45
    ds = read_nonmem(df)
    assert np.allclose(ds.obs_lloq[s, j], 0.45)
    assert "LLOQ" not in ds.covariates and "CENS" not in ds.covariates
