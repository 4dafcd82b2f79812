"""Time-varying covariates (issue #4, item 1): piecewise constant, last observation carried
forward, with the compartment amounts carried continuously across each change time.

Every prediction is checked against a reference computed independently of the package:
piecewise closed forms for the one-compartment IV model, and ``scipy.integrate.solve_ivp``
(rtol 1e-11) with the parameters switched at the change times for the oral model.
"""

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from scipy.integrate import solve_ivp

import bayes_nlme as bn
from bayes_nlme import dist

THETA = dict(tvka=1.1, tvcl=3.0, tvv=30.0, add_sd=0.2)


def _pre(p, eta, cov):
    # CL and V both depend on WT: V changing at a covariate change makes the concentration
    # jump while the amounts stay continuous, so carrying concentrations would be caught
    w = cov.WT / 70.0
    return dict(KA=p.tvka, CL=p.tvcl * w**0.75 * jnp.exp(eta.cl), V=p.tvv * w)


def _model(dynamics, pre=_pre, covariates=("WT",)):
    return bn.Model(
        params=dict(
            tvka=bn.Param(dist.LogNormal(jnp.log(1.1), 0.5), unit="1/h"),
            tvcl=bn.Param(dist.LogNormal(jnp.log(3.0), 0.5), unit="L/h"),
            tvv=bn.Param(dist.LogNormal(jnp.log(30.0), 0.5), unit="L"),
            add_sd=bn.Param(dist.HalfNormal(1.0), unit="mg/L"),
        ),
        random=bn.IIV(["cl"], sd=dist.HalfNormal(0.3)),
        pre=pre,
        dynamics=dynamics,
        derived=lambda p, a, ind: dict(DV=bn.error.Additive(a.Central / ind.V, sd=p.add_sd)),
        covariates=list(covariates),
    )


def _iv_ode():
    return bn.pk.ODE(
        lambda t, a, p: {"Central": -p.CL / p.V * a.Central},
        ("Central",),
        ("CL", "V"),
        rtol=1e-10,
        atol=1e-12,
    )


def _oral_ode():
    def rhs(t, a, p):
        return {
            "Depot": -p.KA * a.Depot,
            "Central": p.KA * a.Depot - p.CL / p.V * a.Central,
        }

    return bn.pk.ODE(rhs, ("Depot", "Central"), ("KA", "CL", "V"), rtol=1e-10, atol=1e-12)


def _frame(records):
    df = pd.DataFrame(records)
    for col, default in (("AMT", 0.0), ("RATE", 0.0), ("CMT", 1), ("DV", 0.0)):
        df[col] = df[col].fillna(default) if col in df else default
    df["MDV"] = (df["EVID"] != 0).astype(int)
    return df


def _obs(i, t, wt, cmt=1):
    return dict(ID=i, TIME=t, DV=1.0, EVID=0, CMT=cmt, WT=wt)


def _dose(i, t, amt, wt, cmt=1, rate=0.0, evid=1, **kw):
    return dict(ID=i, TIME=t, AMT=amt, RATE=rate, EVID=evid, CMT=cmt, WT=wt, **kw)


def _change(i, t, wt):
    return dict(ID=i, TIME=t, EVID=2, WT=wt)  # NONMEM: "a physiological variable changes"


def _ipred(model, data, theta=THETA, eta=None):
    md = model.model_data(bn.read_nonmem(data) if isinstance(data, pd.DataFrame) else data)
    n_id = md.n_id
    eta = {"cl": jnp.zeros(n_id)} if eta is None else eta
    _, out, ok = model.predict_subjects(theta, eta, md)
    assert bool(jnp.all(ok))
    return np.asarray(out["DV"].ipred), md


# --------------------------------------------------------------------------- references
def _iv_reference(segments, t_obs, theta=THETA):
    """Piecewise closed form of the 1-cpt IV bolus model.

    ``segments``: per reset segment, a list of events ``(time, kind, value)`` with kind
    "dose" (bolus amount) or "wt" (new weight, from that time on), sorted by time.
    ``t_obs``: per segment, observation times. Returns concentrations, segment by segment.
    """
    out = []
    for events, times in zip(segments, t_obs, strict=True):
        for t in times:
            amount, wt, last = 0.0, None, None
            for te, kind, value in events:  # advance event by event (doses at t included)
                if te > t:
                    break
                if last is not None and wt is not None:
                    k = theta["tvcl"] * (wt / 70) ** 0.75 / (theta["tvv"] * wt / 70)
                    amount *= np.exp(-k * (te - last))
                last = te
                if kind == "dose":
                    amount += value
                else:
                    wt = value
            k = theta["tvcl"] * (wt / 70) ** 0.75 / (theta["tvv"] * wt / 70)
            out.append(amount * np.exp(-k * (t - last)) / (theta["tvv"] * wt / 70))
    return np.array(out)


