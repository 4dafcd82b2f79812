"""The event-type x model test matrix: ODE path == analytic path == independent reference.

Rows (event types) x columns (models):

* models: the six linear models, 1-, 2- and 3-compartment, each IV (``Central1``,
  ``Central1Periph1``, ``Central1Periph2``) and oral (``Depots1Central1``,
  ``Depots1Central1Periph1``, ``Depots1Central1Periph2``);
* event types: bolus, zero-order infusion (RATE > 0, overlapping), oral (depot bolus and
  depot infusion), ADDL/II (through ``read_nonmem``), ALAG, F, RATE = -1 (``R1``),
  RATE = -2 (``D1``), a dose into a peripheral compartment (2-/3-compartment only), SS=1
  and SS=2 (bolus, infusion with ALAG + duration <= II, oral with ALAG < II; SS=1 after
  earlier doses, which it resets, SS=2 on top of them), EVID 3 and EVID 4 (resets, through
  the population layer: ``bn.Model(...).predict_subjects``, the IPRED of ``bn.simulate``;
  for the 1-, 2- and 3-compartment oral models, whose designs also dose Central).

Each cell computes the amounts of every compartment three ways and requires

    max |a - b| / max |reference| < 1e-6

for ODE vs analytic, analytic vs reference and ODE vs reference:

* the analytic path, ``bayes_nlme.pk`` closed forms;
* the ODE path, :class:`bayes_nlme.pk._ode.ODE` with the same linear right-hand side written
  here (``rtol=1e-10, atol=1e-12``, so the 1e-6 comparison is robust);
* an independent reference written in this file: the linear ODE integrated with
  ``scipy.integrate.solve_ivp`` (DOP853, ``rtol=1e-10, atol=1e-12``) piecewise between all
  event times (lagged dose times, infusion ends, resets, evaluation times) with explicit
  event handling (bolus jumps of ``F * AMT`` at lagged times, infusions as constant inputs;
  RATE > 0: duration ``F * AMT / RATE``, RATE = -1: rate ``R<n>``, duration
  ``F * AMT / R<n>``; RATE = -2: duration ``D<n>``, rate ``F * AMT / D<n>``). Steady state
  (NONMEM semantics): the state at the SS record time of the infinite train of implied
  doses every II is the fixed point of the one-cycle map (computed with ``solve_ivp``),
  advanced to the record time; SS=1 first resets (doses of earlier records stop
  contributing, running infusions and pending lagged doses included), SS=2 adds. The
  reference is itself checked against textbook closed forms (``test_reference_*``).

Gradients: the normal log-likelihood of fixed observations of the central concentration as
a function of KA, CL, V, Q, V2, Q3, V3, ALAG1, F1, R1 and D1, by ``jax.grad`` in both paths,
against central finite differences of the same path (rtol 1e-4), with ALAG1 = 0.4, 1e-3
(close to 0), 0 exactly (no observation at a CMT-1 dose time: see ``GRAD_SCENARIOS``) and
F1 = 1; plus the documented one-sided convention at ALAG1 = 0 with observations at the
dose times, and steady-state gradients (SS=1 and SS=2, KA ... V3, ALAG1, F1) for a 1- and a
2-compartment model.

The steady-state rows of the ODE path (``test_ode_ss_matrix``, ``test_ode_ss_gradients``)
exercise ``ODE.solve_status`` with ``Doses(..., ss=, ii=)`` (steady state in the ODE engine
needs ALAG + infusion duration <= II, which every case here respects); run them alone with
``-k ode_ss``.

Every jitted function is compiled once per model (fixed dose/time shapes, fixed parameter
names: ``functools.cache``).
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from scipy.integrate import solve_ivp
from scipy.stats import norm

import bayes_nlme as bn
from bayes_nlme import dist
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

MODELS = [
    Central1,
    Central1Periph1,
    Central1Periph2,
    Depots1Central1,
    Depots1Central1Periph1,
    Depots1Central1Periph2,
]
BASE = {"KA": 1.3, "CL": 2.0, "V": 15.0, "Q": 4.0, "V2": 30.0, "Q3": 1.5, "V3": 60.0}
MODELED = {"R1": 25.0, "D1": 3.0}  # always passed (fixed parameter names: one compile)
N_DOSE = 8  # every case is padded to these shapes (one compile per model)
N_TIME = 32
TOL = 1e-6  # max |a - b| / max |reference|
ODE_TOL = {"rtol": 1e-10, "atol": 1e-12}
REF_TOL = {"rtol": 1e-10, "atol": 1e-12}
GRAD_RTOL = 1e-4


def mid(model_cls) -> str:
    return model_cls.__name__


def is_oral(model_cls) -> bool:
    return model_cls.compartments[0] == "Depot"


def cmt_of(model_cls, name: str) -> int:
    """1-based CMT of a compartment."""
    return model_cls.compartments.index(name) + 1


def central(model_cls) -> int:
    return cmt_of(model_cls, "Central")


def peripherals(model_cls) -> list[int]:
    return [k + 1 for k, c in enumerate(model_cls.compartments) if c.startswith("Peripheral")]


# --------------------------------------------------------------------------------------------
# the linear systems, written independently of the library: dA/dt = K A (+ inputs)
# --------------------------------------------------------------------------------------------


def rate_matrix(xp, model_cls, p):
    """Rate matrix ``K`` of the model (``xp`` = numpy for the reference, jax.numpy in rhs)."""
    names = model_cls.compartments
    n = len(names)
    zero = 0.0 * p["CL"]
    K = [[zero] * n for _ in range(n)]
    c = names.index("Central")
    K[c][c] = K[c][c] - p["CL"] / p["V"]
    if is_oral(model_cls):
        K[0][0] = K[0][0] - p["KA"]
        K[c][0] = K[c][0] + p["KA"]
    # mammillary peripherals: (Q, V2) for the first, (Q3, V3) for the second
    for j, (q, v) in zip(peripherals(model_cls), [("Q", "V2"), ("Q3", "V3")], strict=False):
        j = j - 1
        k_out, k_back = p[q] / p["V"], p[q] / p[v]
        K[c][c] = K[c][c] - k_out
        K[j][c] = K[j][c] + k_out
        K[j][j] = K[j][j] - k_back
        K[c][j] = K[c][j] + k_back
    if xp is np:
        return np.array([[float(x) for x in row] for row in K])
    return jnp.stack([jnp.stack([jnp.asarray(x) for x in row]) for row in K])


def make_rhs(model_cls):
    names = model_cls.compartments

    def rhs(t, a, p):
        y = jnp.stack([a[name] for name in names])
        return rate_matrix(jnp, model_cls, p) @ y

    rhs.__name__ = f"rhs_{model_cls.__name__}"
    return rhs


@functools.cache
def ode_model(model_cls) -> ODE:
    """The ODE twin of an analytic model, at tight tolerances."""
    return ODE(make_rhs(model_cls), model_cls.compartments, model_cls.required, **ODE_TOL)


@functools.cache
def jit_analytic(model_cls):
    return jax.jit(model_cls().amounts)


@functools.cache
def jit_ode(model_cls):
    return jax.jit(ode_model(model_cls).solve_status)


def full_params(model_cls, **overrides) -> dict:
    """Every parameter name the cases use (fixed names: one compile per model)."""
    n = len(model_cls.compartments)
    p = {k: BASE[k] for k in model_cls.required}
    p.update({f"F{k}": 1.0 for k in range(1, n + 1)})
    p.update({f"ALAG{k}": 0.0 for k in range(1, n + 1)})
    p.update(MODELED)
    p.update(overrides)
    return {k: float(v) for k, v in p.items()}


# --------------------------------------------------------------------------------------------
# dose records and padding
# --------------------------------------------------------------------------------------------


class Rec(NamedTuple):
    """One real dose record (record order matters for SS=1 at a shared time)."""

    time: float
    amt: float
    rate: float = 0.0  # 0 bolus, > 0 infusion, -1 rate R<n>, -2 duration D<n>
    cmt: int = 1
    ss: int = 0
    ii: float = 0.0


def pad_doses(recs, with_ss: bool = False) -> Doses:
    """Doses padded to N_DOSE slots (padding: masked, harmless values)."""
    assert len(recs) <= N_DOSE
    n_pad = N_DOSE - len(recs)
    col = lambda i, pad, dt: np.array([r[i] for r in recs] + [pad] * n_pad, dt)  # noqa: E731
    mask = np.array([True] * len(recs) + [False] * n_pad)
    ss = col(4, 0, np.int32) if with_ss else None
    ii = col(5, 0.0, float) if with_ss else None
    return Doses(
        col(0, 0.0, float), col(1, 0.0, float), col(2, 0.0, float), col(3, 1, np.int32), mask,
        ss, ii,
    )  # fmt: skip


def pad_times(times) -> tuple[np.ndarray, int]:
    times = np.asarray(times, float)
    assert times.size <= N_TIME
    return np.concatenate([times, np.full(N_TIME - times.size, times[-1])]), times.size


def run_analytic(model_cls, params, doses, times) -> np.ndarray:
    padded, n = pad_times(times)
    return np.asarray(jit_analytic(model_cls)(params, doses, padded))[:n]


def run_ode(model_cls, params, doses, times) -> tuple[np.ndarray, bool]:
    padded, n = pad_times(times)
    out, ok = jit_ode(model_cls)(params, doses, padded)
    return np.asarray(out)[:n], bool(ok)


def rel_err(got, ref) -> float:
    """Max error relative to the largest reference amount."""
    return float(np.max(np.abs(np.asarray(got) - ref)) / np.max(np.abs(ref)))


# --------------------------------------------------------------------------------------------
# the independent reference: scipy solve_ivp between events, explicit event handling
# --------------------------------------------------------------------------------------------


def _integrate(K, x, t0, t1, r):
    """``x(t1)`` of ``dx/dt = K x + r`` from ``x(t0) = x`` (DOP853, rtol 1e-10)."""
    if t1 <= t0:
        return np.array(x, float)
    if not np.any(x) and not np.any(r):
        return np.zeros_like(x)
    sol = solve_ivp(lambda t, y: K @ y + r, (t0, t1), x, method="DOP853", **REF_TOL)
    assert sol.success, sol.message
    return sol.y[:, -1]


def _dose_input(params, model_cls, rec: Rec):
    """(0-based compartment, lag, amount F*AMT, infusion rate or None, duration or None)."""
    c = (rec.cmt or model_cls.default_dose_cmt) - 1
    f = params.get(f"F{c + 1}", 1.0)
    lag = params.get(f"ALAG{c + 1}", 0.0)
    amount = f * rec.amt
    if rec.rate == 0:
        return c, lag, amount, None, None
    if rec.rate > 0:
        return c, lag, amount, rec.rate, amount / rec.rate
    if rec.rate == -1:
        r = params[f"R{c + 1}"]
        return c, lag, amount, r, amount / r
    if rec.rate == -2:
        d = params[f"D{c + 1}"]
        return c, lag, amount, amount / d, d
    raise ValueError(rec.rate)


def _steady_state_at_record(K, c, amount, rate, dur, lag, ii):
    """State at the SS record time ``t_d`` due to the implied doses at ``t_d + lag - k ii``,
    ``k >= 1`` (the ``k = 0`` dose is an ordinary event at ``t_d + lag``), at steady state.

    The fixed point ``x = M x + c`` of the one-cycle map (from just before one implied dose
    to just before the next) is the state just before an implied dose; the state is then
    advanced from the dose at ``t_d + lag - ii`` to ``t_d``.
    """
    n = K.shape[0]
    e = np.eye(n)[c]
    if dur is not None and lag + dur > ii + 1e-12:
        raise NotImplementedError("reference: needs ALAG + duration <= II")

    def one_dose(x0, horizon):
        if rate is None:
            return _integrate(K, x0 + amount * e, 0.0, horizon, np.zeros(n))
        x = _integrate(K, x0, 0.0, dur, rate * e)
        return _integrate(K, x, dur, horizon, np.zeros(n))

    cycle = one_dose(np.zeros(n), ii)
    M = np.column_stack([_integrate(K, np.eye(n)[j], 0.0, ii, np.zeros(n)) for j in range(n)])
    x_pre = np.linalg.solve(np.eye(n) - M, cycle)
    return one_dose(x_pre, ii - lag)


def reference(model_cls, params, recs, times) -> np.ndarray:
    """Amounts (n_time, n_cmt) by solve_ivp with explicit events (NONMEM semantics)."""
    K = rate_matrix(np, model_cls, params)
    n = K.shape[0]
    boluses = []  # (time, record index, cmt, amount)
    infusions = []  # (start, end, cmt, rate)
    jumps = []  # (time, record index, "set" | "add", state)
    for j, rec in enumerate(recs):
        c, lag, amount, rate, dur = _dose_input(params, model_cls, rec)
        # an SS=1 record resets: records before it (earlier time, or same time and earlier
        # in record order) stop contributing at its time
        cut = min(
            (
                r.time
                for k, r in enumerate(recs)
                if r.ss == 1 and (rec.time < r.time or (rec.time == r.time and j < k))
            ),
            default=math.inf,
        )
        if rec.ss:
            x_ss = _steady_state_at_record(K, c, amount, rate, dur, lag, rec.ii)
            jumps.append((rec.time, j, "set" if rec.ss == 1 else "add", x_ss))
        start = rec.time + lag
        if rate is None:
            if start < cut:
                boluses.append((start, j, c, amount))
        else:
            end = min(start + dur, cut)
            if end > start:
                infusions.append((start, end, c, rate))
    times = np.asarray(times, float)
    bps = sorted(
        set(times.tolist())
        | {b[0] for b in boluses}
        | {i[0] for i in infusions}
        | {i[1] for i in infusions}
        | {jp[0] for jp in jumps}
    )
    x = np.zeros(n)
    at = {}
    for i, tb in enumerate(bps):
        for _, _, mode, state in sorted((jp for jp in jumps if jp[0] == tb), key=lambda q: q[1]):
            x = state.copy() if mode == "set" else x + state
        for _, _, c, amount in (b for b in boluses if b[0] == tb):
            x[c] += amount
        at[tb] = x.copy()  # a dose at an evaluation time is included
        if i + 1 < len(bps):
            r = np.zeros(n)
            for s, e, c, rate in infusions:
                if s <= tb < e:
                    r[c] += rate
            x = _integrate(K, x, tb, bps[i + 1], r)
    return np.array([at[t] for t in times])


# --------------------------------------------------------------------------------------------
# 0. the reference against textbook closed forms (1- and 2-compartment)
# --------------------------------------------------------------------------------------------


def test_reference_single_doses_against_closed_forms():
    ka, cl, v = BASE["KA"], BASE["CL"], BASE["V"]
    k = cl / v
    t = np.array([0.0, 0.5, 1.0, 2.0, 3.7, 4.0, 7.0, 12.0, 30.0])
    # IV bolus with F and ALAG, 1-compartment
    p = full_params(Central1, F1=0.7, ALAG1=0.5)
    got = reference(Central1, p, [Rec(0.0, 100.0)], t)[:, 0]
    u = t - 0.5
    want = np.where(u >= 0, 70.0 * np.exp(-k * np.maximum(u, 0)), 0.0)
    np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-10)
    # infusion: 100 at rate 30 with F 0.7 (duration 7/3 h), starting at 0.5
    got = reference(Central1, p, [Rec(0.0, 100.0, 30.0)], t)[:, 0]
    dur = 70.0 / 30.0
    tau = np.clip(u, 0, dur)
    want = 30.0 / k * (1 - np.exp(-k * tau)) * np.exp(-k * (np.maximum(u, 0) - tau))
    np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-10)
    # oral (Bateman), 1-compartment
    p = full_params(Depots1Central1, F1=0.8, ALAG1=0.5)
    got = reference(Depots1Central1, p, [Rec(0.0, 100.0)], t)[:, 1]
    um = np.maximum(u, 0)
    want = 80.0 * ka / (ka - k) * (np.exp(-k * um) - np.exp(-ka * um))
    np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-10)
    # IV bolus, 2-compartment (bi-exponential)
    p = full_params(Central1Periph1)
    k10, k12, k21 = cl / v, BASE["Q"] / v, BASE["Q"] / BASE["V2"]
    s = k10 + k12 + k21
    alpha = 0.5 * (s + np.sqrt(s * s - 4 * k10 * k21))
    beta = k10 * k21 / alpha
    got = reference(Central1Periph1, p, [Rec(0.0, 100.0)], t)[:, 0]
    want = 100.0 * ((alpha - k21) * np.exp(-alpha * t) + (k21 - beta) * np.exp(-beta * t))
    np.testing.assert_allclose(got, want / (alpha - beta), rtol=1e-8, atol=1e-10)


def test_reference_steady_state_against_closed_forms():
    ka, k, ii = BASE["KA"], BASE["CL"] / BASE["V"], 12.0
    t_d = 50.0
    t = t_d + np.array([0.0, 0.3, 0.7, 1.0, 2.0, 2.8, 6.0, 11.9])
    lag = 0.7
    # the steady-state train: implied doses at t_d + lag - m ii; phase since the last one
    u = np.mod(t - t_d - lag, ii)
    acc = lambda rate: 1.0 / (1.0 - np.exp(-rate * ii))  # noqa: E731
    # bolus, 1-compartment
    p = full_params(Central1, F1=0.8, ALAG1=lag)
    got = reference(Central1, p, [Rec(t_d, 100.0, ss=1, ii=ii)], t)[:, 0]
    np.testing.assert_allclose(got, 80.0 * np.exp(-k * u) * acc(k), rtol=1e-8)
    # infusion at rate 40 (duration 2 h with F 0.8)
    got = reference(Central1, p, [Rec(t_d, 100.0, 40.0, ss=1, ii=ii)], t)[:, 0]
    T = 2.0
    during = 40.0 / k * ((1 - np.exp(-k * u)) + (1 - np.exp(-k * T)) * np.exp(-k * (ii - T))
                         * np.exp(-k * u) * acc(k))  # fmt: skip
    after = 40.0 / k * (1 - np.exp(-k * T)) * np.exp(-k * (u - T)) * acc(k)
    np.testing.assert_allclose(got, np.where(u <= T, during, after), rtol=1e-8)
    # oral, 1-compartment
    p = full_params(Depots1Central1, F1=0.8, ALAG1=lag)
    got = reference(Depots1Central1, p, [Rec(t_d, 100.0, ss=2, ii=ii)], t)
    want = 80.0 * ka / (ka - k) * (np.exp(-k * u) * acc(k) - np.exp(-ka * u) * acc(ka))
    np.testing.assert_allclose(got[:, 1], want, rtol=1e-8)
    np.testing.assert_allclose(got[:, 0], 80.0 * np.exp(-ka * u) * acc(ka), rtol=1e-8)


def test_reference_steady_state_equals_many_doses():
    """The fixed point equals 300 explicit cycles (3-compartment oral, lag, infusion)."""
    m = Depots1Central1Periph2
    p = full_params(m, ALAG1=1.5, F1=0.8, F2=0.9)
    ii, n_rep = 12.0, 300  # slowest rate ~0.011/h: exp(-0.011 * 3600) ~ 7e-18
    t_d = n_rep * ii
    t = t_d + np.array([0.0, 1.0, 1.5, 2.0, 3.0, 5.0, 11.0, 20.0])
    oral = [Rec(k * ii, 100.0) for k in range(n_rep + 1)]
    inf = [Rec(k * ii, 60.0, 30.0, cmt=2) for k in range(n_rep + 1)]
    for many, ss in [(oral, Rec(t_d, 100.0, ss=1, ii=ii)), (inf, Rec(t_d, 60.0, 30.0, 2, 1, ii))]:
        ref = reference(m, p, many, t)
        assert rel_err(reference(m, p, [ss], t), ref) < 1e-9


# --------------------------------------------------------------------------------------------
# 1. transient events: the matrix
# --------------------------------------------------------------------------------------------


class Case(NamedTuple):
    params: dict
    doses: Doses  # what both paths get (padded)
    recs: list  # what the reference gets (explicit records)
    times: np.ndarray


def _case(model_cls, recs, times, **overrides) -> Case:
    return Case(full_params(model_cls, **overrides), pad_doses(recs), recs, np.asarray(times))


def ev_bolus(m):
    c = central(m)  # IV bolus into Central (CMT 2 for the oral models)
    recs = [Rec(0.0, 100.0, cmt=c), Rec(12.0, 50.0, cmt=c), Rec(12.0, 20.0, cmt=c)]
    return _case(m, recs, [0.0, 0.1, 1.0, 6.0, 12.0, 12.01, 13.0, 24.0, 48.0, 96.0])


def ev_infusion(m):
    c = central(m)  # overlapping infusions: 0-5 and 3-5, then 12-14
    recs = [Rec(0.0, 100.0, 20.0, c), Rec(3.0, 60.0, 30.0, c), Rec(12.0, 80.0, 40.0, c)]
    times = [0.0, 1.0, 3.0, 4.0, 5.0, 5.5, 12.0, 13.0, 14.0, 14.5, 24.0, 72.0]
    return _case(m, recs, times)


def ev_oral(m):
    if not is_oral(m):
        return None  # no depot
    # depot boluses, and a zero-order input into the depot (20-22)
    recs = [Rec(0.0, 100.0), Rec(12.0, 100.0), Rec(20.0, 60.0, 30.0, 1)]
    times = [0.0, 0.25, 1.0, 3.0, 12.0, 12.5, 20.0, 21.0, 22.0, 23.0, 36.0, 96.0]
    return _case(m, recs, times)


def ev_alag(m):
    # lag on CMT 1 (Central for IV, depot for oral): bolus, infusion (6.75-8.75), bolus
    recs = [Rec(0.0, 100.0), Rec(6.0, 80.0, 40.0, 1), Rec(12.0, 100.0)]
    times = [0.0, 0.5, 0.75, 0.76, 2.0, 6.0, 6.75, 7.5, 8.75, 9.0, 12.0, 12.75, 13.0, 24.0, 60.0]
    return _case(m, recs, times, ALAG1=0.75)


def ev_f(m):
    # F1 scales a bolus and the duration of an infusion (80 * 0.6 / 40 = 1.2 h)
    recs = [Rec(0.0, 100.0), Rec(6.0, 80.0, 40.0, 1), Rec(12.0, 50.0)]
    times = [0.0, 1.0, 6.0, 6.5, 7.2, 7.5, 12.0, 12.5, 24.0, 48.0]
    return _case(m, recs, times, F1=0.6)


def ev_rate_minus1(m):
    # RATE -1: rate R1 = 25, duration F1 * AMT / R1 (3.2 h and 1.6 h), with a lag
    recs = [Rec(0.0, 100.0, -1.0, 1), Rec(10.0, 50.0, -1.0, 1)]
    times = [0.0, 0.2, 1.0, 3.0, 3.4, 4.0, 10.0, 10.2, 11.0, 11.8, 12.0, 24.0, 60.0]
    return _case(m, recs, times, F1=0.8, ALAG1=0.2)


def ev_rate_minus2(m):
    # RATE -2: duration D1 = 3, rate F1 * AMT / D1
    recs = [Rec(0.0, 100.0, -2.0, 1), Rec(10.0, 50.0, -2.0, 1)]
    times = [0.0, 0.2, 1.0, 3.0, 3.2, 4.0, 10.0, 10.2, 11.0, 13.2, 14.0, 24.0, 60.0]
    return _case(m, recs, times, F1=0.8, ALAG1=0.2)


def ev_peripheral(m):
    per = peripherals(m)
    if not per:
        return None  # 1-compartment: no peripheral
    c = central(m)
    recs = [Rec(0.0, 100.0, 0.0, per[0]), Rec(4.0, 60.0, 20.0, per[0]), Rec(8.0, 50.0, 0.0, c)]
    extra = {f"F{per[0]}": 0.9, f"ALAG{per[0]}": 0.5}  # infusion 4.5-7.2
    if len(per) > 1:
        recs += [Rec(12.0, 40.0, 0.0, per[1]), Rec(14.0, 30.0, 15.0, per[1])]
    times = [0.0, 0.5, 1.0, 4.0, 4.5, 6.0, 7.2, 8.0, 9.0, 12.0, 14.0, 15.0, 16.0, 30.0, 96.0]
    return _case(m, recs, times, **extra)


def ev_addl(m):
    """ADDL/II through the reader: the dataset's dose arrays go to both paths; the reference
    gets the explicit repeats."""
    c = central(m)
    dose = dict(DV=0.0, EVID=1, MDV=1, SS=0)
    obs = dict(AMT=0.0, EVID=0, MDV=0, CMT=c, RATE=0.0, II=0.0, ADDL=0, SS=0)
    times = [0.0, 1.0, 2.0, 3.5, 5.0, 12.0, 12.5, 24.0, 26.0, 27.0, 36.0, 37.0, 48.0, 72.0]
    rows = [
        dict(ID=1, TIME=0.0, AMT=100.0, CMT=1, RATE=0.0, II=12.0, ADDL=3, **dose),
        dict(ID=1, TIME=2.0, AMT=60.0, CMT=c, RATE=20.0, II=24.0, ADDL=1, **dose),
    ]
    rows += [dict(ID=1, TIME=t, DV=1.0, **obs) for t in times]
    df = pd.DataFrame(rows).sort_values("TIME", kind="stable").reset_index(drop=True)
    ds = bn.read_nonmem(df)
    d = ds.doses(0)
    n = d.time.size
    assert n == 6 and bool(np.all(d.mask)) and np.all(np.asarray(d.ss) == 0)
    # the dataset's own arrays (ADDL expanded by the reader), padded to N_DOSE slots
    pad = lambda x, v: np.concatenate([np.asarray(x), np.full(N_DOSE - n, v)])  # noqa: E731
    doses = Doses(
        pad(d.time, 0.0), pad(d.amt, 0.0), pad(d.rate, 0.0), pad(d.cmt, 1).astype(np.int32),
        pad(d.mask, False).astype(bool),
    )  # fmt: skip
    recs = [Rec(12.0 * k, 100.0) for k in range(4)] + [Rec(2.0 + 24.0 * k, 60.0, 20.0, c)
                                                       for k in range(2)]  # fmt: skip
    return Case(full_params(m, F1=0.8, ALAG1=0.25), doses, recs, np.asarray(times))


EVENTS = {
    "bolus": ev_bolus,
    "infusion": ev_infusion,
    "oral": ev_oral,
    "addl": ev_addl,
    "alag": ev_alag,
    "f": ev_f,
    "rate-1": ev_rate_minus1,
    "rate-2": ev_rate_minus2,
    "peripheral": ev_peripheral,
}
MATRIX = [
    pytest.param(event, m, id=f"{event}-{mid(m)}")
    for event in EVENTS
    for m in MODELS
    if EVENTS[event](m) is not None
]


def _check_three_ways(ana, ode, ok, ref, what):
    assert ok, f"{what}: the ODE solve failed"
    assert np.all(np.isfinite(ana)) and np.all(np.isfinite(ode))
    assert np.max(np.abs(ref)) > 1.0, what  # the doses are there
    errors = {
        "ode-analytic": rel_err(ode, ana),
        "analytic-reference": rel_err(ana, ref),
        "ode-reference": rel_err(ode, ref),
    }
    assert max(errors.values()) < TOL, (what, errors)


@pytest.mark.parametrize(("event", "model_cls"), MATRIX)
def test_matrix(event, model_cls):
    case = EVENTS[event](model_cls)
    ana = run_analytic(model_cls, case.params, case.doses, case.times)
    ode, ok = run_ode(model_cls, case.params, case.doses, case.times)
    ref = reference(model_cls, case.params, case.recs, case.times)
    _check_three_ways(ana, ode, ok, ref, f"{event}/{mid(model_cls)}")


def test_matrix_cases_are_not_trivial():
    """Guards the matrix: ALAG1, F1, R1 and D1 each change the reference."""
    m = Depots1Central1Periph1
    for ev, name, other in [
        (ev_alag, "ALAG1", 0.7),
        (ev_f, "F1", 0.65),
        (ev_rate_minus1, "R1", 26.0),
        (ev_rate_minus2, "D1", 3.1),
    ]:
        case = ev(m)
        a = reference(m, case.params, case.recs, case.times)
        b = reference(m, {**case.params, name: other}, case.recs, case.times)
        assert rel_err(b, a) > 1e-3, name


# --------------------------------------------------------------------------------------------
# 2. steady state (SS=1, SS=2): the analytic path, then the ODE path (``-k ode_ss``)
# --------------------------------------------------------------------------------------------

II = 12.0
SS_TIME = 30.0
SS_EVAL = np.array([0.0, 5.0, 25.0, 29.9, 30.0, 30.5, 31.5, 31.6, 32.0, 33.0, 36.0, 41.9,
                    42.0, 43.0, 44.0, 55.0, 80.0])  # fmt: skip


def _ss_route(m, route):
    """(rate, cmt, lag) of the SS dose; ALAG + infusion duration <= II everywhere."""
    c = central(m)
    return {
        "bolus": (0.0, c, 0.0),  # IV bolus into Central
        "bolus-lag": (0.0, 1, 1.5),  # CMT 1 (Central or depot) with ALAG1 = 1.5
        # CMT 1 (Central for IV, the depot for oral): 80 * 0.8 / 40 = 1.6 h after ALAG1 = 1.5
        "infusion": (40.0, 1, 1.5),
        "oral": (0.0, 1, 1.5),  # depot, ALAG1 = 1.5 < II
    }[route]


def ss_case(m, ss, route) -> Case:
    """Earlier doses (a central bolus at 0; a CMT-1 infusion from 25 + ALAG1 lasting
    200 * 0.8 / 25 = 6.4 h, still running at 30; a CMT-1 dose at 29 that, with ALAG1 = 1.5,
    is still pending at 30), the SS dose at 30, a later ordinary dose (as from ADDL) at 42
    and a later central infusion."""
    rate, cmt, lag = _ss_route(m, route)
    c = central(m)
    earlier = [Rec(0.0, 100.0, 0.0, c), Rec(25.0, 200.0, 25.0, 1), Rec(29.0, 50.0, 0.0, 1)]
    later = [Rec(42.0, 80.0, rate, cmt), Rec(43.0, 30.0, 20.0, c)]
    recs = [*earlier, Rec(SS_TIME, 80.0, rate, cmt, ss, II), *later]
    p = full_params(m, F1=0.8, ALAG1=lag)
    return Case(p, pad_doses(recs, with_ss=True), recs, SS_EVAL)


SS_ROUTES = {
    m: (["bolus", "bolus-lag", "infusion"] if not is_oral(m) else ["bolus", "oral", "infusion"])
    for m in MODELS
}
SS_MATRIX = [
    pytest.param(ss, route, m, id=f"ss{ss}-{route}-{mid(m)}")
    for ss in (1, 2)
    for m in MODELS
    for route in SS_ROUTES[m]
]


def test_ss_cases_are_not_trivial():
    """SS=1 forgets the earlier doses (running infusion and pending lagged dose included),
    SS=2 keeps them: the two references differ after the record time, agree before it."""
    m = Depots1Central1Periph1
    one, two = ss_case(m, 1, "oral"), ss_case(m, 2, "oral")
    r1 = reference(m, one.params, one.recs, one.times)
    r2 = reference(m, two.params, two.recs, two.times)
    before = SS_EVAL < SS_TIME
    np.testing.assert_array_equal(r1[before], r2[before])
    assert np.all(np.abs(r1[~before] - r2[~before]).sum(axis=1) > 1.0)
    # the earlier infusion is still running at 30 (ALAG1 1.5: 26.5-32.9), the dose at 29
    # still pending (30.5)
    assert one.params["ALAG1"] + 25.0 + 200.0 * 0.8 / 25.0 > SS_TIME
    assert one.params["ALAG1"] + 29.0 > SS_TIME


@pytest.mark.parametrize(("ss", "route", "model_cls"), SS_MATRIX)
def test_analytic_ss_matrix(ss, route, model_cls):
    case = ss_case(model_cls, ss, route)
    ana = run_analytic(model_cls, case.params, case.doses, case.times)
    ref = reference(model_cls, case.params, case.recs, case.times)
    assert np.max(np.abs(ref)) > 1.0
    err = rel_err(ana, ref)
    assert err < TOL, err


@pytest.mark.parametrize(("ss", "route", "model_cls"), SS_MATRIX)
def test_ode_ss_matrix(ss, route, model_cls):
    """The steady-state rows of the ODE path (see the module docstring)."""
    case = ss_case(model_cls, ss, route)
    ana = run_analytic(model_cls, case.params, case.doses, case.times)
    ode, ok = run_ode(model_cls, case.params, case.doses, case.times)
    ref = reference(model_cls, case.params, case.recs, case.times)
    _check_three_ways(ana, ode, ok, ref, f"ss{ss}/{route}/{mid(model_cls)}")


# --------------------------------------------------------------------------------------------
# 3. resets (EVID 3 and EVID 4) through the population layer
# --------------------------------------------------------------------------------------------

RESET_EXTRA = {"F1": 0.8, "ALAG1": 0.3}


def reset_design(m):
    """Subject 1: EVID 3 at 12 cancels the ADDL repeats at 16, 24 and the central infusion
    started at 10 (still running); subject 2: EVID 4 (reset + infusion) with the clock
    restarting at 0. F1 = 0.8 and ALAG1 = 0.3 act on the CMT-1 doses.

    Returns the NONMEM frame and, per subject, the segments (reference records, observation
    times)."""
    c = central(m)
    rows = []

    def dose(i, t, amt, cmt, rate=0.0, ii=0.0, addl=0, evid=1):
        rows.append(dict(ID=i, TIME=t, DV=0.0, AMT=amt, EVID=evid, MDV=1, CMT=cmt, RATE=rate,
                         II=ii, ADDL=addl, SS=0))  # fmt: skip

    def obs(i, *ts):
        for t in ts:
            rows.append(dict(ID=i, TIME=t, DV=1.0, AMT=0.0, EVID=0, MDV=0, CMT=c, RATE=0.0,
                             II=0.0, ADDL=0, SS=0))  # fmt: skip

    # subject 1, EVID 3
    dose(1, 0.0, 100.0, 1, ii=8.0, addl=3)  # 0, 8 | 16, 24 cancelled by the reset
    obs(1, 1.0, 4.0, 8.0, 9.0)
    dose(1, 10.0, 60.0, c, rate=10.0)  # still running at 12: cut by the reset
    obs(1, 11.0, 11.9)
    rows.append(dict(ID=1, TIME=12.0, DV=0.0, AMT=0.0, EVID=3, MDV=1, CMT=0, RATE=0.0,
                     II=0.0, ADDL=0, SS=0))  # fmt: skip
    obs(1, 12.0, 13.0)
    dose(1, 14.0, 50.0, 1)
    obs(1, 14.0, 14.3, 14.5, 20.0, 30.0)
    # subject 2, EVID 4 (time restarts)
    dose(2, 0.0, 100.0, 1, ii=12.0, addl=2)  # 0, 12, 24 | the rest of the clock is gone
    obs(2, 1.0, 6.0, 12.0, 20.0)
    dose(2, 0.0, 80.0, 1, rate=40.0, evid=4)  # reset, then 0.3-1.9
    obs(2, 0.0, 0.5, 1.0, 3.0, 8.0)
    dose(2, 10.0, 40.0, c)
    obs(2, 10.0, 11.0, 30.0)
    segments = {
        1: [
            ([Rec(0.0, 100.0, 0.0, 1), Rec(8.0, 100.0, 0.0, 1), Rec(10.0, 60.0, 10.0, c)],
             [1.0, 4.0, 8.0, 9.0, 11.0, 11.9]),
            ([Rec(14.0, 50.0, 0.0, 1)], [12.0, 13.0, 14.0, 14.3, 14.5, 20.0, 30.0]),
        ],
        2: [
            ([Rec(0.0, 100.0, 0.0, 1), Rec(12.0, 100.0, 0.0, 1)], [1.0, 6.0, 12.0, 20.0]),
            ([Rec(0.0, 80.0, 40.0, 1), Rec(10.0, 40.0, 0.0, c)],
             [0.0, 0.5, 1.0, 3.0, 8.0, 10.0, 11.0, 30.0]),
        ],
    }  # fmt: skip
    return pd.DataFrame(rows).assign(WT=70.0), segments


def pop_model(m, dynamics):
    req = m.required
    params = {f"tv{k.lower()}": bn.Param(dist.LogNormal(jnp.log(BASE[k]), 1.0)) for k in req}
    params["add_sd"] = bn.Param(dist.HalfNormal(1.0))

    def pre(p, eta, cov):
        ind = {k: p[f"tv{k.lower()}"] for k in req}
        # WT is 70 throughout: a factor of exactly 1. Declaring a covariate works around a
        # bug (see the report): with resets, a model with neither random effects nor
        # covariates fails in the population layer (vmap over empty dicts).
        ind["CL"] = ind["CL"] * cov.WT / 70.0
        return {**ind, **RESET_EXTRA}

    def derived(p, a, ind):
        return {"DV": bn.error.Additive(a.Central / ind.V, sd=p.add_sd)}

    return bn.Model(params=params, pre=pre, dynamics=dynamics, derived=derived, covariates=["WT"])


@functools.cache
def reset_ipred(m, path):
    df, _ = reset_design(m)
    dynamics = m() if path == "analytic" else ode_model(m)
    theta = {f"tv{k.lower()}": BASE[k] for k in m.required} | {"add_sd": 0.1}
    model = pop_model(m, dynamics)
    data = model.model_data(bn.read_nonmem(df))
    assert data.unit_id is not None  # units are the segments between resets
    # the individual predictions of every observation (what bn.simulate reports as IPRED,
    # without its sampling machinery: much faster to compile)
    _, outputs, ok = jax.jit(lambda th: model.predict_subjects(th, {}, data))(theta)
    assert bool(np.all(ok))
    ipred = np.asarray(outputs["DV"].ipred)
    obs_id = df.loc[df.EVID == 0, "ID"].to_numpy()
    assert ipred.shape == obs_id.shape
    return ipred, obs_id


# the 1-, 2- and 3-compartment oral models: their designs also dose Central (IV), and the
# resets are handled by the population layer, whatever the model (each model costs two
# compiles of the population predictions)
RESET_MODELS = [m for m in MODELS if is_oral(m)]
RESET_MATRIX = [
    pytest.param(evid, m, id=f"evid{evid}-{mid(m)}") for evid in (3, 4) for m in RESET_MODELS
]


@pytest.mark.parametrize(("evid", "model_cls"), RESET_MATRIX)
def test_reset_matrix(evid, model_cls):
    subject = {3: 1, 4: 2}[evid]
    _, segments = reset_design(model_cls)
    p = full_params(model_cls, **RESET_EXTRA)
    c = central(model_cls) - 1
    ref = np.concatenate(
        [reference(model_cls, p, recs, ts)[:, c] / p["V"] for recs, ts in segments[subject]]
    )
    got = {}
    for path in ("analytic", "ode"):
        ipred, obs_id = reset_ipred(model_cls, path)
        got[path] = ipred[obs_id == subject]
    assert np.max(np.abs(ref)) > 0.5
    # the reset matters: zero right after it (before the next, lagged, dose), and for EVID 3
    # (one clock) the predictions after it differ from those without the reset (the ADDL
    # repeats at 16, 24 and the whole central infusion still given)
    first_after = {3: 6, 4: 4}[evid]
    assert ref[first_after] == 0.0 and ref[first_after - 1] > 0.1
    if evid == 3:
        recs = [Rec(8.0 * k, 100.0) for k in range(4)] + [
            Rec(10.0, 60.0, 10.0, central(model_cls)),
            Rec(14.0, 50.0),
        ]
        ts = [12.0, 13.0, 14.0, 14.3, 14.5, 20.0, 30.0]
        no_reset = reference(model_cls, p, recs, ts)[:, c] / p["V"]
        assert np.all(np.abs(no_reset - ref[6:]) > 0.05)
    errors = {
        "ode-analytic": rel_err(got["ode"], got["analytic"]),
        "analytic-reference": rel_err(got["analytic"], ref),
        "ode-reference": rel_err(got["ode"], ref),
    }
    assert max(errors.values()) < TOL, errors


# --------------------------------------------------------------------------------------------
# 4. gradients of a log-likelihood vs central finite differences, both paths
# --------------------------------------------------------------------------------------------

# CMT-1 doses at 0 (bolus / oral), 5 (RATE 40, AMT 80), 10 (RATE -1, AMT 60), 16 (RATE -2,
# AMT 50); a peripheral bolus at 20 (2-/3-cpt) and a central bolus at 22 (oral models).
# Observation times avoid the infusion ends (5 + ALAG1 + 2 F1, 10 + ALAG1 + 2.4 F1,
# 19 + ALAG1) for every scenario: the log-likelihood has a kink where an observation
# coincides with a parameter-dependent event time.
GRAD_DOSE_TIMES = [0.0, 5.0, 10.0, 16.0]
GRAD_TIMES_OFF = [0.5, 2.0, 5.5, 6.1, 8.5, 10.5, 11.2, 13.5, 17.0, 18.2, 21.0, 23.0, 30.0,
                  48.0, 72.0]  # fmt: skip
GRAD_SCENARIOS = {
    # name: (ALAG1, F1, observations at the CMT-1 dose times too)
    "lag0.4-F0.7": (0.4, 0.7, True),
    "lag1e-3": (1e-3, 0.7, True),  # close to 0: the dose lands just after the observation
    # ALAG1 = 0 exactly: an observation exactly at a dose time would make the
    # log-likelihood one-sided in ALAG1 (see test_gradient_convention_at_lag_zero), so
    # this scenario has none there and the central difference is valid
    "lag0": (0.0, 0.7, False),
    "F1=1": (0.4, 1.0, True),
}
GRAD_NAMES = ("KA", "CL", "V", "Q", "V2", "Q3", "V3", "ALAG1", "F1", "R1", "D1")


def grad_recs(m):
    recs = [
        Rec(0.0, 100.0, 0.0, 1),
        Rec(5.0, 80.0, 40.0, 1),
        Rec(10.0, 60.0, -1.0, 1),
        Rec(16.0, 50.0, -2.0, 1),
    ]
    if peripherals(m):
        recs.append(Rec(20.0, 30.0, 0.0, peripherals(m)[0]))
    if is_oral(m):
        recs.append(Rec(22.0, 40.0, 0.0, central(m)))
    return recs


def grad_times(at_doses: bool) -> np.ndarray:
    times = GRAD_TIMES_OFF + (GRAD_DOSE_TIMES if at_doses else [])
    return pad_times(sorted(times))[0]


def _obs_values(times):
    # fixed synthetic observations (not from the model: the gradient is not ~0)
    return 2.0 + np.sin(times) + 0.02 * times


def _weights(times):
    w = np.ones_like(times)
    w[1:][times[1:] == times[:-1]] = 0.0  # the padded duplicate times count once
    return w


SD = 0.5  # additive residual SD of the log-likelihood


@functools.cache
def loglik_grad(m, path, with_ss=False):
    """Jitted ``jax.grad`` of the normal log-likelihood of the central concentration."""
    model = m() if path == "analytic" else ode_model(m)
    c = central(m) - 1

    def loglik(p, doses, times, y, w):
        conc = model.amounts(p, doses, times)[:, c] / p["V"]
        return jnp.sum(w * jax.scipy.stats.norm.logpdf(y, conc, SD))

    return jax.jit(jax.grad(loglik))


def loglik_value(m, path, p, doses, times, y, w) -> float:
    """The same log-likelihood from the amounts of run_analytic / run_ode (compiled once per
    model for the value matrix as well), for the finite differences."""
    if path == "analytic":
        a = run_analytic(m, p, doses, times)
    else:
        a, ok = run_ode(m, p, doses, times)
        assert ok
    conc = a[:, central(m) - 1] / p["V"]
    return float(np.sum(w * norm.logpdf(y, conc, SD)))


def _fd_step(name, value):
    if name.startswith("ALAG"):
        return 1e-5  # absolute (time); < ALAG1 = 1e-3, no event crosses an observation
    return 1e-5 * abs(value)


def check_gradients(m, path, p, doses, times, names, one_sided=()):
    """jax.grad against finite differences of the same path (rtol GRAD_RTOL); returns the
    gradient. ``times`` has N_TIME entries.

    ``one_sided``: names whose derivative is taken from the left (backward second-order
    formula) instead of the central difference."""
    y, w = _obs_values(times), _weights(times)
    grad = loglik_grad(m, path, doses.ss is not None)(p, doses, times, y, w)

    def at(name, x):
        return loglik_value(m, path, {**p, name: x}, doses, times, y, w)

    for name in names:
        h, x = _fd_step(name, p[name]), p[name]
        if name in one_sided:
            fd = (3 * at(name, x) - 4 * at(name, x - h) + at(name, x - 2 * h)) / (2 * h)
        else:
            fd = (at(name, x + h) - at(name, x - h)) / (2 * h)
        ad = float(grad[name])
        assert np.isfinite(ad), (path, name)
        assert fd != 0.0, (path, name)  # every parameter checked matters here
        assert abs(ad - fd) <= GRAD_RTOL * abs(fd), (path, name, ad, fd)
    return grad


GRAD_MATRIX = [pytest.param(s, m, id=f"{s}-{mid(m)}") for s in GRAD_SCENARIOS for m in MODELS]


@pytest.mark.parametrize(("scenario", "model_cls"), GRAD_MATRIX)
def test_gradient_matrix(scenario, model_cls):
    lag, f1, at_doses = GRAD_SCENARIOS[scenario]
    p = full_params(model_cls, ALAG1=lag, F1=f1)
    doses = pad_doses(grad_recs(model_cls))
    times = grad_times(at_doses)
    names = [k for k in GRAD_NAMES if k in model_cls.required or k in ("ALAG1", "F1", "R1", "D1")]
    g_ana = check_gradients(model_cls, "analytic", p, doses, times, names)
    g_ode = check_gradients(model_cls, "ode", p, doses, times, names)
    for name in names:  # and the two paths agree more tightly than the FD check
        a, o = float(g_ana[name]), float(g_ode[name])
        assert abs(o - a) <= 1e-6 * abs(a), (name, o, a)


@pytest.mark.parametrize("model_cls", [Central1Periph1, Depots1Central1Periph2], ids=mid)
def test_gradient_convention_at_lag_zero(model_cls):
    """ALAG1 = 0 with observations exactly at the CMT-1 dose times: the derivative w.r.t.
    ALAG1 is one-sided, from the side where the dose is included (ALAG1 <= 0: the lagged
    dose time is <= the observation time), as documented in both paths."""
    p = full_params(model_cls, ALAG1=0.0, F1=0.7)
    doses = pad_doses(grad_recs(model_cls))
    times = grad_times(at_doses=True)
    y, w = _obs_values(times), _weights(times)
    h = _fd_step("ALAG1", 0.0)
    for path in ("analytic", "ode"):
        g = check_gradients(model_cls, path, p, doses, times, ["ALAG1"], one_sided={"ALAG1"})
        # the other side (ALAG1 > 0: the doses not yet given at the observations) differs:
        # the convention matters here
        at = [loglik_value(model_cls, path, {**p, "ALAG1": x}, doses, times, y, w)
              for x in (0.0, h, 2 * h)]  # fmt: skip
        right = (-3 * at[0] + 4 * at[1] - at[2]) / (2 * h)
        assert abs(right - float(g["ALAG1"])) > 0.1 * abs(right), (path, right, g["ALAG1"])


def ss_grad_case(m):
    """SS=1 (oral / CMT-1 bolus with lag), an ordinary dose, an SS=2 infusion on top."""
    c = central(m)
    recs = [
        Rec(0.0, 100.0, 0.0, 1),
        Rec(SS_TIME, 80.0, 0.0, 1, 1, II),
        Rec(36.0, 60.0, 0.0, c),
        Rec(40.0, 60.0, 30.0, c, 2, II),
    ]
    # no observation at a lagged dose time (30.5, 36.5 and 40.5 for IV models): kinks in ALAG1
    times = pad_times([29.0, 30.0, 30.3, 31.0, 33.0, 38.0, 40.0, 41.0, 45.0, 60.0])[0]
    return full_params(m, ALAG1=0.5, F1=0.7), pad_doses(recs, with_ss=True), recs, times


SS_GRAD_NAMES = ("KA", "CL", "V", "Q", "V2", "Q3", "V3", "ALAG1", "F1")
# IV (SS into Central with a lag) and oral (SS into the depot, SS=2 infusion into Central);
# two models only: the ODE steady-state gradient is the costliest compile of the file
# (10-15 s each on a shared 2-core machine)
SS_GRAD_MODELS = [Central1, Depots1Central1Periph1]


@pytest.mark.parametrize("model_cls", SS_GRAD_MODELS, ids=mid)
def test_analytic_ss_gradients(model_cls):
    p, doses, recs, times = ss_grad_case(model_cls)
    ref = reference(model_cls, p, recs, times[:10])
    assert rel_err(run_analytic(model_cls, p, doses, times[:10]), ref) < TOL
    names = [k for k in SS_GRAD_NAMES if k in model_cls.required or k in ("ALAG1", "F1")]
    check_gradients(model_cls, "analytic", p, doses, times, names)


@pytest.mark.parametrize("model_cls", SS_GRAD_MODELS, ids=mid)
def test_ode_ss_gradients(model_cls):
    """The steady-state rows of the ODE path (see the module docstring)."""
    p, doses, recs, times = ss_grad_case(model_cls)
    ode, ok = run_ode(model_cls, p, doses, times[:10])
    assert ok, "the ODE solve with SS doses failed"
    assert rel_err(ode, reference(model_cls, p, recs, times[:10])) < TOL
    names = [k for k in SS_GRAD_NAMES if k in model_cls.required or k in ("ALAG1", "F1")]
    g_ode = check_gradients(model_cls, "ode", p, doses, times, names)
    g_ana = loglik_grad(model_cls, "analytic", True)(
        p, doses, times, _obs_values(times), _weights(times)
    )
    for name in names:
        a, o = float(g_ana[name]), float(g_ode[name])
        assert abs(o - a) <= 1e-6 * abs(a), (name, o, a)


def test_reset_predictions_are_what_simulate_reports():
    """The fast path of test_reset_matrix (predict_subjects) is bn.simulate's IPRED."""
    m = Depots1Central1
    df, _ = reset_design(m)
    theta = {f"tv{k.lower()}": BASE[k] for k in m.required} | {"add_sd": 0.1}
    sim = bn.simulate(pop_model(m, m()), df, theta, seed=0).predictions
    ipred, _ = reset_ipred(m, "analytic")
    got = np.asarray(sim["IPRED"].values).reshape(-1)
    np.testing.assert_allclose(got, ipred, rtol=1e-12, atol=1e-12 * np.max(np.abs(ipred)))


