"""Closed-form linear compartment models (1- and 2-compartment, IV and first-order absorption).

All four models are linear time-invariant systems ``dA/dt = K A + input(t)``. They share one
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

__all__ = ["Central1", "Central1Periph1", "Depots1Central1", "Depots1Central1Periph1"]


def _sylvester(K: Any, lam: Any, cols: slice = slice(None)) -> Any:
    """Columns ``cols`` of the spectral projectors ``Z_i`` of ``K`` (distinct eigenvalues).

    ``Z[i] = prod_{j != i} (K - lam_j I) / (lam_i - lam_j)``; returns ``Z[:, :, cols]``,
    shape (n_eig, n, n_cols). Written with broadcasting and reductions only (no ``dot``):
    for these 2x2 / 3x3 matrices that keeps the compiled program, and its gradient, small.
    """
    n = lam.shape[0]
    eye = jnp.eye(n, dtype=lam.dtype)
    shifted = K[None] - lam[:, None, None] * eye  # shifted[j] = K - lam_j I
    others = [[j for j in range(n) if j != i] for i in range(n)]  # static, n <= 3

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


class _LinearPK(AbstractPKModel):
    """Shared engine: superposition of closed-form responses of a linear system.

    Subclasses implement :meth:`_system`, returning the rate matrix ``K`` (shape
    (n_cmt, n_cmt)) and its eigenvalues (shape (n_cmt,), all negative and distinct).
    """

    compartments: ClassVar[tuple[str, ...]]
    default_dose_cmt: ClassVar[int] = 1
    required: ClassVar[tuple[str, ...]]

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

    def _check_doses(self, doses: Any) -> None:
        """Eager sanity checks of CMT and RATE when they are concrete (skipped when traced)."""
        try:
            cmt = np.asarray(doses.cmt)
            rate = np.asarray(doses.rate)
            mask = np.asarray(doses.mask, bool)
        except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
            return
        n = len(self.compartments)
        bad = mask & ((cmt < 0) | (cmt > n))
        if bad.any():
            raise ValueError(
                f"{type(self).__name__} has compartments {list(self.compartments)} "
                f"(CMT 1..{n}, 0 = default {self.default_dose_cmt}); got dose CMT "
                f"{sorted(set(cmt[bad].tolist()))}."
            )
        if (mask & (rate < 0)).any():
            raise ValueError(
                "RATE < 0 (modelled infusion rate/duration, NONMEM RATE=-1/-2) is not "
                "supported by the analytic models; give RATE > 0 or 0."
            )

    def amounts(self, params: Mapping[str, Any], doses: Any, times: Any) -> Any:
        """Amount in every compartment at ``times`` for one subject.

        Parameters
        ----------
        params : mapping of str to scalar
            The names in ``required``, plus optional ``F<n>`` (default 1) and ``ALAG<n>``
            (default 0) for the 1-based CMT ``n``. Unknown names are ignored.
        doses : Doses
            One subject's dose events (fields of shape (n_dose,)); ``cmt`` 0 means
            ``default_dose_cmt``; ``rate > 0`` is a zero-order infusion, otherwise a bolus;
            events with ``mask`` False contribute nothing.
        times : array, shape (n_time,)

        Returns
        -------
        array, shape (n_time, n_cmt)
            Amounts; column ``k`` is ``compartments[k]``.

        Raises
        ------
        ValueError
            A required parameter is missing; or, when the dose arrays are concrete (not
            traced), a real dose has a CMT outside ``0..n_cmt`` or a negative RATE.
        """
        p = self._read_params(params)
        self._check_doses(doses)
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

        is_inf = rate > 0
        r = jnp.where(is_inf, rate, 1.0)  # safe denominator
        dose_amt = f_d * amt
        duration = dose_amt / r

        # (n_time, n_dose) quantities
        u = t[:, None] - (d_time + lag_d)[None, :]  # time since the (lagged) dose
        active = mask[None, :] & (u >= 0)
        u = jnp.where(active, u, 0.0)  # clamp first: no exp of a positive argument anywhere
        tau = jnp.where(active & is_inf[None, :], jnp.minimum(u, duration[None, :]), 0.0)
        bolus = jnp.where(active & ~is_inf[None, :], dose_amt[None, :], 0.0)
        # (n_time, n_dose, n_eig): a bolus has tau = 0 (expm1 term vanishes), an infusion
        # has bolus = 0, an inactive event has both 0
        inf_coef = jnp.where(is_inf, r, 0.0)[:, None] / lam  # (n_dose, n_eig)
        lam_tau = lam * tau[..., None]
        g = jnp.exp(lam * u[..., None] - lam_tau) * (
            bolus[..., None] + inf_coef * jnp.expm1(lam_tau)
        )
        return jnp.einsum("tdi,dic->tc", g, z_cols)


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
