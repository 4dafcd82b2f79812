"""NONMEM modelled infusions: RATE = -1 (rate R<n>) and RATE = -2 (duration D<n>).

Analytic models against the same dose with an explicit RATE, the ODE engine against the
analytic one, gradients (forward sensitivities through parameter-dependent infusion ends)
against finite differences, the data layer, and the error for a missing R<n>/D<n>.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from bayes_nlme._errors import ModelError
from bayes_nlme.data import DatasetError, read_nonmem
from bayes_nlme.data._dataset import Doses
from bayes_nlme.pk import (
    Central1,
    Central1Periph1,
    Central1Periph2,
    Depots1Central1,
    Depots1Central1Periph1,
    Depots1Central1Periph2,
)
from bayes_nlme.pk._ode import ODE

jax.config.update("jax_enable_x64", True)

BASE = {"KA": 1.3, "CL": 2.0, "V": 15.0, "Q": 4.0, "V2": 30.0, "Q3": 1.5, "V3": 50.0}
TIMES = np.array([0.0, 0.3, 1.0, 1.7, 2.5, 4.0, 6.5, 9.0, 12.5, 24.0])
ALL_MODELS = [
    Central1,
    Central1Periph1,
    Central1Periph2,
    Depots1Central1,
    Depots1Central1Periph1,
    Depots1Central1Periph2,
]


def params_for(model, **extra):
    p = {k: BASE[k] for k in model.required}
    p.update(extra)
    return p


def doses(rate, cmt, time=(0.0, 8.0), amt=(100.0, 60.0), ss=None, ii=None):
    n = len(time)
    rate = np.broadcast_to(np.asarray(rate, float), (n,)).copy()
    cmt = np.broadcast_to(np.asarray(cmt, np.int64), (n,)).copy()
    return Doses(
        time=np.asarray(time, float),
        amt=np.asarray(amt, float),
        rate=rate,
        cmt=cmt,
        mask=np.ones(n, bool),
        ss=None if ss is None else np.asarray(ss, np.int64),
        ii=None if ii is None else np.asarray(ii, float),
    )


def dose_cmts(model):
    """Every CMT a dose can go to: the depot and Central for oral models, Central else."""
    return (1, 2) if model.compartments[0] == "Depot" else (1,)


# --------------------------------------------------------------------------------------------
# analytic: RATE -1 / -2 equal the same dose with the explicit rate
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model_cls", ALL_MODELS, ids=lambda m: m.__name__)
@pytest.mark.parametrize("with_f_lag", [False, True])
def test_analytic_rate_minus1_equals_explicit_rate(model_cls, with_f_lag):
    model = model_cls()
    for c in dose_cmts(model):
        extra = {f"R{c}": 35.0}
        if with_f_lag:
            extra.update({f"F{c}": 0.7, f"ALAG{c}": 0.45})
        p = params_for(model, **extra)
        got = model.amounts(p, doses(-1.0, c), TIMES)
        want = model.amounts(p, doses(35.0, c), TIMES)
        assert np.all(np.isfinite(got))
        assert np.max(np.abs(want)) > 1.0  # the dose is there
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("model_cls", ALL_MODELS, ids=lambda m: m.__name__)
@pytest.mark.parametrize("with_f_lag", [False, True])
def test_analytic_rate_minus2_equals_explicit_rate(model_cls, with_f_lag):
    model = model_cls()
    for c in dose_cmts(model):
        f = 0.7 if with_f_lag else 1.0
        extra = {f"D{c}": 2.2}
        if with_f_lag:
            extra.update({f"F{c}": f, f"ALAG{c}": 0.45})
        p = params_for(model, **extra)
        amt = np.array([100.0, 60.0])
        got = model.amounts(p, doses(-2.0, c, amt=amt), TIMES)
        want = model.amounts(p, doses(f * amt / 2.2, c, amt=amt), TIMES)
        assert np.all(np.isfinite(got))
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_analytic_modeled_rate_differs_from_bolus_and_from_other_rate():
    """Guards the equality tests: a wrong rate/duration would be visible."""
    model = Central1Periph1()
    p = params_for(model, R1=35.0, D1=2.2)
    a = model.amounts(p, doses(-1.0, 1), TIMES)
    assert not np.allclose(a, model.amounts(p, doses(0.0, 1), TIMES), rtol=1e-6)
    assert not np.allclose(a, model.amounts(p, doses(36.0, 1), TIMES), rtol=1e-6)
    b = model.amounts(p, doses(-2.0, 1), TIMES)
    assert not np.allclose(b, model.amounts(p, doses(100.0 / 2.3, 1), TIMES), rtol=1e-6)


@pytest.mark.parametrize("model_cls", [Central1Periph1, Depots1Central1])
def test_analytic_steady_state_modeled_rate(model_cls):
    """SS doses with RATE -1/-2 use the same closed form as an explicit rate (also D > II)."""
    model = model_cls()
    p = params_for(model, R1=20.0, D1=15.0, F1=0.8, ALAG1=0.3)
    kw = {"time": (0.0, 12.0), "ss": (1, 0), "ii": (12.0, 0.0)}
    got = model.amounts(p, doses(-1.0, 1, **kw), TIMES)
    want = model.amounts(p, doses(20.0, 1, **kw), TIMES)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    got = model.amounts(p, doses(-2.0, 1, **kw), TIMES)  # 15 h infusions every 12 h
    want = model.amounts(p, doses(0.8 * np.array([100.0, 60.0]) / 15.0, 1, **kw), TIMES)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_mixed_codes_in_one_subject():
    model = Depots1Central1()
    p = params_for(model, R2=40.0, D1=3.0)
    d = Doses(
        time=np.array([0.0, 2.0, 5.0, 9.0]),
        amt=np.array([100.0, 50.0, 80.0, 30.0]),
        rate=np.array([-2.0, -1.0, 0.0, 10.0]),
        cmt=np.array([1, 2, 1, 2]),
        mask=np.array([True, True, True, False]),
    )
    want = Doses(d.time, d.amt, np.array([100.0 / 3.0, 40.0, 0.0, 10.0]), d.cmt, d.mask)
    np.testing.assert_allclose(
        model.amounts(p, d, TIMES), model.amounts(p, want, TIMES), rtol=1e-12, atol=1e-12
    )


# --------------------------------------------------------------------------------------------
# ODE engine against the analytic models
# --------------------------------------------------------------------------------------------


def rhs_depots1central1periph1(t, a, p):
    k10, k12, k21 = p.CL / p.V, p.Q / p.V, p.Q / p.V2
    return {
        "Depot": -p.KA * a.Depot,
        "Central": p.KA * a.Depot - (k10 + k12) * a.Central + k21 * a.Peripheral,
        "Peripheral": k12 * a.Central - k21 * a.Peripheral,
    }


ODE_MODEL = ODE(
    rhs_depots1central1periph1,
    ("Depot", "Central", "Peripheral"),
    ("KA", "CL", "V", "Q", "V2"),
    rtol=1e-10,
    atol=1e-12,
)
ANALYTIC = Depots1Central1Periph1()


@pytest.mark.parametrize("code", [-1.0, -2.0])
@pytest.mark.parametrize("cmt", [1, 2])
def test_ode_equals_analytic(code, cmt):
    extra = {f"R{cmt}": 35.0, f"D{cmt}": 2.2, f"F{cmt}": 0.7, f"ALAG{cmt}": 0.45}
    p = params_for(ANALYTIC, **extra)
    d = doses(code, cmt)
    want = ANALYTIC.amounts(p, d, TIMES)
    got = ODE_MODEL.amounts(p, d, TIMES)
    assert np.max(np.abs(want)) > 1.0
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)


# --------------------------------------------------------------------------------------------
# gradients against central finite differences (times inside and after the infusions)
# --------------------------------------------------------------------------------------------

# first dose: into Central at 0 (+ ALAG2 0.45), about 2-3 h; second at 8 h
GRAD_TIMES = np.array([0.2, 1.1, 2.0, 2.9, 5.0, 8.6, 9.4, 14.0])


def scalar_of(model, code, names, base):
    d = doses(code, 2)
    w = jnp.linspace(1.0, 2.0, GRAD_TIMES.size * 3).reshape(GRAD_TIMES.size, 3)

    def fn(x):
        p = dict(base)
        p.update(dict(zip(names, x, strict=True)))
        return jnp.sum(w * model.amounts(p, d, GRAD_TIMES))

    return fn


def central_fd(fn, x, rel=1e-6):
    x = np.asarray(x, float)
    g = np.zeros_like(x)
    for i in range(x.size):
        h = rel * max(abs(x[i]), 1.0)
        e = np.zeros_like(x)
        e[i] = h
        g[i] = (float(fn(jnp.asarray(x + e))) - float(fn(jnp.asarray(x - e)))) / (2 * h)
    return g


@pytest.mark.parametrize("engine", ["analytic", "ode"])
@pytest.mark.parametrize(
    ("code", "names", "values"),
    [
        (-1.0, ("R2",), (40.0,)),
        (-1.0, ("R2", "F2", "ALAG2"), (40.0, 0.7, 0.45)),
        (-2.0, ("D2",), (2.3,)),
        (-2.0, ("D2", "F2", "ALAG2"), (2.3, 0.7, 0.45)),
    ],
)
def test_gradient_vs_finite_differences(engine, code, names, values):
    model = ANALYTIC if engine == "analytic" else ODE_MODEL
    base = params_for(ANALYTIC)
    fn = scalar_of(model, code, names, base)
    x = jnp.asarray(values)
    grad = np.asarray(jax.grad(fn)(x))
    fd = central_fd(fn, values)
    assert np.all(np.abs(fd) > 1e-3)  # every parameter matters at these times
    np.testing.assert_allclose(grad, fd, rtol=1e-4)


def test_ode_reverse_mode_gradient():
    model = ODE(
        rhs_depots1central1periph1,
        ("Depot", "Central", "Peripheral"),
        ("KA", "CL", "V", "Q", "V2"),
        rtol=1e-10,
        atol=1e-12,
        sensitivities="reverse",
    )
    names, values = ("R2", "F2", "ALAG2"), (40.0, 0.7, 0.45)
    fn = scalar_of(model, -1.0, names, params_for(ANALYTIC))
    want = jax.grad(scalar_of(ANALYTIC, -1.0, names, params_for(ANALYTIC)))(jnp.asarray(values))
    np.testing.assert_allclose(jax.grad(fn)(jnp.asarray(values)), want, rtol=1e-5)


def test_jit_vmap_traced_codes():
    """Dose codes traced under jit/vmap: same amounts as eager."""
    p = params_for(ANALYTIC, R1=30.0, D2=2.0)
    d = doses([-1.0, -2.0], [1, 2])
    stacked = jax.tree_util.tree_map(lambda x: jnp.stack([x, x]), d)
    for model in (ANALYTIC, ODE_MODEL):
        eager = model.amounts(p, d, TIMES)
        traced = jax.jit(jax.vmap(lambda dd, m=model: m.amounts(p, dd, TIMES)))(stacked)
        np.testing.assert_allclose(traced[1], eager, rtol=1e-10, atol=1e-10)


# --------------------------------------------------------------------------------------------
# errors: missing R<n>/D<n>, invalid codes
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "name"), [(-1.0, "R2"), (-2.0, "D2")])
def test_missing_parameter_is_a_clear_error(code, name):
    p = params_for(ANALYTIC, R1=30.0, D1=2.0)  # wrong compartment
    d = doses(code, 2)
    with pytest.raises(ValueError, match=rf"RATE={int(code)} into CMT \[2\].*\['{name}'\]"):
        ANALYTIC.amounts(p, d, TIMES)
    with pytest.raises(ModelError, match=rf"RATE={int(code)} into CMT \[2\].*\['{name}'\]"):
        ODE_MODEL.amounts(p, d, TIMES)
    # traced (codes unknown at trace time): NaN amounts, ok False
    out = jax.jit(lambda dd: ANALYTIC.amounts(p, dd, TIMES))(d)
    assert np.all(np.isnan(out))
    out, ok = jax.jit(lambda dd: ODE_MODEL.solve_status(p, dd, TIMES))(d)
    assert not bool(ok) and np.all(np.isnan(out))
    # the parameter present: fine
    p[name] = 2.5
    assert np.all(np.isfinite(ANALYTIC.amounts(p, d, TIMES)))


def test_default_cmt_names_the_default_compartment():
    d = doses(-1.0, 0)  # CMT 0 -> default (the depot, CMT 1)
    with pytest.raises(ValueError, match=r"\['R1'\]"):
        ANALYTIC.amounts(params_for(ANALYTIC), d, TIMES)


def test_other_negative_rate_is_an_error():
    p = params_for(ANALYTIC, R1=30.0, D1=2.0)
    d = doses(-3.0, 1)
    with pytest.raises(ValueError, match=r"RATE must be 0 .*-1 .*-2.*got \[-3.0\]"):
        ANALYTIC.amounts(p, d, TIMES)
    with pytest.raises(ModelError, match=r"got \[-3.0\]"):
        ODE_MODEL.amounts(p, d, TIMES)
    assert np.all(np.isnan(jax.jit(lambda dd: ANALYTIC.amounts(p, dd, TIMES))(d)))


def test_optional_lists_modeled_rate_parameters():
    assert Central1().optional == ("F1", "ALAG1", "R1", "D1")
    assert {"R4", "D4"} <= set(Depots1Central1Periph2().optional)


# --------------------------------------------------------------------------------------------
# data layer
# --------------------------------------------------------------------------------------------


def table(rate):
    return pd.DataFrame(
        {
            "ID": [1, 1, 1, 2, 2, 2],
            "TIME": [0.0, 1.0, 2.0, 0.0, 1.0, 2.0],
            "DV": [0.0, 5.0, 3.0, 0.0, 6.0, 4.0],
            "AMT": [100.0, 0, 0, 200.0, 0, 0],
            "EVID": [1, 0, 0, 1, 0, 0],
            "RATE": rate,
        }
    )


def test_data_reads_modeled_rate_codes():
    ds = read_nonmem(table([-1.0, 0, 0, -2.0, 0, 0]))
    rates = np.asarray(ds.dose_rate)
    mask = np.asarray(ds.dose_mask)
    assert sorted(rates[mask].tolist()) == [-2.0, -1.0]


def test_data_other_negative_rate_is_a_violation():
    with pytest.raises(DatasetError, match=r"RATE, row 3: RATE must be 0 .*found -3") as info:
        read_nonmem(table([-1.0, 0, 0, -3.0, 0, 0]))
    assert [v.rule for v in info.value.violations] == ["rate"]
