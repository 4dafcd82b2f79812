"""Simulation-based calibration of the Theophylline zoo model (issue #6): the full-size run.

Draws every population parameter from the model's priors, simulates one trial of the
bundled Theophylline design (12 subjects, 132 concentrations) per draw, fits each with
``bn.fit_batch`` and tests the ranks of the true values for uniformity (``bn.batch.sbc``;
Talts et al. 2018). Besides the uniformity table it prints what the ranks alone do not
show: per-dataset R-hat and ESS (are the fits converged?), divergent transitions, and the
datasets whose chains disagree (R-hat > 1.5: a second posterior mode, e.g. flip-flop
KA < K).

Usage: ``python bench/sbc_theophylline.py [--n 100] [--chains 2] [--warmup 500]
[--samples 500] [--ranks 99] [--bins 10] [--seed 11] [--plot sbc.png]``. The defaults take
about 50 min on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import time
import warnings

import arviz as az
import numpy as np

import bayes_nlme as bn
from bayes_nlme.batch import sbc
from bayes_nlme.model_zoo.theophylline import data, model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--samples", type=int, default=500)
    ap.add_argument("--ranks", type=int, default=99)
    ap.add_argument("--bins", type=int, default=10)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--plot", default=None, help="write the rank plot to this file")
    args = ap.parse_args()
    bn._config.enable_compilation_cache()
    warnings.simplefilter("ignore")
    t0 = time.perf_counter()
    res = sbc(
        model,
        data(),
        n_datasets=args.n,
        n_ranks=args.ranks,
        bins=args.bins,
        chains=args.chains,
        warmup=args.warmup,
        samples=args.samples,
        seed=args.seed,
        keep_fits=True,
    )
    wall = time.perf_counter() - t0
    print(
        f"{args.n} datasets, {args.chains} chain(s) x ({args.warmup} + {args.samples}), "
        f"{args.ranks} ranked draws, {args.bins} bins, seed {args.seed}: {wall:.0f} s"
    )
    print(res)
    print(res.table().to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    names = list(res.ranks)
    ess = np.array(
        [[float(az.ess(f.posterior[n]).to_array().min()) for n in names] for f in res.fits]
    )
    print(
        f"divergent transitions: {int(res.divergences.sum())} in "
        f"{int((res.divergences > 0).sum())} datasets"
    )
    if args.chains > 1:
        rhat = res.max_rhat
        print(
            f"R-hat (max over the ranked parameters): median {np.median(rhat):.4f}, 90% "
            f"{np.quantile(rhat, 0.9):.4f}; > 1.01 in {int((rhat > 1.01).sum())} datasets"
        )
        modes = np.where(rhat > 1.5)[0]
        ke = res.truth["tvcl"] / res.truth["tvv"]
        for i in modes:
            print(
                f"  dataset {i}: R-hat {rhat[i]:.2f} (chains in different modes); true "
                f"KA {res.truth['tvka'][i]:.3f} /h, K = CL/V {ke[i]:.3f} /h"
            )
    print(f"bulk ESS (min over parameters): median {np.median(ess.min(1)):.0f} per dataset")
    if args.plot:
        from bayes_nlme.plots import plot_sbc

        plot_sbc(res).savefig(args.plot, dpi=100)


if __name__ == "__main__":
    main()
