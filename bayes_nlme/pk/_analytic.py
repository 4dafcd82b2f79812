"""Closed-form linear compartment models (1-, 2- and 3-compartment, IV and first-order absorption).

All six models are linear time-invariant systems ``dA/dt = K A + input(t)``. They share one
engine, :class:`_LinearPK`: each model supplies its rate matrix ``K`` and the closed-form
eigenvalues ``lambda_i`` of ``K``; the engine builds the spectral projectors of Sylvester's
formula once per call,

.. math::

    e^{K t} = \\sum_i e^{\\lambda_i t} Z_i, \\qquad
    Z_i = \\prod_{j \\ne i} \\frac{K - \\lambda_j I}{\\lambda_i - \\lambda_j},

and sums the response to every dose event (superposition), vectorised over
(time x dose x eigenvalue) with broadcasting:

* bolus of ``F_c AMT`` into CMT ``c`` at ``t_d + ALAG_c``, with ``u = t - t_d - ALAG_c >= 0``:
  ``A(t) = F_c AMT sum_i Z_i[:, c] exp(lambda_i u)``;
* zero-order infusion (``RATE = R > 0``) into ``c`` starting at ``t_d + ALAG_c`` and lasting
  ``D = F_c AMT / R`` (NONMEM semantics: F changes the duration, not the rate): with
  ``tau = min(u, D)``,
  ``A(t) = R sum_i Z_i[:, c] exp(lambda_i (u - tau)) expm1(lambda_i tau) / lambda_i``
  (which equals ``R sum_i Z_i[:, c] (exp(lambda_i u) - exp(lambda_i (u - tau))) / lambda_i``).
  Modelled infusions (NONMEM): ``RATE = -1`` takes the rate from the parameter ``R<c>``
  (``D = F_c AMT / R<c>``), ``RATE = -2`` the duration from ``D<c>`` (``R = F_c AMT / D<c>``);
  the same formulas apply, steady state included.

Steady-state doses (``Doses.ss`` 1 or 2, interval ``II = ii > 0``; NONMEM semantics) are
the last of an infinite train of implied doses at ``t_d + ALAG_c - k ii``, ``k = 0, 1, ...``
(lag and bioavailability apply to every implied dose). Their contribution starts at the
record time ``t_d`` and, by superposition, is the sum of the single-dose responses over the
train, in closed form (``q_i = exp(lambda_i ii)``):

* bolus: ``A(t) = F_c AMT sum_i Z_i[:, c] exp(lambda_i u) / (1 - q_i)``;
* infusion of duration ``D`` (any ``D``, also ``D > ii``: overlapping implied infusions):
  ``A(t) = g(u) + sum_i Z_i[:, c] [c_i exp(lambda_i (u + (m+1) ii - D)) / (1 - q_i)
  + (R / lambda_i) (exp(lambda_i (u + ii)) (1 - q_i^m) / (1 - q_i) - m)]``, where ``g`` is
  the single-infusion response above, ``c_i = R expm1(lambda_i D) / lambda_i`` the amount
  weight of one finished infusion, and ``m = max(0, ceil((D - u) / ii) - 1)`` the number of
  earlier implied infusions still running at ``u`` (0 whenever ``D <= ii``);
* first-order absorption needs nothing more: the depot column is part of ``Z``.

Here ``u = t - t_d - ALAG_c`` when ``u >= 0``; for ``t_d <= t < t_d + ALAG_c`` (the newest
implied dose not given yet) ``u`` is moved forward by whole intervals into ``[0, ii)``, which
is NONMEM's "advance to the point II - ALAG of the steady-state cycle". ``ss = 1`` also
RESETS the system at ``t_d``: a dose ``e`` stops contributing at ``t >= t_d`` when it comes
before the SS=1 dose, i.e. ``t_e < t_d``, or ``t_e == t_d`` and ``e`` has a smaller index
(record order). ``ss = 2`` adds the steady state without a reset.

Every exponential is evaluated at a non-positive argument (``u`` is clamped to 0 for events
that have not happened yet, whose contribution is then zeroed: the "double where" trick), so
values and ``jax.grad`` are finite for any time, dose time, lag time or bioavailability.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from ._base import AbstractPKModel

__all__ = [
    "Central1",
    "Central1Periph1",
    "Central1Periph2",
    "Depots1Central1",
    "Depots1Central1Periph1",
    "Depots1Central1Periph2",
]


def _sylvester(K: Any, lam: Any, cols: slice = slice(None)) -> Any:
    """Columns ``cols`` of the spectral projectors ``Z_i`` of ``K`` (distinct eigenvalues).

    ``Z[i] = prod_{j != i} (K - lam_j I) / (lam_i - lam_j)``; returns ``Z[:, :, cols]``,
    shape (n_eig, n, n_cols). Written with broadcasting and reductions only (no ``dot``):
    for these small (n <= 4) matrices that keeps the compiled program, and its gradient, small.
    """
    n = lam.shape[0]
    eye = jnp.eye(n, dtype=lam.dtype)
    shifted = K[None] - lam[:, None, None] * eye  # shifted[j] = K - lam_j I
    others = [[j for j in range(n) if j != i] for i in range(n)]  # static, n <= 4

    def pick(x, k):  # x[[others[i][k] for i]] as static slices (no gather/scatter)
        return jnp.stack([x[o[k]] for o in others])

    num = pick(shifted, 0)[:, :, cols]  # (n_eig, n, n_cols)
    den = lam - pick(lam, 0)
    for k in range(1, n - 1):  # left-multiply by the remaining factors (they commute)
        num = jnp.sum(pick(shifted, k)[:, :, :, None] * num[:, None, :, :], axis=2)
        den = den * (lam - pick(lam, k))
    return num / den[:, None, None]


def _depot_projectors(K: Any, lam: Any) -> Any:
    """Projectors of a depot (CMT 1, rate ``-lam[0]``) feeding a disposition system.

    Only the depot column involves the absorption eigenvalue; the other columns use the
    disposition block's own projectors, so doses into Central/Peripheral stay exact
    (no spurious ``KA`` terms from rounding, unaffected by ``KA`` near a disposition rate).
    """
    depot_col = _sylvester(K, lam, slice(0, 1))  # (n, n, 1)
    n_disp = lam.shape[0] - 1
    disp = jnp.ones((1, 1, 1), lam.dtype) if n_disp == 1 else _sylvester(K[1:, 1:], lam[1:])
    disp = jnp.pad(disp, ((1, 0), (1, 0), (0, 0)))  # no KA component, no depot row
    return jnp.concatenate([depot_col, disp], axis=2)


def _separate(ka: Any, lam: Any) -> Any:
    """Nudge ``ka`` away from the disposition rate ``lam`` (> 0) when they (nearly) coincide.

    Sylvester's formula divides by ``ka - lam``; when ``|ka - lam| < delta * lam`` with
    ``delta = eps ** (1/3)`` (6e-6 in float64) ``ka`` is shifted up by ``2 * delta * lam``.
    The shift keeps ``d ka_eff / d ka = 1``; its effect on the amounts is of relative order
    ``delta`` and only in that narrow band, while outside it the cancellation error of
    Sylvester's formula stays below ``eps / delta`` (values) and ``eps / delta**2``
    (gradients), i.e. about 1e-10 and 1e-5 relative in float64.
    """
    delta = float(np.finfo(jnp.result_type(ka, lam)).eps) ** (1.0 / 3.0)
    close = jnp.abs(ka - lam) < delta * lam
    return jnp.where(close, ka + 2.0 * delta * lam, ka)


def _two_cpt_rates(cl: Any, v: Any, q: Any, v2: Any) -> tuple[Any, Any, Any, Any, Any]:
    """Micro-constants and the two disposition rates ``alpha > beta > 0`` (computed stably)."""
    k10 = cl / v
    k12 = q / v
    k21 = q / v2
    s = k10 + k12 + k21
    # s**2 - 4 k10 k21 rewritten as a sum of non-negative terms (no cancellation)
    disc = (k10 + k12 - k21) ** 2 + 4.0 * k12 * k21
    alpha = 0.5 * (s + jnp.sqrt(disc))
    beta = k10 * k21 / alpha
    return k10, k12, k21, alpha, beta


def _three_cpt_rates(cl: Any, v: Any, q: Any, v2: Any, q3: Any, v3: Any) -> tuple[Any, ...]:
    """Micro-constants and the three disposition rates ``alpha > beta > gamma > 0``.

    The rates are the roots of :math:`x^3 - a_2 x^2 + a_1 x - a_0` (the characteristic
    polynomial of minus the 3x3 rate matrix), with :math:`a_2 = k_{10} + k_{12} + k_{13} +
    k_{21} + k_{31}`, :math:`a_1 = k_{10} k_{21} + k_{10} k_{31} + k_{12} k_{31} + k_{13}
    k_{21} + k_{21} k_{31}`, :math:`a_0 = k_{10} k_{21} k_{31}` (sums of positive terms: no
    cancellation). The largest root comes from the trigonometric solution of the depressed
    cubic :math:`y^3 + p y + r` (:math:`x = y + a_2/3`):

    .. math::

        \\alpha = \\frac{a_2}{3} + 2\\sqrt{-p/3}\\,\\cos\\varphi, \\qquad
        \\varphi = \\tfrac13 \\arccos\\!\\left(\\frac{3 r}{2 p}\\sqrt{-3/p}\\right),

    a sum of two non-negative terms. The two others come from the deflated quadratic
    :math:`x^2 - s x + a_0/\\alpha` with :math:`s = \\beta + \\gamma = (a_1 - a_0/\\alpha)/\\alpha`:
    :math:`\\beta = (s + \\sqrt{s^2 - 4 a_0/\\alpha})/2` and :math:`\\gamma = a_0/(\\alpha\\beta)`,
    so a small terminal rate :math:`\\gamma` keeps full relative accuracy (the plain
    trigonometric formula would lose it to cancellation against :math:`a_2/3`).
    """
    k10 = cl / v
    k12 = q / v
    k21 = q / v2
    k13 = q3 / v
    k31 = q3 / v3
    a2 = k10 + k12 + k13 + k21 + k31
    a1 = k10 * k21 + k10 * k31 + k12 * k31 + k13 * k21 + k21 * k31
    a0 = k10 * k21 * k31
    third = a2 / 3.0
    p = a1 - a2 * third  # <= 0 (real roots)
    r = third * (a1 - 2.0 * third * third) - a0  # -2 a2^3/27 + a1 a2/3 - a0
    tiny = jnp.finfo(jnp.result_type(p)).tiny
    neg_p = jnp.maximum(-p, tiny)
    cos_arg = jnp.clip(-1.5 * r / neg_p * jnp.sqrt(3.0 / neg_p), -1.0, 1.0)
    phi = jnp.arccos(cos_arg) / 3.0
    alpha = third + 2.0 * jnp.sqrt(neg_p / 3.0) * jnp.cos(phi)
    prod = a0 / alpha  # beta * gamma
    s = (a1 - prod) / alpha  # beta + gamma
    beta = 0.5 * (s + jnp.sqrt(jnp.maximum(s * s - 4.0 * prod, 0.0)))
    gamma = prod / beta
    return k10, k12, k21, k13, k31, alpha, beta, gamma


def _three_cpt_matrix(k10: Any, k12: Any, k21: Any, k13: Any, k31: Any) -> Any:
    """Rate matrix of Central, Peripheral1, Peripheral2 (mammillary, elimination from Central)."""
    zero = jnp.zeros_like(k10)
    return jnp.stack(
        [
            jnp.stack([-(k10 + k12 + k13), k21, k31]),
            jnp.stack([k12, -k21, zero]),
            jnp.stack([k13, zero, -k31]),
        ]
    )


class _LinearPK(AbstractPKModel):
    """Shared engine: superposition of closed-form responses of a linear system.

    Subclasses implement :meth:`_system`, returning the rate matrix ``K`` (shape
    (n_cmt, n_cmt)) and its eigenvalues (shape (n_cmt,), all negative and distinct).
    """

    compartments: ClassVar[tuple[str, ...]]
    default_dose_cmt: ClassVar[int] = 1
    required: ClassVar[tuple[str, ...]]
    supports_initial: ClassVar[bool] = True

    def _system(self, p: Mapping[str, Any]) -> tuple[Any, Any]:  # pragma: no cover
        raise NotImplementedError

    def _projectors(self, K: Any, lam: Any) -> Any:
        return _sylvester(K, lam)

    def _read_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        missing = [name for name in self.required if name not in params]
        if missing:
            raise ValueError(
                f"{type(self).__name__} requires parameters {list(self.required)}; "
                f"missing {missing}. Optional: {list(self.optional)}."
            )
        return {name: jnp.asarray(params[name]) for name in self.required}

    def _check_doses(self, doses: Any, params: Mapping[str, Any]) -> None:
        """Eager sanity checks of CMT, RATE, SS and II when concrete (skipped when traced)."""
        ss, ii = _ss_fields(doses)
        try:
            cmt = np.asarray(doses.cmt)
            rate = np.asarray(doses.rate)
            mask = np.asarray(doses.mask, bool)
            if ss is not None:
                ss = np.asarray(ss)
                ii = np.asarray(ii)
        except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
            return
        problem = self.cmt_problem(cmt, mask)
        if problem is not None:
            raise ValueError(problem)
        problem = _modeled_rate_problem(params, cmt, rate, mask, self.default_dose_cmt)
        if problem is not None:
            raise ValueError(problem)
        if ss is None:
            return
        problem = _ss_code_problem(ss, ii, mask)
        if problem is not None:
            raise ValueError(problem)

    def amounts(
        self, params: Mapping[str, Any], doses: Any, times: Any, initial: Any = None
    ) -> Any:
        """Amount in every compartment at ``times`` for one subject.

        Parameters
        ----------
        params : mapping of str to scalar
            The names in ``required``, plus optional ``F<n>`` (default 1) and ``ALAG<n>``
            (default 0) for the 1-based CMT ``n``, and ``R<n>`` / ``D<n>`` (no default;
            needed when doses into CMT ``n`` have ``rate`` -1 / -2). Unknown names are
            ignored.
        doses : Doses
            One subject's dose events (fields of shape (n_dose,)); ``cmt`` 0 means
            ``default_dose_cmt``; ``rate > 0`` is a zero-order infusion, ``rate == -1`` one
            at the rate ``R<n>``, ``rate == -2`` one lasting ``D<n>``, ``rate == 0`` a bolus;
            events with ``mask`` False contribute nothing. ``ss`` 1 or 2 with ``ii > 0``
            makes a steady-state dose (NONMEM SS=1: reset, then steady state of "AMT every
            II"; SS=2: the steady state is added); ``ss``/``ii`` None means no steady-state
            dose (see the module docstring for the equations).
        times : array, shape (n_time,)
        initial : tuple ``(t0, a0)``, optional
            Amounts ``a0`` (shape (n_cmt,)) present at time ``t0`` in addition to the doses:
            they contribute ``sum_i exp(lambda_i (t - t0)) Z_i a0`` at ``t >= t0`` (no
            ``F<n>``/``ALAG<n>``), and, like a dose given before every dose at ``t0`` or
            later, stop contributing at an SS=1 dose's reset. Used to carry the amounts
            across covariate change times (time-varying covariates).

        Returns
        -------
        array, shape (n_time, n_cmt)
            Amounts; column ``k`` is ``compartments[k]``.

        Raises
        ------
        ValueError
            A required parameter is missing; or, when the dose arrays are concrete (not
            traced), a real dose has a CMT outside ``0..n_cmt``, a negative RATE other
            than -1/-2, RATE -1 (-2) into CMT ``n`` without ``R<n>`` (``D<n>``) in
            ``params``, an SS outside {0, 1, 2}, or SS > 0 without II > 0. (Traced, an SS
            dose without II > 0 is an ordinary dose; an invalid RATE code or a missing
            ``R<n>``/``D<n>`` makes every amount NaN.)
        """
        return self._amounts(params, doses, times, initial)

    def _amounts(
        self,
        params: Mapping[str, Any],
        doses: Any,
        times: Any,
        initial: Any = None,
        infusion_ended: Any = None,
    ) -> Any:
        """:meth:`amounts`; ``infusion_ended`` (n_dose,) bool, when given, says which
        infusions have ended, instead of comparing the time since their start with their
        duration. ``ODE(..., pk=...)`` evaluates the closed form inside its segments: at a
        segment end that is an infusion's end, the infusion must still run (left limit),
        and at the start of the next segment it must have ended, with the matching
        one-sided derivatives (``jnp.minimum`` would give the average of the two at the
        tie)."""
        p = self._read_params(params)
        self._check_doses(doses, params)
        n = len(self.compartments)
        K, lam = self._system(p)
        Z = self._projectors(K, lam)  # (n_eig, n_cmt, n_cmt)
        dtype = lam.dtype

        f_vec = jnp.stack([jnp.asarray(params.get(f"F{k}", 1.0), dtype) for k in range(1, n + 1)])
        lag_vec = jnp.stack(
            [jnp.asarray(params.get(f"ALAG{k}", 0.0), dtype) for k in range(1, n + 1)]
        )

        t = jnp.asarray(times, dtype)
        d_time = jnp.asarray(doses.time, dtype)
        amt = jnp.asarray(doses.amt, dtype)
        rate = jnp.asarray(doses.rate, dtype)
        cmt = jnp.asarray(doses.cmt)
        mask = jnp.asarray(doses.mask, bool)

        cmt = jnp.where(cmt == 0, self.default_dose_cmt, cmt)
        onehot = (cmt[:, None] == jnp.arange(1, n + 1)).astype(dtype)  # (n_dose, n_cmt)
        f_d = jnp.sum(onehot * f_vec, axis=-1)
        lag_d = jnp.sum(onehot * lag_vec, axis=-1)
        # Z_i[:, c_d] for every dose: (n_dose, n_eig, n_cmt)
        z_cols = jnp.einsum("ijk,dk->dij", Z, onehot)

        dose_amt = f_d * amt
        # rate r (1 when not an infusion: safe denominator) and duration (RATE > 0, -1, -2)
        is_inf, r, duration, bad = _dose_infusions(params, onehot, rate, dose_amt, mask, dtype)
        inf_coef = jnp.where(is_inf, r, 0.0)[:, None] / lam  # (n_dose, n_eig)

        # (n_time, n_dose) quantities
        u = t[:, None] - (d_time + lag_d)[None, :]  # time since the (lagged) dose
        ss, ii = _ss_fields(doses)
        if ss is None:
            active = mask[None, :] & (u >= 0)
        else:
            ss = jnp.asarray(ss)
            ii = jnp.asarray(ii, dtype)
            is_ss = mask & (ss > 0) & (ii > 0)
            ii_safe = jnp.where(is_ss, ii, 1.0)
            # an SS dose acts from its record time; before its lagged time, the newest implied
            # dose has not come yet: move u forward by whole intervals into [0, ii)
            behind = is_ss[None, :] & (u < 0)
            n_back = jnp.ceil(-jnp.where(behind, u, 0.0) / ii_safe)
            folded = u + n_back * ii_safe  # >= 0 up to rounding
            u = jnp.where(behind, jnp.where(folded < 0, 0.0, folded), u)
            started = jnp.where(is_ss[None, :], t[:, None] >= d_time[None, :], u >= 0)
            active = mask[None, :] & started & (t[:, None] < _reset_times(d_time, mask, ss, ii))
        u = jnp.where(active, u, 0.0)  # clamp first: no exp of a positive argument anywhere
        if infusion_ended is None:
            running = jnp.minimum(u, duration[None, :])
        else:
            running = jnp.where(infusion_ended[None, :], duration[None, :], u)
        tau = jnp.where(active & is_inf[None, :], running, 0.0)
        bolus = jnp.where(active & ~is_inf[None, :], dose_amt[None, :], 0.0)
        # (n_time, n_dose, n_eig): a bolus has tau = 0 (expm1 term vanishes), an infusion
        # has bolus = 0, an inactive event has both 0
        lam_tau = lam * tau[..., None]
        g = jnp.exp(lam * u[..., None] - lam_tau) * (
            bolus[..., None] + inf_coef * jnp.expm1(lam_tau)
        )
        if ss is not None:
            on = active & is_ss[None, :]
            g = g + _ss_past(lam, u, on, is_inf, dose_amt, duration, inf_coef, ii_safe)
        out = jnp.einsum("tdi,dic->tc", g, z_cols)
        if initial is not None:
            out = out + self._initial_response(initial, Z, lam, t, d_time, mask, ss, ii)
        # traced invalid RATE code or missing R<n>/D<n> (concrete ones raised above): NaN
        return jnp.where(jnp.any(bad), jnp.nan, out)

    @staticmethod
    def _initial_response(initial, Z, lam, t, d_time, mask, ss, ii):
        """Free response to the amounts ``a0`` present at ``t0``: (n_time, n_cmt)."""
        t0, a0 = initial
        dtype = lam.dtype
        t0 = jnp.asarray(t0, dtype)
        a0 = jnp.asarray(a0, dtype)
        on = t >= t0
        if ss is not None:  # an SS=1 dose at t0 or later resets the system: a0 is gone
            resets = mask & (ss == 1) & (ii > 0) & (d_time >= t0)
            on = on & (t < jnp.min(jnp.where(resets, d_time, jnp.inf), initial=jnp.inf))
        since = jnp.where(on, t - t0, 0.0)  # clamp first: exponents stay <= 0
        decay = jnp.where(on[:, None], jnp.exp(lam * since[:, None]), 0.0)  # (n_time, n_eig)
        return jnp.einsum("ti,ijk,k->tj", decay, Z, a0)


def _dose_infusions(
    params: Mapping[str, Any], onehot: Any, rate: Any, dose_amt: Any, mask: Any, dtype: Any
) -> tuple[Any, Any, Any, Any]:
    """Infusion rate and duration of every dose event (NONMEM RATE codes), shared by engines.

    ``onehot`` (n_dose, n_cmt) is the dose's compartment, ``dose_amt = F_c AMT``. Codes:
    ``RATE > 0`` an infusion at that rate for ``F_c AMT / RATE``; ``RATE == -1`` at the
    rate ``R<c>`` (parameter) for ``F_c AMT / R<c>``; ``RATE == -2`` for the duration
    ``D<c>`` (parameter) at ``F_c AMT / D<c>``; otherwise (``RATE == 0``) a bolus.

    Returns ``(is_inf, r, duration, bad)``: ``r`` the infusion rate (1 where not an
    infusion: a safe denominator), ``duration`` (0 where not an infusion) and ``bad``, per
    event, a real dose with another negative RATE or a modelled code whose parameter is
    not in ``params`` (the engines turn these into NaN / ``ok = False``; eagerly they raise,
    see :func:`_modeled_rate_problem`). Which parameters exist is static (dict keys).
    """
    n = onehot.shape[1]
    names_r = [f"R{k}" for k in range(1, n + 1)]
    names_d = [f"D{k}" for k in range(1, n + 1)]
    r_vec = jnp.stack([jnp.asarray(params.get(k, 1.0), dtype) for k in names_r])
    d_vec = jnp.stack([jnp.asarray(params.get(k, 1.0), dtype) for k in names_d])
    has_r = jnp.asarray([k in params for k in names_r])
    has_d = jnp.asarray([k in params for k in names_d])
    hot = onehot > 0
    mod_r = rate == -1
    mod_d = rate == -2
    is_inf = (rate > 0) | mod_r | mod_d
    r_d = jnp.sum(onehot * r_vec, axis=-1)
    d_d = jnp.sum(onehot * d_vec, axis=-1)
    r = jnp.where(rate > 0, rate, jnp.where(mod_r, r_d, 1.0))
    d_safe = jnp.where(mod_d, d_d, 1.0)
    r = jnp.where(mod_d, dose_amt / d_safe, r)
    duration = jnp.where(is_inf, jnp.where(mod_d, d_d, dose_amt / r), 0.0)
    missing = (mod_r & ~jnp.any(hot & has_r, axis=-1)) | (mod_d & ~jnp.any(hot & has_d, axis=-1))
    bad = mask & (((rate < 0) & ~(mod_r | mod_d)) | missing)
    return is_inf, r, duration, bad


def _ss_code_problem(ss: np.ndarray, ii: np.ndarray, mask: np.ndarray) -> str | None:
    """The message for invalid steady-state fields of real doses (concrete arrays), or None:
    SS must be 0, 1 or 2 and a steady-state dose needs II > 0 (shared by the analytic and
    the ODE models)."""
    bad = mask & ~np.isin(ss, (0, 1, 2))
    if bad.any():
        return (
            f"dose SS must be 0, 1 or 2 (NONMEM steady-state codes); got "
            f"{sorted(set(ss[bad].tolist()))}."
        )
    if (mask & (ss > 0) & ~(ii > 0)).any():
        return (
            "a steady-state dose (SS 1 or 2) needs a dosing interval II > 0; the "
            "steady-state constant infusion (II = 0, AMT = 0, RATE > 0) is not supported."
        )
    return None


def _modeled_rate_problem(
    params: Mapping[str, Any], cmt: Any, rate: Any, mask: Any, default_cmt: int
) -> str | None:
    """Eager check (concrete NumPy dose arrays) of the RATE codes against ``params``.

    Returns a message for a real dose with a negative RATE other than -1/-2, or with
    RATE -1 (-2) into CMT ``c`` while ``R<c>`` (``D<c>``) is not a parameter; else None.
    """
    cmt = np.where(cmt == 0, default_cmt, cmt)
    bad = mask & (rate < 0) & ~np.isin(rate, (-1, -2))
    if bad.any():
        return (
            f"RATE < 0 on a dose: RATE must be 0 (bolus), > 0 (infusion), -1 (rate modelled "
            f"by R<n>) or -2 (duration modelled by D<n>); got {sorted(set(rate[bad].tolist()))}."
        )
    for code, prefix, what in ((-1, "R", "rate"), (-2, "D", "duration")):
        need = sorted({int(c) for c in cmt[mask & (rate == code)]})
        missing = [f"{prefix}{c}" for c in need if f"{prefix}{c}" not in params]
        if missing:
            cmts = [int(m[len(prefix) :]) for m in missing]
            return (
                f"RATE < 0 (modelled infusion): doses with RATE={code} into CMT {cmts} need the "
                f"modelled infusion {what} parameter{'s' if len(missing) > 1 else ''} "
                f"{missing} (NONMEM RATE={code}: the infusion {what} is {prefix}<n> of the "
                f"dose's compartment n); return {', '.join(missing)} from the model's "
                f"parameters."
            )
    return None


def _ss_fields(doses: Any) -> tuple[Any, Any]:
    """``(ss, ii)`` of ``doses``, or ``(None, None)`` when it carries no steady-state fields."""
    ss = getattr(doses, "ss", None)
    ii = getattr(doses, "ii", None)
    if ss is None or ii is None:
        return None, None
    return ss, ii


def _reset_times(d_time: Any, mask: Any, ss: Any, ii: Any) -> Any:
    """Time from which each dose stops contributing (``inf``: never), shape (n_dose,).

    A real SS=1 dose ``e`` (with ``ii > 0``) resets the system at its record time: dose
    ``d`` is cancelled at ``t_e`` when ``e`` comes after it, i.e. ``t_e > t_d``, or
    ``t_e == t_d`` and ``e > d`` (record order = index order).
    """
    n_dose = d_time.shape[0]
    idx = jnp.arange(n_dose)
    reset = mask & (ss == 1) & (ii > 0)
    later = (d_time[None, :] > d_time[:, None]) | (
        (d_time[None, :] == d_time[:, None]) & (idx[None, :] > idx[:, None])
    )  # later[d, e]: e comes after d
    kill = jnp.where(reset[None, :] & later, d_time[None, :], jnp.inf)
    return jnp.min(kill, axis=1, initial=jnp.inf)[None, :]


def _ss_past(lam, u, on, is_inf, dose_amt, duration, inf_coef, ii):
    """Contribution of the implied doses ``k >= 1`` of steady-state doses, (n_time, n_dose, n_eig).

    With ``q = exp(lam ii)``, ``D`` the infusion duration (0 for a bolus) and ``m`` the number
    of implied infusions still running at ``u`` (``max(0, ceil((D - u)/ii) - 1)``):
    ``c exp(lam (u + (m+1) ii - D)) / (1 - q)`` for the finished ones, ``c`` being the
    weight left by one (``F AMT`` for a bolus, ``R expm1(lam D)/lam`` for an infusion), plus
    ``(R/lam) (exp(lam (u + ii)) (1 - q^m)/(1 - q) - m)`` for the running ones. Entries
    with ``on`` False are 0; every exponential has a non-positive argument.
    """
    inf_on = on & is_inf[None, :]
    m = jnp.where(inf_on, jnp.maximum(jnp.ceil((duration[None, :] - u) / ii[None, :]) - 1, 0), 0)
    lam_ii = lam * ii[:, None]  # (n_dose, n_eig), < 0
    one_minus_q = -jnp.expm1(lam_ii)
    weight = jnp.where(is_inf, 0.0, dose_amt)[:, None] + inf_coef * jnp.expm1(
        lam * duration[:, None]
    )
    since_end = jnp.where(on, u + (m + 1) * ii[None, :] - duration[None, :], 0.0)  # >= 0
    finished = weight * jnp.exp(lam * since_end[..., None]) / one_minus_q
    running = inf_coef * (
        jnp.exp(lam * (u + ii[None, :])[..., None])
        * jnp.expm1(lam * (m * ii[None, :])[..., None])
        / jnp.expm1(lam_ii)
        - m[..., None]
    )
    return jnp.where(on[..., None], finished + running, 0.0)


class Central1(_LinearPK):
    r"""One-compartment model with intravenous input (bolus or zero-order infusion).

    The amount :math:`C` in the central compartment follows

    .. math::

        \frac{dC}{dt} = -\frac{CL}{V}\, C + \mathrm{input}_C(t).

    After a bolus :math:`D` at :math:`t = 0`, :math:`C(t) = D\, e^{-k t}` with
    :math:`k = CL/V`; an infusion at rate :math:`R` gives
    :math:`C(t) = \frac{R}{k}(1 - e^{-k t})` while it runs.

    Attributes
    ----------
    compartments : tuple of str
        ``("Central",)``: CMT 1 is Central.
    default_dose_cmt : int
        1: doses with CMT 0 go to Central.
    required : tuple of str
        ``("CL", "V")``.

    Notes
    -----
    Individual parameters (keys of ``params`` in :meth:`amounts`):

    ``CL`` : volume/time
        Clearance, > 0.
    ``V`` : volume
        Central volume, > 0.
    ``F1`` : dimensionless, optional
        Bioavailability of doses into CMT 1 (default 1).
    ``ALAG1`` : time, optional
        Lag time of doses into CMT 1 (default 0).
    ``R1``, ``D1`` : amount/time, time, optional
        Modelled infusion rate / duration of doses into CMT 1 with RATE -1 / -2
        (no default; required by such doses).

    :meth:`amounts` returns shape ``(n_time, 1)``: the amount (dose units); the
    concentration is ``amounts[:, 0] / V``.

    Edge cases: a bolus is included at its own (lagged) time. An infusion runs at ``RATE``
    from ``t_d + ALAG1`` for ``F1 * AMT / RATE`` (NONMEM: bioavailability changes the
    duration, not the rate). Times before every dose give 0.
    """

    compartments = ("Central",)
    default_dose_cmt = 1
    required = ("CL", "V")

    def _system(self, p):
        k = p["CL"] / p["V"]
        return jnp.reshape(-k, (1, 1)), jnp.reshape(-k, (1,))

    def _projectors(self, K, lam):
        return jnp.ones((1, 1, 1), lam.dtype)


class Depots1Central1(_LinearPK):
    r"""One-compartment model with first-order absorption from one depot.

    The amounts :math:`D` (depot) and :math:`C` (central) follow

    .. math::

        \frac{dD}{dt} &= -K_A D + \mathrm{input}_D(t) \\
        \frac{dC}{dt} &= K_A D - \frac{CL}{V}\, C + \mathrm{input}_C(t)

    After an oral dose :math:`D_0` at :math:`t = 0` (Bateman function, :math:`k = CL/V`):
    :math:`C(t) = \frac{D_0 K_A}{K_A - k}\left(e^{-k t} - e^{-K_A t}\right)`.

    Attributes
    ----------
    compartments : tuple of str
        ``("Depot", "Central")``: CMT 1 is the depot, CMT 2 the central compartment.
    default_dose_cmt : int
        1: doses with CMT 0 go to the depot. IV doses use CMT 2.
    required : tuple of str
        ``("KA", "CL", "V")``.

    Notes
    -----
    Individual parameters (keys of ``params`` in :meth:`amounts`):

    ``KA`` : 1/time
        First-order absorption rate constant, > 0.
    ``CL`` : volume/time
        Clearance, > 0.
    ``V`` : volume
        Central volume, > 0.
    ``F1``, ``F2`` : dimensionless, optional
        Bioavailability of doses into CMT 1, 2 (default 1).
    ``ALAG1``, ``ALAG2`` : time, optional
        Lag time of doses into CMT 1, 2 (default 0).
    ``R1``, ``R2``, ``D1``, ``D2`` : amount/time, time, optional
        Modelled infusion rate / duration of doses into CMT 1, 2 with RATE -1 / -2
        (no default; required by such doses).

    :meth:`amounts` returns shape ``(n_time, 2)``; the concentration is
    ``amounts[:, 1] / V``.

    Edge cases: ``KA == CL/V`` makes Sylvester's formula singular. Within
    ``|KA - k| < 6e-6 k`` (float64; ``eps**(1/3)`` in general) ``KA`` is replaced by
    ``KA + 1.2e-5 k`` for depot doses, so values stay finite with a relative error of about
    ``1.2e-5 |1 - k t / 2|`` (5e-5 at ``k t = 10``). Outside the band the rounding error of
    the formula is about ``eps / g`` for values and ``eps / g**2`` for gradients at a
    relative gap ``g = |KA - k| / k``: ~1e-10 and ~1e-5 at the band's edge, negligible
    beyond ``g = 1e-3``. Doses into Central do not involve ``KA`` and are unaffected. A
    zero-order infusion into the depot (``RATE > 0``, CMT 1) is allowed.
    """

    compartments = ("Depot", "Central")
    default_dose_cmt = 1
    required = ("KA", "CL", "V")

    def _system(self, p):
        k = p["CL"] / p["V"]
        ka = _separate(p["KA"], k)
        zero = jnp.zeros_like(k)
        K = jnp.stack([jnp.stack([-ka, zero]), jnp.stack([ka, -k])])
        return K, jnp.stack([-ka, -k])

    def _projectors(self, K, lam):
        return _depot_projectors(K, lam)


class Central1Periph1(_LinearPK):
    r"""Two-compartment model with intravenous input (bolus or zero-order infusion).

    With :math:`k_{10} = CL/V`, :math:`k_{12} = Q/V`, :math:`k_{21} = Q/V_2`, the amounts
    :math:`C` (central) and :math:`P` (peripheral) follow

    .. math::

        \frac{dC}{dt} &= -(k_{10} + k_{12})\, C + k_{21} P + \mathrm{input}_C(t) \\
        \frac{dP}{dt} &= k_{12} C - k_{21} P + \mathrm{input}_P(t)

    After a bolus :math:`D` at :math:`t = 0`,
    :math:`C(t) = D\,\frac{(\alpha - k_{21}) e^{-\alpha t} + (k_{21} - \beta) e^{-\beta t}}
    {\alpha - \beta}`, where :math:`\alpha > \beta > 0` are the roots of
    :math:`x^2 - (k_{10} + k_{12} + k_{21}) x + k_{10} k_{21}` (:math:`\beta` is computed
    as :math:`k_{10} k_{21} / \alpha`, free of cancellation).

    Attributes
    ----------
    compartments : tuple of str
        ``("Central", "Peripheral")``: CMT 1 is Central, CMT 2 Peripheral.
    default_dose_cmt : int
        1: doses with CMT 0 go to Central.
    required : tuple of str
        ``("CL", "V", "Q", "V2")``.

    Notes
    -----
    Individual parameters (keys of ``params`` in :meth:`amounts`):

    ``CL`` : volume/time
        Clearance, > 0.
    ``V`` : volume
        Central volume, > 0.
    ``Q`` : volume/time
        Intercompartmental clearance, > 0.
    ``V2`` : volume
        Peripheral volume, > 0.
    ``F1``, ``F2`` : dimensionless, optional
        Bioavailability of doses into CMT 1, 2 (default 1).
    ``ALAG1``, ``ALAG2`` : time, optional
        Lag time of doses into CMT 1, 2 (default 0).
    ``R1``, ``R2``, ``D1``, ``D2`` : amount/time, time, optional
        Modelled infusion rate / duration of doses into CMT 1, 2 with RATE -1 / -2
        (no default; required by such doses).

    :meth:`amounts` returns shape ``(n_time, 2)``; the concentration is
    ``amounts[:, 0] / V``.

    Edge cases: ``Q = 0`` is not supported (use :class:`Central1`); accuracy degrades when
    :math:`\alpha \approx \beta`, which needs both a tiny ``Q`` and
    :math:`k_{21} \approx k_{10} + k_{12}`.
    """

    compartments = ("Central", "Peripheral")
    default_dose_cmt = 1
    required = ("CL", "V", "Q", "V2")

    def _system(self, p):
        k10, k12, k21, alpha, beta = _two_cpt_rates(p["CL"], p["V"], p["Q"], p["V2"])
        K = jnp.stack([jnp.stack([-(k10 + k12), k21]), jnp.stack([k12, -k21])])
        return K, jnp.stack([-alpha, -beta])


class Depots1Central1Periph1(_LinearPK):
    r"""Two-compartment model with first-order absorption from one depot.

    With :math:`k_{10} = CL/V`, :math:`k_{12} = Q/V`, :math:`k_{21} = Q/V_2`, the amounts
    :math:`D` (depot), :math:`C` (central) and :math:`P` (peripheral) follow

    .. math::

        \frac{dD}{dt} &= -K_A D + \mathrm{input}_D(t) \\
        \frac{dC}{dt} &= K_A D - (k_{10} + k_{12})\, C + k_{21} P + \mathrm{input}_C(t) \\
        \frac{dP}{dt} &= k_{12} C - k_{21} P + \mathrm{input}_P(t)

    After an oral dose :math:`D_0` at :math:`t = 0` (tri-exponential),
    :math:`C(t) = D_0 K_A \sum_{x \in \{K_A, \alpha, \beta\}}
    \frac{(k_{21} - x)\, e^{-x t}}{\prod_{y \ne x} (y - x)}`, with :math:`\alpha, \beta` as
    in :class:`Central1Periph1`.

    Attributes
    ----------
    compartments : tuple of str
        ``("Depot", "Central", "Peripheral")``: CMT 1 depot, CMT 2 Central, CMT 3
        Peripheral.
    default_dose_cmt : int
        1: doses with CMT 0 go to the depot. IV doses use CMT 2.
    required : tuple of str
        ``("KA", "CL", "V", "Q", "V2")``.

    Notes
    -----
    Individual parameters (keys of ``params`` in :meth:`amounts`):

    ``KA`` : 1/time
        First-order absorption rate constant, > 0.
    ``CL`` : volume/time
        Clearance, > 0.
    ``V`` : volume
        Central volume, > 0.
    ``Q`` : volume/time
        Intercompartmental clearance, > 0.
    ``V2`` : volume
        Peripheral volume, > 0.
    ``F1``, ``F2``, ``F3`` : dimensionless, optional
        Bioavailability of doses into CMT 1, 2, 3 (default 1).
    ``ALAG1``, ``ALAG2``, ``ALAG3`` : time, optional
        Lag time of doses into CMT 1, 2, 3 (default 0).
    ``R1``, ``R2``, ``R3``, ``D1``, ``D2``, ``D3`` : amount/time, time, optional
        Modelled infusion rate / duration of doses into CMT 1, 2, 3 with RATE -1 / -2
        (no default; required by such doses).

    :meth:`amounts` returns shape ``(n_time, 3)``; the concentration is
    ``amounts[:, 1] / V``.

    Edge cases: ``KA`` equal to :math:`\alpha` or :math:`\beta` makes Sylvester's formula
    singular for depot doses; as in :class:`Depots1Central1`, ``KA`` is shifted by a
    relative ``1.2e-5`` inside a relative band of ``6e-6`` around them (values then
    accurate to ~1e-5 relative). Doses into Central or Peripheral are unaffected. ``Q = 0``
    is not supported (see :class:`Central1Periph1`).
    """

    compartments = ("Depot", "Central", "Peripheral")
    default_dose_cmt = 1
    required = ("KA", "CL", "V", "Q", "V2")

    def _system(self, p):
        k10, k12, k21, alpha, beta = _two_cpt_rates(p["CL"], p["V"], p["Q"], p["V2"])
        ka = _separate(_separate(p["KA"], alpha), beta)
        zero = jnp.zeros_like(k10)
        K = jnp.stack(
            [
                jnp.stack([-ka, zero, zero]),
                jnp.stack([ka, -(k10 + k12), k21]),
                jnp.stack([zero, k12, -k21]),
            ]
        )
        return K, jnp.stack([-ka, -alpha, -beta])

    def _projectors(self, K, lam):
        return _depot_projectors(K, lam)


class Central1Periph2(_LinearPK):
    r"""Three-compartment model with intravenous input (bolus or zero-order infusion).

    With :math:`k_{10} = CL/V`, :math:`k_{12} = Q/V`, :math:`k_{21} = Q/V_2`,
    :math:`k_{13} = Q_3/V`, :math:`k_{31} = Q_3/V_3`, the amounts :math:`C` (central),
    :math:`P_1` and :math:`P_2` (peripherals) follow

    .. math::

        \frac{dC}{dt} &= -(k_{10} + k_{12} + k_{13})\, C + k_{21} P_1 + k_{31} P_2
            + \mathrm{input}_C(t) \\
        \frac{dP_1}{dt} &= k_{12} C - k_{21} P_1 + \mathrm{input}_{P_1}(t) \\
        \frac{dP_2}{dt} &= k_{13} C - k_{31} P_2 + \mathrm{input}_{P_2}(t)

    After a bolus :math:`D` at :math:`t = 0` (tri-exponential),
    :math:`C(t) = D \sum_{x \in \{\alpha, \beta, \gamma\}}
    \frac{(k_{21} - x)(k_{31} - x)\, e^{-x t}}{\prod_{y \ne x} (y - x)}`, where
    :math:`\alpha > \beta > \gamma > 0` are the roots of :math:`x^3 - a_2 x^2 + a_1 x - a_0`
    with :math:`a_2 = k_{10} + k_{12} + k_{13} + k_{21} + k_{31}`,
    :math:`a_1 = k_{10} k_{21} + k_{10} k_{31} + k_{12} k_{31} + k_{13} k_{21} + k_{21} k_{31}`
    and :math:`a_0 = k_{10} k_{21} k_{31}`: :math:`\alpha` from the trigonometric solution
    of the cubic, :math:`\beta` and :math:`\gamma` from the deflated quadratic (so the
    terminal rate :math:`\gamma` is free of cancellation).

    Attributes
    ----------
    compartments : tuple of str
        ``("Central", "Peripheral1", "Peripheral2")``: CMT 1 Central, CMT 2 Peripheral1,
        CMT 3 Peripheral2.
    default_dose_cmt : int
        1: doses with CMT 0 go to Central.
    required : tuple of str
        ``("CL", "V", "Q", "V2", "Q3", "V3")``.

    Notes
    -----
    Individual parameters (keys of ``params`` in :meth:`amounts`). The names follow NONMEM
    ADVAN11 TRANS4 (CL, V1, Q2, V2, Q3, V3) with ``V`` for V1 and ``Q`` for Q2, as in
    :class:`Central1Periph1`:

    ``CL`` : volume/time
        Clearance, > 0.
    ``V`` : volume
        Central volume (NONMEM V1), > 0.
    ``Q`` : volume/time
        Intercompartmental clearance Central <-> Peripheral1 (NONMEM Q2), > 0.
    ``V2`` : volume
        Volume of Peripheral1, > 0.
    ``Q3`` : volume/time
        Intercompartmental clearance Central <-> Peripheral2, > 0.
    ``V3`` : volume
        Volume of Peripheral2, > 0.
    ``F1``, ``F2``, ``F3`` : dimensionless, optional
        Bioavailability of doses into CMT 1, 2, 3 (default 1).
    ``ALAG1``, ``ALAG2``, ``ALAG3`` : time, optional
        Lag time of doses into CMT 1, 2, 3 (default 0).
    ``R1``, ``R2``, ``R3``, ``D1``, ``D2``, ``D3`` : amount/time, time, optional
        Modelled infusion rate / duration of doses into CMT 1, 2, 3 with RATE -1 / -2
        (no default; required by such doses).

    :meth:`amounts` returns shape ``(n_time, 3)``; the concentration is
    ``amounts[:, 0] / V``.

    Edge cases: ``Q = 0`` or ``Q3 = 0`` is not supported (use :class:`Central1Periph1`);
    accuracy degrades when two of :math:`\alpha, \beta, \gamma` nearly coincide (e.g. the
    two peripherals exchanging at nearly equal rates ``Q/V2 == Q3/V3`` with a tiny ``Q``),
    where Sylvester's formula and the cubic's roots are ill-conditioned; exactly equal
    rates give non-finite values.
    """

    compartments = ("Central", "Peripheral1", "Peripheral2")
    default_dose_cmt = 1
    required = ("CL", "V", "Q", "V2", "Q3", "V3")

    def _system(self, p):
        k10, k12, k21, k13, k31, alpha, beta, gamma = _three_cpt_rates(
            p["CL"], p["V"], p["Q"], p["V2"], p["Q3"], p["V3"]
        )
        K = _three_cpt_matrix(k10, k12, k21, k13, k31)
        return K, jnp.stack([-alpha, -beta, -gamma])


class Depots1Central1Periph2(_LinearPK):
    r"""Three-compartment model with first-order absorption from one depot.

    With the micro-constants of :class:`Central1Periph2`, the amounts :math:`D` (depot),
    :math:`C` (central), :math:`P_1` and :math:`P_2` (peripherals) follow

    .. math::

        \frac{dD}{dt} &= -K_A D + \mathrm{input}_D(t) \\
        \frac{dC}{dt} &= K_A D - (k_{10} + k_{12} + k_{13})\, C + k_{21} P_1 + k_{31} P_2
            + \mathrm{input}_C(t) \\
        \frac{dP_1}{dt} &= k_{12} C - k_{21} P_1 + \mathrm{input}_{P_1}(t) \\
        \frac{dP_2}{dt} &= k_{13} C - k_{31} P_2 + \mathrm{input}_{P_2}(t)

    After an oral dose :math:`D_0` at :math:`t = 0` (four exponentials),
    :math:`C(t) = D_0 K_A \sum_{x \in \{K_A, \alpha, \beta, \gamma\}}
    \frac{(k_{21} - x)(k_{31} - x)\, e^{-x t}}{\prod_{y \ne x} (y - x)}`, with
    :math:`\alpha, \beta, \gamma` as in :class:`Central1Periph2`.

    Attributes
    ----------
    compartments : tuple of str
        ``("Depot", "Central", "Peripheral1", "Peripheral2")``: CMT 1 depot, CMT 2 Central,
        CMT 3 Peripheral1, CMT 4 Peripheral2.
    default_dose_cmt : int
        1: doses with CMT 0 go to the depot. IV doses use CMT 2.
    required : tuple of str
        ``("KA", "CL", "V", "Q", "V2", "Q3", "V3")``.

    Notes
    -----
    Individual parameters (keys of ``params`` in :meth:`amounts`; NONMEM ADVAN12 TRANS4
    names KA, CL, V2, Q3, V3, Q4, V4 map to KA, CL, V, Q, V2, Q3, V3 here, the volumes and
    clearances numbered by peripheral rather than by CMT, as in :class:`Central1Periph2`):

    ``KA`` : 1/time
        First-order absorption rate constant, > 0.
    ``CL`` : volume/time
        Clearance, > 0.
    ``V`` : volume
        Central volume, > 0.
    ``Q``, ``V2`` : volume/time, volume
        Intercompartmental clearance and volume of Peripheral1, > 0.
    ``Q3``, ``V3`` : volume/time, volume
        Intercompartmental clearance and volume of Peripheral2, > 0.
    ``F1`` ... ``F4`` : dimensionless, optional
        Bioavailability of doses into CMT 1 ... 4 (default 1).
    ``ALAG1`` ... ``ALAG4`` : time, optional
        Lag time of doses into CMT 1 ... 4 (default 0).
    ``R1`` ... ``R4``, ``D1`` ... ``D4`` : amount/time, time, optional
        Modelled infusion rate / duration of doses into CMT 1 ... 4 with RATE -1 / -2
        (no default; required by such doses).

    :meth:`amounts` returns shape ``(n_time, 4)``; the concentration is
    ``amounts[:, 1] / V``.

    Edge cases: ``KA`` equal to :math:`\alpha`, :math:`\beta` or :math:`\gamma` makes
    Sylvester's formula singular for depot doses; as in :class:`Depots1Central1`, ``KA`` is
    shifted by a relative ``1.2e-5`` inside a relative band of ``6e-6`` around them (values
    then accurate to ~1e-5 relative). Doses into Central or a peripheral are unaffected.
    See :class:`Central1Periph2` for the disposition rates.
    """

    compartments = ("Depot", "Central", "Peripheral1", "Peripheral2")
    default_dose_cmt = 1
    required = ("KA", "CL", "V", "Q", "V2", "Q3", "V3")

    def _system(self, p):
        k10, k12, k21, k13, k31, alpha, beta, gamma = _three_cpt_rates(
            p["CL"], p["V"], p["Q"], p["V2"], p["Q3"], p["V3"]
        )
        ka = _separate(_separate(_separate(p["KA"], alpha), beta), gamma)
        zero = jnp.zeros_like(k10)
        disp = _three_cpt_matrix(k10, k12, k21, k13, k31)
        K = jnp.concatenate(
            [
                jnp.stack([-ka, zero, zero, zero])[None, :],
                jnp.concatenate([jnp.stack([ka, zero, zero])[:, None], disp], axis=1),
            ]
        )
        return K, jnp.stack([-ka, -alpha, -beta, -gamma])

    def _projectors(self, K, lam):
        return _depot_projectors(K, lam)
