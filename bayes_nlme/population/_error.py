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
    "Endpoints",
    "Censored",
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

    def log_cdf(self, x):
        """``log P(DV <= x)`` under :meth:`distribution` (for censored observations)."""
        z = (x - self.ipred) / jnp.maximum(self.scale(), _TINY)
        return jax.scipy.special.log_ndtr(z)

    def safe_value(self):
        """A value of DV where :meth:`distribution` has a finite log density (used to keep
        NaN out of the gradients of entries that a selection discards)."""
        return self.ipred

    def positive(self):
        """Whether DV must be > 0 at each observation (bool array of ``ipred``'s shape)."""
        return jnp.full(jnp.shape(self.ipred), type(self).positive_dv)

    def can_truncate(self) -> bool:
        """Whether M4 (truncation at DV = 0) is available: the normal family only."""
        return type(self).distribution is AbstractError.distribution

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

    def log_cdf(self, x):
        loc = jnp.log(jnp.maximum(self.ipred, 1e-300))
        pos = x > 0
        z = (jnp.log(jnp.where(pos, x, 1.0)) - loc) / jnp.maximum(self.scale(), _TINY)
        return jnp.where(pos, jax.scipy.special.log_ndtr(z), -jnp.inf)

    def safe_value(self):
        return jnp.maximum(self.ipred, 1e-300)

    def can_truncate(self) -> bool:
        return True  # DV > 0 already: M4 is M3


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

    def log_cdf(self, x):
        return jnp.log(self.distribution().cdf(x))

    def can_truncate(self) -> bool:
        return False


# ---------------------------------------------------------------------------------------
# combinators built by the population layer (not written by users)


def _select(which, values):
    """``values[which[i]][i]``: pick one of several arrays of equal shape per element."""
    return jnp.take_along_axis(jnp.stack(values), which[None], axis=0)[0]


class _SelectDistribution(dist.Distribution):
    """One of several distributions per observation (multiple endpoints)."""

    support = dist.constraints.real

    def __init__(self, dists, safe, which):
        self.dists, self.safe, self.which = tuple(dists), tuple(safe), which
        super().__init__(batch_shape=jnp.shape(which))

    def sample(self, key, sample_shape=()):
        keys = jax.random.split(key, len(self.dists))
        draws = [d.sample(k, sample_shape) for d, k in zip(self.dists, keys, strict=True)]
        which = jnp.broadcast_to(self.which, jnp.shape(draws[0]))
        return _select(which, draws)

    def log_prob(self, value):
        lps = []
        for k, (d, safe) in enumerate(zip(self.dists, self.safe, strict=True)):
            mine = self.which == k
            # other endpoints' values never reach this density (no NaN in its gradient)
            lps.append(jnp.where(mine, d.log_prob(jnp.where(mine, value, safe)), 0.0))
        return _select(jnp.broadcast_to(self.which, jnp.shape(lps[0])), lps)


@_pytree
@dataclasses.dataclass(frozen=True)
class Endpoints(AbstractError):
    """Several observed outputs in one ``obs`` vector, each with its own error model.

    Built by the population layer from the outputs ``derived`` returns and the dataset's
    DVID column: observation ``i`` follows ``errors[which[i]]`` (NONMEM's
    ``IF (DVID.EQ.2) Y = ...``; nlmixr2's ``| cmt`` endpoints).

    Parameters
    ----------
    errors : tuple of AbstractError
        One error model per output, fields of the shape of ``which``.
    which : int array
        Index into ``errors`` of each observation.
    """

    errors: tuple
    which: Any

    @property
    def ipred(self):
        return _select(self.which, [e.ipred for e in self.errors])

    def scale(self):
        return _select(self.which, [e.scale() for e in self.errors])

    def distribution(self) -> dist.Distribution:
        return _SelectDistribution(
            [e.distribution() for e in self.errors],
            [e.safe_value() for e in self.errors],
            self.which,
        )

    def log_cdf(self, x):
        vals = []
        for k, e in enumerate(self.errors):
            mine = self.which == k
            vals.append(jnp.where(mine, e.log_cdf(jnp.where(mine, x, e.safe_value())), 0.0))
        return _select(self.which, vals)

    def safe_value(self):
        return _select(self.which, [e.safe_value() for e in self.errors])

    def positive(self):
        return _select(self.which, [e.positive() for e in self.errors])

    def can_truncate(self) -> bool:
        return all(e.can_truncate() for e in self.errors)