def _ivp_reference(doses, changes, t_obs, theta=THETA):
    """Oral model by scipy's solve_ivp, integrated between breakpoints with the
    parameters of the weight in force at each piece's start (LOCF).

    ``doses``: ``(time, cmt, amt, rate)``; ``changes``: ``(time, wt)`` sorted, the first at
    the first record. Returns the concentrations at ``t_obs`` (a dose at ``t`` included).
    """

    def params(t):
        wt = [w for tc, w in changes if tc <= t][-1]
        w = wt / 70.0
        return theta["tvka"], theta["tvcl"] * w**0.75, theta["tvv"] * w

    ends = [t + a / r for t, _, a, r in doses if r > 0]
    bps = sorted({*(d[0] for d in doses), *ends, *(c[0] for c in changes), *t_obs})
    y = np.zeros(2)
    conc = {}
    for k, b in enumerate(bps):
        if k > 0:
            a = bps[k - 1]
            ka, cl, v = params(a)
            r = np.zeros(2)
            for t, cmt, amt, rate in doses:
                if rate > 0 and t <= a < t + amt / rate:
                    r[cmt - 1] += rate

            def f(_, y, ka=ka, cl=cl, v=v, r=r):
                return np.array([-ka * y[0], ka * y[0] - cl / v * y[1]]) + r

            y = solve_ivp(f, (a, b), y, method="DOP853", rtol=1e-11, atol=1e-13).y[:, -1]
        for t, cmt, amt, rate in doses:
            if t == b and rate == 0:
                y[cmt - 1] += amt
        conc[b] = y[1] / params(b)[2]
    return np.array([conc[t] for t in t_obs])


# --------------------------------------------------------------------------- datasets
def _iv_data():
    """Subject 1: doses at 0 and 12, WT changes at 6 (EVID=2 record) and at 18 (on an
    observation record). Subject 2: constant WT. Subject 3: a reset (EVID=4) restarting
    TIME, then a change on an observation record at 3 within the second segment."""
    rec = [
        _dose(1, 0.0, 100.0, 70.0),
        *(_obs(1, t, 70.0) for t in (1.0, 4.0)),
        _change(1, 6.0, 50.0),
        *(_obs(1, t, 50.0) for t in (6.0, 9.0)),
        _dose(1, 12.0, 100.0, 50.0),
        *(_obs(1, t, 50.0) for t in (12.5, 16.0)),
        _obs(1, 18.0, 90.0),
        _obs(1, 24.0, 90.0),
        _dose(2, 0.0, 80.0, 60.0),
        *(_obs(2, t, 60.0) for t in (1.0, 5.0, 10.0)),
        _dose(3, 0.0, 100.0, 70.0),
        _obs(3, 2.0, 70.0),
        _dose(3, 0.0, 50.0, 60.0, evid=4),
        _obs(3, 1.0, 60.0),
        _obs(3, 3.0, 80.0),
        _obs(3, 5.0, 80.0),
    ]
    ref = _iv_reference(
        [
            [
                (0.0, "wt", 70.0),
                (0.0, "dose", 100.0),
                (6.0, "wt", 50.0),
                (12.0, "dose", 100.0),
                (18.0, "wt", 90.0),
            ],
            [(0.0, "wt", 60.0), (0.0, "dose", 80.0)],
            [(0.0, "wt", 70.0), (0.0, "dose", 100.0)],
            [(0.0, "wt", 60.0), (0.0, "dose", 50.0), (3.0, "wt", 80.0)],
        ],
        [[1.0, 4.0, 6.0, 9.0, 12.5, 16.0, 18.0, 24.0], [1.0, 5.0, 10.0], [2.0], [1.0, 3.0, 5.0]],
    )
    return _frame(rec), ref


