"""Benchmark: the Theophylline model with the analytic and with the ODE solution, same run.

The zoo Theophylline model (1-cpt oral, non-centred IIV on KA/CL/V, additive error) with its
closed form (``bn.pk.Depots1Central1``) and with the same right-hand side solved numerically
(``bn.pk.ODE``), on the bundled data (12 subjects, one dose, 132 concentrations). Two parts:

1. milliseconds per value and gradient of the NumPyro model's potential energy (what NUTS
   evaluates at every leapfrog step), at the prior-median start of ``bn.fit``, best of 3;
2. full fits with ``bn.fit`` (each variant in a fresh process, compilation included, the
   persistent compilation cache off): wall time, sampling time, min bulk ESS, max R-hat,
   gradient evaluations (leapfrog steps) and time per gradient inside the sampler.

ODE variants: the default tolerances (``rtol=1e-8, atol=1e-10``) and ``rtol=1e-6,
atol=1e-8`` (the tolerance of the issue's reference measurement), with the built-in
integrator (default) and, with ``--diffrax``, with ``ODE(..., integrator="diffrax")`` (one
``diffrax.diffeqsolve`` per dosing segment, the implementation before). Target: the ODE path
within 10x of the analytic one. Ratios are against the analytic model measured in the same
run (the machines are shared and noisy).

Usage: ``python bench/ode_vs_analytic.py [--chains 4 --warmup 1000 --samples 1000]
[--quick] [--diffrax] [--no-fit]`` (``--quick``: 4 chains x (250 + 250)).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
POP = ["tvka", "tvcl", "tvv", "add_sd", "omega_ka_sd", "omega_cl_sd", "omega_v_sd"]
VARIANTS = {
    "analytic": None,
    "ode": dict(),
    "ode_1e-6": dict(rtol=1e-6, atol=1e-8),
    "ode_diffrax": dict(integrator="diffrax"),
    "ode_diffrax_1e-6": dict(rtol=1e-6, atol=1e-8, integrator="diffrax"),
}


def rhs_1cpt_oral(t, a, p):
    """The right-hand side that ``bn.pk.Depots1Central1`` solves in closed form."""
    return {"Depot": -p.KA * a.Depot, "Central": p.KA * a.Depot - p.CL / p.V * a.Central}


def make_model(variant: str):
    import bayes_nlme as bn
    from bayes_nlme.model_zoo import theophylline as zoo

    options = VARIANTS[variant]
    if options is None:
        return zoo.model
    base = zoo.model
    return bn.Model(
        name="theophylline_ode",
        params=base.params,
        random=base.random,
        pre=base.pre,
        dynamics=bn.pk.ODE(rhs_1cpt_oral, ("Depot", "Central"), ("KA", "CL", "V"), **options),
        derived=base.derived,
    )


def load_data():
    import bayes_nlme as bn

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # EVID=101 recoded
        return bn.read_nonmem(bn.datasets.load("theophylline"))


def gradient_timings(variants: list[str], min_time: float) -> dict[str, dict]:
    import jax
    import jax.numpy as jnp
    import numpy as np
    from numpyro.infer.util import initialize_model, potential_energy

    from bayes_nlme.infer._fit import init_to_typical

    ds = load_data()
    analytic = make_model("analytic")
    md = analytic.model_data(ds)
    kw = {"DV": jnp.asarray(ds.dv)}
    info = initialize_model(
        jax.random.PRNGKey(0),
        analytic.numpyro_model,
        model_args=(md,),
        model_kwargs=kw,
        init_strategy=init_to_typical(),
    )
    x = info.param_info.z
    res = {}
    for v in variants:
        model = make_model(v)

        def pe(z, model=model):
            return potential_energy(model.numpyro_model, (md,), kw, z)

        f = jax.jit(jax.value_and_grad(pe))
        t0 = time.perf_counter()
        value, _ = jax.block_until_ready(f(x))
        t_compile = time.perf_counter() - t0
        t0 = time.perf_counter()
        jax.block_until_ready(f(x))
        n = max(1, int(min_time / 3 / max(time.perf_counter() - t0, 1e-6)))
        best = np.inf
        for _ in range(3):
            t0 = time.perf_counter()
            for _ in range(n):
                out = f(x)
            jax.block_until_ready(out)
            best = min(best, (time.perf_counter() - t0) / n)
        res[v] = dict(s_per_grad=best, compile_s=t_compile, value=float(value))
    return res


def child(args) -> None:
    import numpy as np

    import bayes_nlme as bn

    model = make_model(args.variant)
    ds = load_data()
    t0 = time.perf_counter()
    idata = bn.fit(
        model,
        ds,
        chains=args.chains,
        warmup=args.warmup,
        samples=args.samples,
        seed=args.seed,
        progress_bar=False,
    )
    t_run = time.perf_counter() - t0
    table = bn.summary(idata)
    res = dict(
        run_s=t_run,
        min_ess_bulk=float(table.loc[POP, "ess_bulk"].min()),
        max_r_hat=float(table.loc[POP, "r_hat"].max()),
        divergences=int(idata.sample_stats["diverging"].sum()),
        draw_grads=int(np.asarray(idata.sample_stats["n_steps"]).sum()),
        chain_method=idata.sample_stats.attrs.get("chain_method"),
        medians={k: float(idata.posterior[k].median()) for k in POP},
    )
    print("RESULT " + json.dumps(res), flush=True)


def spawn(variant: str, args) -> dict:
    env = {**os.environ, "BAYES_NLME_CACHE_DIR": ""}
    cmd = [sys.executable, __file__, "--variant", variant]
    for k in ("chains", "warmup", "samples", "seed"):
        cmd += [f"--{k}", str(getattr(args, k))]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"{variant} failed:\n{out.stderr[-3000:]}")
    line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")][-1]
    res = json.loads(line[len("RESULT ") :])
    res["wall_s"] = wall
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variant", choices=list(VARIANTS))
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--samples", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="fits of 4 chains x (250 + 250)")
    p.add_argument("--diffrax", action="store_true", help="also integrator='diffrax'")
    p.add_argument("--no-fit", action="store_true", help="gradient timings only")
    p.add_argument(
        "--fit-variants", nargs="+", default=None, help="variants to fit (default: all timed)"
    )
    args = p.parse_args()
    default_n = 250 if args.quick else 1000
    args.warmup = default_n if args.warmup is None else args.warmup
    args.samples = default_n if args.samples is None else args.samples
    if args.variant:
        return child(args)
    variants = [v for v in VARIANTS if args.diffrax or "diffrax" not in v]

    import jax

    import bayes_nlme  # noqa: F401  (x64, host devices)

    print(
        f"Theophylline (12 subjects, 132 observations), JAX {jax.__version__}, "
        f"{os.cpu_count()} CPUs, backend {jax.default_backend()}"
    )
    grads = gradient_timings(variants, min_time=1.0 if args.quick else 3.0)
    base = grads["analytic"]
    print("\n1. value_and_grad of the potential energy (best of 3)")
    print(f"{'variant':<18}{'ms/grad':>10}{'x analytic':>12}{'compile s':>11}{'|dU|':>10}")
    for v, r in grads.items():
        print(
            f"{v:<18}{r['s_per_grad'] * 1e3:>10.3f}{r['s_per_grad'] / base['s_per_grad']:>12.1f}"
            f"{r['compile_s']:>11.1f}{abs(r['value'] - base['value']):>10.1e}",
            flush=True,
        )
    if args.no_fit:
        return
    fit_variants = args.fit_variants or variants
    print(
        f"\n2. bn.fit, {args.chains} chains x ({args.warmup} + {args.samples}), fresh process, "
        "compilation cache off"
    )
    fits = {v: spawn(v, args) for v in fit_variants}
    b = fits.get("analytic")
    print(
        f"{'variant':<18}{'wall s':>8}{'fit s':>8}{'x analytic':>11}{'grads':>9}{'ms/grad':>9}"
        f"{'min ESS':>9}{'R-hat':>8}{'div':>5}  chains"
    )
    for v, r in fits.items():
        ratio = f"{r['wall_s'] / b['wall_s']:.1f}" if b else "-"
        # grads counted over the kept draws only; warmup is about as long
        per_grad = r["run_s"] / max(r["draw_grads"] * (1 + args.warmup / args.samples), 1)
        print(
            f"{v:<18}{r['wall_s']:>8.1f}{r['run_s']:>8.1f}{ratio:>11}{r['draw_grads']:>9d}"
            f"{per_grad * 1e3:>9.3f}{r['min_ess_bulk']:>9.0f}{r['max_r_hat']:>8.4f}"
            f"{r['divergences']:>5d}  {r['chain_method']}",
            flush=True,
        )
    print(
        "medians:", {k: {p: round(x, 3) for p, x in r["medians"].items()} for k, r in fits.items()}
    )


if __name__ == "__main__":
    main()