def _log_cdf_zero(err):
    """``log P(DV <= 0)`` (``-inf`` for the log-normal model)."""
    if isinstance(err, Endpoints):
        return _select(err.which, [_log_cdf_zero(e) for e in err.errors])
    if isinstance(err, Exponential):
        return jnp.full(jnp.shape(err.ipred), -jnp.inf)
    return err.log_cdf(jnp.zeros(jnp.shape(err.ipred)))


def _sample_positive(err, key):
    """A draw of DV given DV > 0 (M4), by inverting the normal CDF on (P(DV <= 0), 1)."""
    if isinstance(err, Endpoints):
        keys = jax.random.split(key, len(err.errors))
        draws = [_sample_positive(e, k) for e, k in zip(err.errors, keys, strict=True)]
        return _select(err.which, draws)
    if isinstance(err, Exponential):
        return err.distribution().sample(key)
    sd = jnp.maximum(err.scale(), _TINY)
    lo = jax.scipy.special.ndtr(-err.ipred / sd)
    u = jax.random.uniform(key, jnp.shape(err.ipred), minval=lo, maxval=1.0)
    u = jnp.clip(u, lo + (1 - lo) * 1e-12, 1 - 1e-16)
    return err.ipred + sd * jax.scipy.special.ndtri(u)


def _log_diff_exp(a, b):
    """``log(exp(a) - exp(b))`` for ``a >= b``, stable (``b`` may be ``-inf``)."""
    d = jnp.where(jnp.isfinite(b), b - a, -jnp.inf)
    return a + jnp.log1p(-jnp.exp(jnp.minimum(d, -1e-300)))


class _CensoredDistribution(dist.Distribution):
    """DV with left-censored observations below the LLOQ: Beal's M3 or M4."""

    support = dist.constraints.real

    def __init__(self, err, cens, lloq, method):
        self.err, self.cens, self.lloq, self.method = err, cens, lloq, method
        self.base = err.distribution()
        super().__init__(batch_shape=jnp.shape(cens))

    def sample(self, key, sample_shape=()):
        if sample_shape:
            raise NotImplementedError("draw one sample per call")
        if self.method == "M4":
            return _sample_positive(self.err, key)
        return self.base.sample(key)

    def log_prob(self, value):
        safe = self.err.safe_value()
        lloq = jnp.where(self.cens, self.lloq, safe)
        observed = self.base.log_prob(jnp.where(self.cens, safe, value))
        below = self.err.log_cdf(lloq)
        if self.method == "M4":
            at_zero = _log_cdf_zero(self.err)
            # P(DV > 0) normalises both kinds of record (Beal 2001, M4)
            log_pos = jnp.log1p(-jnp.exp(jnp.minimum(at_zero, -1e-300)))
            below = _log_diff_exp(below, jnp.minimum(at_zero, below)) - log_pos
            observed = observed - log_pos
        return jnp.where(self.cens, below, observed)


@_pytree
@dataclasses.dataclass(frozen=True)
class Censored(AbstractError):
    """An error model with observations below the lower limit of quantification (BLQ).

    Built by the population layer from the dataset's CENS/LLOQ columns and the model's
    ``blq`` method (Beal 2001, "Ways to fit a PK model with some data below the
    quantification limit", J Pharmacokinet Pharmacodyn 28:481):

    - ``"M3"``: a censored observation contributes ``P(DV < LLOQ)``, an observed one its
      density.
    - ``"M4"``: as M3, with DV also known to be positive: a censored observation contributes
      ``P(0 < DV < LLOQ) / P(DV > 0)``, an observed one ``f(DV) / P(DV > 0)``. Needs an error
      model of the normal family (for :class:`Exponential`, DV > 0 already and M4 is M3).

    Simulation (prior/posterior predictive, :func:`bayes_nlme.simulate`) draws the
    uncensored DV (M4: given DV > 0); the censoring of a draw is ``DV < LLOQ``.

    Parameters
    ----------
    base : AbstractError
        The residual error model of the observations.
    cens : bool array
        True where the observation is censored (CENS=1).
    lloq : float array
        The limit on censored observations (other entries are ignored).
    method : {"M3", "M4"}
    """

    base: Any
    cens: Any
    lloq: Any
    method: str = dataclasses.field(default="M3", metadata={"static": True}, kw_only=True)

    @property
    def ipred(self):
        return self.base.ipred

    def scale(self):
        return self.base.scale()

    def distribution(self) -> dist.Distribution:
        return _CensoredDistribution(self.base, self.cens, self.lloq, self.method)

    def log_cdf(self, x):
        return self.base.log_cdf(x)

    def safe_value(self):
        return self.base.safe_value()

    def positive(self):
        return self.base.positive() & ~self.cens
