"""Residual error models: the distribution of DV given the individual prediction IPRED.

Each model is a small JAX pytree built inside ``derived`` for ONE subject (fields of shape
``(n_obs_max,)`` or scalars); the population layer gathers the real observations and calls
:meth:`AbstractError.distribution` on the flat ``obs`` vector.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpyro.distributions as dist

__all__ = [
    "AbstractError",
    "Additive",
    "Proportional",
    "Combined",
    "Exponential",
    "Power",
    "StudentT",
]

_TINY = 1e-12  # floor on the residual SD: IPRED = 0 with proportional error is an impossible point


def _pytree(cls):
    fields = [f.name for f in dataclasses.fields(cls) if not f.metadata.get("static")]
    meta = [f.name for f in dataclasses.fields(cls) if f.metadata.get("static")]
    return jax.tree_util.register_dataclass(cls, data_fields=fields, meta_fields=meta)


class AbstractError:
    """Base class of residual error models.

    Attributes
    ----------
    ipred : array
        Individual prediction (IPRED) on the DV scale.
    """

    ipred: Any
    positive_dv: ClassVar[bool] = False

    def scale(self):
        """Residual SD at each observation, on the scale the likelihood is written (DV units,
        or log DV for :class:`Exponential`); shape of ``ipred``."""
        raise NotImplementedError

    def distribution(self) -> dist.Distribution:
        """The NumPyro distribution of DV."""
        return dist.Normal(self.ipred, jnp.maximum(self.scale(), _TINY))

    def broadcast(self, shape) -> AbstractError:
        """Copy with every field broadcast to ``shape`` (used to gather observations)."""
        return jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, shape), self)


@_pytree
@dataclasses.dataclass(frozen=True)
class Additive(AbstractError):
    """Additive error: ``DV = IPRED + EPS``, ``EPS ~ N(0, sd²)``.

    Parameters
    ----------
    ipred : array
        IPRED (DV units).
    sd : scalar or array
        Residual SD in DV units (NONMEM: ``SQRT(SIGMA)`` with ``Y = F + EPS(1)``).
    """

    ipred: Any
    sd: Any

    def scale(self):
        return self.sd * jnp.ones_like(self.ipred)


@_pytree
@dataclasses.dataclass(frozen=True)
class Proportional(AbstractError):
    """Proportional error: ``DV = IPRED·(1 + EPS)``, ``EPS ~ N(0, sd²)``.

    Parameters
    ----------
    ipred : array
        IPRED (DV units).
    sd : scalar or array
        Residual SD as a fraction of IPRED (0.1 = 10% CV). Where IPRED is 0 the SD is floored
        at 1e-12, so an observation there makes the proposal (near-)impossible rather than NaN.
    """

    ipred: Any
    sd: Any

    def scale(self):
        return self.sd * jnp.abs(self.ipred)


@_pytree
@dataclasses.dataclass(frozen=True)
class Combined(AbstractError):
    """Combined additive and proportional error, in the form the user names.

    Parameters
    ----------
    ipred : array
        IPRED (DV units).
    add_sd : scalar
        Additive SD (DV units).
    prop_sd : scalar
        Proportional SD (fraction of IPRED).
    form : {"var", "sd"}
        Required, because tools differ in their default:

        - ``"var"`` — variances add: ``sd = sqrt(add_sd² + (prop_sd·IPRED)²)``
          (NONMEM's usual ``Y = F + SQRT(THETA(a)**2 + THETA(p)**2*F**2)*EPS(1)``;
          nlmixr2 ``combined2``).
        - ``"sd"`` — SDs add: ``sd = add_sd + prop_sd·|IPRED|`` (nlmixr2 ``combined1``).

        ``"combined2"`` and ``"combined1"`` are accepted as aliases.

    Raises
    ------
    ValueError
        If ``form`` is not one of the names above.
    """

    ipred: Any
    add_sd: Any
    prop_sd: Any
    form: str = dataclasses.field(metadata={"static": True}, kw_only=True)

    _ALIASES: ClassVar[dict] = {"var": "var", "combined2": "var", "sd": "sd", "combined1": "sd"}

    def __post_init__(self):
        form = self.form
        if form not in self._ALIASES:
            raise ValueError(
                f"Combined error form must be one of {sorted(self._ALIASES)}; got {form!r}. "
                "Use form='var' when variances add (NONMEM, nlmixr2 combined2) or form='sd' "
                "when SDs add (nlmixr2 combined1)."
            )
        object.__setattr__(self, "form", self._ALIASES[form])

    def scale(self):
        if self.form == "var":
            return jnp.sqrt(self.add_sd**2 + (self.prop_sd * self.ipred) ** 2)
        return self.add_sd + self.prop_sd * jnp.abs(self.ipred)


@_pytree
@dataclasses.dataclass(frozen=True)
class Exponential(AbstractError):
    """Exponential error, log-transform both sides: ``log DV = log IPRED + EPS``.

    The likelihood is written as ``DV ~ LogNormal(log IPRED, sd)``: the same posterior as a
    normal model for ``log DV`` (NONMEM's LTBS), but on the DV scale, so pointwise
    log-likelihoods (LOO) are comparable with additive or proportional models.

    Parameters
    ----------
    ipred : array
        IPRED (DV units, > 0).
    sd : scalar
        SD of EPS on the log scale (≈ CV for small values).

    Notes
    -----
    Every observed DV must be > 0; :func:`bayes_nlme.fit` checks this and names the rows.
    """

    ipred: Any
    sd: Any
    positive_dv: ClassVar[bool] = True

    def scale(self):
        return self.sd * jnp.ones_like(self.ipred)

    def distribution(self) -> dist.Distribution:
        loc = jnp.log(jnp.maximum(self.ipred, 1e-300))
        return dist.LogNormal(loc, jnp.maximum(self.scale(), _TINY))


@_pytree
@dataclasses.dataclass(frozen=True)
class Power(AbstractError):
    """Power error: ``DV ~ N(IPRED, (sd·|IPRED|^exponent)²)``.

    The residual SD grows as a power of the prediction, ``sd·|IPRED|^exponent`` (nlmixr2
    ``pow(sd, exponent)``; NONMEM ``Y = F + THETA(s)*ABS(F)**THETA(e)*EPS(1)`` with
    ``SIGMA`` fixed to 1). ``exponent = 1`` is :class:`Proportional`, ``exponent = 0`` is
    :class:`Additive`.

    Parameters
    ----------
    ipred : array
        IPRED (DV units).
    sd : scalar or array
        Residual SD at ``|IPRED| = 1`` (units DV^(1 - exponent)).
    exponent : scalar or array
        Power of ``|IPRED|``; a fixed number or a parameter. Where IPRED is 0 the SD is 0 for
        ``exponent > 0`` (floored at 1e-12, as for :class:`Proportional`) and ``sd`` for
        ``exponent = 0``; the gradient with respect to ``exponent`` stays finite there.
    """

    ipred: Any
    sd: Any
    exponent: Any

    def scale(self):
        a = jnp.abs(self.ipred)
        safe = jnp.where(a > 0, a, 1.0)  # keeps d/d(exponent) finite where IPRED = 0
        factor = jnp.where(a > 0, safe**self.exponent, jnp.where(self.exponent == 0, 1.0, 0.0))
        return self.sd * factor


@_pytree
@dataclasses.dataclass(frozen=True)
class StudentT(AbstractError):
    """Student-t error: ``DV = IPRED + sd·T``, ``T ~ t(df)`` (location-scale Student-t).

    Heavier tails than :class:`Additive` make the fit robust to outlying observations
    (a single aberrant sample pulls the population estimates much less); ``df → ∞`` is
    :class:`Additive`. ``sd`` is the scale of the t distribution, not its SD (which is
    ``sd·sqrt(df/(df - 2))`` for ``df > 2``). As Stan's ``student_t(df, ipred, sd)``.

    Parameters
    ----------
    ipred : array
        IPRED (DV units).
    sd : scalar or array
        Scale of the residual (DV units).
    df : scalar or array
        Degrees of freedom, > 0: a fixed number (e.g. 4) or a parameter with a prior on
        positive values.
    """

    ipred: Any
    sd: Any
    df: Any

    def scale(self):
        return self.sd * jnp.ones_like(self.ipred)

    def distribution(self) -> dist.Distribution:
        return dist.StudentT(self.df, self.ipred, jnp.maximum(self.scale(), _TINY))
