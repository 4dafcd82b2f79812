"""Every model_zoo script runs as a script, with tiny settings, and writes its results.

The library-model scripts with simulated data are run (longer) by the simulate-then-recover
tests in ``tests/test_zoo_recovery_*.py`` instead; the last test checks that each of them is.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bayes_nlme._cli import zoo_names

ZOO = Path(__file__).resolve().parents[1] / "model_zoo"
TESTS = Path(__file__).resolve().parent

# Scripts run end to end by a recovery test (as a subprocess, through the same CLI).
RUN_BY_RECOVERY_TESTS = {
    "antibody_decay",
    "effect_compartment",
    "friberg",
    "indirect_response",
    "tmdd_full",
    "tmdd_qss",
    "transit_absorption",
}


@pytest.mark.parametrize("name", [n for n in zoo_names() if n not in RUN_BY_RECOVERY_TESTS])
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
            "4",  # a smoke run: the ODE models would otherwise spend minutes in early warmup
            "--init",
            "typical",  # the EBE start (warfarin's fit_options) is tested in test_init_ebe.py
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


def test_excluded_scripts_are_run_by_a_recovery_test():
    recovery = "".join(p.read_text() for p in TESTS.glob("test_zoo_recovery_*.py"))
    assert RUN_BY_RECOVERY_TESTS <= set(zoo_names())
    for name in RUN_BY_RECOVERY_TESTS:
        assert f'"{name}"' in recovery, f"{name} is run by no test in test_zoo_recovery_*.py"