def test_reset_records_with_a_model_without_etas_or_covariates():
    """Regression: with EVID 3 records, a model with neither random effects nor covariates
    (vmap over two empty dicts) simulated without an error, and restarts at the reset."""
    df = pd.DataFrame(
        dict(
            ID=[1] * 5,
            TIME=[0.0, 2, 3, 3, 5],
            DV=[0, 1, 0, 1, 1],
            AMT=[100.0, 0, 0, 0, 0],
            EVID=[1, 0, 3, 0, 0],
        )
    )
    model = bn.Model(
        params=dict(
            tvcl=bn.Param(bn.dist.LogNormal(jnp.log(5.0), 1.0)),
            tvv=bn.Param(bn.dist.LogNormal(jnp.log(50.0), 1.0)),
            sd=bn.Param(bn.dist.HalfNormal(1.0)),
        ),
        pre=lambda p, eta, cov: dict(CL=p.tvcl, V=p.tvv),
        dynamics=Central1(),
        derived=lambda p, a, ind: dict(DV=bn.error.Additive(a.Central / ind.V, sd=p.sd)),
    )
    sim = bn.simulate(model, df, dict(tvcl=5.0, tvv=50.0, sd=0.1))
    ipred = np.asarray(sim.predictions["IPRED"]).ravel()
    np.testing.assert_allclose(ipred, [2.0 * np.exp(-0.1 * 2.0), 0.0, 0.0], atol=1e-12)
