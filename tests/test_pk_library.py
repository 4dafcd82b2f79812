"""The mechanistic model library (bn.pk.michaelis_menten, transit_absorption, tmdd_*,
indirect_response, effect_compartment, friberg, antibody_decay_to_plateau): each model
against an independent reference (scipy's solve_ivp at rtol 1e-10 on the ABSOLUTE states,
with the doses applied between integration segments, or a closed form), a gradient against
finite differences, and one simulate-then-recover fit (the model_zoo script)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

import bayes_nlme as bn
from bayes_nlme._errors import ModelError
from bayes_nlme.data._dataset import Doses

jax.config.update("jax_enable_x64", True)

TIMES = np.array([0.0, 0.3, 1.0, 2.0, 4.0, 7.5, 12.0, 12.2, 13.0, 16.0, 24.0, 36.0, 48.0])
RTOL = 1e-6


def make_doses(rows) -> Doses:
    """rows: (time, amt, rate, cmt)."""
    t, amt, rate, cmt = (np.asarray(x) for x in zip(*rows, strict=True))
    return Doses(
        time=t.astype(float),
        amt=amt.astype(float),
        rate=rate.astype(float),
        cmt=cmt.astype(np.int32),
        mask=np.ones(t.size, bool),
    )


def solve(model, params, doses, times=TIMES) -> np.ndarray:
    out, ok = jax.jit(model.solve_status)(params, doses, times)
    assert bool(ok)
    return np.asarray(out)


def reference(f, y0, rows, times=TIMES) -> np.ndarray:
    """solve_ivp (rtol 1e-10) of ``y' = f(t, y) + input``, piecewise between the dose
    events: bolus (rate 0) jumps, zero-order infusions as constant inputs. ``y0`` holds from
    the first dose (before it the model is at rest, returned as ``y0``)."""
    y0 = np.asarray(y0, float)
    n = y0.size
    starts = {r[0] for r in rows}
    ends = {r[0] + r[1] / r[2] for r in rows if r[2] > 0}
    bps = sorted(starts | ends | {max(times.max(), max(starts))})
    out = np.tile(y0, (times.size, 1))
    y = y0.copy()
    for k, b in enumerate(bps):
        for time, amt, rate, cmt in rows:
            if time == b and rate == 0:
                y[cmt - 1] += amt
        out[times == b] = y
        if k + 1 == len(bps):
            break
        b1 = bps[k + 1]
        inp = np.zeros(n)
        for time, amt, rate, cmt in rows:
            if rate > 0 and time <= b < time + amt / rate:
                inp[cmt - 1] += rate
        inside = times[(times > b) & (times <= b1)]
        sol = solve_ivp(
            lambda t, y, inp=inp: np.asarray(f(t, y)) + inp,
            (b, b1),
            y,
            t_eval=inside if inside.size else None,
            rtol=1e-10,
            atol=1e-12,
            method="LSODA",
            dense_output=False,
        )
        assert sol.success
        if inside.size:
            for j, ti in enumerate(inside):
                out[times == ti] = sol.y[:, j]
        y = sol.y[:, -1].copy()
    return out


def close(got, ref, what=""):
    """rtol 1e-6 elementwise, with an absolute floor at 1e-9 of the largest value
    (values crossing zero carry atol-level error); returns the max error relative to the
    largest value."""
    got, ref = np.asarray(got), np.asarray(ref)
    np.testing.assert_allclose(got, ref, rtol=RTOL, atol=1e-9 * np.abs(ref).max(), err_msg=what)
    return float(np.max(np.abs(got - ref)) / np.abs(ref).max())


ORAL = [(0.0, 100.0, 0.0, 1), (12.0, 300.0, 0.0, 1)]


# --------------------------------------------------------------------------------------------
# PK
# --------------------------------------------------------------------------------------------


def test_michaelis_menten_oral_matches_scipy():
    p = dict(KA=1.2, V=20.0, VM=30.0, KM=2.0)
    got = solve(bn.pk.michaelis_menten("oral"), p, make_doses(ORAL))

    def f(t, y):
        c = y[1] / p["V"]
        return [-p["KA"] * y[0], p["KA"] * y[0] - p["VM"] * c / (p["KM"] + c)]

    close(got, reference(f, [0.0, 0.0], ORAL), "michaelis_menten oral")


def test_michaelis_menten_iv_infusion_and_bolus_matches_scipy():
    p = dict(V=20.0, VM=30.0, KM=2.0)
    rows = [(0.0, 200.0, 50.0, 1), (12.0, 100.0, 0.0, 1)]  # 4-h infusion, then a bolus
    got = solve(bn.pk.michaelis_menten("iv"), p, make_doses(rows))

    def f(t, y):
        c = y[0] / p["V"]
        return [-p["VM"] * c / (p["KM"] + c)]

    close(got, reference(f, [0.0], rows), "michaelis_menten iv")


def test_michaelis_menten_with_large_km_is_linear_elimination():
    # KM >> C: elimination VM C / KM = (VM / KM) C, i.e. CL = VM / KM (error ~ C / KM)
    p = dict(KA=1.2, V=20.0, KM=1e9, VM=3.0 * 1e9)
    doses = make_doses(ORAL)
    got = solve(bn.pk.michaelis_menten("oral"), p, doses)
    ref = np.asarray(bn.pk.Depots1Central1().amounts(dict(KA=1.2, V=20.0, CL=3.0), doses, TIMES))
    close(got, ref, "MM vs linear")


def test_transit_zero_is_the_one_compartment_oral_closed_form():
    m = bn.pk.transit_absorption(0)
    assert m.compartments == ("Depot", "Central")
    p = dict(KTR=99.0, KA=1.2, CL=3.0, V=20.0)
    doses = make_doses(ORAL)
    ref = np.asarray(bn.pk.Depots1Central1().amounts(p, doses, TIMES))
    close(solve(m, p, doses), ref, "transit n=0")


def test_transit_chain_matches_savic_closed_form_and_scipy():
    n = 3
    m = bn.pk.transit_absorption(n)
    assert m.compartments == ("Transit1", "Transit2", "Transit3", "Depot", "Central")
    p = dict(KTR=2.0, KA=0.8, CL=3.0, V=20.0)
    rows = [(0.0, 100.0, 0.0, 1)]
    got = solve(m, p, make_doses(rows))
    # Savic et al. 2007: amount in the last transit compartment (Savic's n = n_transit - 1)
    k, t = p["KTR"], TIMES
    savic = 100.0 * (k * t) ** (n - 1) * np.exp(-k * t) / math.factorial(n - 1)
    close(got[:, n - 1], savic, "Savic A_n")

    def f(t, y):
        dy = np.zeros(n + 2)
        inflow = 0.0
        for i in range(n):
            dy[i] = inflow - k * y[i]
            inflow = k * y[i]
        dy[n] = inflow - p["KA"] * y[n]
        dy[n + 1] = p["KA"] * y[n] - p["CL"] / p["V"] * y[n + 1]
        return dy

    close(got, reference(f, np.zeros(n + 2), rows), "transit chain")


# --------------------------------------------------------------------------------------------
# TMDD
# --------------------------------------------------------------------------------------------

TMDD = dict(CL=0.5, V=5.0, KON=0.5, KOFF=0.1, KINT=0.05, KDEG=0.2, R0=5.0)
IV = [(0.0, 100.0, 0.0, 1), (24.0, 20.0, 0.0, 1)]  # nmol; 20 nM then 4 nM


def test_tmdd_full_matches_scipy_on_absolute_states():
    p = TMDD
    got = solve(bn.pk.tmdd_full(), p, make_doses(IV))

    def f(t, y):  # absolute: free drug amount, free target and complex concentrations
        c, r, rc = y[0] / p["V"], y[1], y[2]
        bind = p["KON"] * c * r - p["KOFF"] * rc
        return [
            -p["CL"] / p["V"] * y[0] - p["V"] * bind,
            p["R0"] * p["KDEG"] - p["KDEG"] * r - bind,
            bind - p["KINT"] * rc,
        ]

    ref = reference(f, [0.0, p["R0"], 0.0], IV)
    conc = bn.pk.tmdd_full_concentrations(got[:, 0], got[:, 1], got[:, 2], p["V"], p["R0"])
    absolute = np.column_stack([got[:, 0], conc["free_target"], conc["complex"]])
    close(absolute, ref, "tmdd_full")
    np.testing.assert_allclose(conc["total_target"], ref[:, 1] + ref[:, 2], rtol=RTOL)


def test_tmdd_qss_matches_scipy_on_absolute_states():
    p = dict(CL=0.5, V=5.0, KSS=0.3, KINT=0.05, KDEG=0.2, R0=5.0)
    got = solve(bn.pk.tmdd_qss(), p, make_doses(IV))

    def f(t, y):  # absolute: total drug amount, total target concentration
        ctot, rtot = y[0] / p["V"], y[1]
        b = ctot - rtot - p["KSS"]
        c = 0.5 * (b + math.sqrt(b * b + 4 * p["KSS"] * ctot))
        return [
            -p["CL"] * c - p["V"] * p["KINT"] * (ctot - c),
            p["R0"] * p["KDEG"] - p["KDEG"] * rtot - (p["KINT"] - p["KDEG"]) * (ctot - c),
        ]

    ref = reference(f, [0.0, p["R0"]], IV)
    close(np.column_stack([got[:, 0], p["R0"] + got[:, 1]]), ref, "tmdd_qss")
    conc = bn.pk.tmdd_qss_concentrations(got[:, 0], got[:, 1], p["V"], p["R0"], p["KSS"])
    # the quasi-steady state holds: C R = KSS RC, and the totals add up
    np.testing.assert_allclose(
        conc["free_drug"] * conc["free_target"], p["KSS"] * conc["complex"], rtol=1e-9, atol=1e-12
    )
    np.testing.assert_allclose(conc["free_target"] + conc["complex"], conc["total_target"])
    np.testing.assert_allclose(conc["free_drug"] + conc["complex"], conc["total_drug"])
    assert np.all(np.asarray(conc["free_drug"]) >= 0)


def test_tmdd_full_with_fast_binding_approaches_qss_with_a_stiff_solver():
    # KON R0 = 250/h, KOFF = 5/h >> CL/V = 0.1/h: stiff; binding at quasi-steady state with
    # KSS = (KOFF + KINT) / KON (Gibiansky et al. 2008). Kvaerno5 at rtol 1e-8 / atol 1e-10
    # fails here (the ODE engine reports ok=False), at 1e-6 / 1e-8 it is fine.
    import diffrax

    full = dict(TMDD, KON=50.0, KOFF=5.0)
    kss = (full["KOFF"] + full["KINT"]) / full["KON"]
    times = np.array([1.0, 4.0, 12.0, 25.0, 30.0, 48.0])  # not at a dose: QSS equilibrates at once
    doses = make_doses(IV)
    got = solve(
        bn.pk.tmdd_full(solver=diffrax.Kvaerno5(), rtol=1e-6, atol=1e-8), full, doses, times
    )
    qss_p = dict(CL=0.5, V=5.0, KSS=kss, KINT=0.05, KDEG=0.2, R0=5.0)
    qss = solve(bn.pk.tmdd_qss(), qss_p, doses, times)
    a = bn.pk.tmdd_full_concentrations(got[:, 0], got[:, 1], got[:, 2], full["V"], full["R0"])
    b = bn.pk.tmdd_qss_concentrations(qss[:, 0], qss[:, 1], qss_p["V"], qss_p["R0"], kss)
    for key in ("total_drug", "total_target", "free_drug"):
        np.testing.assert_allclose(a[key], b[key], rtol=2e-2, err_msg=key)


# --------------------------------------------------------------------------------------------
# PD
# --------------------------------------------------------------------------------------------

PK = dict(KA=1.2, CL=3.0, V=20.0)


@pytest.mark.parametrize("kind", [1, 2, 3, 4])
def test_indirect_response_matches_scipy_on_absolute_response(kind):
    drug = dict(IMAX=0.8, IC50=2.0) if kind <= 2 else dict(EMAX=1.5, EC50=2.0)
    p = dict(**PK, R0=50.0, KOUT=0.15, **drug)
    m = bn.pk.indirect_response(kind)
    got = solve(m, p, make_doses(ORAL))
    kin, kout = p["R0"] * p["KOUT"], p["KOUT"]

    def f(t, y):
        c = y[1] / p["V"]
        d = c / (2.0 + c) * (p["IMAX"] if kind <= 2 else p["EMAX"])
        r = y[2]
        dr = {
            1: kin * (1 - d) - kout * r,
            2: kin - kout * (1 - d) * r,
            3: kin * (1 + d) - kout * r,
            4: kin - kout * (1 + d) * r,
        }[kind]
        return [-p["KA"] * y[0], p["KA"] * y[0] - p["CL"] / p["V"] * y[1], dr]

    ref = reference(f, [0.0, 0.0, p["R0"]], ORAL)
    absolute = got.copy()
    absolute[:, 2] += p["R0"]
    close(absolute, ref, f"IDR {kind}")
    # the response moves in the documented direction
    sign = {1: -1, 2: 1, 3: 1, 4: -1}[kind]
    assert sign * got[TIMES == 13.0, 2][0] > 1.0


def test_indirect_response_hill_reduces_to_hyperbolic_at_hill_one():
    p = dict(**PK, R0=50.0, KOUT=0.15, IMAX=0.8, IC50=2.0)
    doses = make_doses(ORAL)
    got = solve(bn.pk.indirect_response(1, hill=True), {**p, "HILL": 1.0}, doses)
    ref = solve(bn.pk.indirect_response(1), p, doses)
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-12)


def test_effect_compartment_matches_closed_form():
    p = dict(**PK, KE0=0.4)
    rows = [(0.0, 100.0, 0.0, 1), (12.0, 300.0, 0.0, 1)]
    got = solve(bn.pk.effect_compartment(), p, make_doses(rows))
    ka, k, ke0, v = p["KA"], p["CL"] / p["V"], p["KE0"], p["V"]
    lam = (ka, k, ke0)

    def ce_single(t):  # one unit dose at 0: Ce = D ka ke0 / V * sum_i e^{-l_i t} / prod (l_j - l_i)
        t = np.maximum(t, 0.0)
        s = sum(np.exp(-li * t) / np.prod([lj - li for lj in lam if lj != li]) for li in lam)
        return ka * ke0 / v * s * (t > 0)

    ce = sum(amt * ce_single(TIMES - td) * (TIMES >= td) for td, amt, _, _ in rows)
    central = np.asarray(bn.pk.Depots1Central1().amounts(p, make_doses(rows), TIMES))
    close(got[:, :2], central, "effect cpt PK")
    close(got[:, 2], ce, "Ce closed form")


def test_sigmoid_emax():
    assert float(bn.pk.sigmoid_emax(2.0, 10.0, 50.0, 2.0, 3.0)) == pytest.approx(35.0)
    assert float(bn.pk.sigmoid_emax(0.0, 10.0, 50.0, 2.0)) == 10.0
    ce = np.array([0.5, 4.0])
    np.testing.assert_allclose(bn.pk.sigmoid_emax(ce, 1.0, -0.5, 1.0), 1.0 - 0.5 * ce / (1 + ce))
    # differentiable in the parameters (used inside derived)
    g = jax.grad(lambda e: bn.pk.sigmoid_emax(3.0, 0.0, 1.0, e, 2.0))(2.0)
    assert float(g) == pytest.approx(-2 * 9 * 2.0 / (4.0 + 9.0) ** 2)


def test_friberg_matches_scipy_on_absolute_cell_counts():
    p = dict(CL=1.0, V=25.0, MTT=100.0, GAMMA=0.17, SLOPE=0.04)
    circ0 = 5.0
    rows = [(0.0, 300.0, 600.0, 1), (168.0, 300.0, 600.0, 1)]  # 30-min infusions, weekly
    times = np.array([0.0, 0.25, 0.5, 2.0, 24.0, 72.0, 120.0, 168.0, 168.5, 240.0, 336.0, 500.0])
    got = solve(bn.pk.friberg(), p, make_doses(rows), times)
    ktr = 4.0 / p["MTT"]

    def f(t, y):  # the original model on absolute counts
        edrug = p["SLOPE"] * y[0] / p["V"]
        prol, t1, t2, t3, circ = y[1:]
        return [
            -p["CL"] / p["V"] * y[0],
            ktr * prol * (1 - edrug) * (circ0 / circ) ** p["GAMMA"] - ktr * prol,
            ktr * (prol - t1),
            ktr * (t1 - t2),
            ktr * (t2 - t3),
            ktr * (t3 - circ),
        ]

    ref = reference(f, [0.0] + [circ0] * 5, rows, times)
    absolute = np.column_stack([got[:, 0], circ0 * (1.0 + got[:, 1:])])
    close(absolute, ref, "friberg")
    nadir = absolute[:, 5].min()
    assert nadir < 0.8 * circ0  # a real nadir


def test_antibody_decay_to_plateau_matches_closed_form():
    p = dict(PEAK=1000.0, PLATEAU=100.0, K=0.05)
    rows = [(0.0, 1.0, 0.0, 1), (180.0, 1.0, 0.0, 1)]  # prime and boost (days)
    times = np.array([0.0, 1.0, 10.0, 30.0, 90.0, 179.0, 180.0, 200.0, 365.0])
    got = solve(bn.pk.antibody_decay_to_plateau(), p, make_doses(rows), times)
    titre = p["PEAK"] * got.sum(axis=1)
    ref = sum(
        (times >= td) * (p["PLATEAU"] + (p["PEAK"] - p["PLATEAU"]) * np.exp(-p["K"] * (times - td)))
        for td, *_ in rows
    )
    close(titre, ref, "antibody")
    assert titre[0] == pytest.approx(1000.0)
    assert titre[5] == pytest.approx(100.0, rel=2e-3)  # 900 exp(-8.95) = 0.12 left


# --------------------------------------------------------------------------------------------
# gradient, errors
# --------------------------------------------------------------------------------------------


def test_indirect_response_gradient_matches_central_differences():
    m = bn.pk.indirect_response(1)
    doses = make_doses(ORAL)
    names = ("KA", "CL", "V", "R0", "KOUT", "IMAX", "IC50")
    x0 = np.array([1.2, 3.0, 20.0, 50.0, 0.15, 0.8, 2.0])

    @jax.jit
    def loss(x):
        a = m.amounts(dict(zip(names, x, strict=True)), doses, TIMES)
        return jnp.sum(a[:, 1] / x[2]) + jnp.sum((x[3] + a[:, 2]) ** 2) / 100.0

    g = np.asarray(jax.grad(loss)(jnp.asarray(x0)))
    fd = np.empty_like(x0)
    for i in range(x0.size):
        h = 1e-5 * x0[i]
        e = np.zeros_like(x0)
        e[i] = h
        fd[i] = (float(loss(x0 + e)) - float(loss(x0 - e))) / (2 * h)
    np.testing.assert_allclose(g, fd, rtol=1e-5)


# every library model: (factory, parameters, dose rows, evaluation times)
GRADIENT_CASES = {
    "michaelis_menten_oral": (
        lambda **kw: bn.pk.michaelis_menten("oral", **kw),
        dict(KA=1.2, V=20.0, VM=30.0, KM=2.0), ORAL, TIMES,
    ),
    "michaelis_menten_iv": (
        lambda **kw: bn.pk.michaelis_menten("iv", **kw),
        dict(V=20.0, VM=30.0, KM=2.0),
        [(0.0, 100.0, 0.0, 1), (12.0, 200.0, 100.0, 1)],
        TIMES,
    ),
    "transit_absorption_3": (
        lambda **kw: bn.pk.transit_absorption(3, **kw), dict(KTR=2.0, KA=0.8, CL=3.0, V=20.0),
        [(0.0, 100.0, 0.0, 1), (12.0, 300.0, 0.0, 1)], TIMES,
    ),
    "tmdd_full": (bn.pk.tmdd_full, TMDD, IV, TIMES),
    "tmdd_qss": (
        bn.pk.tmdd_qss, dict(CL=0.5, V=5.0, KSS=0.3, KINT=0.05, KDEG=0.2, R0=5.0), IV, TIMES
    ),
    **{
        f"indirect_response_{k}": (
            lambda k=k, **kw: bn.pk.indirect_response(k, **kw),
            dict(**PK, R0=50.0, KOUT=0.15, **(
                dict(IMAX=0.8, IC50=2.0) if k <= 2 else dict(EMAX=1.5, EC50=2.0))),
            ORAL, TIMES,
        )
        for k in (1, 2, 3, 4)
    },
    "effect_compartment": (bn.pk.effect_compartment, dict(**PK, KE0=0.4), ORAL, TIMES),
    "friberg": (
        bn.pk.friberg, dict(CL=1.0, V=25.0, MTT=100.0, GAMMA=0.17, SLOPE=0.04),
        [(0.0, 300.0, 600.0, 1), (168.0, 300.0, 600.0, 1)],
        np.array([2.0, 24.0, 72.0, 120.0, 168.0, 240.0, 336.0, 500.0]),
    ),
    "antibody_decay_to_plateau": (
        bn.pk.antibody_decay_to_plateau, dict(PEAK=1000.0, PLATEAU=100.0, K=0.05),
        [(0.0, 1.0, 0.0, 1), (180.0, 1.0, 0.0, 1)],
        np.array([1.0, 10.0, 30.0, 90.0, 179.0, 200.0, 365.0]),
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(GRADIENT_CASES))
def test_every_library_model_gradient_matches_central_differences(case):
    """d/dp of a smooth function of every compartment (a Gaussian log-likelihood of all
    states against fixed pseudo-observations) for EVERY parameter of the model, from the
    forward sensitivities, against central finite differences (rtol 1e-4, step 1e-5
    relative; the ODEs are solved at rtol 1e-10 so the differences are not solver noise)."""
    factory, p0, rows, times = GRADIENT_CASES[case]
    tight = factory(rtol=1e-10, atol=1e-12)
    names = tuple(p0)
    x0 = np.array([p0[k] for k in names], float)
    doses = make_doses(rows)
    ref = solve(tight, p0, doses, times)
    target = 0.9 * ref + 0.05 * np.abs(ref).max(axis=0)  # pseudo-observations near the curve
    scale = np.abs(ref).max(axis=0) + 1e-12

    @jax.jit
    def loglik(x):
        a = tight.amounts(dict(zip(names, x, strict=True)), doses, times)
        return -0.5 * jnp.sum(((a - target) / (0.1 * scale)) ** 2)

    g = np.asarray(jax.grad(loglik)(jnp.asarray(x0)))
    fd = np.empty_like(x0)
    for i in range(x0.size):
        h = 1e-5 * x0[i]
        e = np.zeros_like(x0)
        e[i] = h
        fd[i] = (float(loglik(x0 + e)) - float(loglik(x0 - e))) / (2 * h)
    assert np.all(np.isfinite(g))
    # relative to each entry, with a floor at 1e-6 of the largest (entries that vanish)
    np.testing.assert_allclose(g, fd, rtol=1e-4, atol=1e-6 * np.abs(fd).max(), err_msg=case)


def test_bad_arguments_are_model_errors():
    with pytest.raises(ModelError, match="oral"):
        bn.pk.michaelis_menten("sc")
    with pytest.raises(ModelError, match="n_transit"):
        bn.pk.transit_absorption(-1)
    with pytest.raises(ModelError, match="kind"):
        bn.pk.indirect_response(5)
    # options reach the ODE; required parameters are checked
    m = bn.pk.tmdd_qss(rtol=1e-6, atol=1e-8)
    assert (m.rtol, m.atol) == (1e-6, 1e-8)
    with pytest.raises(ModelError, match="KSS"):
        m.amounts(dict(CL=1.0, V=1.0), make_doses(IV), TIMES)


# --------------------------------------------------------------------------------------------
# simulate, then recover (the model_zoo script)
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_michaelis_menten_zoo_simulate_then_recover():
    from bayes_nlme.model_zoo import michaelis_menten as zoo

    data = zoo.data(n_id=20)
    idata = bn.fit(zoo.model, data, chains=2, warmup=200, samples=200, seed=3, progress_bar=False)
    table = bn.summary(idata)
    assert table["r_hat"].max() < 1.05
    for name, value in zoo.TRUTH.items():
        lo, hi = table.loc[name, "5%"], table.loc[name, "95%"]
        assert lo < value < hi, (name, lo, value, hi)
