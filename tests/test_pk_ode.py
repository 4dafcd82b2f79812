"""ODE structural models: equal to the analytic models, gradients, convergence, vmap/jit,
a nonlinear model against scipy, solver failures, and clear errors."""

from __future__ import annotations

import functools

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

from bayes_nlme._errors import ModelError
from bayes_nlme.data._dataset import Doses
from bayes_nlme.pk import Central1, Central1Periph1, Depots1Central1, Depots1Central1Periph1
from bayes_nlme.pk._base import AbstractPKModel
from bayes_nlme.pk._ode import ODE, ODESolveError

jax.config.update("jax_enable_x64", True)

BASE = {"KA": 1.3, "CL": 2.0, "V": 15.0, "Q": 4.0, "V2": 30.0}


# --------------------------------------------------------------------------------------------
# the linear models written as ODEs (the engine adds the doses)
# --------------------------------------------------------------------------------------------


def rhs_central1(t, a, p):
    return {"Central": -p.CL / p.V * a.Central}


def rhs_depots1central1(t, a, p):
    return {"Depot": -p.KA * a.Depot, "Central": p.KA * a.Depot - p.CL / p.V * a.Central}


def rhs_central1periph1(t, a, p):  # returns an array, with item access
    k10, k12, k21 = p["CL"] / p["V"], p["Q"] / p["V"], p["Q"] / p["V2"]
    c, q = a["Central"], a["Peripheral"]
    return jnp.stack([-(k10 + k12) * c + k21 * q, k12 * c - k21 * q])


def rhs_depots1central1periph1(t, a, p):
    k10, k12, k21 = p.CL / p.V, p.Q / p.V, p.Q / p.V2
    return {
        "Depot": -p.KA * a.Depot,
        "Central": p.KA * a.Depot - (k10 + k12) * a.Central + k21 * a.Peripheral,
        "Peripheral": k12 * a.Central - k21 * a.Peripheral,
    }


PAIRS = {
    Central1: rhs_central1,
    Depots1Central1: rhs_depots1central1,
    Central1Periph1: rhs_central1periph1,
    Depots1Central1Periph1: rhs_depots1central1periph1,
}


@functools.cache
def ode_cached(analytic_cls, **options) -> ODE:
    """The ODE twin of an analytic model (cached: the jitted functions below are reused)."""
    a = analytic_cls()
    return ODE(PAIRS[analytic_cls], a.compartments, a.required, **options)


@functools.cache
def _jit_status(model):
    return jax.jit(model.solve_status)


def run(model, params, doses, times):
    """``model.solve_status`` (or ``amounts``) under jit, compiled once per model and shape."""
    if isinstance(model, ODE):
        out, ok = _jit_status(model)(params, doses, times)
        return np.asarray(out), bool(ok)
    return np.asarray(_jit_status_analytic(type(model))(params, doses, times)), True


@functools.cache
def _jit_status_analytic(model_cls):
    return jax.jit(model_cls().amounts)


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


CANONICAL_TIMES = np.array(
    [0.0, 0.25, 0.5, 1.0, 2.0, 6.0, 12.0, 12.5, 13.0, 20.0, 24.0, 24.5, 26.0, 30.0, 30.5,
     31.0, 31.6, 32.0, 32.1, 33.0, 36.0, 36.5, 37.0, 40.0, 41.0, 48.0, 72.0]
)  # fmt: skip
# evaluation times need not be sorted
SHUFFLED_TIMES = CANONICAL_TIMES[np.random.default_rng(0).permutation(CANONICAL_TIMES.size)]


