"""Batch jobs described in a TOML file: ``bayes-nlme batch JOB.toml``.

A job fits one model to many datasets (files, or trials simulated from a design) and writes
each finished fit to ``OUT/results/<name>.nc`` as soon as it is ready (written to a
temporary name and renamed, so a file that exists is complete). Started again after an
interruption, kill -9 included, the job fits only the datasets without a result: every
result is written once, and equals what an uninterrupted run writes (each dataset's seed is
``sampler.seed + its position in the job``, whatever batch it lands in).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import sys
import time
import tomllib
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import BayesNLMEError

__all__ = ["JobError", "run_job", "load_job", "JOB_TEMPLATE"]

JOB_TEMPLATE = """\
# bayes-nlme batch job (run: bayes-nlme batch this_file.toml)
model = "theophylline"        # model-zoo name, or a model file (relative to this file)
out = "runs/theo_simest"      # output directory (relative to this file)

[simulate]                    # trials simulated from a design ...
design = "default"            # "default": the model's dataset; or a CSV path
n_datasets = 100
seed = 1
truth = "prior"               # "prior" (SBC-style), or a table of population parameters:
# [simulate.truth]
# tvka = 1.5
# ...

# [data]                      # ... or datasets from files (instead of [simulate])
# files = ["trials/*.csv"]

[sampler]
chains = 2
warmup = 500
samples = 500
seed = 0
batch_size = 16               # datasets per compiled call
# init = "ebe"                # chains start with the ETAs at their EBEs (default "typical")

