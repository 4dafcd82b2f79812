"""Benchmark: the zoo Theophylline model vs the same model hand-written in NumPyro.

Each variant runs in its own Python process (so compile time and imports count), in the same
benchmark run, and reports wall time from process start to results, sampling time and the
minimum bulk ESS over the population parameters. The package must stay within 1.2x of the
hand-written model (wall time, and min bulk-ESS per second).

Usage: ``python bench/theophylline.py [--chains 4 --warmup 1000 --samples 1000 --repeats 1]``
(``make bench``). Variants:

- ``handwritten``: analytic one-compartment oral model written directly in NumPyro,
  non-centred IIV, same priors and initialisation as the zoo model, no compilation cache;
- ``package``: ``bn.fit(model_zoo.theophylline.model, ...)`` with the compilation cache off
  (a cold start, like the hand-written one);
- ``package_warm``: the same with the persistent compilation cache warm (run twice, the
  second run is reported).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
POP = ["tvka", "tvcl", "tvv", "add_sd", "omega_ka_sd", "omega_cl_sd", "omega_v_sd"]


def run_handwritten(args) -> dict:
    import numpyro

    numpyro.set_host_device_count(max(4, os.cpu_count() or 1))
    numpyro.enable_x64()
    import warnings

    import jax
    import jax.numpy as jnp
    import numpy as np
    import numpyro.distributions as dist
    import pandas as pd
    from numpyro.infer import MCMC, NUTS, init_to_median

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import arviz as az

    import bayes_nlme  # noqa: F401  (only to locate the bundled CSV; its config is overridden)

    csv = Path(bayes_nlme.__file__).parent / "datasets" / "files" / "theo_sd.csv"
    df = pd.read_csv(csv)
    ids = df.ID.unique()
    dose = df[df.EVID != 0].groupby("ID").AMT.first().loc[ids].to_numpy()
    obs = df[df.EVID == 0]
    sid = np.searchsorted(ids, obs.ID.to_numpy())
    t = obs.TIME.to_numpy()
    dv = obs.DV.to_numpy()
    n = len(ids)

    def model(t, sid, dose, dv=None):
        tvka = numpyro.sample("tvka", dist.LogNormal(jnp.log(1.5), 1.0))
        tvcl = numpyro.sample("tvcl", dist.LogNormal(jnp.log(3.0), 1.0))
        tvv = numpyro.sample("tvv", dist.LogNormal(jnp.log(30.0), 1.0))
        add_sd = numpyro.sample("add_sd", dist.HalfNormal(1.0))
        om = jnp.stack(
            [numpyro.sample(f"omega_{k}_sd", dist.HalfNormal(0.5)) for k in ("ka", "cl", "v")]
        )
        with numpyro.plate("ID", n):
            z = numpyro.sample("z_eta", dist.Normal(0, 1).expand([3]).to_event(1))
        eta = z * om
        ka = tvka * jnp.exp(eta[:, 0])
        cl = tvcl * jnp.exp(eta[:, 1])
        v = tvv * jnp.exp(eta[:, 2])
        k = cl / v
        kas, ks, vs, ds = ka[sid], k[sid], v[sid], dose[sid]
        conc = ds * kas / (vs * (kas - ks)) * (jnp.exp(-ks * t) - jnp.exp(-kas * t))
        with numpyro.plate("obs", t.shape[0]):
            numpyro.sample("DV", dist.Normal(conc, add_sd), obs=dv)

    def init(site=None):
        if site is None:
            return functools.partial(init)
        if site["type"] == "sample" and site["name"] == "z_eta":
            return jnp.zeros(site["fn"].shape())
        return init_to_median(site, num_samples=201)

    mcmc = MCMC(
        NUTS(model, target_accept_prob=0.9, init_strategy=init),
        num_warmup=args.warmup,
        num_samples=args.samples,
        num_chains=args.chains,
        progress_bar=False,
        chain_method="parallel" if jax.local_device_count() >= args.chains else "sequential",
    )
    t0 = time.perf_counter()
    mcmc.run(jax.random.PRNGKey(args.seed), t, sid, dose, dv=dv)
    jax.block_until_ready(mcmc.get_samples())
    t_run = time.perf_counter() - t0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = az.from_numpyro(mcmc, log_likelihood=False)
        s = az.summary(idata, var_names=POP)
    return _result(s, idata, t_run)


def run_package(args) -> dict:
    import bayes_nlme as bn
    from bayes_nlme.model_zoo.theophylline import data, model

    t0 = time.perf_counter()
    idata = bn.fit(
        model,
        data(),
        chains=args.chains,
        warmup=args.warmup,
        samples=args.samples,
        seed=args.seed,
        progress_bar=False,
    )
    t_run = time.perf_counter() - t0
    return _result(bn.summary(idata), idata, t_run)


def _result(table, idata, t_run) -> dict:
    return dict(
        run_s=t_run,
        min_ess_bulk=float(table.loc[POP, "ess_bulk"].min()),
        max_r_hat=float(table.loc[POP, "r_hat"].max()),
        divergences=int(idata.sample_stats["diverging"].sum()),
        medians={k: float(idata.posterior[k].median()) for k in POP},
    )


def child(args) -> None:
    res = run_handwritten(args) if args.variant == "handwritten" else run_package(args)
    print("RESULT " + json.dumps(res), flush=True)


def spawn(variant: str, args, env_extra: dict) -> dict:
    env = {**os.environ, **env_extra}
    cmd = [
        sys.executable,
        __file__,
        "--variant",
        variant,
        "--chains",
        str(args.chains),
        "--warmup",
        str(args.warmup),
        "--samples",
        str(args.samples),
        "--seed",
        str(args.seed),
    ]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"{variant} failed:\n{out.stderr[-3000:]}")
    line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")][-1]
    res = json.loads(line[len("RESULT ") :])
    res["wall_s"] = wall
    res["ess_per_s"] = res["min_ess_bulk"] / wall
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variant", choices=["handwritten", "package"])
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--warmup", type=int, default=1000)
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=1, help="alternate the variants this many times")
    args = p.parse_args()
    if args.variant:
        return child(args)
    results: dict[str, list] = {"handwritten": [], "package": [], "package_warm": []}
    with tempfile.TemporaryDirectory() as cache:
        for _ in range(args.repeats):
            results["handwritten"].append(spawn("handwritten", args, {"BAYES_NLME_CACHE_DIR": ""}))
            results["package"].append(spawn("package", args, {"BAYES_NLME_CACHE_DIR": ""}))
            spawn("package", args, {"BAYES_NLME_CACHE_DIR": cache})  # fill the cache
            results["package_warm"].append(spawn("package", args, {"BAYES_NLME_CACHE_DIR": cache}))
    best = {k: min(v, key=lambda r: r["wall_s"]) for k, v in results.items()}
    base = best["handwritten"]
    print(
        f"Theophylline, {args.chains} chains x ({args.warmup} + {args.samples}), "
        f"{os.cpu_count()} CPUs, best of {args.repeats}"
    )
    print(
        f"{'variant':<14}{'wall s':>8}{'fit s':>8}{'min ESS':>9}{'ESS/s':>8}{'R-hat':>8}"
        f"{'div':>5}{'wall ratio':>12}{'ESS/s ratio':>13}"
    )
    for k, r in best.items():
        print(
            f"{k:<14}{r['wall_s']:>8.2f}{r['run_s']:>8.2f}{r['min_ess_bulk']:>9.0f}"
            f"{r['ess_per_s']:>8.1f}{r['max_r_hat']:>8.4f}{r['divergences']:>5d}"
            f"{r['wall_s'] / base['wall_s']:>12.2f}{r['ess_per_s'] / base['ess_per_s']:>13.2f}"
        )
    print(
        "medians:", {k: {p: round(v, 3) for p, v in r["medians"].items()} for k, r in best.items()}
    )


if __name__ == "__main__":
    main()