def canonical(model) -> tuple[dict, Doses]:
    """Oral repeats (q12h x3 as separate events, ALAG1 = 0.5, F1 = 0.7), a central infusion
    whose duration F changes, an IV bolus, a peripheral bolus (2-compartment models) and two
    masked padding slots holding garbage. IV-only models receive the repeats into Central,
    so ALAG1/F1 also act on the infusion there."""
    cmt = {name: k + 1 for k, name in enumerate(model.compartments)}
    oral = "Depot" in cmt
    p = {k: BASE[k] for k in model.required}
    rows = [  # time, amt, rate, cmt, mask
        (0.0, 100.0, 0.0, 1, True),
        (12.0, 100.0, 0.0, 1, True),
        (24.0, 100.0, 0.0, 0, True),  # CMT 0 = default dose compartment
        (30.0, 50.0, 25.0, cmt["Central"], True),
        (36.0, 40.0, 0.0, cmt["Central"], True),
        (5.0, 1e3, 7.0, 1, False),  # padding with garbage: must change nothing
        (3.0, 500.0, 0.0, 1, False),
    ]
    if oral:
        p.update(F1=0.7, ALAG1=0.5, F2=0.8)  # infusion: 50 * 0.8 / 25 = 1.6 h, ends at 31.6
    else:
        p.update(F1=0.8, ALAG1=0.5)  # infusion into CMT 1: 30.5 .. 32.1
    if "Peripheral" in cmt:
        rows.insert(5, (40.0, 20.0, 0.0, cmt["Peripheral"], True))
        p[f"F{cmt['Peripheral']}"] = 0.9
    t, a, r, c, m = map(np.array, zip(*rows, strict=True))
    return p, make_doses(t, a, r, c, m)


def rel_err(got, ref) -> float:
    """Max error relative to the largest amount (tiny amounts carry atol-level error)."""
    return float(np.max(np.abs(got - ref)) / np.max(np.abs(ref)))


# --------------------------------------------------------------------------------------------
# 1. the ODE engine equals the closed forms
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("analytic_cls", list(PAIRS))
def test_matches_analytic_on_canonical_regimen(analytic_cls):
    analytic = analytic_cls()
    model = ode_cached(analytic_cls)
    p, doses = canonical(analytic)
    got, ok = run(model, p, doses, SHUFFLED_TIMES)
    ref, _ = run(analytic, p, doses, SHUFFLED_TIMES)
    assert ok and got.shape == ref.shape == (CANONICAL_TIMES.size, len(analytic.compartments))
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-9 * np.abs(ref).max())
    assert rel_err(got, ref) < 1e-7
    # lagged first dose: nothing at t = 0.25, the whole F1 * AMT at t = 0.5 (dose included)
    assert np.all(got[SHUFFLED_TIMES <= 0.25] == 0.0)
    assert got[SHUFFLED_TIMES == 0.5, 0] == pytest.approx(100.0 * p["F1"], rel=1e-12)


def test_masked_padding_changes_nothing_and_no_dose_gives_zero():
    analytic = Depots1Central1Periph1()
    model = ode_cached(Depots1Central1Periph1)
    p, doses = canonical(analytic)
    got, ok = run(model, p, doses, CANONICAL_TIMES)
    # the same real events with the padding first and holding other garbage (same shapes)
    mask = np.asarray(doses.mask)
    perm = np.r_[np.nonzero(~mask)[0], np.nonzero(mask)[0]]
    other = Doses(*(np.asarray(f)[perm] for f in doses[:5]))
    pad = ~other.mask
    garbage_time = np.zeros(pad.size)
    garbage_time[:2] = [-3.0, 50.0]  # before the first dose / after the last time
    other = other._replace(
        time=np.where(pad, garbage_time, other.time),
        amt=np.where(pad, 1e6, other.amt),
        rate=np.where(pad, garbage_time > 0, other.rate),
    )
    assert pad[:2].all() and not pad[2:].any()
    got_other, ok_other = run(model, p, other, CANONICAL_TIMES)
    assert ok and ok_other
    # padding only adds empty segments at the end: the solve itself is unchanged
    np.testing.assert_allclose(got_other, got, rtol=1e-12, atol=1e-12)
    # every event masked: zero amounts everywhere
    none = doses._replace(mask=np.zeros_like(doses.mask))
    out, ok = run(model, p, none, CANONICAL_TIMES)
    assert ok and np.all(out == 0.0)


# --------------------------------------------------------------------------------------------
# 2. gradients: vs the analytic model and vs finite differences
# --------------------------------------------------------------------------------------------

OFF_EVENT_TIMES = np.array([0.3, 1.1, 2.7, 6.1, 12.9, 18.3, 25.2, 30.9, 33.3, 36.7, 41.5, 60.2])
GRAD_NAMES = ["KA", "CL", "V", "Q", "V2", "ALAG1", "F1", "F2"]


@functools.cache
def central_loss(model):
    """Jitted ``p -> (loss, grad)`` of sum(log(C/V + 1)) on the canonical regimen."""
    _, doses = canonical(Depots1Central1Periph1())

    def loss(p):
        amounts = model.amounts(p, doses, OFF_EVENT_TIMES)
        return jnp.sum(jnp.log(amounts[:, 1] / p["V"] + 1.0))

    return jax.jit(jax.value_and_grad(loss))


