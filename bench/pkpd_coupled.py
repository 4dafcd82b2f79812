"""Benchmark: warfarin PK/PD with closed-form PK driving the PD ODE vs everything in the ODE.

The zoo ``warfarin_pkpd`` model (32 subjects, one oral dose, 483 observations to 144 h; PK
1-cpt oral with lag time, turnover PD) with its dynamics as shipped,
``bn.pk.ODE(pd_rhs, ("Effect",), ..., pk=bn.pk.Depots1Central1())`` (only the PD state is
integrated), against the same system with the depot and central compartments in the ODE
(``compartments=("Depot", "Central", "Effect")``), both at ``rtol=1e-6, atol=1e-8``.

Measured: milliseconds per value and gradient of the potential energy (what NUTS evaluates
at each leapfrog step; jitted, best of 3) at the ``bn.fit`` starting point, then with ONE
subject's KA raised to 3, 10, 30 and 100 /h (the IIV on KA reaches such values in the
posterior and in warmup). With the depot in the ODE, the explicit solver's step is limited
to about 2.8 / KA for the whole 144 h once absorption is over (stiffness), so one fast
absorber slows the whole vmapped batch; with the closed-form PK the ODE no longer carries
KA. Ratios are against the all-ODE model at the starting point, measured in the same run.

Usage: ``python bench/pkpd_coupled.py``
"""

from __future__ import annotations

import importlib.util
import os
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def load_zoo():
    path = os.path.join(HERE, "..", "model_zoo", "warfarin_pkpd.py")
    spec = importlib.util.spec_from_file_location("warfarin_pkpd", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def all_ode_variant(zoo):
    import bayes_nlme as bn

    def rhs(t, a, p):
        c = a.Central / p.V
        inhibition = p.IMAX * c / (p.IC50 + c)
        return {
            "Depot": -p.KA * a.Depot,
            "Central": p.KA * a.Depot - p.CL / p.V * a.Central,
            "Effect": -p.R0 * p.KOUT * inhibition - p.KOUT * a.Effect,
        }

    dyn = bn.pk.ODE(
        rhs,
        compartments=("Depot", "Central", "Effect"),
        required=("KA", "CL", "V", "R0", "KOUT", "IMAX", "IC50"),
        rtol=zoo.dynamics.rtol,
        atol=zoo.dynamics.atol,
    )
    m = zoo.model
    return bn.Model(
        name="warfarin_pkpd_all_ode",
        params=m.params,
        random=m.random,
        pre=m.pre,
        dynamics=dyn,
        derived=m.derived,
        covariates=list(m.covariates),
    )


def main() -> None:
    import jax
    import jax.numpy as jnp
    import numpy as np
    from numpyro.infer.util import initialize_model, potential_energy

    import bayes_nlme as bn
    from bayes_nlme.infer._fit import init_to_typical, prepare

    zoo = load_zoo()
    models = {"all-ODE (depot in the ODE)": all_ode_variant(zoo), "closed-form PK (pk=)": zoo.model}
    data = zoo.data()
    print(
        f"warfarin PK/PD (32 subjects), JAX {jax.__version__}, {os.cpu_count()} CPUs, "
        f"backend {jax.default_backend()}, bayes_nlme {bn.__version__}"
    )
    ds, md = prepare(zoo.model, data)
    kw = {"DV": jnp.asarray(np.asarray(ds.dv, float))}
    info = initialize_model(
        jax.random.PRNGKey(0),
        zoo.model.numpyro_model,
        model_args=(md,),
        model_kwargs=kw,
        init_strategy=init_to_typical(),
    )
    x0 = info.param_info.z
    site = "phi_eta"  # MU-referenced IIV: the log individual parameters (cl, v, ka, r0, ic50)
    ka_col = zoo.model.random.names.index("ka")
    points = {"start": x0}
    for ka in (3.0, 10.0, 30.0, 100.0):
        points[f"KA_1={ka:g}"] = {**x0, site: x0[site].at[0, ka_col].set(np.log(ka))}

    rows = {}
    for label, model in models.items():

        def pe(z, model=model):
            return potential_energy(model.numpyro_model, (md,), kw, z)

        f = jax.jit(jax.value_and_grad(pe))
        t0 = time.perf_counter()
        jax.block_until_ready(f(x0))
        compile_s = time.perf_counter() - t0
        rows[label] = {"compile": compile_s}
        for name, x in points.items():
            value, _ = jax.block_until_ready(f(x))
            best = np.inf
            for _ in range(3):
                t0 = time.perf_counter()
                for _ in range(5):
                    out = f(x)
                jax.block_until_ready(out)
                best = min(best, (time.perf_counter() - t0) / 5)
            rows[label][name] = (best, float(value))
    base = rows["all-ODE (depot in the ODE)"]["start"][0]
    print("\nms per value_and_grad of the potential energy (x all-ODE at start); U = -log p")
    header = "".join(f"{n:>18}" for n in points)
    print(f"{'variant':<28}{header}{'compile s':>11}")
    for label, r in rows.items():
        cells = ""
        for n in points:
            s, u = r[n]
            cells += f"{s * 1e3:>8.2f} ({s / base:>4.1f}x)" + (" !" if not np.isfinite(u) else "  ")
        print(f"{label:<28}{cells}{r['compile']:>11.1f}")
    print("! : potential energy inf (the ODE solve failed: max_steps reached)")
    a, b = rows.values()
    diff = max(abs(a[n][1] - b[n][1]) for n in points if np.isfinite(a[n][1]))
    print(f"max |U_all-ODE - U_closed-form| where both finite: {diff:.1e} (solver tolerance)")


if __name__ == "__main__":
    main()
