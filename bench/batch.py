"""Benchmark: datasets per hour, ``bn.fit_batch`` against a loop of ``bn.fit`` calls.

The workload of a simulation-estimation study: N trials of the Theophylline design (12
subjects, 132 concentrations, the zoo's one-compartment oral model) simulated with known
parameters, each fitted with the same sampler settings. The loop calls ``bn.fit`` once per
trial, as a user script would (each call builds and compiles its sampler; the persistent
compilation cache is on, as in the CLI). ``fit_batch`` runs all trials in one compiled
program, vmapped over trials and chains and sharded over the local devices. Both are timed
in the same run, wall clock including compilation, and the ratio is printed.

Usage: ``python bench/batch.py [--n 64] [--chains 1] [--warmup 300] [--samples 300]
[--quick] [--loop-n K]`` (``--quick``: 8 trials, 150 + 150 iterations; ``--loop-n``: time
the loop on the first K trials only and scale to N, for long runs).
"""

from __future__ import annotations

import argparse
import time
import warnings

import jax
import numpy as np

import bayes_nlme as bn
from bayes_nlme.batch import simulate_datasets
from bayes_nlme.model_zoo.theophylline import data, model

TRUTH = dict(
    tvka=1.5, tvcl=2.8, tvv=32.0, add_sd=0.7, omega_ka_sd=0.6, omega_cl_sd=0.26, omega_v_sd=0.14
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--chains", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--samples", type=int, default=300)
    ap.add_argument("--loop-n", type=int, default=None)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.n, args.warmup, args.samples = 8, 150, 150
    bn._config.enable_compilation_cache()
    warnings.simplefilter("ignore")
    trials, _ = simulate_datasets(model, data(), args.n, truth=TRUTH, seed=1)
    kw = dict(chains=args.chains, warmup=args.warmup, samples=args.samples)
    print(
        f"device: {jax.devices()[0].device_kind} x {jax.local_device_count()} "
        f"({jax.default_backend()}); {args.n} Theophylline trials, {args.chains} chain(s) x "
        f"({args.warmup} + {args.samples})"
    )

    t0 = time.perf_counter()
    fits = bn.fit_batch(model, trials, **kw)
    t_batch = time.perf_counter() - t0
    div = sum(int(f.sample_stats["diverging"].sum()) for f in fits)

    n_loop = args.loop_n or args.n
    t0 = time.perf_counter()
    for i in range(n_loop):
        bn.fit(model, trials[i], seed=i, **kw)
    t_loop = (time.perf_counter() - t0) * args.n / n_loop

    per_h = lambda t: 3600 * args.n / t  # noqa: E731
    print(
        f"loop of fit : {t_loop:8.1f} s  {per_h(t_loop):8.0f} datasets/h"
        + (f"  (timed on {n_loop}, scaled)" if n_loop != args.n else "")
    )
    print(
        f"fit_batch   : {t_batch:8.1f} s  {per_h(t_batch):8.0f} datasets/h  "
        f"({div} divergent transitions in all)"
    )
    print(f"speed-up fit_batch / loop: {t_loop / t_batch:.1f}x")
    med = np.median([float(f.posterior["tvcl"].median()) for f in fits])
    print(f"check: median over trials of the posterior median tvcl {med:.3f} (truth 2.8)")


if __name__ == "__main__":
    main()