@pytest.mark.parametrize("lag, f", [(0.5, 0.7), (0.0, 1.0)])
def test_gradients_vs_analytic_and_finite_differences(lag, f):
    p, _ = canonical(Depots1Central1Periph1())
    p.update(ALAG1=lag, F1=f)
    vg_ode = central_loss(ode_cached(Depots1Central1Periph1))
    vg_ref = central_loss(Depots1Central1Periph1())
    value, g = vg_ode(p)
    value_ref, g_ref = vg_ref(p)
    assert float(value) == pytest.approx(float(value_ref), rel=1e-8)
    for name in GRAD_NAMES:
        ad, ref = float(g[name]), float(g_ref[name])
        assert np.isfinite(ad) and ad != 0.0, name
        assert abs(ad - ref) <= 1e-5 * abs(ref), (name, ad, ref)
        h = 1e-5 * max(abs(p[name]), 1.0)
        up = float(vg_ode({**p, name: p[name] + h})[0])
        dn = float(vg_ode({**p, name: p[name] - h})[0])
        fd = (up - dn) / (2 * h)
        assert abs(ad - fd) <= 1e-4 * abs(fd), (name, ad, fd)


def test_forward_and_reverse_sensitivities_agree():
    # "forward" (the default: sensitivity equations, custom_jvp, built-in integrator) and
    # "reverse" (diffrax's RecursiveCheckpointAdjoint through the solver) give the same
    # values and gradients; forward sensitivities through diffrax take the very same steps
    # as the reverse mode
    analytic = Depots1Central1()
    p, doses = canonical(analytic)

    def value_and_grad(model):
        def loss(q):
            return jnp.sum(jnp.log(model.amounts(q, doses, OFF_EVENT_TIMES)[:, 1] + 1.0))

        return jax.jit(jax.value_and_grad(loss))(p)

    v_fwd, g_fwd = value_and_grad(ode_cached(Depots1Central1))
    v_dfx, g_dfx = value_and_grad(ode_cached(Depots1Central1, integrator="diffrax"))
    v_rev, g_rev = value_and_grad(ode_cached(Depots1Central1, sensitivities="reverse"))
    v_ref, g_ref = value_and_grad(analytic)
    assert float(v_dfx) == pytest.approx(float(v_rev), rel=1e-13)  # same steps
    assert float(v_fwd) == pytest.approx(float(v_rev), rel=1e-9)
    assert float(v_fwd) == pytest.approx(float(v_ref), rel=1e-9)
    for name in ("KA", "CL", "V", "ALAG1", "F1", "F2"):
        assert float(g_fwd[name]) == pytest.approx(float(g_ref[name]), rel=1e-6), name
        assert float(g_dfx[name]) == pytest.approx(float(g_ref[name]), rel=1e-6), name
        assert float(g_rev[name]) == pytest.approx(float(g_ref[name]), rel=1e-5), name


def test_forward_sensitivities_refuse_derivatives_wrt_doses():
    model = ode_cached(Depots1Central1)
    p, doses = canonical(Depots1Central1())

    def loss(amt):
        return jnp.sum(model.amounts(p, doses._replace(amt=amt), OFF_EVENT_TIMES))

    with pytest.raises(NotImplementedError, match="sensitivities='reverse'"):
        jax.grad(loss)(jnp.asarray(doses.amt))


# --------------------------------------------------------------------------------------------
# 3. convergence as the tolerances tighten
# --------------------------------------------------------------------------------------------


def test_error_falls_as_tolerances_tighten():
    analytic = Depots1Central1()
    p, doses = canonical(analytic)
    ref, _ = run(analytic, p, doses, CANONICAL_TIMES)
    errors = []
    for rtol in (1e-4, 1e-6, 1e-8):
        got, ok = run(ode_cached(Depots1Central1, rtol=rtol, atol=rtol * 1e-2), p, doses,
                      CANONICAL_TIMES)  # fmt: skip
        assert ok
        errors.append(rel_err(got, ref))
    assert errors[0] > errors[1] > errors[2], errors
    assert errors[0] > 1e-6  # the loosest tolerance is visibly inaccurate (the test can fail)
    assert errors[2] < 1e-7, errors


# --------------------------------------------------------------------------------------------
# 4. vmap / jit
# --------------------------------------------------------------------------------------------


