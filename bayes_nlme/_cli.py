"""The ``bayes-nlme`` command line.

``bayes-nlme fit MODEL [--data CSV] [--chains N] [--warmup N] [--samples N] [--seed S]
[--init typical|ebe] [--out DIR]``
``bayes-nlme report RUN_DIR``
``bayes-nlme batch JOB.toml`` (``bayes-nlme batch --template`` prints a job file)

MODEL is a model-zoo name (``theophylline``) or the path of a Python file that defines
``model`` (a :class:`bayes_nlme.Model`) and optionally ``data`` (a function returning the
default dataset, or the dataset itself), ``read_options`` (keyword arguments for
:func:`bayes_nlme.read_nonmem`, e.g. ``dict(ss_map={99: 0})``), ``fit_options`` (NUTS
settings the model needs, passed to :func:`bayes_nlme.fit`: ``target_accept``,
``dense_mass``, ``max_tree_depth``, ``init``; the command-line flags override them) and
``plot_labels``.
Results: ``DIR/posterior.nc`` (InferenceData, NetCDF), ``DIR/summary.csv``,
``DIR/individual_fits.png``, ``DIR/report.html`` (unless ``--no-report``) and
``DIR/run.json`` (how the run was made, read by ``report``). Bad input ends with a message
and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import pkgutil
import sys
import textwrap
import time
import warnings
from pathlib import Path

from ._report import RUN_FILE, read_run_info, write_report, write_run_info

EXIT_USAGE = 2


class UsageError(Exception):
    """Bad input from the user: printed as one paragraph, exit code 2."""


def zoo_names() -> list[str]:
    """Names of the bundled model-zoo models."""
    from . import model_zoo

    return sorted(m.name for m in pkgutil.iter_modules(model_zoo.__path__) if not m.ispkg)


def load_model_module(spec: str):
    """Import a model-zoo module by name or a model file by path."""
    path = Path(spec)
    if spec.endswith(".py") or path.exists():
        if not path.is_file():
            raise UsageError(f"Model file {spec!r} does not exist.")
        mspec = importlib.util.spec_from_file_location(f"_bayes_nlme_user_{path.stem}", path)
        module = importlib.util.module_from_spec(mspec)
        try:
            mspec.loader.exec_module(module)
        except Exception as e:  # the user's file failed: say where, not a traceback
            raise UsageError(
                f"Importing model file {spec!r} failed: {type(e).__name__}: {e}"
            ) from e
    else:
        names = zoo_names()
        if spec not in names:
            raise UsageError(
                f"Unknown model {spec!r}. Model-zoo models: {', '.join(names)}; or give the path "
                "of a Python file that defines `model`."
            )
        module = importlib.import_module(f"bayes_nlme.model_zoo.{spec}")
    from .population import Model

    model = getattr(module, "model", None)
    if not isinstance(model, Model):
        raise UsageError(
            f"{spec!r} must define `model = bn.Model(...)`; found {type(model).__name__}."
        )
    return module, model


def _load_data(module, data_arg: str | None):
    """The dataset: ``--data`` if given, else the module's ``data`` (a function or a table).
    A module's ``read_options`` (e.g. ``dict(ss_map={99: 0})``) are passed to read_nonmem."""
    from .data import Dataset, read_nonmem

    options = dict(getattr(module, "read_options", {}) or {})
    if data_arg is not None:
        return read_nonmem(data_arg, **options)
    default = getattr(module, "data", None)
    if default is None:
        raise UsageError(
            "This model file defines no default dataset (`data`); pass one with --data CSV."
        )
    table = default() if callable(default) else default
    return table if isinstance(table, Dataset) else read_nonmem(table, **options)


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


FIT_OPTIONS = ("target_accept", "dense_mass", "max_tree_depth", "init")


