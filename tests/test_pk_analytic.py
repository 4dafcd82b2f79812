"""Analytic linear PK models: closed forms, an ODE reference, gradients, vmap/jit, errors."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

from bayes_nlme.data._dataset import Doses
from bayes_nlme.pk import (
    AbstractPKModel,
    Central1,
    Central1Periph1,
    Central1Periph2,
    Depots1Central1,
    Depots1Central1Periph1,
    Depots1Central1Periph2,
)

jax.config.update("jax_enable_x64", True)

MODELS = [
    Central1,
    Depots1Central1,
    Central1Periph1,
    Depots1Central1Periph1,
    Central1Periph2,
    Depots1Central1Periph2,
]
BASE = {"KA": 1.3, "CL": 2.0, "V": 15.0, "Q": 4.0, "V2": 30.0, "Q3": 1.5, "V3": 60.0}


@functools.cache
def _jitted(model_cls):
    return jax.jit(model_cls().amounts)


def run(model, params, doses, times) -> np.ndarray:
    """``model.amounts`` under ``jax.jit`` (compiled once per model and shapes: fast tests)."""
    return np.asarray(_jitted(type(model))(params, doses, times))


def make_doses(time, amt, rate=None, cmt=None, mask=None) -> Doses:
    time = np.asarray(time, float)
    n = time.shape[0]
    return Doses(
        time=time,
        amt=np.asarray(amt, float),
        rate=np.zeros(n) if rate is None else np.asarray(rate, float),
        cmt=np.zeros(n, np.int32) if cmt is None else np.asarray(cmt, np.int32),
        mask=np.ones(n, bool) if mask is None else np.asarray(mask, bool),
    )


def params_for(model: AbstractPKModel, **extra) -> dict:
    p = {k: BASE[k] for k in model.required}
    p.update(extra)
    return p


def two_cpt_roots(cl, v, q, v2):
    """alpha > beta from numpy's polynomial roots (independent of the model's formula)."""
    k10, k12, k21 = cl / v, q / v, q / v2
    r = np.sort(np.roots([1.0, k10 + k12 + k21, k10 * k21]).real)  # roots of x^2 + s x + p
    return k10, k12, k21, -r[0], -r[1]


def three_cpt_roots(cl, v, q, v2, q3, v3):
    """alpha > beta > gamma: eigenvalues of the 3x3 rate matrix from numpy (not the cubic)."""
    k10, k12, k21, k13, k31 = cl / v, q / v, q / v2, q3 / v, q3 / v3
    K = np.array([[-(k10 + k12 + k13), k21, k31], [k12, -k21, 0.0], [k13, 0.0, -k31]])
    lam = np.sort(-np.linalg.eigvals(K).real)[::-1]
    return k21, k31, lam


# --------------------------------------------------------------------------------------------
# 1. hand-written closed forms
# --------------------------------------------------------------------------------------------

T = np.array([0.25, 0.5, 1.0, 2.0, 3.7, 8.0, 12.0, 24.0, 48.0])


def test_central1_bolus_closed_form():
    d, cl, v = 100.0, 2.0, 15.0
    out = run(Central1(), {"CL": cl, "V": v}, make_doses([0.0], [d]), T)
    assert out.shape == (T.size, 1)
    np.testing.assert_allclose(out[:, 0] / v, d / v * np.exp(-cl / v * T), rtol=1e-10)


def test_central1_infusion_closed_form():
    amt, rate, cl, v, t0 = 100.0, 20.0, 2.0, 15.0, 1.0
    k, dur = cl / v, amt / rate
    times = np.array([0.5, 1.0, 1.5, 3.0, 5.9, 6.0, 6.1, 10.0, 30.0])
    out = run(Central1(), {"CL": cl, "V": v}, make_doses([t0], [amt], [rate]), times)
    s = times - t0
    during = rate / cl * (1 - np.exp(-k * np.clip(s, 0, None)))
    after = rate / cl * (1 - np.exp(-k * dur)) * np.exp(-k * (s - dur))
    expected = np.where(s <= dur, during, after)
    np.testing.assert_allclose(out[:, 0] / v, expected, rtol=1e-10, atol=1e-300)
    assert out[0, 0] == 0.0


def test_depots1central1_bateman():
    d, ka, cl, v = 100.0, 1.3, 2.0, 15.0
    k = cl / v
    out = run(Depots1Central1(), {"KA": ka, "CL": cl, "V": v}, make_doses([0.0], [d]), T)
    bateman = d * ka / (v * (ka - k)) * (np.exp(-k * T) - np.exp(-ka * T))
    np.testing.assert_allclose(out[:, 1] / v, bateman, rtol=1e-10)
    np.testing.assert_allclose(out[:, 0], d * np.exp(-ka * T), rtol=1e-10)


def test_central1periph1_biexponential():
    d, cl, v, q, v2 = 100.0, 2.0, 15.0, 4.0, 30.0
    _, _, k21, alpha, beta = two_cpt_roots(cl, v, q, v2)
    out = run(Central1Periph1(), dict(CL=cl, V=v, Q=q, V2=v2), make_doses([0.0], [d]), T)
    a = d / v * (alpha - k21) / (alpha - beta)
    b = d / v * (k21 - beta) / (alpha - beta)
    np.testing.assert_allclose(
        out[:, 0] / v, a * np.exp(-alpha * T) + b * np.exp(-beta * T), rtol=1e-10
    )


def test_depots1central1periph1_triexponential():
    d, ka, cl, v, q, v2 = 100.0, 1.3, 2.0, 15.0, 4.0, 30.0
    _, _, k21, alpha, beta = two_cpt_roots(cl, v, q, v2)
    rates = [ka, alpha, beta]
    expected = np.zeros_like(T)
    for x in rates:
        den = np.prod([y - x for y in rates if y != x])
        expected += (k21 - x) * np.exp(-x * T) / den
    expected *= d * ka / v
    out = run(
        Depots1Central1Periph1(), dict(KA=ka, CL=cl, V=v, Q=q, V2=v2), make_doses([0.0], [d]), T
    )
    np.testing.assert_allclose(out[:, 1] / v, expected, rtol=1e-10)


THREE = dict(CL=2.0, V=15.0, Q=4.0, V2=30.0, Q3=1.5, V3=60.0)


def test_central1periph2_triexponential():
    d = 100.0
    k21, k31, rates = three_cpt_roots(*THREE.values())
    expected = np.zeros_like(T)
    for x in rates:
        den = np.prod([y - x for y in rates if y != x])
        expected += (k21 - x) * (k31 - x) * np.exp(-x * T) / den
    expected *= d / THREE["V"]
    out = run(Central1Periph2(), THREE, make_doses([0.0], [d]), T)
    assert out.shape == (T.size, 3)
    np.testing.assert_allclose(out[:, 0] / THREE["V"], expected, rtol=1e-10)
    # mass balance: what left the body is CL * AUC of the central concentration
    assert np.all(out.sum(axis=1) < d) and np.all(out >= 0)


def test_depots1central1periph2_four_exponentials():
    d, ka = 100.0, 1.3
    k21, k31, disp = three_cpt_roots(*THREE.values())
    rates = [ka, *disp]
    expected = np.zeros_like(T)
    for x in rates:
        den = np.prod([y - x for y in rates if y != x])
        expected += (k21 - x) * (k31 - x) * np.exp(-x * T) / den
    expected *= d * ka / THREE["V"]
    out = run(Depots1Central1Periph2(), dict(THREE, KA=ka), make_doses([0.0], [d]), T)
    np.testing.assert_allclose(out[:, 1] / THREE["V"], expected, rtol=1e-10)
    np.testing.assert_allclose(out[:, 0], d * np.exp(-ka * T), rtol=1e-10)


@pytest.mark.parametrize(
    "params",
    [
        THREE,
        dict(CL=0.01, V=5.0, Q=300.0, V2=2.0, Q3=0.02, V3=800.0),  # rates spread over 1e6
        dict(CL=50.0, V=2.0, Q=0.3, V2=400.0, Q3=30.0, V3=3.0),
        dict(CL=2.0, V=10.0, Q=1.0, V2=10.0, Q3=1.0, V3=10.0),  # symmetric peripherals
    ],
)
def test_three_cpt_rates_match_eigenvalues(params):
    from bayes_nlme.pk._analytic import _three_cpt_rates

    got = np.array([float(x) for x in _three_cpt_rates(*params.values())[5:]])
    _, _, ref = three_cpt_roots(*params.values())
    # the terminal rate keeps its relative accuracy even when it is 1e6 times the fastest
    np.testing.assert_allclose(got, ref, rtol=1e-9)


# --------------------------------------------------------------------------------------------
# 2. reference: scipy solve_ivp with explicit event handling
# --------------------------------------------------------------------------------------------


def rate_matrix(model, p) -> np.ndarray:
    """K of dA/dt = K A, written out independently of the package."""
    k = p["CL"] / p["V"]
    if isinstance(model, Central1):
        return np.array([[-k]])
    if isinstance(model, Depots1Central1):
        return np.array([[-p["KA"], 0.0], [p["KA"], -k]])
    k12, k21 = p["Q"] / p["V"], p["Q"] / p["V2"]
    if "Q3" in model.required:
        k13, k31 = p["Q3"] / p["V"], p["Q3"] / p["V3"]
        disp = np.array([[-(k + k12 + k13), k21, k31], [k12, -k21, 0.0], [k13, 0.0, -k31]])
    else:
        disp = np.array([[-(k + k12), k21], [k12, -k21]])
    if "KA" not in model.required:
        return disp
    n = disp.shape[0] + 1
    K = np.zeros((n, n))
    K[0, 0], K[1, 0] = -p["KA"], p["KA"]
    K[1:, 1:] = disp
    return K


def reference_amounts(model, p, doses: Doses, times) -> np.ndarray:
    """Integrate piecewise between events: bolus jumps, infusions switched on/off."""
    K = rate_matrix(model, p)
    n = K.shape[0]
    boluses, infusions = [], []
    for t, a, r, c, m in zip(*doses[:5], strict=True):
        if not m:
            continue
        c = (model.default_dose_cmt if c == 0 else int(c)) - 1
        f, lag = p.get(f"F{c + 1}", 1.0), p.get(f"ALAG{c + 1}", 0.0)
        if r > 0:
            infusions.append((t + lag, t + lag + f * a / r, r, c))
        else:
            boluses.append((t + lag, f * a, c))
    times = np.asarray(times, float)
    points = {float(times.min()), float(times.max())}
    points |= {b[0] for b in boluses} | {s for i in infusions for s in i[:2]}
    points = sorted(points)
    out = np.zeros((times.size, n))
    y = np.zeros(n)
    for i, b in enumerate(points):
        for tb, a, c in boluses:
            if tb == b:
                y[c] += a
        out[times == b] = y
        if i + 1 == len(points):
            break
        nxt = points[i + 1]
        inp = np.zeros(n)
        for start, stop, r, c in infusions:
            if start <= b < stop:
                inp[c] += r
        inside = (times > b) & (times < nxt)
        sol = solve_ivp(
            lambda _t, a, inp=inp: K @ a + inp,
            (b, nxt),
            y,
            method="DOP853",
            t_eval=np.concatenate([times[inside], [nxt]]),
            rtol=1e-10,
            atol=1e-12,
        )
        assert sol.success
        out[inside] = sol.y[:, :-1].T
        y = sol.y[:, -1]
    return out


CANONICAL_TIMES = np.array(
    [0.0, 0.25, 0.5, 1.0, 2.0, 6.0, 12.0, 12.5, 13.0, 20.0, 24.0, 24.5, 26.0, 30.0, 30.5,
     31.0, 31.6, 32.0, 32.1, 33.0, 36.0, 36.5, 37.0, 40.0, 41.0, 48.0, 72.0]
)  # fmt: skip


def canonical(model) -> tuple[dict, Doses]:
    """Oral repeats (q12h x3, lag, F<1), a central infusion with F (shorter duration), an IV
    bolus, and a bolus into each peripheral compartment (with F); IV-only models receive the
    repeats, infusion and bolus into Central, so ALAG1/F1 act on an infusion too."""
    cmt = {name: k + 1 for k, name in enumerate(model.compartments)}
    oral = "Depot" in cmt
    p = params_for(model)
    rows = [  # time, amt, rate, cmt
        (0.0, 100.0, 0.0, cmt["Depot"] if oral else 1),
        (12.0, 100.0, 0.0, cmt["Depot"] if oral else 1),
        (24.0, 100.0, 0.0, 0),  # CMT 0 = default dose compartment
        (30.0, 50.0, 25.0, cmt["Central"]),
        (36.0, 40.0, 0.0, cmt["Central"]),
    ]
    if oral:
        p.update(F1=0.7, ALAG1=0.5, F2=0.8)
    else:
        p.update(F1=0.8, ALAG1=0.5)
    for k, name in enumerate(c for c in cmt if c.startswith("Peripheral")):
        rows.append((40.0 + k, 20.0 - 5.0 * k, 0.0, cmt[name]))
        p[f"F{cmt[name]}"] = 0.9 - 0.1 * k
    t, a, r, c = map(np.array, zip(*rows, strict=True))
    return p, make_doses(t, a, r, c)


@pytest.mark.parametrize("model_cls", MODELS)
def test_against_ode_reference(model_cls):
    model = model_cls()
    p, doses = canonical(model)
    got = np.asarray(run(model, p, doses, CANONICAL_TIMES))
    ref = reference_amounts(model, p, doses, CANONICAL_TIMES)
    assert got.shape == (CANONICAL_TIMES.size, len(model.compartments))
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-9 * np.abs(ref).max())
    # the lagged first dose (ALAG1 = 0.5, F1) is absent at t = 0.25 and included at t = 0.5
    assert np.all(ref[CANONICAL_TIMES == 0.25] == 0.0)
    assert ref[CANONICAL_TIMES == 0.5, 0] == pytest.approx(100.0 * p["F1"], rel=1e-14)


# --------------------------------------------------------------------------------------------
# 3. gradients vs finite differences
# --------------------------------------------------------------------------------------------

OFF_EVENT_TIMES = np.array([0.3, 1.1, 2.7, 6.1, 12.9, 18.3, 25.2, 30.9, 33.3, 36.7, 41.5, 60.2])


@functools.cache
def central_loss(model_cls, times: tuple):
    """Jitted ``p -> (loss, grad)`` of sum(log(C/V + 1)) on the canonical regimen."""
    model = model_cls()
    _, doses = canonical(model)
    c = model.compartments.index("Central")
    times = np.array(times)

    def loss(p):
        return jnp.sum(jnp.log(model.amounts(p, doses, times)[:, c] / p["V"] + 1.0))

    return jax.jit(jax.value_and_grad(loss))


def fd_grad(value_and_grad, p, name, kind="central"):
    def loss(q):
        return float(value_and_grad(q)[0])

    h = 1e-5 * max(abs(p[name]), 1.0)
    up, dn = dict(p), dict(p)
    up[name] = p[name] + h
    dn[name] = p[name] - h
    if kind == "central":
        return (loss(up) - loss(dn)) / (2 * h)
    return (loss(p) - loss(dn)) / h  # backward


def check_grads(value_and_grad, p, names, rtol=1e-4):
    g = value_and_grad(p)[1]
    for name in names:
        ad, fd = float(g[name]), fd_grad(value_and_grad, p, name)
        assert np.isfinite(ad), name
        assert abs(ad - fd) <= rtol * abs(fd) + 1e-9, (name, ad, fd)


@pytest.mark.parametrize("model_cls", MODELS)
def test_structural_gradients_at_canonical_times(model_cls):
    # structural parameters do not move any event, so the dose times themselves are fine
    p, _ = canonical(model_cls())
    check_grads(central_loss(model_cls, tuple(CANONICAL_TIMES)), p, model_cls.required)


@pytest.mark.parametrize("model_cls", MODELS)
@pytest.mark.parametrize("lag, f", [(0.5, 0.7), (0.0, 1.0)])
def test_all_gradients_off_event_times(model_cls, lag, f):
    p, _ = canonical(model_cls())
    p.update(ALAG1=lag, F1=f)
    names = [*model_cls.required, "ALAG1", "F1"] + (["F2"] if "F2" in p else [])
    check_grads(central_loss(model_cls, tuple(OFF_EVENT_TIMES)), p, names)


@pytest.mark.parametrize(
    "model_cls", [Depots1Central1, Depots1Central1Periph1, Depots1Central1Periph2]
)
def test_lag_gradient_at_zero_on_a_dose_time(model_cls):
    # at ALAG1 = 0 and t = dose time the dose is included (u = 0): the gradient is the
    # one-sided derivative from the included side, i.e. a backward difference in ALAG1
    p, _ = canonical(model_cls())
    p["ALAG1"] = 0.0
    vg = central_loss(model_cls, (0.0, 12.0, 13.0, 24.0, 30.0))
    g = float(vg(p)[1]["ALAG1"])
    assert np.isfinite(g) and g != 0.0
    np.testing.assert_allclose(g, fd_grad(vg, p, "ALAG1", "backward"), rtol=1e-4)
    # off the dose times the gradient is continuous in ALAG1 at 0
    vg_off = central_loss(model_cls, tuple(OFF_EVENT_TIMES))
    np.testing.assert_allclose(
        vg_off(p)[1]["ALAG1"], vg_off(dict(p, ALAG1=1e-7))[1]["ALAG1"], rtol=1e-5
    )


# --------------------------------------------------------------------------------------------
# 4. vmap / jit / masking / cmt 0 / NaN safety
# --------------------------------------------------------------------------------------------


def _subjects(model):
    cmt_c = model.compartments.index("Central") + 1
    real = [
        ([0.0, 12.0], [100.0, 100.0], [0.0, 0.0], [1, 1]),
        ([0.0, 6.0, 12.0, 18.0], [50.0, 80.0, 60.0, 30.0], [0.0, 40.0, 0.0, 0.0],
         [0, cmt_c, 1, cmt_c]),
        ([2.0], [120.0], [30.0], [cmt_c]),
    ]  # fmt: skip
    n_max = max(len(r[0]) for r in real)
    padded = []
    for k, (t, a, r, c) in enumerate(real):
        pad = n_max - len(t)
        # subject 0 is padded with harmless zeros, subject 2 with garbage (must be ignored)
        fill = (0.0, 0.0, 0.0, 0) if k != 2 else (5.0, 1e3, 7.0, 1)
        padded.append(
            make_doses(
                t + [fill[0]] * pad, a + [fill[1]] * pad, r + [fill[2]] * pad,
                c + [fill[3]] * pad, [True] * len(t) + [False] * pad,
            )
        )  # fmt: skip
    return [make_doses(*r) for r in real], padded


@pytest.mark.parametrize("model_cls", MODELS)
def test_vmap_padded_equals_per_subject(model_cls):
    model = model_cls()
    real, padded = _subjects(model)
    times = np.array([[0.0, 1.0, 5.0, 12.0, 20.0], [0.5, 6.0, 7.0, 19.0, 30.0],
                      [1.0, 2.0, 3.0, 8.0, 40.0]])  # fmt: skip
    scale = np.array([1.0, 1.2, 0.8])
    batch = {k: jnp.asarray(v * scale) for k, v in params_for(model, ALAG1=0.3).items()}

    stacked = Doses(*(np.stack(field) for field in zip(*(d[:5] for d in padded), strict=True)))
    got = jax.jit(jax.vmap(model.amounts))(batch, stacked, times)
    for i in range(3):
        p_i = {k: v[i] for k, v in batch.items()}
        np.testing.assert_allclose(got[i], run(model, p_i, real[i], times[i]), rtol=1e-13,
                                   atol=1e-12)  # fmt: skip
        np.testing.assert_allclose(got[i], run(model, p_i, padded[i], times[i]), rtol=1e-13,
                                   atol=1e-12)  # fmt: skip


def test_jit_traces_once_for_same_shapes():
    model = Depots1Central1Periph1()
    traces = []

    @jax.jit
    def f(p, doses, times):
        traces.append(1)
        return model.amounts(p, doses, times)

    d1 = make_doses([0.0, 12.0], [100.0, 50.0], [0.0, 10.0], [1, 2])
    d2 = make_doses([1.0, 13.0], [90.0, 60.0], [0.0, 20.0], [0, 3], [True, False])
    a1 = f(params_for(model), d1, T)
    a2 = f(params_for(model, CL=3.0), d2, T + 1)
    assert len(traces) == 1
    assert not np.allclose(a1, a2)


@pytest.mark.parametrize("model_cls", MODELS)
def test_masked_doses_change_nothing_and_cmt0_is_default(model_cls):
    model = model_cls()
    p = params_for(model, ALAG1=0.2)
    base = run(model, p, make_doses([1.0], [100.0], cmt=[model.default_dose_cmt]), T)
    cmt0 = run(model, p, make_doses([1.0], [100.0], cmt=[0]), T)
    np.testing.assert_array_equal(base, cmt0)
    junk = make_doses([1.0, 0.0, 3.0], [100.0, 5e3, 7.0], [0.0, 9.0, 0.0],
                      [0, len(model.compartments), 1], [True, False, False])  # fmt: skip
    np.testing.assert_array_equal(run(model, p, junk, T), base)
    assert np.asarray(base).max() > 0


@pytest.mark.parametrize("model_cls", MODELS)
def test_no_nan_with_zero_padding_or_far_future_dose(model_cls):
    model = model_cls()
    names = [*model.required, "ALAG1", "F1"]
    p = {k: jnp.asarray(v) for k, v in params_for(model, ALAG1=0.0, F1=1.0).items()}
    doses = make_doses([0.0, 1e6, 0.0], [100.0, 100.0, 0.0], [0.0, 50.0, 0.0],
                       [0, 1, 0], [True, True, False])  # fmt: skip
    times = np.array([0.0, 1.0, 1e3, 1e5])  # the dose at 1e6 is far in the future (u = -1e6)
    out = run(model, p, doses, times)
    assert np.all(np.isfinite(out))
    alone = run(model, p, make_doses([0.0], [100.0]), times)
    np.testing.assert_allclose(out, alone, rtol=1e-14, atol=1e-12)

    def loss(q):
        return jnp.sum(model.amounts(q, doses, times))

    g = jax.jit(jax.grad(loss))(p)
    assert all(np.isfinite(float(g[k])) for k in names)


# --------------------------------------------------------------------------------------------
# 5. errors and metadata
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model_cls", MODELS)
def test_missing_parameter_is_a_clear_error(model_cls):
    model = model_cls()
    p = params_for(model)
    del p["CL"]
    with pytest.raises(ValueError, match=r"requires parameters .*missing \['CL'\]"):
        model.amounts(p, make_doses([0.0], [1.0]), T)


@pytest.mark.parametrize("model_cls", MODELS)
def test_bad_cmt_or_negative_rate_is_a_clear_error(model_cls):
    model = model_cls()
    n = len(model.compartments)
    with pytest.raises(ValueError, match=rf"got dose CMT \[{n + 1}\]"):
        model.amounts(params_for(model), make_doses([0.0], [1.0], cmt=[n + 1]), T)
    with pytest.raises(ValueError, match="RATE < 0"):
        model.amounts(params_for(model), make_doses([0.0], [1.0], rate=[-2.0]), T)
    # masked (padding) events are not checked
    ok = make_doses([0.0, 0.0], [1.0, 0.0], [0.0, -1.0], [0, n + 5], [True, False])
    assert np.all(np.isfinite(run(model, params_for(model), ok, T)))


def test_metadata():
    assert Central1.compartments == ("Central",)
    assert Depots1Central1.compartments == ("Depot", "Central")
    assert Central1Periph1.compartments == ("Central", "Peripheral")
    assert Depots1Central1Periph1.compartments == ("Depot", "Central", "Peripheral")
    assert Depots1Central1Periph1.required == ("KA", "CL", "V", "Q", "V2")
    assert Central1Periph2.compartments == ("Central", "Peripheral1", "Peripheral2")
    assert Central1Periph2.required == ("CL", "V", "Q", "V2", "Q3", "V3")
    assert Depots1Central1Periph2.compartments == (
        "Depot",
        "Central",
        "Peripheral1",
        "Peripheral2",
    )
    assert Depots1Central1Periph2.required == ("KA", "CL", "V", "Q", "V2", "Q3", "V3")
    assert all(m.default_dose_cmt == 1 for m in MODELS)
    assert Depots1Central1().optional == ("F1", "F2", "ALAG1", "ALAG2", "R1", "R2", "D1", "D2")
    assert all(isinstance(m(), AbstractPKModel) for m in MODELS)


@pytest.mark.parametrize("gap, rtol", [(0.0, 1e-4), (1e-12, 1e-4), (-3e-6, 1e-4), (1e-4, 1e-10)])
def test_ka_equal_to_k_is_finite_and_accurate(gap, rtol):
    # KA == CL/V makes Sylvester's formula singular; within a relative 6e-6 the model nudges
    # KA (error ~1e-5 relative), outside it Sylvester's cancellation error is ~1e-10
    cl, v, d = 2.0, 10.0, 100.0
    k = cl / v
    ka = k * (1 + gap)
    model = Depots1Central1()
    doses = make_doses([0.0], [d])
    out = run(model, {"KA": ka, "CL": cl, "V": v}, doses, T)
    # Bateman written without cancellation: (e^{-kt} - e^{-KA t}) / (KA - k)
    x = (ka - k) * T
    psi = np.where(x == 0, 1.0, -np.expm1(-x) / np.where(x == 0, 1.0, x))
    exact = d * ka * T * np.exp(-k * T) * psi
    np.testing.assert_allclose(out[:, 1], exact, rtol=rtol)
    grad = jax.jit(jax.grad(lambda p: jnp.sum(model.amounts(p, doses, T)[:, 1])))
    g = grad({"KA": ka, "CL": cl, "V": v})
    assert all(np.isfinite(float(val)) for val in g.values())
