"""ODE(..., pk=analytic): closed-form PK driving a numerically integrated PD system.

References: the same system written entirely as an ODE (all compartments integrated), the
closed-form PK model itself, and central finite differences.
"""

from __future__ import annotations

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bayes_nlme._errors import ModelError
from bayes_nlme.data._dataset import Doses
from bayes_nlme.pk import Central1Periph1, Depots1Central1
from bayes_nlme.pk._ode import ODE

jax.config.update("jax_enable_x64", True)

TIGHT = dict(rtol=1e-10, atol=1e-12)
P = dict(
    KA=1.3, CL=0.15, V=8.0, R0=95.0, KOUT=0.03, IC50=1.2,
    ALAG1=0.8, F1=0.9, ALAG2=0.25,
)  # fmt: skip
TIMES = jnp.array(
    [0.0, 0.5, 0.8, 1.0, 2.0, 24.0, 24.8, 25.0, 30.0, 30.25, 31.0, 33.0, 40.0, 40.5, 72.0, 144.0]
)


def pd_rhs(t, a, p):
    c = a.Central / p.V
    return {"Effect": -p.R0 * p.KOUT * c / (p.IC50 + c) - p.KOUT * a.Effect}


def full_rhs(t, a, p):
    c = a.Central / p.V
    return {
        "Depot": -p.KA * a.Depot,
        "Central": p.KA * a.Depot - p.CL / p.V * a.Central,
        "Effect": -p.R0 * p.KOUT * c / (p.IC50 + c) - p.KOUT * a.Effect,
    }


def coupled(**kw):
    return ODE(pd_rhs, ("Effect",), ("R0", "KOUT", "IC50"), pk=Depots1Central1(), **kw)


def full(**kw):
    req = ("KA", "CL", "V", "R0", "KOUT", "IC50")
    return ODE(full_rhs, ("Depot", "Central", "Effect"), req, **kw)


def doses(cmt_last=2):
    """Oral doses (lagged, F1), an infusion into Central, a lagged IV bolus into Central
    (the concentration jumps at a parameter-dependent time), a bolus into the PD
    compartment, and a padding slot."""
    return Doses(
        time=jnp.array([0.0, 24.0, 30.0, 40.0, 50.0, 0.0]),
        amt=jnp.array([100.0, 50.0, 20.0, 15.0, -5.0, 7.0]),
        rate=jnp.array([0.0, 0.0, 10.0, 0.0, 0.0, 0.0]),
        cmt=jnp.array([1, 0, 2, cmt_last, 3, 1]),
        mask=jnp.array([True, True, True, True, True, False]),
    )


def test_metadata_and_repr():
    m = coupled()
    assert m.compartments == ("Depot", "Central", "Effect")
    assert m.ode_compartments == ("Effect",)
    assert m.required == ("KA", "CL", "V", "R0", "KOUT", "IC50")
    assert "pk=Depots1Central1()" in repr(m)


def test_equals_the_all_ode_system_and_the_closed_form():
    d = doses()
    a_cpl, ok = jax.jit(coupled(**TIGHT).solve_status)(P, d, TIMES)
    a_full, ok_full = jax.jit(full(**TIGHT).solve_status)(P, d, TIMES)
    assert bool(ok) and bool(ok_full)
    # PD state: the two numerical solutions agree to the solver tolerance
    np.testing.assert_allclose(a_cpl[:, 2], a_full[:, 2], rtol=1e-6, atol=1e-9)
    # PK columns: exactly the closed form (and the all-ODE solution to its tolerance)
    pk_doses = d._replace(cmt=jnp.where(d.cmt == 3, 1, d.cmt), mask=d.mask & (d.cmt != 3))
    np.testing.assert_allclose(
        a_cpl[:, :2], Depots1Central1().amounts(P, pk_doses, TIMES), rtol=1e-13, atol=0
    )
    np.testing.assert_allclose(a_cpl[:, :2], a_full[:, :2], rtol=1e-6, atol=1e-9)
    # the effect is really driven (not zero), and the PD bolus at t=50 is not in the PK
    assert float(jnp.min(a_cpl[:, 2])) < -30.0