# [engine]                    # default: this process, all local devices
# kind = "dask"               # fan chunks out to a Dask cluster
# address = "tcp://scheduler:8786"   # omit for a local cluster of n_workers processes
# n_workers = 2
"""

_SAMPLER_KEYS = {
    "chains": int,
    "warmup": int,
    "samples": int,
    "seed": int,
    "target_accept": float,
    "max_tree_depth": int,
    "dense_mass": bool,
    "batch_size": int,
    "init": str,
}
_RESULTS = "results"


class JobError(BayesNLMEError):
    """A job file that cannot be run (the message names the key and the fix)."""


def load_job(path: str | os.PathLike | Mapping) -> dict:
    """Read and check a job (a TOML file, or the same content as a dict).

    Paths inside the job are resolved relative to the job file's directory.

    Raises
    ------
    JobError
        For unknown keys, missing ``model``/``out``, both or neither of ``[data]`` and
        ``[simulate]``, or wrong types.
    """
    if isinstance(path, Mapping):
        job, base = dict(path), Path.cwd()
    else:
        p = Path(path)
        if not p.is_file():
            raise JobError(f"Job file {str(p)!r} does not exist.")
        try:
            job = tomllib.loads(p.read_text())
        except tomllib.TOMLDecodeError as e:
            raise JobError(f"Job file {str(p)!r} is not valid TOML: {e}.") from None
        base = p.resolve().parent
    unknown = set(job) - {"model", "out", "data", "simulate", "sampler", "engine"}
    if unknown:
        raise JobError(f"Unknown job keys {sorted(unknown)}; see `bayes-nlme batch --template`.")
    for key in ("model", "out"):
        if not isinstance(job.get(key), str):
            raise JobError(f'The job needs `{key} = "..."` (a string).')
    if ("data" in job) == ("simulate" in job):
        raise JobError("Give exactly one of [data] (dataset files) and [simulate] (a design).")
    model = job["model"]
    if model.endswith(".py"):
        model = str((base / model).resolve())
    out = str((base / job["out"]).resolve())
    sampler = dict(job.get("sampler", {}))
    for k, v in sampler.items():
        if k not in _SAMPLER_KEYS:
            raise JobError(f"Unknown [sampler] key {k!r}; known: {sorted(_SAMPLER_KEYS)}.")
        if not isinstance(v, _SAMPLER_KEYS[k]) or isinstance(v, bool) != (_SAMPLER_KEYS[k] is bool):
            if not (_SAMPLER_KEYS[k] is float and isinstance(v, int)):
                raise JobError(f"[sampler] {k} must be {_SAMPLER_KEYS[k].__name__}; got {v!r}.")
    from ..infer._fit import INITS

    if sampler.get("init", INITS[0]) not in INITS:
        raise JobError(f"[sampler] init must be one of {INITS}; got {sampler['init']!r}.")
    resolved: dict[str, Any] = {"model": model, "out": out, "sampler": sampler}
    if "data" in job:
        files = job["data"].get("files")
        if isinstance(files, str):
            files = [files]
        if not files or not all(isinstance(f, str) for f in files):
            raise JobError('[data] needs files = ["path/or/glob*.csv", ...].')
        found = []
        for pattern in files:
            hits = sorted(glob.glob(str(base / pattern)))
            if not hits:
                raise JobError(f"[data] files: nothing matches {pattern!r} (relative to {base}).")
            found += hits
        names = [Path(f).stem for f in found]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise JobError(f"[data] files: several files are named {dup}; names must be unique.")
        resolved["data"] = {"files": found}
    else:
        sim = dict(job["simulate"])
        unknown = set(sim) - {"design", "n_datasets", "seed", "truth"}
        if unknown:
            raise JobError(f"Unknown [simulate] keys {sorted(unknown)}.")
        if not isinstance(sim.get("n_datasets"), int) or sim["n_datasets"] < 1:
            raise JobError("[simulate] needs n_datasets = N (a positive integer).")
        design = sim.get("design", "default")
        if design != "default":
            design = str((base / design).resolve())
        truth = sim.get("truth", "prior")
        if not (truth == "prior" or isinstance(truth, dict)):
            raise JobError('[simulate] truth must be "prior" or a table of parameters.')
        resolved["simulate"] = {
            "design": design,
            "n_datasets": sim["n_datasets"],
            "seed": int(sim.get("seed", 0)),
            "truth": truth,
        }
    engine = dict(job.get("engine", {"kind": "local"}))
    if engine.get("kind", "local") not in ("local", "dask"):
        raise JobError(f'[engine] kind must be "local" or "dask"; got {engine["kind"]!r}.')
    resolved["engine"] = engine
    return resolved


def _fingerprint(job: dict) -> str:
    """What fixes the results: model, datasets and sampler (not the engine)."""
    keep = {k: job[k] for k in ("model", "data", "simulate", "sampler") if k in job}
    return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]


def job_datasets(job: dict):
    """The job's model, dataset names, datasets and (when simulated) true parameters."""
    from .._cli import _load_data, load_model_module
    from ..data import read_nonmem
    from ._sbc import simulate_datasets

    module, model = load_model_module(job["model"])
    options = dict(getattr(module, "read_options", {}) or {})
    if "data" in job:
        files = job["data"]["files"]
        datasets = [read_nonmem(f, **options) for f in files]
        return model, [Path(f).stem for f in files], datasets, None
    sim = job["simulate"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        design = _load_data(module, None if sim["design"] == "default" else sim["design"])
    n = sim["n_datasets"]
    datasets, truth = simulate_datasets(model, design, n, truth=sim["truth"], seed=sim["seed"])
    width = len(str(n - 1))
    names = [f"sim_{i:0{width}d}" for i in range(n)]
    return model, names, datasets, truth


def _write_atomic(path: Path, write) -> None:
    """``write(tmp)`` then rename onto ``path``: a file that exists is complete."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write(tmp)
    os.replace(tmp, path)


def _fit_settings(job: dict) -> dict:
    s = dict(job["sampler"])
    s.pop("seed", None)
    return s


def _fit_and_write(job, model, names, datasets, indices, done=None) -> list[str]:
    """Fit datasets ``indices`` with seeds ``sampler.seed + index`` and write each result
    as it is ready; ``done(name)`` after each. Returns the names written."""
    from ..infer import fit_batch

    results = Path(job["out"]) / _RESULTS
    seed = int(job["sampler"].get("seed", 0))
    written = []

    def write(k, idata):
        name = names[indices[k]]
        idata.posterior.attrs["dataset"] = name
        _write_atomic(results / f"{name}.nc", lambda tmp: idata.to_netcdf(str(tmp)))
        written.append(name)
        if done is not None:
            done(name)

    fit_batch(
        model,
        [datasets[i] for i in indices],
        seeds=[seed + i for i in indices],
        on_result=write,
        progress=False,
        **_fit_settings(job),
    )
    return written


def fit_chunk(job: dict, indices: list[int]) -> list[str]:
    """Fit the job's datasets ``indices`` and write their results (a task of the Dask
    engine). Returns the names written."""
    model, names, datasets, _ = job_datasets(job)
    return _fit_and_write(job, model, names, datasets, indices)


def run_job(path, *, progress: bool | None = None) -> Path:
    """Run (or resume) a batch job; returns the path of its summary table.

    Parameters
    ----------
    path : str, path or mapping
        The job file (see :data:`JOB_TEMPLATE`) or its content as a dict.
    progress : bool, optional
        A progress bar on stderr (default: when stderr is a terminal).

    Returns
    -------
    pathlib.Path
        ``OUT/summary.csv``: one row per dataset (divergences, max R-hat, min bulk ESS,
        converged, and median and 90% interval of each population parameter; with simulated
        data the true value and whether the interval covers it).

    Raises
    ------
    JobError
        If the job file is invalid, or ``OUT`` holds results of a different job.
    """
    job = load_job(path)
    out = Path(job["out"])
    results = out / _RESULTS
    results.mkdir(parents=True, exist_ok=True)
    info_path = out / "job.json"
    fp = _fingerprint(job)
    if info_path.exists():
        old = json.loads(info_path.read_text())
        if old.get("fingerprint") != fp:
            raise JobError(
                f"{out} holds results of a different job (model, data or sampler changed). "
                "Use a new `out` directory, or delete the old one."
            )
    model, names, datasets, truth = job_datasets(job)
    _write_atomic_text(
        info_path,
        json.dumps({"fingerprint": fp, "job": job, "datasets": names}, indent=2, default=str),
    )
    if truth is not None:
        _write_truth(out / "truth.csv", names, truth)
    todo = [i for i, n in enumerate(names) if not (results / f"{n}.nc").exists()]
    if progress is None:
        progress = sys.stderr.isatty() and not os.environ.get("CI")
    _say(
        f"bayes-nlme batch: {len(names)} datasets, {len(names) - len(todo)} already done, "
        f"{len(todo)} to fit -> {out}"
    )
    t0 = time.perf_counter()
    if todo:
        engine = job["engine"].get("kind", "local")
        if engine == "dask":
            from ._dask import run_chunks_dask

            run_chunks_dask(job, todo, progress=progress)
        else:
            _run_local(job, model, names, datasets, todo, progress)
    summary = write_summary(out, names, truth)
    _say(f"bayes-nlme batch: done in {time.perf_counter() - t0:.0f} s; summary {summary}")
    return summary


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _write_atomic_text(path: Path, text: str) -> None:
    _write_atomic(path, lambda tmp: tmp.write_text(text))


def _write_truth(path: Path, names: list[str], truth: dict) -> None:
    import pandas as pd

    cols = {k: np.asarray(v) for k, v in truth.items() if np.ndim(v) == 1}
    table = pd.DataFrame({"dataset": names, **cols})
    _write_atomic_text(path, table.to_csv(index=False))


def _run_local(job, model, names, datasets, todo, progress) -> None:
    from tqdm.auto import tqdm

    bar = tqdm(total=len(todo), desc="fits", disable=not progress, file=sys.stderr)
    try:
        _fit_and_write(job, model, names, datasets, todo, done=lambda _: bar.update(1))
    finally:
        bar.close()


def write_summary(out: Path, names: list[str], truth: dict | None) -> Path:
    """``OUT/summary.csv`` from the result files (one row per dataset)."""
    import arviz as az
    import pandas as pd

    from ..diagnostics._summary import convergence

    rows = []
    for i, name in enumerate(names):
        path = out / _RESULTS / f"{name}.nc"
        if not path.exists():
            rows.append({"dataset": name, "status": "missing"})
            continue
        idata = az.from_netcdf(str(path))
        pop = [
            n
            for n in idata.posterior.attrs.get("population_parameters", "").split(",")
            if n and n in idata.posterior and idata.posterior[n].ndim == 2
        ]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # R-hat is NaN with one chain
            conv = convergence(idata, pop)
        row = {
            "dataset": name,
            "status": "done",
            "divergences": conv["divergences"],
            "max_r_hat": conv["max_r_hat"],
            "min_ess_bulk": conv["min_ess_bulk"],
            "converged": conv["converged"],
        }
        for n in pop:
            v = np.asarray(idata.posterior[n]).reshape(-1)
            q05, q50, q95 = np.quantile(v, [0.05, 0.5, 0.95])
            row[f"{n}_median"] = q50
            row[f"{n}_q05"] = q05
            row[f"{n}_q95"] = q95
            if truth is not None and n in truth and np.ndim(truth[n]) == 1:
                t = float(truth[n][i])
                row[f"{n}_true"] = t
                row[f"{n}_covered"] = bool(q05 <= t <= q95)
        rows.append(row)
        idata.close()
    path = out / "summary.csv"
    _write_atomic_text(path, pd.DataFrame(rows).to_csv(index=False))
    return path
