"""Tests of the bundled datasets loader (bayes_nlme.datasets)."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import pandas as pd
import pytest

from bayes_nlme import datasets, read_nonmem

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
FILES = {
    "theophylline": "theo_sd.csv",
    "warfarin": "warfarin.csv",
    "pheno": "pheno.csv",
    "acop_infusion_2cpt": "Infusion_2CPT.csv",
    "mavoglurant": "mavoglurant.csv",
    "theo_md": "theo_md.csv",
    "acop_bolus_1cptmm": "Bolus_1CPTMM.csv",
}
SHARED_PATH = {
    **FILES,
    "acop_infusion_2cpt": "acop2016/Infusion_2CPT.csv",
    "acop_bolus_1cptmm": "acop2016/Bolus_1CPTMM.csv",
}


def test_names():
    assert datasets.names() == (
        "theophylline",
        "warfarin",
        "pheno",
        "acop_infusion_2cpt",
        "mavoglurant",
        "theo_md",
        "acop_bolus_1cptmm",
    )


@pytest.mark.parametrize(
    ("name", "shape", "n_id"),
    [
        ("theophylline", (144, 7), 12),
        ("theo_sd", (144, 7), 12),
        ("warfarin", (515, 9), 32),
        ("pheno", (744, 8), 59),
        ("Phenobarbital", (744, 8), 59),
        ("acop_infusion_2cpt", (7920, 17), 120),
        ("mavoglurant", (2678, 14), 120),
        ("theo_md", (348, 7), 12),
        ("acop_bolus_1cptmm", (7920, 13), 120),
        ("Bolus_1CPTMM", (7920, 13), 120),
    ],
)
def test_load(name, shape, n_id):
    df = datasets.load(name)
    assert isinstance(df, pd.DataFrame) and df.shape == shape
    assert df.iloc[:, 0].nunique() == n_id


def test_acop_bolus_1cptmm_single_dose_part_reads():
    """SD == 1: one bolus and 19 samples per subject; EVID=2 rows (DV rounded to 0) dropped."""
    df = datasets.load("bolus_1cptmm")
    assert not {"SS", "II"} & set(df.columns)
    assert (df.loc[df.EVID == 2, "DV"] == 0).all() and (df.EVID == 2).sum() == 10
    sd = df[df.SD == 1]
    assert sd.groupby("ID").size().eq(20).all()
    assert sorted(sd.loc[sd.EVID == 1, "AMT"].unique()) == [10000, 20000, 40000, 80000]
    ds = read_nonmem(sd.reset_index(drop=True))
    assert (ds.n_id, ds.n_obs) == (120, 2274)


def test_load_returns_a_fresh_copy():
    df = datasets.load("pheno")
    df.loc[0, "DV"] = -1.0
    assert datasets.load("pheno").loc[0, "DV"] == 0.0


def test_unknown_name_lists_the_datasets():
    with pytest.raises(
        ValueError,
        match=r"no bundled dataset named 'theo'.*theophylline "
        r"\(alias theo_sd\), warfarin, pheno \(alias phenobarbital\), acop_infusion_2cpt "
        r"\(alias infusion_2cpt\), mavoglurant, theo_md, acop_bolus_1cptmm \(alias bolus_1cptmm\)",
    ):
        datasets.load("theo")


@pytest.mark.parametrize("name", list(FILES))
def test_bundled_file_matches_shared_copy(name):
    shared = SHARED / SHARED_PATH[name]
    if not shared.exists():
        pytest.skip(f"{shared} not available")
    bundled = resources.files("bayes_nlme.datasets") / "files" / FILES[name]
    assert bundled.read_bytes() == shared.read_bytes()


def _flat(text: str) -> str:
    return " ".join(text.replace("`", "").split())


def _source_lines(readme: str) -> dict[str, str]:
    """The ``Source:`` paragraph of each ``## file.csv`` section of a data README."""
    out = {}
    for section in re.split(r"^## ", readme, flags=re.M)[1:]:
        file = section.split()[0]
        match = re.search(r"^Source:.*?(?=^\w+:|\Z)", section, flags=re.M | re.S)
        if match:
            out[file] = _flat(match.group(0))
    return out


def test_source_lines_kept():
    readme = (resources.files("bayes_nlme.datasets") / "files" / "README.md").read_text("utf-8")
    sources = _source_lines(readme)
    assert set(sources) == set(FILES.values())
    doc = _flat(datasets.load.__doc__)
    for line in sources.values():
        assert line in doc
    shared = SHARED / "README.md"
    if shared.exists():
        for file, line in _source_lines(shared.read_text("utf-8")).items():
            if file in sources:
                assert sources[file] == line