def test_vmap_padded_subjects_equals_per_subject_calls():
    model = ode_cached(Depots1Central1)
    real = [
        ([0.0, 12.0], [100.0, 100.0], [0.0, 0.0], [1, 1]),
        ([0.0, 6.0, 12.0, 18.0], [50.0, 80.0, 60.0, 30.0], [0.0, 40.0, 0.0, 0.0], [0, 2, 1, 2]),
        ([2.0], [120.0], [30.0], [2]),
    ]
    n_max = 4
    padded = []
    for k, (t, a, r, c) in enumerate(real):
        pad = n_max - len(t)
        fill = (0.0, 0.0, 0.0, 0) if k != 2 else (5.0, 1e3, 7.0, 1)  # zeros, or garbage
        padded.append(
            make_doses(
                t + [fill[0]] * pad, a + [fill[1]] * pad, r + [fill[2]] * pad,
                c + [fill[3]] * pad, [True] * len(t) + [False] * pad,
            )
        )  # fmt: skip
    times = np.array([[0.0, 1.0, 5.0, 12.0, 20.0], [0.5, 6.0, 7.0, 19.0, 30.0],
                      [1.0, 2.0, 3.0, 8.0, 40.0]])  # fmt: skip
    scale = np.array([1.0, 1.2, 0.8])
    params = {"KA": 1.3, "CL": 2.0, "V": 15.0, "ALAG1": 0.3}
    batch = {k: jnp.asarray(v * scale) for k, v in params.items()}
    stacked = Doses(*(np.stack(field) for field in zip(*(d[:5] for d in padded), strict=True)))
    got, ok = jax.jit(jax.vmap(model.solve_status))(batch, stacked, times)
    assert got.shape == (3, 5, 2) and ok.shape == (3,) and bool(ok.all())
    analytic = Depots1Central1()
    for i in range(3):
        p_i = {k: float(v[i]) for k, v in batch.items()}
        single, ok_i = run(model, p_i, padded[i], times[i])
        assert ok_i
        np.testing.assert_allclose(got[i], single, rtol=1e-10, atol=1e-12)
        ref, _ = run(analytic, p_i, padded[i], times[i])
        np.testing.assert_allclose(got[i], ref, rtol=1e-6, atol=1e-9 * np.abs(ref).max())


# --------------------------------------------------------------------------------------------
# 5. a nonlinear model (Michaelis-Menten elimination) against scipy
# --------------------------------------------------------------------------------------------


def rhs_mm(t, a, p):
    c = a.Central / p.V
    return {"Depot": -p.KA * a.Depot, "Central": p.KA * a.Depot - p.VM * c / (p.KM + c)}


MM = ODE(rhs_mm, ("Depot", "Central"), ("KA", "V", "VM", "KM"))


def scipy_reference(f, n, params, doses: Doses, times, default_cmt=1) -> np.ndarray:
    """Integrate ``dy/dt = f(y) + infusions`` piecewise between events, bolus jumps at the
    (lagged) dose times, with solve_ivp (rtol 1e-10, atol 1e-12)."""
    boluses, infusions = [], []
    for t, a, r, c, m in zip(*doses[:5], strict=True):
        if not m:
            continue
        c = (default_cmt if c == 0 else int(c)) - 1
        fc, lag = params.get(f"F{c + 1}", 1.0), params.get(f"ALAG{c + 1}", 0.0)
        if r > 0:
            infusions.append((t + lag, t + lag + fc * a / r, r, c))
        else:
            boluses.append((t + lag, fc * a, c))
    times = np.asarray(times, float)
    points = sorted({*times.tolist()} | {b[0] for b in boluses}
                    | {s for i in infusions for s in i[:2]})  # fmt: skip
    first = min([b[0] for b in boluses] + [i[0] for i in infusions])
    points = [x for x in points if x >= first]
    out = np.zeros((times.size, n))
    y = np.zeros(n)
    for i, b in enumerate(points):
        for tb, a, c in boluses:
            if tb == b:
                y[c] += a
        out[times == b] = y
        if i + 1 == len(points):
            break
        inp = np.zeros(n)
        for start, stop, r, c in infusions:
            if start <= b < stop:
                inp[c] += r
        sol = solve_ivp(lambda _t, z, inp=inp: f(z) + inp, (b, points[i + 1]), y,
                        method="DOP853", rtol=1e-10, atol=1e-12)  # fmt: skip
        assert sol.success
        y = sol.y[:, -1]
    return out