def _fit_options(module) -> dict:
    """The model file's ``fit_options`` (a dict of NUTS settings), checked."""
    options = getattr(module, "fit_options", None) or {}
    if not isinstance(options, dict):
        raise UsageError(f"fit_options must be a dict of {list(FIT_OPTIONS)}; got {options!r}.")
    unknown = sorted(set(options) - set(FIT_OPTIONS))
    if unknown:
        raise UsageError(
            f"fit_options may set {list(FIT_OPTIONS)}; unknown: {unknown} (chains, warmup, "
            "samples and seed are command-line flags)."
        )
    return dict(options)


def cmd_fit(args) -> int:
    module, model = load_model_module(args.model)
    t0 = time.perf_counter()
    from .diagnostics import summary
    from .infer import fit
    from .plots import plot_individual_fits

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # recodings are reported as notes below
        ds = _load_data(module, args.data)
    out = Path(args.out or Path("runs") / model.name)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"Cannot create output directory {str(out)!r}: {e.strerror}.") from e
    _say(f"bayes-nlme: {model!r}")
    _say(f"bayes-nlme: data {ds!r}")
    for note in ds.notes:
        _say(f"bayes-nlme: note: {note}")
    _say(
        f"bayes-nlme: NUTS, {args.chains} chains x ({args.warmup} warmup + {args.samples} draws), "
        f"seed {args.seed} (compiling, then sampling)..."
    )
    options = _fit_options(module)
    if args.max_tree_depth is not None:
        options["max_tree_depth"] = args.max_tree_depth
    if args.target_accept is not None:
        options["target_accept"] = args.target_accept
    if args.init is not None:
        options["init"] = args.init
    if options:
        _say(f"bayes-nlme: NUTS options {options}")
    idata = fit(
        model,
        ds,
        chains=args.chains,
        warmup=args.warmup,
        samples=args.samples,
        seed=args.seed,
        progress_bar=None if not args.no_progress else False,
        **options,
    )
    t_fit = time.perf_counter() - t0
    table = summary(idata)
    n_div = int(idata.sample_stats["diverging"].sum())
    table.to_csv(out / "summary.csv", index_label="parameter")
    labels = getattr(module, "plot_labels", {})
    import matplotlib.pyplot as plt

    for k, name in enumerate(model.output_names()):  # one figure per endpoint
        path = out / ("individual_fits.png" if k == 0 else f"individual_fits_{name}.png")
        plt.close(plot_individual_fits(model, ds, idata, path=path, output=name, **labels))
    print(table.to_string(float_format=lambda v: f"{v:.4g}"))
    _say(
        f"bayes-nlme: max R-hat {table['r_hat'].max():.4f}, min bulk ESS "
        f"{table['ess_bulk'].min():.0f}, {n_div} divergent transitions; fit took {t_fit:.1f} s"
    )
    spec = args.model if not Path(args.model).exists() else str(Path(args.model).resolve())
    info = {
        "model": spec,
        "data": str(Path(args.data).resolve()) if args.data else None,
        "chains": args.chains,
        "warmup": args.warmup,
        "samples": args.samples,
        "seed": args.seed,
        "fit_seconds": round(t_fit, 2),
    }
    write_run_info(out, info)
    written = ["summary.csv", "individual_fits.png", RUN_FILE]
    if not args.no_report:
        _say("bayes-nlme: writing the report (residuals, NPDE, VPC)...")
        write_report(out, model, ds, idata, info=info, plot_labels=labels)
        written.append("report.html")
    idata.to_netcdf(out / "posterior.nc")
    written.insert(0, "posterior.nc")
    for name in written:
        _say(f"bayes-nlme: wrote {out / name}")
    return 0


