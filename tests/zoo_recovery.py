"""Shared steps of the model-zoo simulate-then-recover tests (``test_zoo_recovery_*.py``).

Each test runs ``model_zoo/<name>.py`` as a script through its command line (so the script
simulates its data at ``TRUTH`` with ``data()``, fits them with NUTS and writes its
results), then reads the run directory and checks:

- the result files exist;
- ``TRUTH`` names exactly the estimated population parameters (those with an R-hat);
- R-hat of every estimated parameter < 1.05 and no divergent transitions;
- every ``TRUTH`` value lies inside its posterior 99% equal-tailed credible interval.

Why 99%: a test of k parameters each inside its 90% interval fails by chance with
probability about 1 - 0.9^k for a correct model (0.57 for k = 8); 99% brings that to about
0.08 while a wrong simulator or model still fails (each script's test was checked to fail
with a wrong ``TRUTH`` value). Data (the script's ``data()`` seed) and NUTS (``--seed``) are
seeded, so each test is deterministic on a given platform.
"""

import os
import subprocess
import sys
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd

ZOO = Path(__file__).resolve().parents[1] / "model_zoo"
PROB = 0.99


def fit_script(name, out, *, warmup, samples, max_tree_depth, chains=2, seed=0):
    """Run ``model_zoo/<name>.py`` with the given NUTS settings, results in ``out``."""
    env = {**os.environ, "MPLBACKEND": "Agg"}
    argv = [sys.executable, str(ZOO / f"{name}.py"), "--chains", str(chains)]
    argv += ["--warmup", str(warmup), "--samples", str(samples), "--seed", str(seed)]
    argv += ["--max-tree-depth", str(max_tree_depth), "--no-progress", "--no-report"]
    res = subprocess.run(
        [*argv, "--out", str(out)], capture_output=True, text=True, env=env, timeout=900
    )
    assert res.returncode == 0, res.stderr[-3000:]


def check_recovery(module, out, figures=("individual_fits.png",)):
    """The checks listed in the module docstring, for the zoo module ``module``."""
    for f in ("posterior.nc", "summary.csv", *figures):
        assert (out / f).stat().st_size > 0, f
    table = pd.read_csv(out / "summary.csv", index_col="parameter")
    idata = az.from_netcdf(out / "posterior.nc")
    estimated = table.index[table["r_hat"].notna()]  # fixed parameters have no R-hat
    assert set(module.TRUTH) == set(estimated), (sorted(module.TRUTH), sorted(estimated))
    assert table.loc[estimated, "r_hat"].max() < 1.05, table["r_hat"].to_dict()
    assert int(idata.sample_stats["diverging"].sum()) == 0
    tail = (1 - PROB) / 2
    missed = {}
    for name, value in module.TRUTH.items():
        draws = np.asarray(idata.posterior[name]).ravel()
        lo, hi = np.quantile(draws, [tail, 1 - tail])
        if not lo < value < hi:
            missed[name] = (lo, value, hi)
    assert not missed, f"TRUTH outside the {PROB:.0%} CrI (low, truth, high): {missed}"