def test_gradients_match_the_all_ode_system_and_finite_differences():
    d = doses()
    names = ["KA", "CL", "V", "R0", "KOUT", "IC50", "ALAG1", "F1", "ALAG2"]
    x0 = jnp.array([P[k] for k in names])
    w = jnp.linspace(1.0, 2.0, TIMES.shape[0])

    def objective(model):
        def fn(x):
            a = model.amounts({**P, **dict(zip(names, x, strict=True))}, d, TIMES)
            return jnp.sum(a[:, 2] * w)

        return jax.jit(fn)

    f_cpl, f_full = objective(coupled(**TIGHT)), objective(full(**TIGHT))
    g = np.asarray(jax.jit(jax.grad(f_cpl))(x0))
    g_full = np.asarray(jax.jit(jax.grad(f_full))(x0))
    np.testing.assert_allclose(g, g_full, rtol=1e-6)
    for i, name in enumerate(names):
        h = 1e-5 * float(x0[i])
        e = jnp.zeros_like(x0).at[i].set(h)
        fd = (float(f_cpl(x0 + e)) - float(f_cpl(x0 - e))) / (2 * h)
        np.testing.assert_allclose(g[i], fd, rtol=1e-5, err_msg=name)
    assert np.all(np.abs(g) > 1e-3)  # every parameter really moves the effect


def test_derivative_at_a_lagged_dose_time_is_from_the_dose_included_side():
    """At an evaluation time equal to the lagged IV bolus time (40 + ALAG2) the derivative
    is one-sided, from the side where the dose is included (smaller ALAG2), as for the
    analytic models."""
    d = doses()
    t = jnp.array([39.0, 40.25])
    m = coupled(**TIGHT)

    @jax.jit
    def effect(lag):
        return m.amounts({**P, "ALAG2": lag}, d, t)[1, 2]

    g = float(jax.jit(jax.grad(effect))(P["ALAG2"]))
    h = 1e-5
    left = (float(effect(P["ALAG2"])) - float(effect(P["ALAG2"] - h))) / h
    right = (float(effect(P["ALAG2"] + h)) - float(effect(P["ALAG2"]))) / h
    np.testing.assert_allclose(g, left, rtol=1e-4)
    assert abs(left - right) > 0.1 * abs(left)  # a real kink: the sides differ


def test_two_compartment_pk_with_an_intravenous_lagged_bolus():
    def pd(t, a, p):
        return {"Effect": p.KIN - p.KOUT * (1 + a.Central / p.V / p.EC50) * a.Effect}

    def pd_full(t, a, p):
        k10, k12, k21 = p.CL / p.V, p.Q / p.V, p.Q / p.V2
        return {
            "Central": -(k10 + k12) * a.Central + k21 * a.Peripheral,
            "Peripheral": k12 * a.Central - k21 * a.Peripheral,
            "Effect": p.KIN - p.KOUT * (1 + a.Central / p.V / p.EC50) * a.Effect,
        }

    p = dict(CL=2.0, V=15.0, Q=4.0, V2=30.0, KIN=10.0, KOUT=0.5, EC50=2.0, ALAG1=0.3)
    d = Doses(
        time=jnp.array([0.0, 12.0]), amt=jnp.array([100.0, 100.0]), rate=jnp.zeros(2),
        cmt=jnp.array([1, 1]), mask=jnp.array([True, True]),
    )  # fmt: skip
    t = jnp.linspace(0.0, 36.0, 19)
    req = ("KIN", "KOUT", "EC50")
    cpl = ODE(pd, ("Effect",), req, pk=Central1Periph1(), **TIGHT)
    ful = ODE(pd_full, ("Central", "Peripheral", "Effect"), ("CL", "V", "Q", "V2", *req), **TIGHT)
    a_cpl = jax.jit(cpl.amounts)(p, d, t)
    np.testing.assert_allclose(a_cpl, jax.jit(ful.amounts)(p, d, t), rtol=1e-6, atol=1e-9)

    def obj(model):
        return jax.jit(jax.grad(lambda q: jnp.sum(model.amounts(q, d, t)[:, 2])))(p)

    g, g_full = obj(cpl), obj(ful)
    for k in p:
        np.testing.assert_allclose(g[k], g_full[k], rtol=1e-6, err_msg=k)