def test_michaelis_menten_against_scipy():
    p = {"KA": 1.1, "V": 15.0, "VM": 20.0, "KM": 2.0, "ALAG1": 0.3, "F1": 0.8, "F2": 0.9}
    doses = make_doses([0.0, 12.0, 24.0, 30.0, 0.0], [200.0, 200.0, 300.0, 100.0, 9.0],
                       [0.0, 0.0, 100.0, 0.0, 1.0], [1, 0, 2, 2, 2],
                       [True, True, True, True, False])  # fmt: skip

    def f(z):
        c = z[1] / p["V"]
        return np.array([-p["KA"] * z[0], p["KA"] * z[0] - p["VM"] * c / (p["KM"] + c)])

    times = np.array([0.0, 0.3, 1.0, 4.0, 12.0, 12.3, 13.0, 24.0, 25.0, 26.7, 27.0, 30.0,
                      31.0, 48.0])  # fmt: skip
    got, ok = run(MM, p, doses, times)
    ref = scipy_reference(f, 2, p, doses, times)
    assert ok
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-9 * np.abs(ref).max())
    # nonlinear: the profile is not dose-proportional (a check that it is not linear)
    double = Doses(doses.time, 2 * doses.amt, 2 * doses.rate, doses.cmt, doses.mask)
    got2, _ = run(MM, p, double, times)
    assert np.max(np.abs(got2[:, 1] - 2 * got[:, 1]) / np.abs(got2[:, 1]).max()) > 0.05


# --------------------------------------------------------------------------------------------
# 6. solver failure: NaN and ok=False, never an exception or garbage
# --------------------------------------------------------------------------------------------

STIFF_P = {"CL": 2.0, "V": 15.0, "Q": 1e5, "V2": 30.0}  # distribution rate ~1e4 / h
STIFF_DOSES = make_doses([0.0, 12.0], [100.0, 100.0], [0.0, 10.0])
STIFF_TIMES = np.array([0.5, 1.0, 6.0, 12.0, 13.0, 24.0, 48.0])


def test_stiff_draw_fails_cleanly_with_tsit5():
    model = ode_cached(Central1Periph1, max_steps=300)  # Tsit5: stability-limited steps
    batch = {k: jnp.asarray([BASE[k], v]) for k, v in STIFF_P.items()}  # ordinary, stiff

    def loss(b):
        a, good = jax.vmap(model.solve_status, in_axes=(0, None, None))(b, STIFF_DOSES,
                                                                        STIFF_TIMES)  # fmt: skip
        return jnp.sum(jnp.where(good[:, None, None], a, 0.0)), (a, good)

    (_, (out, ok)), g = jax.jit(jax.value_and_grad(loss, has_aux=True))(batch)
    ref = jax.vmap(Central1Periph1().amounts, in_axes=(0, None, None))(
        batch, STIFF_DOSES, STIFF_TIMES
    )
    assert ok.tolist() == [True, False]
    np.testing.assert_allclose(out[0], ref[0], rtol=1e-6)  # the ordinary subject is fine
    assert np.all(np.isnan(out[1]))  # the failed one is NaN, not garbage
    # gradients stay finite: the failed subject contributes zero
    assert all(np.all(np.isfinite(v)) for v in g.values())
    assert all(float(v[1]) == 0.0 and float(v[0]) != 0.0 for v in g.values())
    with pytest.raises(ODESolveError, match=r"(?s)failed for 1 of 2.*max_steps.*Kvaerno5"):
        model.raise_if_failed(ok)
    model.raise_if_failed(ok[:1])  # no error when all succeeded


def test_stiff_draw_succeeds_with_kvaerno5():
    model = ode_cached(Central1Periph1, solver=diffrax.Kvaerno5(), max_steps=300)
    out, ok = run(model, STIFF_P, STIFF_DOSES, STIFF_TIMES)
    ref, _ = run(Central1Periph1(), STIFF_P, STIFF_DOSES, STIFF_TIMES)
    assert ok
    np.testing.assert_allclose(out, ref, rtol=1e-5)


def test_failure_message_names_the_remedies():
    msg = ode_cached(Depots1Central1).failure_message(3, 12)
    for part in ("failed for 3 of 12", "max_steps", "diffrax.Kvaerno5()", "rtol=1e-6"):
        assert part in msg


