"""Every model_zoo script runs as a script, with tiny settings, and writes its results."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bayes_nlme._cli import zoo_names

ZOO = Path(__file__).resolve().parents[1] / "model_zoo"


@pytest.mark.parametrize("name", zoo_names())
def test_zoo_script_runs(name, tmp_path):
    env = {**os.environ, "MPLBACKEND": "Agg"}
    res = subprocess.run(
        [
            sys.executable,
            str(ZOO / f"{name}.py"),
            "--chains",
            "1",
            "--warmup",
            "30",
            "--samples",
            "20",
            "--max-tree-depth",
            "6",  # a smoke run: the ODE models would otherwise spend minutes in early warmup
            "--no-progress",
            "--no-report",  # the report is tested in test_report.py
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    for f in ("posterior.nc", "summary.csv", "individual_fits.png"):
        assert (tmp_path / f).stat().st_size > 0