def _oral_data():
    """Oral doses into the depot (CMT 1) and an infusion into Central (CMT 2) that runs
    across the weight change at 7 (it is split there); the second oral dose comes on a
    record that itself changes WT. Subject 2 has a constant WT."""
    rec = [
        _dose(1, 0.0, 100.0, 70.0),
        _obs(1, 1.0, 70.0, 2),
        _obs(1, 3.0, 70.0, 2),
        _dose(1, 4.0, 60.0, 70.0, cmt=2, rate=10.0),  # runs 4..10
        _obs(1, 5.0, 70.0, 2),
        _change(1, 7.0, 55.0),
        _obs(1, 7.0, 55.0, 2),
        _obs(1, 8.5, 55.0, 2),
        _dose(1, 12.0, 100.0, 85.0),
        _obs(1, 12.0, 85.0, 2),
        _obs(1, 14.0, 85.0, 2),
        _obs(1, 24.0, 85.0, 2),
        _dose(2, 0.0, 100.0, 65.0),
        *(_obs(2, t, 65.0, 2) for t in (0.5, 2.0, 8.0)),
    ]
    t1 = [1.0, 3.0, 5.0, 7.0, 8.5, 12.0, 14.0, 24.0]
    ref1 = _ivp_reference(
        [(0.0, 1, 100.0, 0.0), (4.0, 2, 60.0, 10.0), (12.0, 1, 100.0, 0.0)],
        [(0.0, 70.0), (7.0, 55.0), (12.0, 85.0)],
        t1,
    )
    ref2 = _ivp_reference([(0.0, 1, 100.0, 0.0)], [(0.0, 65.0)], [0.5, 2.0, 8.0])
    return _frame(rec), np.concatenate([ref1, ref2])


# --------------------------------------------------------------------------- tests
@pytest.mark.parametrize("kind", ["analytic", "ode"])
def test_iv_bolus_matches_piecewise_closed_form(kind):
    df, ref = _iv_data()
    model = _model(bn.pk.Central1() if kind == "analytic" else _iv_ode())
    ipred, md = _ipred(model, df)
    assert md.int_start is not None  # the interval path is on
    np.testing.assert_allclose(ipred, ref, rtol=1e-6)
    if kind == "analytic":
        np.testing.assert_allclose(ipred, ref, rtol=1e-11)


def test_iv_bolus_baseline_differs_from_time_varying():
    """The test above can fail: the baseline-only answer is far from the reference."""
    df, ref = _iv_data()
    df["WT0"] = df.groupby("ID").WT.transform("first")
    pre0 = lambda p, eta, cov: _pre(p, eta, SimpleNamespace(WT=cov.WT0))  # noqa: E731
    ipred, md = _ipred(_model(bn.pk.Central1(), pre=pre0, covariates=("WT0",)), df)
    assert md.int_start is None
    assert np.max(np.abs(ipred / ref - 1)) > 0.05


@pytest.mark.parametrize("kind", ["analytic", "ode"])
def test_oral_with_split_infusion_matches_solve_ivp(kind):
    df, ref = _oral_data()
    model = _model(bn.pk.Depots1Central1() if kind == "analytic" else _oral_ode())
    ipred, md = _ipred(model, df)
    # the infusion 4..10 is split at the change time 7 into two pieces of 30
    infusion = np.asarray(md.dose_mask)[0] & (np.asarray(md.dose_rate)[0] > 0)
    amt = np.asarray(md.dose_amt)[0][infusion]
    np.testing.assert_allclose(np.sort(amt), [30.0, 30.0])
    np.testing.assert_allclose(ipred, ref, rtol=1e-6)


def test_constant_covariates_take_the_old_path_bit_identically():
    df, _ = _oral_data()
    df = df[df.ID == 2].copy()  # constant WT
    df = pd.concat([df, df.assign(ID=3, WT=80.0)], ignore_index=True)
    model = _model(bn.pk.Depots1Central1())
    ds = bn.read_nonmem(df)
    eta = {"cl": jnp.array([0.1, -0.2])}
    ipred, md = _ipred(model, ds, eta=eta)
    assert md.int_start is None and md.unit_id is None
    # the per-subject path as it was: subject() vmapped with the baseline covariates
    cov = {"WT": jnp.asarray(ds.covariates["WT"])}
    doses = bn.data.Doses(
        *(jnp.asarray(getattr(ds, f"dose_{f}")) for f in ("time", "amt", "rate", "cmt", "mask"))
    )
    _, out = jax.vmap(lambda e, c, d, t: model.subject(THETA, e, c, d, t))(
        eta, cov, doses, jnp.asarray(ds.obs_time)
    )
    s, j = ds.obs_index
    np.testing.assert_array_equal(ipred, np.asarray(out["DV"].ipred)[s, j])
    # a column the model does not declare may vary freely: still the old path, same numbers
    df2 = df.assign(OTHER=np.arange(len(df), dtype=float))
    ipred2, md2 = _ipred(model, bn.read_nonmem(df2), eta=eta)
    assert "OTHER" in bn.read_nonmem(df2).segment_varying and md2.int_start is None
    np.testing.assert_array_equal(ipred2, ipred)