def test_fast_absorption_is_no_longer_stiff():
    """KA = 200/h: the all-ODE system needs steps of order 1/KA over the whole 144 h with
    an explicit solver (it fails at max_steps=500); with the closed-form PK only the PD
    state is integrated and the same step budget is ample."""
    p = {**P, "KA": 200.0}
    d = doses()
    _, ok_full = jax.jit(full(rtol=1e-6, atol=1e-8, max_steps=500).solve_status)(p, d, TIMES)
    a, ok = jax.jit(coupled(rtol=1e-6, atol=1e-8, max_steps=500).solve_status)(p, d, TIMES)
    assert not bool(ok_full)
    assert bool(ok)
    ref = jax.jit(full(**TIGHT, max_steps=200_000).amounts)(p, d, TIMES)
    np.testing.assert_allclose(a[:, 2], ref[:, 2], rtol=1e-4, atol=1e-6)


def test_vmap_jit_over_padded_subjects():
    m = coupled(rtol=1e-8, atol=1e-10)
    d1 = doses()
    d2 = doses()._replace(mask=jnp.array([True, False, False, False, False, False]))
    stacked = jax.tree_util.tree_map(lambda a, b: jnp.stack([a, b]), d1, d2)
    ka = jnp.array([1.3, 0.7])
    f = jax.jit(jax.vmap(lambda k, dd: m.amounts({**P, "KA": k}, dd, TIMES)))
    out = f(ka, stacked)
    for i, dd in enumerate([d1, d2]):
        np.testing.assert_allclose(
            out[i], m.amounts({**P, "KA": ka[i]}, dd, TIMES), rtol=1e-12, atol=1e-14
        )


def test_clear_errors():
    with pytest.raises(ModelError, match="analytic PK model"):
        ODE(pd_rhs, ("Effect",), pk=full())
    with pytest.raises(ModelError, match="analytic PK model"):
        ODE(pd_rhs, ("Effect",), pk="Depots1Central1")
    with pytest.raises(ModelError, match="repeat the pk model's compartments"):
        ODE(pd_rhs, ("Central", "Effect"), pk=Depots1Central1())
    with pytest.raises(ModelError, match="built-in integrator"):
        coupled(solver=diffrax.Kvaerno5())
    with pytest.raises(ModelError, match="built-in integrator"):
        coupled(sensitivities="reverse")
    m = coupled()
    with pytest.raises(ModelError, match="steady-state"):
        ss = doses()._asdict() | dict(ss=jnp.array([1, 0, 0, 0, 0, 0]), ii=jnp.full(6, 24.0))
        m.amounts(P, Doses(**ss), TIMES)
    with pytest.raises(ModelError, match="initial amounts"):
        m.solve_status(P, doses(), TIMES, initial=(0.0, jnp.zeros(3)))
    with pytest.raises(ModelError, match="Effect"):  # rhs must give the ODE states only

        def bad(t, a, p):
            return {"Central": 0.0, "Effect": 0.0}

        ODE(bad, ("Effect",), pk=Depots1Central1()).amounts(P, doses(), TIMES)
    with pytest.raises(ModelError, match=r"CMT 1\.\.3"):
        m.amounts(P, doses(cmt_last=4), TIMES)