# --------------------------------------------------------------------------------------------
# 7. clear errors and metadata
# --------------------------------------------------------------------------------------------

DOSE = make_doses([0.0], [100.0])
TIMES = np.array([1.0, 2.0])
P3 = {"KA": 1.0, "CL": 2.0, "V": 10.0}


@pytest.mark.parametrize(
    "bad_rhs, match",
    [
        (lambda t, a, p: {"Central": -a.Central}, r"\['Depot', 'Central'\].*missing \['Depot'\]"),
        (
            lambda t, a, p: {"Depot": 0.0, "Central": 0.0, "Periph": 0.0},
            r"\['Depot', 'Central'\].*unknown \['Periph'\]",
        ),
        (lambda t, a, p: jnp.zeros(3), r"\['Depot', 'Central'\].*shape \(2,\).*shape \(3,\)"),
        (lambda t, a, p: {"Depot": jnp.zeros(2), "Central": 0.0}, r"'Depot' has shape \(2,\)"),
        (lambda t, a, p: {"Depot": -a.Gut, "Central": 0.0}, r"amounts has no 'Gut'.*Depot"),
        (lambda t, a, p: {"Depot": -p.K12 * a.Depot, "Central": 0.0}, r"params has no 'K12'"),
    ],
)
def test_bad_rhs_is_a_clear_error(bad_rhs, match):
    model = ODE(bad_rhs)
    with pytest.raises(ValueError, match=match):
        model.amounts(P3, DOSE, TIMES)
    with pytest.raises(ModelError, match=match):  # also under jit/vmap
        jax.jit(jax.vmap(model.amounts, in_axes=(None, None, 0)))(P3, DOSE, TIMES[None])


def test_missing_parameter_and_bad_doses_are_clear_errors():
    model = ode_cached(Depots1Central1)
    with pytest.raises(ValueError, match=r"requires parameters .*missing \['CL'\]"):
        model.amounts({"KA": 1.0, "V": 10.0}, DOSE, TIMES)
    with pytest.raises(ValueError, match=r"got dose CMT \[3\]"):
        model.amounts(P3, make_doses([0.0], [1.0], cmt=[3]), TIMES)
    with pytest.raises(ValueError, match="RATE < 0"):
        model.amounts(P3, make_doses([0.0], [1.0], rate=[-2.0]), TIMES)
    # steady state whose input outlasts the interval (ALAG 13 > II 12): an error when
    # concrete, NaN and ok=False when traced; an unknown SS code likewise
    ss = make_doses([0.0, 12.0], [100.0, 100.0])._replace(
        ss=np.array([0, 1], np.int32), ii=np.array([0.0, 12.0])
    )
    with pytest.raises(ValueError, match="extends beyond the dosing interval"):
        model.amounts({**P3, "ALAG1": 13.0}, ss, TIMES)
    out, ok = jax.jit(model.solve_status)({**P3, "ALAG1": 13.0}, ss, TIMES)
    assert not ok and np.all(np.isnan(out))
    bad_code = ss._replace(ss=np.array([0, 3], np.int32))
    with pytest.raises(ValueError, match="SS must be 0, 1 or 2"):
        model.amounts(P3, bad_code, TIMES)
    out, ok = jax.jit(model.solve_status)(P3, bad_code, TIMES)
    assert not ok and np.all(np.isnan(out))
    no_ss = ss._replace(ss=np.zeros(2, np.int32))  # SS all 0: ordinary doses
    out, ok = jax.jit(model.solve_status)(P3, no_ss, TIMES)
    ref = Depots1Central1().amounts(P3, Doses(*no_ss[:5]), TIMES)
    assert ok
    np.testing.assert_allclose(out, ref, rtol=1e-7)


def test_bad_constructor_arguments():
    with pytest.raises(ModelError, match="callable"):
        ODE("not a function")
    with pytest.raises(ModelError, match="unique"):
        ODE(rhs_central1, ("Central", "Central"))
    with pytest.raises(ModelError, match=r"default_dose_cmt=3 is not a CMT"):
        ODE(rhs_depots1central1, default_dose_cmt=3)
    with pytest.raises(ModelError, match="diffrax solver"):
        ODE(rhs_depots1central1, solver="Tsit5")
    with pytest.raises(ModelError, match="rtol > 0"):
        ODE(rhs_depots1central1, rtol=0.0)


