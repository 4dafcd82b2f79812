"""Steady-state doses (NONMEM SS=1 / SS=2) in the analytic models, the reader and the model."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import bayes_nlme as bn
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
II = 12.0
N_REPEAT = 200  # slowest rate of BASE (3-cpt): 0.0121/h -> exp(-0.0121 * 200 * 12) ~ 3e-13


@functools.cache
def _jitted(model_cls):
    return jax.jit(model_cls().amounts)


def run(model_cls, params, doses, times) -> np.ndarray:
    return np.asarray(_jitted(model_cls)(params, doses, np.asarray(times, float)))


def make_doses(time, amt, rate=None, cmt=None, ss=None, ii=None, mask=None) -> Doses:
    time = np.asarray(time, float)
    n = time.shape[0]
    return Doses(
        time=time,
        amt=np.broadcast_to(np.asarray(amt, float), (n,)).copy(),
        rate=np.zeros(n) if rate is None else np.broadcast_to(np.asarray(rate, float), (n,)),
        cmt=np.zeros(n, np.int32) if cmt is None else np.broadcast_to(np.asarray(cmt), (n,)),
        mask=np.ones(n, bool) if mask is None else np.asarray(mask, bool),
        ss=np.zeros(n, np.int32) if ss is None else np.broadcast_to(np.asarray(ss, np.int32), (n,)),
        ii=np.zeros(n) if ii is None else np.broadcast_to(np.asarray(ii, float), (n,)),
    )


def concat(*doses: Doses) -> Doses:
    return Doses(*(np.concatenate(fields) for fields in zip(*doses, strict=True)))


def params_for(model_cls, **extra) -> dict:
    p = {k: BASE[k] for k in model_cls.required}
    p.update(extra)
    return p


# (name, rate, cmt name); rate 0 = bolus, 40 -> 2 h infusion, 4 -> 20 h infusion (> II)
ROUTES = [
    ("bolus", 0.0, None),  # default CMT: the depot (oral) for the absorption models
    ("infusion", 40.0, "Central"),
    ("long-infusion", 4.0, "Central"),
    ("depot-infusion", 40.0, "Depot"),
]
CASES = [
    (m, route) for m in MODELS for route in ROUTES if route[2] is None or route[2] in m.compartments
]


def _route(model_cls, route):
    _, rate, cmt_name = route
    cmt = 0 if cmt_name is None else model_cls.compartments.index(cmt_name) + 1
    c = model_cls.default_dose_cmt if cmt == 0 else cmt
    # lag and bioavailability on the dosed compartment (F changes an infusion's duration)
    return rate, cmt, {f"F{c}": 0.8, f"ALAG{c}": 0.7}


# --------------------------------------------------------------------------------------------
# 1. SS=1 is the limit of many ordinary doses


@pytest.mark.parametrize(("model_cls", "route"), CASES, ids=lambda x: getattr(x, "__name__", x))
def test_ss1_equals_many_repeated_doses(model_cls, route):
    rate, cmt, extra = _route(model_cls, route)
    p = params_for(model_cls, **extra)
    t_ss = N_REPEAT * II
    # times over the last interval and beyond, including before the lagged dose (s < 0.7)
    times = t_ss + np.array([0.0, 0.3, 0.69, 0.7, 1.0, 2.3, 2.7, 6.0, 11.99, 12.0, 12.5, 30.0])
    repeated = make_doses(np.arange(N_REPEAT + 1) * II, 100.0, rate, cmt)
    ss = make_doses([t_ss], 100.0, rate, cmt, ss=1, ii=II)
    ref = run(model_cls, p, repeated, times)
    got = run(model_cls, p, ss, times)
    assert np.abs(ref).max() > 0
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-12 * np.abs(ref).max())
    # SS=2 with nothing before it is the same
    ss2 = make_doses([t_ss], 100.0, rate, cmt, ss=2, ii=II)
    np.testing.assert_allclose(run(model_cls, p, ss2, times), got, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("model_cls", MODELS)
def test_ss_with_lag_longer_than_the_interval(model_cls):
    # ALAG > II: at the record time, the two newest implied doses are still to come
    p = params_for(model_cls, ALAG1=1.7 * II)
    t_ss = N_REPEAT * II
    times = t_ss + np.array([0.0, 3.0, 8.4, 12.0, 20.3, 20.4, 21.0, 24.0, 40.0])
    ref = run(model_cls, p, make_doses(np.arange(N_REPEAT + 1) * II, 100.0, 0.0, 1), times)
    got = run(model_cls, p, make_doses([t_ss], 100.0, 0.0, 1, ss=1, ii=II), times)
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-12 * np.abs(ref).max())


# --------------------------------------------------------------------------------------------
# 2. reset (SS=1) vs add (SS=2), record order, later doses


def _earlier(model_cls):
    """Ordinary doses before t = 30: a bolus, a central infusion still running at 30 (25-35),
    a lagged oral/central dose whose lagged time (29 + 3) is after 30."""
    c = model_cls.compartments.index("Central") + 1
    return make_doses([0.0, 25.0, 29.0], [100.0, 200.0, 50.0], [0.0, 20.0, 0.0], [1, c, 1])


TIMES = np.array([5.0, 29.9, 30.0, 30.5, 33.0, 36.0, 42.0, 55.0, 80.0])


@pytest.mark.parametrize("model_cls", MODELS)
@pytest.mark.parametrize("rate", [0.0, 25.0])
def test_ss1_resets_and_ss2_adds(model_cls, rate):
    p = params_for(model_cls, ALAG1=3.0)
    earlier = _earlier(model_cls)
    ss_alone = {s: make_doses([30.0], 80.0, rate, 1, ss=s, ii=II) for s in (1, 2)}
    a_earlier = run(model_cls, p, earlier, TIMES)
    a_ss = run(model_cls, p, ss_alone[1], TIMES)
    after = TIMES >= 30.0
    assert np.all(a_earlier[after].sum(axis=1) > 0.1)  # the earlier doses matter after 30
    assert np.all(a_ss[~after] == 0.0)  # nothing before the record time
    np.testing.assert_array_equal(run(model_cls, p, ss_alone[2], TIMES), a_ss)

    got1 = run(model_cls, p, concat(earlier, ss_alone[1]), TIMES)
    got2 = run(model_cls, p, concat(earlier, ss_alone[2]), TIMES)
    # before the SS record both equal the earlier doses
    np.testing.assert_allclose(got1[~after], a_earlier[~after], rtol=1e-13)
    np.testing.assert_allclose(got2[~after], a_earlier[~after], rtol=1e-13)
    # from the record time on: SS=1 forgets them (the running infusion and the pending
    # lagged dose included), SS=2 adds them
    np.testing.assert_allclose(got1[after], a_ss[after], rtol=1e-13, atol=1e-12)
    np.testing.assert_allclose(got2[after], a_earlier[after] + a_ss[after], rtol=1e-12)


@pytest.mark.parametrize("model_cls", [Central1, Depots1Central1Periph2])
def test_same_time_doses_follow_record_order(model_cls):
    p = params_for(model_cls)
    other = make_doses([30.0], 40.0, 0.0, 1)  # an ordinary dose at the SS record's time
    ss = make_doses([30.0], 80.0, 0.0, 1, ss=1, ii=II)
    a_other = run(model_cls, p, other, TIMES)
    a_ss = run(model_cls, p, ss, TIMES)
    before = run(model_cls, p, concat(other, ss), TIMES)  # record order: other, then SS=1
    after = run(model_cls, p, concat(ss, other), TIMES)  # SS=1, then other
    np.testing.assert_allclose(before, a_ss, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(after, a_ss + a_other, rtol=1e-13)


@pytest.mark.parametrize("model_cls", [Central1Periph1, Depots1Central1])
def test_later_doses_add_and_a_later_ss1_resets_again(model_cls):
    p = params_for(model_cls)
    ss = make_doses([30.0], 80.0, 0.0, 1, ss=1, ii=II)
    repeats = make_doses([42.0, 54.0], 80.0, 0.0, 1)  # like ADDL=2 on the SS record
    second = make_doses([60.0], 50.0, 0.0, 1, ss=1, ii=24.0)
    times = np.array([35.0, 45.0, 59.0, 60.0, 70.0])
    a_ss, a_rep = run(model_cls, p, ss, times), run(model_cls, p, repeats, times)
    a_second = run(model_cls, p, second, times)
    got = run(model_cls, p, concat(ss, repeats, second), times)
    early = times < 60.0
    np.testing.assert_allclose(got[early], (a_ss + a_rep)[early], rtol=1e-13)
    np.testing.assert_allclose(got[~early], a_second[~early], rtol=1e-13)
    assert np.all(a_rep[times > 42.0].sum(axis=1) > 0)


def test_masked_ss_dose_changes_nothing():
    p = params_for(Central1Periph2)
    base = make_doses([0.0, 10.0], 100.0, [0.0, 20.0], 1)
    junk = make_doses([5.0, 6.0], 1e3, [0.0, 7.0], 1, ss=[1, 2], ii=[12.0, 0.0], mask=[0, 0])
    np.testing.assert_array_equal(
        run(Central1Periph2, p, concat(base, junk), TIMES), run(Central1Periph2, p, base, TIMES)
    )
    # ss/ii given as all zeros equals ss/ii None (the fast path)
    none = base._replace(ss=None, ii=None)
    np.testing.assert_allclose(
        run(Central1Periph2, p, none, TIMES), run(Central1Periph2, p, base, TIMES), rtol=1e-14
    )


# --------------------------------------------------------------------------------------------
# 3. textbook steady-state formulas


def test_one_cpt_bolus_cmax_cmin():
    d, cl, v, tau = 100.0, 2.0, 15.0, 8.0
    k = cl / v
    u = np.array([0.0, 1.0, 4.0, 7.5, 8.0])
    out = run(Central1, {"CL": cl, "V": v}, make_doses([50.0], d, 0.0, 1, ss=1, ii=tau), 50 + u)
    c = out[:, 0] / v
    cmax = d / v / (1 - np.exp(-k * tau))
    np.testing.assert_allclose(c[0], cmax, rtol=1e-13)
    np.testing.assert_allclose(c[-1], cmax * np.exp(-k * tau), rtol=1e-13)  # Cmin (trough)
    np.testing.assert_allclose(c, cmax * np.exp(-k * u), rtol=1e-13)


def test_one_cpt_infusion_formula():
    amt, rate, cl, v, tau = 100.0, 25.0, 2.0, 15.0, 12.0
    k, dur = cl / v, amt / rate
    u = np.array([0.0, 1.0, 3.9, 4.0, 4.1, 9.0, 12.0])
    out = run(Central1, {"CL": cl, "V": v}, make_doses([0.0], amt, rate, 1, ss=1, ii=tau), u)
    c = out[:, 0] / v
    cmin = rate / cl * (1 - np.exp(-k * dur)) * np.exp(-k * (tau - dur)) / (1 - np.exp(-k * tau))
    during = rate / cl * (1 - np.exp(-k * u)) + cmin * np.exp(-k * u)
    cmax = rate / cl * (1 - np.exp(-k * dur)) / (1 - np.exp(-k * tau))
    after = cmax * np.exp(-k * (u - dur))
    np.testing.assert_allclose(c, np.where(u <= dur, during, after), rtol=1e-12)


@pytest.mark.parametrize("n_running", [1, 2, 3])
def test_infusion_lasting_whole_intervals_is_a_constant_infusion(n_running):
    # duration = n * II: n infusions running at every time of the interval after the SS
    # record, so the amounts are the constant steady state of rate n*R (1-cpt: n R / k)
    rate, tau = 10.0, 12.0
    for model_cls in (Central1, Central1Periph2):
        p = params_for(model_cls)
        doses = make_doses([0.0], rate * n_running * tau, rate, 1, ss=1, ii=tau)
        out = run(model_cls, p, doses, np.array([0.0, 0.5, 6.0, 11.9, 12.0, 12.0]))
        if model_cls is Central1:
            expected = np.full((6, 1), n_running * rate / (p["CL"] / p["V"]))
        else:
            q, v, v2, v3 = p["Q"], p["V"], p["V2"], p["V3"]
            # at steady state concentrations are equal and CL * C = n R
            c = n_running * rate / p["CL"]
            expected = np.tile([c * v, c * v2, c * v3], (6, 1))
            assert q > 0
        np.testing.assert_allclose(out, expected, rtol=1e-10)


def test_one_cpt_oral_formula_with_lag_and_f():
    d, ka, cl, v, tau, f, lag = 100.0, 1.3, 2.0, 15.0, 24.0, 0.6, 1.5
    k = cl / v
    s = np.array([0.0, 0.5, 1.5, 2.0, 5.0, 23.0, 24.0, 26.0])  # time since the SS record
    p = {"KA": ka, "CL": cl, "V": v, "F1": f, "ALAG1": lag}
    out = run(Depots1Central1, p, make_doses([100.0], d, 0.0, 1, ss=1, ii=tau), 100.0 + s)
    u = np.where(s >= lag, s - lag, s - lag + tau)  # before the lagged dose: previous cycle
    central = (
        f * d * ka / (v * (ka - k)) * (np.exp(-k * u) / (1 - np.exp(-k * tau))
                                       - np.exp(-ka * u) / (1 - np.exp(-ka * tau)))
    )  # fmt: skip
    depot = f * d * np.exp(-ka * u) / (1 - np.exp(-ka * tau))
    np.testing.assert_allclose(out[:, 1] / v, central, rtol=1e-12)
    np.testing.assert_allclose(out[:, 0], depot, rtol=1e-12)


# --------------------------------------------------------------------------------------------
# 4. gradients


OFF_TIMES = np.array([30.4, 31.3, 33.1, 36.7, 41.5, 47.2, 60.3])  # off every event/kink


@functools.cache
def ss_loss(model_cls, rate, ss_flag):
    """Jitted ``p -> (loss, grad)``: earlier doses + an SS dose at 30 (II 12) + a later dose."""
    model = model_cls()
    c = model_cls.compartments.index("Central")
    earlier = make_doses([0.0, 20.0], [100.0, 60.0], [0.0, 30.0], [1, c + 1])
    ss = make_doses([30.0], 100.0, rate, 1, ss=ss_flag, ii=II)
    later = make_doses([45.0], 50.0, 0.0, 1)
    doses = concat(earlier, ss, later)

    def loss(p):
        return jnp.sum(jnp.log(model.amounts(p, doses, OFF_TIMES)[:, c] / p["V"] + 1.0))

    return jax.jit(jax.value_and_grad(loss))


def fd_grad(value_and_grad, p, name):
    h = 1e-5 * max(abs(p[name]), 1.0)
    up, dn = dict(p), dict(p)
    up[name] = p[name] + h
    dn[name] = p[name] - h
    return (float(value_and_grad(up)[0]) - float(value_and_grad(dn)[0])) / (2 * h)


@pytest.mark.parametrize("model_cls", MODELS)
@pytest.mark.parametrize(("rate", "ss_flag"), [(0.0, 1), (25.0, 1), (8.0, 2)])
def test_gradients_vs_finite_differences(model_cls, rate, ss_flag):
    # at F1 = 0.8: rate 25 is a 3.2 h infusion, rate 8 a 10 h one (II = 12)
    p = params_for(model_cls, ALAG1=0.9, F1=0.8)
    vg = ss_loss(model_cls, rate, ss_flag)
    g = vg(p)[1]
    for name in [*model_cls.required, "ALAG1", "F1"]:
        ad, fd = float(g[name]), fd_grad(vg, p, name)
        assert np.isfinite(ad), name
        assert abs(ad - fd) <= 1e-4 * abs(fd) + 1e-9, (name, ad, fd)


@pytest.mark.parametrize("model_cls", [Central1, Depots1Central1Periph2])
def test_gradients_with_overlapping_infusions(model_cls):
    # rate 3: 26.7 h infusion at F1 = 0.8, more than two intervals of 12 h
    p = params_for(model_cls, ALAG1=0.9, F1=0.8)
    vg = ss_loss(model_cls, 3.0, 1)
    g = vg(p)[1]
    for name in [*model_cls.required, "ALAG1", "F1"]:
        ad, fd = float(g[name]), fd_grad(vg, p, name)
        assert abs(ad - fd) <= 1e-4 * abs(fd) + 1e-9, (name, ad, fd)


@pytest.mark.parametrize("model_cls", MODELS)
def test_no_nan_with_padding_far_future_and_huge_rates(model_cls):
    p = {k: jnp.asarray(v) for k, v in params_for(model_cls, ALAG1=0.0, F1=1.0).items()}
    doses = concat(
        make_doses([0.0], 100.0, 0.0, 1, ss=1, ii=II),
        make_doses([1e6], 100.0, 50.0, 1, ss=1, ii=II),  # far future SS infusion
        make_doses([0.0], 0.0, 0.0, 0, mask=[False]),  # padding
    )
    times = np.array([0.0, 1.0, 1e3, 1e5])
    out = run(model_cls, p, doses, times)
    assert np.all(np.isfinite(out))
    fast = dict(p, CL=jnp.asarray(1e4))  # exp(lambda * II) underflows to 0

    def loss(q):
        return jnp.sum(model_cls().amounts(q, doses, times))

    for q in (p, fast):
        g = jax.jit(jax.grad(loss))(q)
        assert all(np.isfinite(float(g[k])) for k in g)


def test_eager_checks():
    model = Central1()
    p = params_for(Central1)
    with pytest.raises(ValueError, match="needs a dosing interval II > 0"):
        model.amounts(p, make_doses([0.0], 10.0, ss=1, ii=0.0), np.array([1.0]))
    with pytest.raises(ValueError, match="SS must be 0, 1 or 2"):
        model.amounts(p, make_doses([0.0], 10.0, ss=3, ii=12.0), np.array([1.0]))


# --------------------------------------------------------------------------------------------
# 5. data layer and population model


def ss_table() -> pd.DataFrame:
    """Subject 1: a dose at 0, then SS=1 q12h from 24 with 2 additional doses; subject 2: an
    ordinary dose and an SS=2 infusion at the same time (record order kept)."""
    rows = [
        # ID, TIME, DV, AMT, EVID, MDV, RATE, II, ADDL, SS
        (1, 0.0, ".", 50.0, 1, 1, 0.0, 0.0, 0, 0),
        (1, 24.0, ".", 100.0, 1, 1, 0.0, 12.0, 2, 1),
        (1, 30.0, 4.1, ".", 0, 0, 0.0, 0.0, 0, 0),
        (1, 50.0, 3.2, ".", 0, 0, 0.0, 0.0, 0, 0),
        (2, 0.0, ".", 20.0, 1, 1, 0.0, 0.0, 0, 0),
        (2, 0.0, ".", 60.0, 1, 1, 30.0, 8.0, 0, 2),
        (2, 5.0, 2.5, ".", 0, 0, 0.0, 0.0, 0, 0),
    ]
    cols = ["ID", "TIME", "DV", "AMT", "EVID", "MDV", "RATE", "II", "ADDL", "SS"]
    return pd.DataFrame(rows, columns=cols)


def test_reader_carries_ss_and_ii_and_expands_addl():
    ds = read_nonmem(ss_table())
    np.testing.assert_array_equal(ds.dose_time, [[0, 24, 36, 48], [0, 0, 0, 0]])
    np.testing.assert_array_equal(ds.dose_ss, [[0, 1, 0, 0], [0, 2, 0, 0]])
    np.testing.assert_array_equal(ds.dose_ii, [[0, 12, 0, 0], [0, 8, 0, 0]])
    np.testing.assert_array_equal(ds.dose_mask, [[1, 1, 1, 1], [1, 1, 0, 0]])
    assert ds.dose_ss.dtype == np.int32 and ds.dose_ii.dtype == np.float64
    d = ds.doses(1)
    assert d.ss[1] == 2 and d.ii[1] == 8.0 and d.rate[1] == 30.0


def test_dataset_and_model_end_to_end():
    ds = read_nonmem(ss_table())
    p = {"CL": 2.0, "V": 15.0}
    times = np.array([30.0, 50.0])
    got = run(Central1, p, ds.doses(0), times)
    # SS=1 at 24 forgets the dose at 0; its ADDL repeats at 36, 48 are ordinary doses
    alone = make_doses([24.0, 36.0, 48.0], 100.0, 0.0, 1, ss=[1, 0, 0], ii=[12.0, 0, 0])
    np.testing.assert_allclose(got, run(Central1, p, alone, times), rtol=1e-13)
    k = p["CL"] / p["V"]
    expected = 100.0 * np.exp(-k * (times - 24.0)) / (1 - np.exp(-k * 12.0))
    expected += np.where(times >= 36, 100.0 * np.exp(-k * (times - 36.0)), 0.0)
    expected += np.where(times >= 48, 100.0 * np.exp(-k * (times - 48.0)), 0.0)
    np.testing.assert_allclose(got[:, 0], expected, rtol=1e-12)


def _model(dynamics=None):
    return bn.Model(
        params=dict(
            tvcl=bn.Param(bn.dist.LogNormal(jnp.log(2.0), 0.1)),
            tvv=bn.Param(bn.dist.LogNormal(jnp.log(15.0), 0.1)),
            sd=bn.Param(bn.dist.HalfNormal(0.5)),
        ),
        random=bn.IIV(["cl"], sd=bn.dist.HalfNormal(0.3)),
        pre=lambda p, eta, cov: dict(CL=p.tvcl * jnp.exp(eta.cl), V=p.tvv),
        dynamics=Central1() if dynamics is None else dynamics,
        derived=lambda p, a, ind: dict(DV=bn.error.Additive(a.Central / ind.V, sd=p.sd)),
    )


def test_population_model_trace_uses_ss_doses():
    from numpyro import handlers

    model = _model()
    ds = read_nonmem(ss_table())
    md = model.model_data(ds)
    assert md.dose_ss is not None and md.dose_ss.shape == ds.dose_ss.shape
    eta_site = getattr(model, "eta_site", "z_eta")  # the ETA sample site (plate ID)
    values = {"tvcl": 2.0, "tvv": 15.0, "sd": 0.1, "omega_cl_sd": 0.3, eta_site: jnp.zeros((2, 1))}
    conditioned = handlers.condition(handlers.seed(model.numpyro_model, 0), values)
    trace = handlers.trace(conditioned).get_trace(md, DV=jnp.asarray(ds.dv))
    ipred = np.asarray(trace["IPRED"]["value"])
    p = {"CL": 2.0, "V": 15.0}
    expected = np.concatenate(
        [
            run(Central1, p, ds.doses(i), ds.obs_time[i])[ds.obs_mask[i], 0] / 15.0
            for i in range(ds.n_id)
        ]
    )
    np.testing.assert_allclose(ipred, expected, rtol=1e-12)
    # the SS information matters: without it the prediction differs
    plain = md._replace(dose_ss=None, dose_ii=None)
    trace0 = handlers.trace(handlers.condition(handlers.seed(model.numpyro_model, 0), values))
    ipred0 = np.asarray(trace0.get_trace(plain, DV=jnp.asarray(ds.dv))["IPRED"]["value"])
    assert not np.allclose(ipred0, ipred)


def test_model_data_without_ss_keeps_the_fast_path():
    df = ss_table()
    df["SS"] = 0
    md = _model().model_data(read_nonmem(df))
    assert md.dose_ss is None and md.dose_ii is None
    assert md.doses.ss is None


def test_simulate_runs_with_an_ss_dose():
    truth = {"tvcl": 2.0, "tvv": 15.0, "sd": 0.1, "omega_cl_sd": 1e-9}  # ETAs ~ 0
    sim = bn.simulate(_model(), ss_table(), truth, seed=3)
    ipred = np.asarray(sim.predictions["IPRED"]).ravel()
    ds = read_nonmem(ss_table())
    p = {"CL": 2.0, "V": 15.0}
    expected = np.concatenate(
        [
            run(Central1, p, ds.doses(i), ds.obs_time[i])[ds.obs_mask[i], 0] / 15.0
            for i in range(ds.n_id)
        ]
    )
    np.testing.assert_allclose(ipred, expected, rtol=1e-6)
    assert np.all(np.isfinite(np.asarray(sim.predictions["DV"])))


def test_reader_rejects_ss_without_interval_and_constant_infusion():
    df = ss_table()
    df.loc[1, "II"] = 0.0
    df.loc[1, "ADDL"] = 0
    with pytest.raises(DatasetError, match=r"II, row 1: a steady-state dose .* II") as info:
        read_nonmem(df)
    assert [v.rule for v in info.value.violations] == ["ss-ii"]
    df = ss_table()
    df.loc[5, ["AMT", "II"]] = [0.0, 0.0]  # SS=2, AMT=0, RATE=30, II=0
    with pytest.raises(DatasetError, match=r"constant infusion .* not supported yet") as info:
        read_nonmem(df)
    assert [v.rule for v in info.value.violations] == ["ss-infusion"]


# --------------------------------------------------------------------------------------------
# 6. steady state in the ODE path (Newton root solve of the one-interval cycle map)
# --------------------------------------------------------------------------------------------


def _rhs_mm(t, a, p):
    c = a.Central / p.V
    return {"Depot": -p.KA * a.Depot, "Central": p.KA * a.Depot - p.VM * c / (p.KM + c)}


def _rhs_central1(t, a, p):
    return {"Central": -p.CL / p.V * a.Central}


MM_ODE = bn.pk.ODE(_rhs_mm, ("Depot", "Central"), ("KA", "V", "VM", "KM"), rtol=1e-10, atol=1e-12)
C1_ODE = bn.pk.ODE(_rhs_central1, ("Central",), ("CL", "V"), rtol=1e-10, atol=1e-12)
MM_P = {"KA": 1.1, "V": 20.0, "VM": 30.0, "KM": 2.0, "ALAG1": 0.4, "F1": 0.8}


@functools.cache
def _jitted_ode(model):
    return jax.jit(model.solve_status)


@pytest.mark.parametrize(("amt", "rate"), [(100.0, 0.0), (400.0, 0.0), (400.0, 80.0)])
def test_ode_nonlinear_ss1_equals_many_repeated_doses(amt, rate):
    """Michaelis-Menten (saturated at 400 mg: Cmax/KM ~ 10): SS=1 equals 150 explicit
    doses every 12 h beforehand (the slowest rate, VM/(V KM) = 0.75/h, forgets the start)."""
    times = np.array([0.0, 0.3, 0.4, 1.0, 3.0, 6.0, 11.9, 12.0, 18.0, 30.0])
    ss = make_doses([0.0], amt, rate, 1, ss=1, ii=II)
    past = make_doses(-II * np.arange(150, 0, -1), amt, rate, 1)
    explicit = concat(past, make_doses([0.0], amt, rate, 1))
    got, ok = _jitted_ode(MM_ODE)(MM_P, ss, times)
    ref, ok_ref = _jitted_ode(MM_ODE)(MM_P, explicit, times)
    assert ok and ok_ref
    # 1e-6 as the issue asks: saturated (400 mg), the explicit doses approach the steady
    # state more slowly than the linear rate suggests and agree to about 1e-7
    np.testing.assert_allclose(np.asarray(got), np.asarray(ref), rtol=1e-6, atol=1e-9)
    # and the steady state is periodic: the trough at 12 h (before the next dose) equals the
    # amount just before the SS dose (t = 0 minus, i.e. the SS row's amounts)
    cyc = concat(ss, make_doses([II], amt, rate, 1))
    out, _ = _jitted_ode(MM_ODE)(MM_P, cyc, np.array([II - 1e-9, 2 * II - 1e-9]))
    np.testing.assert_allclose(np.asarray(out)[0], np.asarray(out)[1], rtol=1e-6)


def test_ode_ss1_resets_and_ss2_adds_like_the_analytic_model():
    """Linear model: SS=1 forgets earlier doses and running infusions, SS=2 adds; equal to
    the analytic model (itself checked against closed forms above) at every integrator."""
    import diffrax

    doses = make_doses(
        [0.0, 5.0, 24.0, 30.0, 40.0],
        [100.0, 60.0, 100.0, 50.0, 70.0],
        [0.0, 3.0, 0.0, 25.0, 0.0],  # the 20 h infusion from t=5 is cut by the SS=1 at 24
        1,
        ss=[0, 0, 1, 2, 0],
        ii=[0.0, 0.0, 12.0, 8.0, 0.0],
    )
    times = np.array([1.0, 10.0, 23.9, 24.0, 25.0, 30.0, 31.0, 33.0, 40.0, 41.0, 60.0])
    p = {"CL": 2.0, "V": 15.0}
    ref = run(Central1, p, doses, times)
    for model in (
        C1_ODE,
        bn.pk.ODE(_rhs_central1, ("Central",), ("CL", "V"), rtol=1e-10, atol=1e-12,
                  integrator="diffrax"),
        bn.pk.ODE(_rhs_central1, ("Central",), ("CL", "V"), rtol=1e-10, atol=1e-12,
                  solver=diffrax.Kvaerno5()),
    ):  # fmt: skip
        got, ok = _jitted_ode(model)(p, doses, times)
        assert ok
        np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-7, atol=1e-9)


def test_ode_ss_gradients_vs_finite_differences():
    """d/dp of a log-likelihood at steady state (implicit-function derivative of the Newton
    root) against central finite differences, rtol 1e-4 (MM, nonlinear), for KA, V, VM, KM,
    ALAG1 and F1 (one compiled function for all six)."""
    doses = make_doses([0.0, 36.0], [300.0, 300.0], [0.0, 0.0], 1, ss=[1, 0], ii=[II, 0.0])
    times = np.array([0.5, 2.0, 6.0, 11.0, 24.0, 37.0, 40.0, 48.0])
    obs = np.log(np.array([4.0, 9.0, 8.0, 5.0, 3.0, 6.0, 11.0, 7.0]))
    names = ["KA", "V", "VM", "KM", "ALAG1", "F1"]

    @jax.jit
    def ll(x):
        p = {**MM_P, **dict(zip(names, x, strict=True))}
        c = MM_ODE.amounts(p, doses, times)[:, 1] / p["V"]
        return -0.5 * jnp.sum((jnp.log(c) - obs) ** 2 / 0.2**2)

    x0 = jnp.asarray([MM_P[n] for n in names], float)
    grad = np.asarray(jax.jit(jax.grad(ll))(x0))
    for k, name in enumerate(names):
        h = 1e-5 * x0[k]
        fd = float((ll(x0.at[k].add(h)) - ll(x0.at[k].add(-h))) / (2 * h))
        assert np.isfinite(grad[k]) and abs(grad[k]) > 1e-3, name
        np.testing.assert_allclose(grad[k], fd, rtol=1e-4, err_msg=name)


def test_ode_model_with_ss_dataset_equals_analytic_model():
    """End to end: the population model with an ODE structural model on a dataset with
    SS=1/SS=2 rows (reader -> Model -> IPRED) equals the analytic model."""
    from numpyro import handlers

    ds = read_nonmem(ss_table())
    ana, ode = _model(), _model(C1_ODE)
    values = {"tvcl": 2.0, "tvv": 15.0, "sd": 0.1, "omega_cl_sd": 0.3}
    eta_site = getattr(ana, "eta_site", "z_eta")
    values[eta_site] = jnp.asarray([[0.2], [-0.1]])
    out = []
    for model in (ana, ode):
        md = model.model_data(ds)
        conditioned = handlers.condition(handlers.seed(model.numpyro_model, 0), values)
        trace = handlers.trace(conditioned).get_trace(md, DV=jnp.asarray(ds.dv))
        out.append(np.asarray(trace["IPRED"]["value"]))
    np.testing.assert_allclose(out[1], out[0], rtol=1e-7)