@pytest.mark.parametrize("kind", ["analytic", "ode"])
def test_loglik_gradient_matches_finite_differences(kind):
    df, _ = _oral_data()
    model = _model(bn.pk.Depots1Central1() if kind == "analytic" else _oral_ode())
    ds = bn.read_nonmem(df)
    md = model.model_data(ds)
    dv = jnp.asarray(ds.dv) * 0.0 + 2.0
    eta = {"cl": jnp.array([0.15, -0.1])}

    @jax.jit
    def loglik(th):
        theta = dict(tvka=th[0], tvcl=th[1], tvv=th[2], add_sd=th[3])
        _, err, _ = model.predict_subjects(theta, eta, md, combined=True)
        return jnp.sum(err.distribution().log_prob(dv))

    th = jnp.array([1.1, 3.0, 30.0, 0.4])
    grad = np.asarray(jax.grad(loglik)(th))
    fd = []
    for k in range(4):
        h = 1e-5 * float(th[k])
        fd.append((loglik(th.at[k].add(h)) - loglik(th.at[k].add(-h))) / (2 * h))
    np.testing.assert_allclose(grad, fd, rtol=1e-5)
    assert np.all(np.abs(grad[:3]) > 1e-3)  # the structural parameters matter


def test_missing_covariate_names_subjects_and_rows(tmp_path):
    df, _ = _iv_data()
    df.loc[5, "WT"] = np.nan  # subject 1, a later record
    df.loc[17, "WT"] = np.nan  # subject 3
    model = _model(bn.pk.Central1())
    with pytest.raises(bn.ModelError, match=r"'WT' is missing.*subjects \[1, 3\].*rows 5, 17"):
        model.model_data(bn.read_nonmem(df))
    path = tmp_path / "d.csv"
    df.to_csv(path, index=False)
    with pytest.raises(bn.ModelError, match=r"rows 5, 17 \(CSV lines 7, 19\).*fill_covariates"):
        model.model_data(bn.read_nonmem(path))
    # the documented option: carry each subject's last value forward
    ds = bn.read_nonmem(df, fill_covariates="locf")
    assert any("fill_covariates='locf'" in n for n in ds.notes)
    assert ds.record_covariates["WT"][0, 5] == df.loc[4, "WT"]
    model.model_data(ds)


def test_missing_first_value_is_reported_even_when_constant_elsewhere():
    df, _ = _iv_data()
    df.loc[df.ID == 2, "WT"] = np.nan
    with pytest.raises(bn.ModelError, match=r"subjects \[2\].*rows 11, 12, 13, 14"):
        _model(bn.pk.Central1()).model_data(bn.read_nonmem(df))


@pytest.mark.parametrize(
    "case, match",
    [
        ("alag", r"subject 1, rows 0, 6: a dose into CMT 1 with a lag time ALAG1.*TIME 6"),
        ("rate", r"subject 1, row 0: a modelled infusion \(RATE=-2.*TIME 6"),
        ("f_infusion", r"subject 1, row 0: an infusion into CMT 1 whose duration depends on F1"),
    ],
)
def test_doses_that_cannot_be_carried_are_refused(case, match):
    df, _ = _iv_data()
    extra = {}
    if case == "alag":
        extra = {"ALAG1": 0.5}
    elif case == "rate":
        df.loc[0, "RATE"] = -2.0
        extra = {"D1": 1.0}
    else:
        df.loc[0, "RATE"] = 50.0
        extra = {"F1": 0.9}
    pre = lambda p, eta, cov: {**_pre(p, eta, cov), **extra}  # noqa: E731
    with pytest.raises(bn.ModelError, match=match):
        _model(bn.pk.Central1(), pre=pre).model_data(bn.read_nonmem(df))