def cmd_report(args) -> int:
    import warnings as _w

    run = Path(args.run_dir)
    nc = run / "posterior.nc"
    if not nc.is_file():
        raise UsageError(
            f"{str(run)!r} is not a run directory: {nc.name} is missing. Give the --out "
            "directory of a `bayes-nlme fit` run."
        )
    try:
        info = read_run_info(run)
    except FileNotFoundError:
        raise UsageError(
            f"{str(run)!r} has no {RUN_FILE} (written by `bayes-nlme fit`), so the model and "
            "data cannot be reloaded."
        ) from None
    module, model = load_model_module(info["model"])
    with _w.catch_warnings():
        _w.simplefilter("ignore", UserWarning)
        ds = _load_data(module, info.get("data"))
        import arviz as az

        idata = az.from_netcdf(nc)
    path = write_report(
        run, model, ds, idata, info=info, plot_labels=getattr(module, "plot_labels", {})
    )
    _say(f"bayes-nlme: wrote {path}")
    return 0


def cmd_batch(args) -> int:
    from .batch._jobs import JOB_TEMPLATE, run_job

    if args.template:
        print(JOB_TEMPLATE, end="")
        return 0
    if not args.job:
        raise UsageError("Give the job file: bayes-nlme batch JOB.toml (--template prints one).")
    run_job(args.job, progress=None if not args.no_progress else False)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .infer._fit import INITS

    parser = argparse.ArgumentParser(
        prog="bayes-nlme", description="Bayesian population PK/PD with NUTS."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fit", help="fit a model to a NONMEM-style dataset with NUTS")
    f.add_argument("model", help="model-zoo name (e.g. theophylline) or path to a model .py file")
    f.add_argument("--data", help="NONMEM-style CSV (default: the model's own dataset)")
    f.add_argument("--chains", type=int, default=4)
    f.add_argument("--warmup", type=int, default=1000)
    f.add_argument("--samples", type=int, default=1000)
    f.add_argument("--seed", type=int, default=0)
    f.add_argument(
        "--max-tree-depth",
        type=int,
        default=None,
        help="NUTS maximum tree depth (default 10 or the model's fit_options; small values "
        "make quick smoke runs)",
    )
    f.add_argument(
        "--target-accept",
        type=float,
        default=None,
        help="NUTS target acceptance probability (default 0.9 or the model's fit_options)",
    )
    f.add_argument(
        "--init",
        choices=INITS,
        default=None,
        help="chain starts (default 'typical' or the model's fit_options): 'typical' puts "
        "every ETA at 0, 'ebe' at its empirical Bayes estimate",
    )
    f.add_argument("--out", help="output directory (default runs/<model name>)")
    f.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    f.add_argument("--no-report", action="store_true", help="skip report.html")
    f.set_defaults(func=cmd_fit)
    r = sub.add_parser("report", help="write RUN_DIR/report.html for a finished fit")
    r.add_argument("run_dir", help="the --out directory of a `bayes-nlme fit` run")
    r.set_defaults(func=cmd_report)
    b = sub.add_parser(
        "batch",
        help="fit a model to many datasets (files or simulated trials) as a resumable job",
    )
    b.add_argument("job", nargs="?", help="the job file (TOML); see --template")
    b.add_argument("--template", action="store_true", help="print a commented job file")
    b.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    b.set_defaults(func=cmd_batch)
    return parser


def _paragraph(msg: str) -> str:
    lines = str(msg).splitlines() or [""]
    head = textwrap.fill(lines[0], width=100, subsequent_indent="  ")
    return "\n".join([head, *lines[1:]])


def main(argv=None) -> int:
    """Entry point of ``bayes-nlme``; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from ._config import enable_compilation_cache

    enable_compilation_cache()  # repeat runs reuse compiled code
    for name in ("chains", "warmup", "samples"):
        value = getattr(args, name, None)
        if value is not None and value < (1 if name != "warmup" else 0):
            parser.error(f"--{name} must be positive; got {value}")
    from ._errors import BayesNLMEError

    try:
        return args.func(args)
    except (UsageError, BayesNLMEError) as e:
        print(f"bayes-nlme: error: {_paragraph(e)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("bayes-nlme: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