def test_metadata():
    model = ODE(rhs_depots1central1periph1, ("Depot", "Central", "Peripheral"),
                ("KA", "CL", "V", "Q", "V2"), default_dose_cmt=2)  # fmt: skip
    assert isinstance(model, AbstractPKModel)
    assert model.compartments == ("Depot", "Central", "Peripheral")
    assert model.required == ("KA", "CL", "V", "Q", "V2")
    assert model.default_dose_cmt == 2
    assert model.optional == (
        "F1",
        "F2",
        "F3",
        "ALAG1",
        "ALAG2",
        "ALAG3",
        "R1",
        "R2",
        "R3",
        "D1",
        "D2",
        "D3",
    )
    assert isinstance(model.solver, diffrax.Tsit5)
    assert "rhs_depots1central1periph1" in repr(model)
    # CMT 0 goes to default_dose_cmt (Central here): no absorption phase
    p = {k: BASE[k] for k in model.required}
    out = model.amounts(p, make_doses([0.0], [100.0]), np.array([0.0]))
    np.testing.assert_allclose(out, [[0.0, 100.0, 0.0]], atol=1e-12)


# --------------------------------------------------------------------------------------------
# 8. the built-in integrator: other tableaus, robustness, parallel chains
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("solver", [diffrax.Dopri5(), diffrax.Dopri8()])
def test_builtin_integrator_with_other_tableaus_matches_analytic(solver):
    analytic = Depots1Central1Periph1()
    model = ODE(rhs_depots1central1periph1, analytic.compartments, analytic.required,
                solver=solver)  # fmt: skip
    assert model._builtin
    p, doses = canonical(analytic)
    got, ok = jax.jit(model.solve_status)(p, doses, SHUFFLED_TIMES)
    ref, _ = run(analytic, p, doses, SHUFFLED_TIMES)
    assert bool(ok)
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-9 * np.abs(ref).max())


def test_integrator_option_selects_the_implementation():
    assert ode_cached(Depots1Central1)._builtin
    assert not ode_cached(Depots1Central1, integrator="diffrax")._builtin
    assert not ode_cached(Depots1Central1, sensitivities="reverse")._builtin
    assert not ode_cached(Depots1Central1, solver=diffrax.Kvaerno5())._builtin
    assert "integrator='diffrax'" in repr(ode_cached(Depots1Central1, integrator="diffrax"))
    with pytest.raises(ModelError, match="integrator"):
        ODE(rhs_depots1central1, integrator="scipy")


@pytest.mark.parametrize(
    "bad",
    [{"KA": np.inf}, {"KA": np.nan}, {"KA": 1e300}, {"ALAG1": np.nan}, {"F1": np.inf},
     {"V": 0.0}],
)  # fmt: skip
def test_non_finite_or_absurd_parameters_fail_cleanly(bad):
    # the loop must end (no hang on a NaN step size or event time) with ok=False, NaN
    # amounts, and finite gradients once the failure is masked as in the population model
    model = ode_cached(Depots1Central1, max_steps=500)
    _, doses = canonical(Depots1Central1())
    p = {**P3, **bad}
    out, ok = jax.jit(model.solve_status)(p, doses, CANONICAL_TIMES)
    assert not bool(ok) and np.all(np.isnan(out))

    def loss(q):
        a, good = model.solve_status(q, doses, CANONICAL_TIMES)
        return jnp.sum(jnp.where(good, a, 1.0))

    g = jax.jit(jax.grad(loss))(p)
    assert all(np.isfinite(float(v)) for v in g.values())


def test_parallel_chains_with_an_ode_model():
    # chain_method="parallel" (pmap) is what bn.fit picks on CPU with enough host devices
    import bayes_nlme as bn
    from bayes_nlme.model_zoo import theophylline as zoo

    if jax.local_device_count() < 2:
        pytest.skip("needs 2 host devices")
    base = zoo.model
    model = bn.Model(
        name="theophylline_ode",
        params=base.params,
        random=base.random,
        pre=base.pre,
        dynamics=ODE(rhs_depots1central1, rtol=1e-6, atol=1e-8),
        derived=base.derived,
    )
    with pytest.warns(UserWarning, match="EVID=101"):
        data = bn.read_nonmem(zoo.data())
    idata = bn.fit(model, data, chains=2, warmup=30, samples=10, chain_method="parallel")
    assert idata.sample_stats.attrs["chain_method"] == "parallel"
    assert idata.posterior.sizes["chain"] == 2 and bool(idata.posterior["solver_ok"].all())
