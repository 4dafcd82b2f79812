"""Covariate-model helpers for ``pre(p, eta, cov)``: power (allometric), linear, exponential
and categorical effects, as in NONMEM/PsN ``scm`` and Monolix covariate models.

Each function takes ONE subject's scalars (they also work element-wise on arrays) and returns
a multiplicative factor on a typical value, e.g.
``CL = p.tvcl * power(cov.WT, 70, 0.75) * categorical(cov.SEX, {1: p.sex_cl}) * exp(eta.cl)``.
All are written with ``jax.numpy`` only (no Python branching on values), so they run inside
``jax.jit`` and ``jax.vmap`` and are differentiable in every THETA.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from .._errors import ModelError

__all__ = ["categorical", "exponential", "linear", "power"]


def _check_ref(ref: Any, fn: str, positive: bool) -> None:
    """Eager check of a reference value given as a plain number (the usual case)."""
    if isinstance(ref, bool):
        raise ModelError(f"{fn}(value, ref, ...): ref must be a number; got {ref!r}.")
    if isinstance(ref, numbers.Real | np.ndarray | np.generic):
        r = np.asarray(ref, dtype=float)
        if not np.all(np.isfinite(r)):
            raise ModelError(f"{fn}(value, ref, ...): ref must be finite; got {ref!r}.")
        if positive and not np.all(r > 0):
            raise ModelError(
                f"{fn}(value, ref, exponent): ref must be > 0 (a typical covariate value, e.g. "
                f"70 kg for weight); got {ref!r}."
            )


def power(value, ref, exponent):
    r"""Power covariate model: :math:`(\text{value}/\text{ref})^{\text{exponent}}`.

    The allometric model of body size (e.g. CL with exponent 0.75, V with 1; Anderson &
    Holford 2008), or any power model of a positive covariate (NONMEM
    ``(WT/70)**THETA(n)``; Monolix and nlmixr2 write it as a linear effect of
    ``log(value/ref)`` on the log parameter, which is the same model).

    Parameters
    ----------
    value : scalar or array
        The covariate (one subject's, e.g. ``cov.WT`` in kg); must be > 0.
    ref : float
        Reference (typical) value, in the unit of ``value`` (e.g. 70 kg); > 0. The typical
        parameter is then the value for a subject at ``ref``.
    exponent : float or scalar THETA
        Fixed number (e.g. 0.75) or an estimated parameter (``p.wt_cl``). An integer exponent
        given as a Python int (or integral float) uses exact repeated multiplication.

    Returns
    -------
    jax.Array
        The factor, shape of ``value`` (broadcast with ``exponent``); 1 at ``value == ref``.

    Raises
    ------
    ModelError
        If ``ref`` is a number that is not positive and finite.

    Examples
    --------
    >>> from bayes_nlme.covariate import power
    >>> float(power(35.0, 70.0, 0.75))  # doctest: +ELLIPSIS
    0.5946...
    """
    _check_ref(ref, "power", positive=True)
    ratio = jnp.asarray(value, dtype=float) / ref
    if isinstance(exponent, numbers.Real) and not isinstance(exponent, bool):
        if float(exponent).is_integer():
            return ratio ** int(exponent)
    return jnp.power(ratio, exponent)


def linear(value, ref, slope):
    r"""Linear covariate model: :math:`1 + \text{slope}\cdot(\text{value} - \text{ref})`.

    NONMEM's ``(1 + THETA(n)*(AGE - 40))`` (PsN ``scm`` "linear" relation for a continuous
    covariate). The factor is not constrained positive: choose the prior of ``slope`` so that
    it stays > 0 over the covariate's range, or use :func:`exponential`.

    Parameters
    ----------
    value : scalar or array
        The covariate (e.g. ``cov.AGE`` in years).
    ref : float
        Reference value (e.g. the median), in the unit of ``value``.
    slope : float or scalar THETA
        Fractional change of the parameter per unit of the covariate (unit: 1/unit of value).

    Returns
    -------
    jax.Array
        The factor; 1 at ``value == ref``.

    Raises
    ------
    ModelError
        If ``ref`` is a number that is not finite.

    Examples
    --------
    >>> from bayes_nlme.covariate import linear
    >>> float(linear(50.0, 40.0, 0.01))
    1.1
    """
    _check_ref(ref, "linear", positive=False)
    return 1.0 + slope * (jnp.asarray(value, dtype=float) - ref)


def exponential(value, ref, coef):
    r"""Exponential covariate model: :math:`\exp(\text{coef}\cdot(\text{value} - \text{ref}))`.

    A linear effect on the log parameter: NONMEM's ``EXP(THETA(n)*(AGE - 40))``, the default
    continuous-covariate model of Monolix and nlmixr2 (``log(CL) = log(tvcl) + beta*(AGE-40)``
    with an untransformed covariate). Always positive.

    Parameters
    ----------
    value : scalar or array
        The covariate.
    ref : float
        Reference value, in the unit of ``value``.
    coef : float or scalar THETA
        Change of the log parameter per unit of the covariate (≈ fractional change per unit
        for small values).

    Returns
    -------
    jax.Array
        The factor; 1 at ``value == ref``.

    Raises
    ------
    ModelError
        If ``ref`` is a number that is not finite.

    Examples
    --------
    >>> from bayes_nlme.covariate import exponential
    >>> round(float(exponential(50.0, 40.0, 0.01)), 6)
    1.105171
    """
    _check_ref(ref, "exponential", positive=False)
    return jnp.exp(coef * (jnp.asarray(value, dtype=float) - ref))


def _level_code(code: Any, what: str) -> int:
    if isinstance(code, bool) or not isinstance(code, numbers.Real) or not float(code).is_integer():
        raise ModelError(
            f"categorical(...): {what} must be an integer level code (read_nonmem codes text "
            f"covariates 0, 1, ... in sorted order of their levels); got {code!r}."
        )
    return int(code)


def categorical(value, effects: Mapping[int, Any] | Sequence[Any], reference: int = 0):
    r"""Categorical covariate model: factor :math:`1 + \theta_c` for level ``c``, 1 for the
    reference level (NONMEM style: ``IF (RACE.EQ.2) FRACE = 1 + THETA(n)``).

    Any number of levels. For a level code :math:`x`,

    .. math::

        f(x) = \begin{cases} 1 & x = \text{reference} \\
                             1 + \theta_c & x = c,\ c \in \text{effects} \\
                             \text{NaN} & \text{otherwise,} \end{cases}

    so that a subject with a level the model does not declare cannot silently take the
    reference value: its individual parameters become NaN (NUTS then fails to initialise and
    simulations give NaN). :math:`\theta_c > -1` keeps the factor positive (e.g. a prior
    ``TruncatedNormal(0, 0.5, low=-0.9)``); for a log-scale effect
    (Monolix/nlmixr2 ``exp(beta)``), pass ``jnp.expm1(p.beta)``.

    Parameters
    ----------
    value : scalar or array
        The integer level code of the subject (e.g. ``cov.RACE``). Numeric columns keep their
        values (e.g. SEX coded 0/1 or 1/2); text columns are coded ``0, 1, ...`` in sorted
        order of their labels by :func:`bayes_nlme.read_nonmem`, the labels being in
        ``Dataset.covariate_levels[column]`` (code ``k`` is ``levels[k]``). Booleans work
        too (``cov.APGR < 5`` is level 1 when true).
    effects : mapping of int to float/THETA, or sequence of float/THETA
        Fractional change :math:`\theta_c` of each non-reference level. A mapping gives
        ``{code: theta}`` (e.g. ``{1: p.race_b, 2: p.race_c}``); a sequence gives the thetas
        of the levels ``0, 1, ..., len(effects)`` other than ``reference``, in increasing code
        order (e.g. ``[p.race_b, p.race_c]`` for codes 1 and 2 with reference 0).
    reference : int, default 0
        Code of the reference level (factor 1), not a key of ``effects``.

    Returns
    -------
    jax.Array
        The factor, shape of ``value``. Computed with ``jnp.where`` and comparisons only, so it
        works under ``jax.jit``/``jax.vmap`` with traced codes and thetas, and is
        differentiable in the thetas.

    Raises
    ------
    ModelError
        If ``effects`` is empty or not a mapping/sequence, a code is not an integer, or the
        reference level is also given an effect.

    Examples
    --------
    >>> from bayes_nlme.covariate import categorical
    >>> [float(categorical(c, {1: 0.2, 2: -0.3})) for c in (0.0, 1.0, 2.0)]
    [1.0, 1.2, 0.7]
    """
    ref = _level_code(reference, "reference")
    if isinstance(effects, Mapping):
        items = [(_level_code(c, "each key of effects"), th) for c, th in effects.items()]
    elif isinstance(effects, Sequence) and not isinstance(effects, str):
        if not 0 <= ref <= len(effects):
            raise ModelError(
                f"categorical(value, effects, reference={ref}): with effects as a list of "
                f"{len(effects)} thetas the levels are 0..{len(effects)} and the reference "
                "must be one of them; pass a mapping {code: theta} for other codes."
            )
        codes = [c for c in range(len(effects) + 1) if c != ref]
        items = list(zip(codes, effects, strict=True))
    else:
        raise ModelError(
            "categorical(value, effects): effects maps each non-reference level code to its "
            "fractional change, e.g. {1: p.sex_cl}, or lists them in code order, e.g. "
            f"[p.race_b, p.race_c]; got {effects!r}."
        )
    if not items:
        raise ModelError(
            "categorical(value, effects): effects is empty; give at least one non-reference "
            "level, e.g. {1: p.sex_cl}."
        )
    codes = [c for c, _ in items]
    if ref in codes:
        raise ModelError(
            f"categorical(...): level {ref} is the reference (factor 1) and cannot also have an "
            "effect; drop it from effects or choose another reference=."
        )
    if len(set(codes)) != len(codes):
        raise ModelError(f"categorical(...): repeated level codes in effects: {codes}.")
    code_arr = np.asarray(codes, dtype=float)
    thetas = jnp.stack([jnp.asarray(th, dtype=float) for _, th in items])
    x = jnp.asarray(value, dtype=float)
    match = x[..., None] == code_arr  # (..., n_levels - 1)
    factor = 1.0 + jnp.sum(jnp.where(match, thetas, 0.0), axis=-1)
    known = jnp.any(match, axis=-1) | (x == ref)
    return jnp.where(known, factor, jnp.nan)
