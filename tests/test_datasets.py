"""Tests of the bundled datasets loader (bayes_nlme.datasets)."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import pandas as pd
import pytest

from bayes_nlme import datasets

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
FILES = {
    "theophylline": "theo_sd.csv",
    "warfarin": "warfarin.csv",
    "pheno": "pheno.csv",
    "acop_infusion_2cpt": "Infusion_2CPT.csv",
    "mavoglurant": "mavoglurant.csv",
    "theo_md": "theo_md.csv",
}
SHARED_PATH = {**FILES, "acop_infusion_2cpt": "acop2016/Infusion_2CPT.csv"}


def test_names():
    assert datasets.names() == (
        "theophylline",
        "warfarin",
        "pheno",
        "acop_infusion_2cpt",
        "mavoglurant",
        "theo_md",
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
    ],
)
def test_load(name, shape, n_id):
    df = datasets.load(name)
    assert isinstance(df, pd.DataFrame) and df.shape == shape
    assert df.iloc[:, 0].nunique() == n_id


def test_load_returns_a_fresh_copy():
    df = datasets.load("pheno")
    df.loc[0, "DV"] = -1.0
    assert datasets.load("pheno").loc[0, "DV"] == 0.0


def test_unknown_name_lists_the_datasets():
    with pytest.raises(
        ValueError,
        match=r"no bundled dataset named 'theo'.*theophylline "
        r"\(alias theo_sd\), warfarin, pheno \(alias phenobarbital\), acop_infusion_2cpt "
        r"\(alias infusion_2cpt\), mavoglurant, theo_md",
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
