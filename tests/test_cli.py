"""The bayes-nlme command line, end to end with tiny settings, and its error paths."""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from bayes_nlme._cli import main, zoo_names

REPO = Path(__file__).resolve().parents[1]
TINY = ["--chains", "2", "--warmup", "40", "--samples", "30", "--no-progress"]


def test_fit_zoo_model_writes_three_results(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["fit", "theophylline", "--out", str(out), "--seed", "3", *TINY]) == 0
    for name in ("posterior.nc", "summary.csv", "individual_fits.png"):
        assert (out / name).stat().st_size > 0, name
    table = pd.read_csv(out / "summary.csv", index_col="parameter")
    assert list(table.index) == [
        "tvka",
        "tvcl",
        "tvv",
        "add_sd",
        "omega_ka_sd",
        "omega_cl_sd",
        "omega_v_sd",
    ]
    for col in ("mean", "sd", "median", "5%", "95%", "ess_bulk", "ess_tail", "r_hat"):
        assert col in table.columns
    err = capsys.readouterr().err
    assert "max R-hat" in err and "divergent" in err


def test_fit_model_file_with_data_option(tmp_path):
    """A model given as a file path, data from --data (a CSV the user wrote)."""
    csv = tmp_path / "theo.csv"
    import bayes_nlme as bn

    bn.datasets.load("theophylline").to_csv(csv, index=False)
    code = main(
        [
            "fit",
            str(REPO / "model_zoo" / "theophylline.py"),
            "--data",
            str(csv),
            "--out",
            str(tmp_path / "run"),
            *TINY,
        ]
    )
    assert code == 0
    assert (tmp_path / "run" / "posterior.nc").exists()


def test_zoo_lists_theophylline():
    assert "theophylline" in zoo_names()


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["fit", "no_such_model"],
            "(?s)Unknown model 'no_such_model'. Model-zoo models: .*theophylline",
        ),
        (["fit", "theophylline", "--data", "/nonexistent/file.csv"], "file.csv"),
        (["fit", "missing_file.py"], "does not exist"),
    ],
)
def test_bad_input_exits_2_with_message(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("bayes-nlme: error: ")
    import re

    assert re.search(message, err), err
    assert "Traceback" not in err


def test_invalid_dataset_exits_2_listing_problems(tmp_path, capsys):
    import bayes_nlme as bn

    df = bn.datasets.load("theophylline")
    df.loc[5, "TIME"] = 0.1  # time goes backwards within subject 1
    df.loc[7, "DV"] = None  # missing DV on an observation row
    csv = tmp_path / "bad.csv"
    df.to_csv(csv, index=False)
    assert main(["fit", "theophylline", "--data", str(csv), *TINY]) == 2
    err = capsys.readouterr().err
    assert "TIME" in err and "DV" in err and "row 5" in err and "row 7" in err
    assert "Traceback" not in err


def test_model_file_without_model(tmp_path, capsys):
    f = tmp_path / "empty.py"
    f.write_text("x = 1\n")
    assert main(["fit", str(f)]) == 2
    assert "must define `model" in " ".join(capsys.readouterr().err.split())  # wrapped lines


def test_console_script_exit_code():
    """The installed entry point: bad input gives exit code 2 and no traceback."""
    exe = Path(sys.executable).with_name("bayes-nlme")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "bayes_nlme._cli"]
    env = {**os.environ, "BAYES_NLME_CACHE_DIR": ""}
    res = subprocess.run([*cmd, "fit", "nope"], capture_output=True, text=True, env=env)
    assert res.returncode == 2
    assert "Unknown model" in res.stderr and "Traceback" not in res.stderr


def test_model_file_fit_options(tmp_path, capsys):
    """``fit_options`` in a model file reach ``fit``; command-line flags override them; an
    unknown option is a usage error (exit 2)."""
    f = tmp_path / "theo_dense.py"
    f.write_text(
        "from bayes_nlme.model_zoo.theophylline import model, data\n"
        "fit_options = dict(dense_mass=[('tvcl', 'tvv')], target_accept=0.95, init='ebe')\n"
    )
    out = tmp_path / "run"
    argv = ["fit", str(f), "--out", str(out), "--target-accept", "0.85", "--init", "typical"]
    assert main([*argv, "--no-report", *TINY]) == 0
    err = capsys.readouterr().err
    want = "{'dense_mass': [('tvcl', 'tvv')], 'target_accept': 0.85, 'init': 'typical'}"
    assert f"NUTS options {want}" in err
    assert (out / "posterior.nc").stat().st_size > 0
    f.write_text(
        "from bayes_nlme.model_zoo.theophylline import model, data\nfit_options = dict(warmup=10)\n"
    )
    assert main(["fit", str(f), "--out", str(out)]) == 2
    assert "unknown: ['warmup']" in capsys.readouterr().err
