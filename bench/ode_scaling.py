"""Benchmark: cost of the ODE structural model as the population grows (12, 120, 1200 subjects).

A two-compartment oral model (the zoo's ``theophylline_2cpt``: KA, CL, V with IIV, Q and V2
without) written once with the closed form (``bn.pk.Depots1Central1Periph1``) and once as an
ODE (``bn.pk.ODE`` with the same right-hand side), on a synthetic design: the 12 Theophylline
subjects' weights and doses, each given three oral doses 12 h apart and sampled 13 times over
48 h, replicated 10x and 100x (DV simulated from the analytic model with known parameters).

For each population size and variant the benchmark times the jitted value and gradient of
the NumPyro model's potential energy (what NUTS evaluates at every leapfrog step), at the
prior-median starting point of ``bn.fit``, and prints milliseconds per evaluation, evaluations
per second, the ratio to the analytic model measured in the same run, and the growth from
one size to the next (linear scaling: 10x per 10x subjects).

Usage: ``python bench/ode_scaling.py [--sizes 12 120 1200] [--quick] [--diffrax]``
(``--quick``: fewer repeats, sizes 12 and 120; ``--diffrax``: also the ODE solved by diffrax,
``ODE(..., integrator="diffrax")``, the implementation before the built-in integrator).
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from numpyro.infer.util import initialize_model, potential_energy

import bayes_nlme as bn
from bayes_nlme.infer._fit import init_to_typical
from bayes_nlme.model_zoo import theophylline_2cpt as zoo

TRUTH = dict(
    tvka=1.5,
    tvcl=2.8,
    tvv=25.0,
    tvq=2.0,
    tvv2=10.0,
    add_sd=0.5,
    omega_ka_sd=0.5,
    omega_cl_sd=0.3,
    omega_v_sd=0.2,
)
DOSE_TIMES = (0.0, 12.0, 24.0)
OBS_TIMES = (0.5, 1.0, 2.0, 4.0, 8.0, 12.0, 12.5, 14.0, 24.0, 25.0, 28.0, 36.0, 48.0)


def rhs_2cpt_oral(t, a, p):
    k10, k12, k21 = p.CL / p.V, p.Q / p.V, p.Q / p.V2
    return {
        "Depot": -p.KA * a.Depot,
        "Central": p.KA * a.Depot - (k10 + k12) * a.Central + k21 * a.Peripheral,
        "Peripheral": k12 * a.Central - k21 * a.Peripheral,
    }


def ode_model(**options) -> bn.Model:
    base = zoo.model
    ode = bn.pk.ODE(
        rhs_2cpt_oral, ("Depot", "Central", "Peripheral"), ("KA", "CL", "V", "Q", "V2"), **options
    )
    return bn.Model(
        name="theophylline_2cpt_ode",
        params=base.params,
        random=base.random,
        pre=base.pre,
        dynamics=ode,
        derived=base.derived,
    )


def design(n_id: int, seed: int = 0) -> pd.DataFrame:
    """The synthetic multiple-dose design with DV simulated from the analytic model."""
    theo = bn.datasets.load("theophylline")
    base = theo[theo.AMT > 0].groupby("ID").AMT.first().to_numpy()
    rows = []
    for i in range(n_id):
        amt = float(base[i % base.size])
        for t in DOSE_TIMES:
            rows.append((i + 1, t, 0.0, amt, 1, 1))
        for t in OBS_TIMES:
            rows.append((i + 1, t, 0.0, 0.0, 0, 2))
    df = pd.DataFrame(rows, columns=["ID", "TIME", "DV", "AMT", "EVID", "CMT"])
    df = df.sort_values(["ID", "TIME", "EVID"], ascending=[True, True, False], kind="stable")
    df = df.reset_index(drop=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sim = bn.simulate(zoo.model, df, TRUTH, seed=seed).predictions["DV"].values.ravel()
    df.loc[df.EVID == 0, "DV"] = sim
    return df


def timed_gradient(model: bn.Model, ds, x, min_time: float) -> tuple[float, float, float]:
    """(seconds per value_and_grad of the potential energy, compile seconds, value)."""
    md = model.model_data(ds)
    kw = {"DV": jnp.asarray(ds.dv)}
    f = jax.jit(jax.value_and_grad(lambda z: potential_energy(model.numpyro_model, (md,), kw, z)))
    t0 = time.perf_counter()
    value, _ = jax.block_until_ready(f(x))
    t_compile = time.perf_counter() - t0
    # calibrate the number of calls so one repeat takes about min_time / 3, best of 3
    t0 = time.perf_counter()
    jax.block_until_ready(f(x))
    once = max(time.perf_counter() - t0, 1e-6)
    n = max(1, int(min_time / 3 / once))
    best = np.inf
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(n):
            out = f(x)
        jax.block_until_ready(out)
        best = min(best, (time.perf_counter() - t0) / n)
    return best, t_compile, float(value)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=None)
    p.add_argument("--quick", action="store_true", help="sizes 12 and 120, shorter timing")
    p.add_argument("--diffrax", action="store_true", help="also time integrator='diffrax'")
    p.add_argument("--min-time", type=float, default=None, help="seconds per measurement")
    args = p.parse_args()
    sizes = args.sizes or ([12, 120] if args.quick else [12, 120, 1200])
    min_time = args.min_time or (1.0 if args.quick else 3.0)
    variants = {
        "analytic": zoo.model,
        "ode (rtol 1e-8, default)": ode_model(),
        "ode (rtol 1e-6, atol 1e-8)": ode_model(rtol=1e-6, atol=1e-8),
    }
    if args.diffrax:
        variants["ode diffrax (rtol 1e-8)"] = ode_model(integrator="diffrax")
        variants["ode diffrax (rtol 1e-6)"] = ode_model(rtol=1e-6, atol=1e-8, integrator="diffrax")
    print(
        f"2-cpt oral, {len(DOSE_TIMES)} doses + {len(OBS_TIMES)} observations per subject; "
        f"value_and_grad of the potential energy; JAX {jax.__version__}, "
        f"{os.cpu_count()} CPUs, backend {jax.default_backend()}"
    )
    print(
        f"{'subjects':>8}  {'variant':<28}{'ms/grad':>10}{'grad/s':>10}{'us/subj':>9}"
        f"{'x analytic':>11}{'x prev size':>12}{'compile s':>10}{'rel. value diff':>16}"
    )
    prev: dict[str, tuple[int, float]] = {}
    for n_id in sizes:
        ds = bn.read_nonmem(design(n_id))
        md = zoo.model.model_data(ds)
        info = initialize_model(
            jax.random.PRNGKey(0),
            zoo.model.numpyro_model,
            model_args=(md,),
            model_kwargs={"DV": jnp.asarray(ds.dv)},
            init_strategy=init_to_typical(),
        )
        x = info.param_info.z
        base_s = base_value = None
        for name, model in variants.items():
            sec, t_comp, value = timed_gradient(model, ds, x, min_time)
            if base_s is None:
                base_s, base_value = sec, value
            growth = ""
            if name in prev:
                n0, s0 = prev[name]
                growth = f"{sec / s0:.1f} (n x{n_id / n0:g})"
            prev[name] = (n_id, sec)
            print(
                f"{n_id:>8}  {name:<28}{sec * 1e3:>10.3f}{1 / sec:>10.0f}"
                f"{sec / n_id * 1e6:>9.1f}{sec / base_s:>11.1f}{growth:>12}{t_comp:>10.1f}"
                f"{abs(value - base_value) / abs(base_value):>16.1e}",
                flush=True,
            )


if __name__ == "__main__":
    main()