def test_lag_time_after_the_last_change_is_fine():
    # a dose after the last change (and subject 2, constant WT) may keep its lag time
    rec = [
        _obs(1, 0.0, 70.0),
        _change(1, 1.0, 50.0),
        _dose(1, 2.0, 100.0, 50.0),
        _obs(1, 3.0, 50.0),
        _obs(1, 5.0, 50.0),
        _dose(2, 0.0, 100.0, 70.0),
        _obs(2, 3.0, 70.0),
    ]
    pre = lambda p, eta, cov: {**_pre(p, eta, cov), "ALAG1": 0.25}  # noqa: E731
    ipred, md = _ipred(_model(bn.pk.Central1(), pre=pre), _frame(rec))
    assert md.int_start is not None
    v2 = THETA["tvv"] * 50 / 70
    k2 = THETA["tvcl"] * (50 / 70) ** 0.75 / v2
    k1 = THETA["tvcl"] / THETA["tvv"]
    ref = [
        0.0,
        100 * np.exp(-k2 * 0.75) / v2,
        100 * np.exp(-k2 * 2.75) / v2,
        100 * np.exp(-k1 * 2.75) / THETA["tvv"],
    ]
    np.testing.assert_allclose(ipred, ref, rtol=1e-11)


def test_steady_state_reset_cancels_the_carried_amounts():
    wt2 = 50.0
    rec = [
        _dose(1, 0.0, 100.0, 70.0),
        _obs(1, 2.0, 70.0),
        _change(1, 6.0, wt2),
        _obs(1, 8.0, wt2),
        _dose(1, 12.0, 40.0, wt2, SS=1, II=12.0),
        _obs(1, 13.0, wt2),
        _obs(1, 20.0, wt2),
    ]
    ipred, md = _ipred(_model(bn.pk.Central1()), _frame(rec).fillna({"SS": 0, "II": 0}))
    k1 = THETA["tvcl"] / THETA["tvv"]
    v2 = THETA["tvv"] * wt2 / 70
    k2 = THETA["tvcl"] * (wt2 / 70) ** 0.75 / v2
    ss = 40.0 / (1 - np.exp(-k2 * 12.0))
    ref = [
        100 * np.exp(-k1 * 2) / THETA["tvv"],
        100 * np.exp(-k1 * 6 - k2 * 2) / v2,
        ss * np.exp(-k2 * 1) / v2,  # the SS=1 dose reset the system: no carried amount
        ss * np.exp(-k2 * 8) / v2,
    ]
    np.testing.assert_allclose(ipred, ref, rtol=1e-11)


def test_prediction_times_use_the_intervals():
    df, ref = _iv_data()
    df = df[df.ID == 1]
    model = _model(bn.pk.Central1())
    ds = bn.read_nonmem(df)
    times = np.array([[1.0, 4.0, 6.0, 9.0, 12.5, 16.0, 18.0, 24.0, 5.999]])
    md = model.model_data(ds, times=times)
    _, out, _ = model.predict_subjects(THETA, {"cl": jnp.zeros(1)}, md)
    ipred = np.asarray(out["DV"].ipred)
    np.testing.assert_allclose(ipred[:8], ref[:8], rtol=1e-11)
    np.testing.assert_allclose(ipred[8], 100 * np.exp(-0.1 * 5.999) / 30.0, rtol=1e-11)


def test_notes_describe_time_varying_covariates():
    df, _ = _iv_data()
    ds = bn.read_nonmem(df)
    assert ds.segment_varying == ("WT",)
    assert any("time-varying" in n and "WT" in n for n in ds.notes)
    assert ds.record_covariates["WT"].shape == ds.record_time.shape


@pytest.mark.slow
def test_fit_end_to_end_with_time_varying_covariate():
    rng = np.random.default_rng(1)
    rec = []
    for i in range(1, 7):
        w0, w1 = 60.0 + 5 * i, 50.0 + 8 * i
        rec.append(_dose(i, 0.0, 100.0, w0))
        rec += [_obs(i, t, w0) for t in (0.5, 2.0, 5.0)]
        rec.append(_change(i, 6.0, w1))
        rec.append(_obs(i, 8.0, w1))
        rec.append(_dose(i, 12.0, 100.0, w1))
        rec += [_obs(i, t, w1) for t in (13.0, 18.0, 24.0)]
    df = _frame(rec)
    model = _model(bn.pk.Central1())
    ds = bn.read_nonmem(df)
    truth, _ = _ipred(model, ds)
    s, j = ds.obs_index
    df.loc[ds.obs_row[s, j], "DV"] = truth * (1 + 0.05 * rng.standard_normal(truth.size))
    idata = bn.fit(model, df, chains=1, warmup=50, samples=50, progress_bar=False)
    post = idata.posterior
    for name in ("tvcl", "tvv", "add_sd"):
        assert np.all(np.isfinite(post[name].values))
    assert abs(float(post["tvv"].median()) / 30.0 - 1) < 0.3
