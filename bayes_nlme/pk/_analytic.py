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

import jax.numpy as jnp
import numpy as np

from ._base import AbstractPKModel

__all__ = ["Central1", "Central1Periph1", "Depots1Central1", "Depots1Central1Periph1"]


def _sylvester(K: Any, lam: Any) -> Any:
    """Spectral projectors ``Z_i`` of ``K`` (distinct eigenvalues ``lam``), shape (n, n, n).

    ``Z[i] = prod_{j != i} (K - lam_j I) / (lam_i - lam_j)``, written with broadcasting and
    reductions only (no ``dot``): for these 2x2 / 3x3 matrices that keeps the compiled
    program, and its gradient, small.
    """
    n = lam.shape[0]
    eye = jnp.eye(n, dtype=lam.dtype)
    shifted = K[None] - lam[:, None, None] * eye  # shifted[j] = K - lam_j I
    others = [[j for j in range(n) if j != i] for i in range(n)]  # static, n <= 3
    num = shifted[np.array([o[0] for o in others])]  # (n, n, n)
    den = lam - lam[np.array([o[0] for o in others])]
    for col in range(1, n - 1):
        idx = np.array([o[col] for o in others])
        num = jnp.sum(num[:, :, :, None] * shifted[idx][:, None, :, :], axis=2)
        den = den * (lam - lam[idx])
    return num / den[:, None, None]


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
        """
        p = self._read_params(params)
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
    """One-compartment model with intravenous input (bolus or zero-order infusion).

    Amount ``C`` in the central compartment:

    .. math::

        \\frac{dC}{dt} = -\\frac{CL}{V} C + \\text{input}(t)

    Closed form after a bolus ``D`` at ``t = 0``: ``C(t) = D exp(-CL/V t)``.

    Compartments (NONMEM CMT order): ``1 = Central``. Doses with CMT 0 go to CMT 1.

    Parameters (``params`` keys)
    ----------------------------
    CL : clearance (volume/time), > 0.
    V : central volume (volume), > 0.
    F1, ALAG1 : optional bioavailability (default 1) and lag time (time, default 0).

    Returns
    -------
    ``amounts(params, doses, times)`` has shape (n_time, 1): amounts (dose units); the
    concentration is ``amounts[:, 0] / V``.

    Notes
    -----
    A bolus is included at its own (lagged) time. An infusion runs at ``RATE`` from
    ``t_d + ALAG1`` for ``F1 * AMT / RATE`` (bioavailability changes the duration).
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
    """One-compartment model with first-order absorption from one depot.

    Amounts ``D`` (depot) and ``C`` (central):

    .. math::

        \\frac{dD}{dt} = -K_A D + \\text{input}_D(t), \\qquad
        \\frac{dC}{dt} = K_A D - \\frac{CL}{V} C + \\text{input}_C(t)

    Closed form after an oral dose ``D_0`` at ``t = 0`` (Bateman):
    ``C(t) = D_0 K_A / (K_A - k) (exp(-k t) - exp(-K_A t))`` with ``k = CL/V``.

    Compartments (NONMEM CMT order): ``1 = Depot``, ``2 = Central``. Doses with CMT 0 go to
    the depot (CMT 1); IV doses use CMT 2.

    Parameters (``params`` keys)
    ----------------------------
    KA : absorption rate constant (1/time), > 0.
    CL : clearance (volume/time), > 0.
    V : central volume (volume), > 0.
    F1, F2, ALAG1, ALAG2 : optional bioavailability (default 1) and lag time (time,
        default 0) of doses into the depot (1) and the central compartment (2).

    Returns
    -------
    ``amounts(params, doses, times)`` has shape (n_time, 2); the concentration is
    ``amounts[:, 1] / V``.

    Notes
    -----
    ``KA == CL/V`` (no flip-flop separation) makes Sylvester's formula singular. When
    ``|KA - CL/V| < 6e-6 * CL/V`` (float64), ``KA`` is shifted by ``1.2e-5 * CL/V``: the result
    is then accurate to about 1e-5 relative; elsewhere values are accurate to about 1e-10
    relative and gradients to about 1e-5 relative even close to the singularity.
    A zero-order infusion into the depot (``RATE > 0``, CMT 1) is allowed.
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


class Central1Periph1(_LinearPK):
    """Two-compartment model with intravenous input (bolus or zero-order infusion).

    Amounts ``C`` (central) and ``P`` (peripheral), with ``k10 = CL/V``, ``k12 = Q/V``,
    ``k21 = Q/V2``:

    .. math::

        \\frac{dC}{dt} = -(k_{10} + k_{12}) C + k_{21} P + \\text{input}_C(t), \\qquad
        \\frac{dP}{dt} = k_{12} C - k_{21} P + \\text{input}_P(t)

    Closed form after a bolus ``D`` at ``t = 0``:
    ``C(t) = D [(alpha - k21) exp(-alpha t) + (k21 - beta) exp(-beta t)] / (alpha - beta)``,
    where ``alpha > beta`` are the roots of ``x**2 - (k10 + k12 + k21) x + k10 k21``
    (``beta`` computed as ``k10 k21 / alpha`` for stability).

    Compartments (NONMEM CMT order): ``1 = Central``, ``2 = Peripheral``. Doses with CMT 0
    go to the central compartment.

    Parameters (``params`` keys)
    ----------------------------
    CL : clearance (volume/time), > 0.
    V : central volume (volume), > 0.
    Q : intercompartmental clearance (volume/time), > 0.
    V2 : peripheral volume (volume), > 0.
    F1, F2, ALAG1, ALAG2 : optional bioavailability and lag time per compartment.

    Returns
    -------
    ``amounts(params, doses, times)`` has shape (n_time, 2); the concentration is
    ``amounts[:, 0] / V``.

    Notes
    -----
    ``Q = 0`` is not supported (use :class:`Central1`): ``alpha - beta`` then may vanish and
    Sylvester's formula is singular. Accuracy degrades when ``alpha`` and ``beta`` nearly
    coincide, which requires both a tiny ``Q`` and ``k21 ~= k10 + k12``.
    """

    compartments = ("Central", "Peripheral")
    default_dose_cmt = 1
    required = ("CL", "V", "Q", "V2")

    def _system(self, p):
        k10, k12, k21, alpha, beta = _two_cpt_rates(p["CL"], p["V"], p["Q"], p["V2"])
        K = jnp.stack([jnp.stack([-(k10 + k12), k21]), jnp.stack([k12, -k21])])
        return K, jnp.stack([-alpha, -beta])


class Depots1Central1Periph1(_LinearPK):
    """Two-compartment model with first-order absorption from one depot.

    Amounts ``D`` (depot), ``C`` (central), ``P`` (peripheral), with ``k10 = CL/V``,
    ``k12 = Q/V``, ``k21 = Q/V2``:

    .. math::

        \\frac{dD}{dt} &= -K_A D + \\text{input}_D(t) \\\\
        \\frac{dC}{dt} &= K_A D - (k_{10} + k_{12}) C + k_{21} P + \\text{input}_C(t) \\\\
        \\frac{dP}{dt} &= k_{12} C - k_{21} P + \\text{input}_P(t)

    Closed form after an oral dose ``D_0`` at ``t = 0`` (tri-exponential):
    ``C(t) = D_0 K_A sum_{x in (K_A, alpha, beta)} (k21 - x) exp(-x t) / prod_{y != x}(y - x)``.

    Compartments (NONMEM CMT order): ``1 = Depot``, ``2 = Central``, ``3 = Peripheral``.
    Doses with CMT 0 go to the depot (CMT 1); IV doses use CMT 2.

    Parameters (``params`` keys)
    ----------------------------
    KA : absorption rate constant (1/time), > 0.
    CL : clearance (volume/time), > 0.
    V : central volume (volume), > 0.
    Q : intercompartmental clearance (volume/time), > 0.
    V2 : peripheral volume (volume), > 0.
    F1, F2, F3, ALAG1, ALAG2, ALAG3 : optional bioavailability and lag time per compartment.

    Returns
    -------
    ``amounts(params, doses, times)`` has shape (n_time, 3); the concentration is
    ``amounts[:, 1] / V``.

    Notes
    -----
    ``KA`` equal to ``alpha`` or ``beta`` makes Sylvester's formula singular; as in
    :class:`Depots1Central1`, ``KA`` is shifted by a relative ``1.2e-5`` inside a relative band
    of ``6e-6`` around them (results then accurate to about 1e-5 relative). ``Q = 0`` is not
    supported (see :class:`Central1Periph1`).
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
