"""Declarations of a population model: typical values (THETA) and IIV (OMEGA)."""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from jax.scipy.special import gammaln
from numpyro.distributions import constraints
from numpyro.distributions.transforms import CorrCholeskyTransform, Transform, biject_to
from numpyro.distributions.util import validate_sample

from .._errors import ModelError

__all__ = [
    "BlockCorrCholeskyTransform",
    "BlockLKJCholesky",
    "HalfStudentT",
    "IIV",
    "Param",
    "block_corr_cholesky",
]


@dataclasses.dataclass(frozen=True)
class Param:
    """A population parameter (THETA, or a residual-error SD): estimated with a prior, or fixed.

    Parameters
    ----------
    prior : numpyro.distributions.Distribution, optional
        Prior of the parameter on its natural scale (e.g. ``LogNormal(log(3), 1)`` for a
        clearance in L/h). Its support defines the constraint used by NUTS.
    unit : str, optional
        Unit of the parameter, reported in summaries (e.g. ``"L/h"``).
    label : str, optional
        Human description (e.g. ``"clearance for a 70 kg subject"``).
    value : float, optional
        Fixed value (keyword only); prefer :meth:`Param.fixed`. Exactly one of ``prior`` and
        ``value`` is given.

    Raises
    ------
    TypeError
        If ``prior`` is not a numpyro distribution, or ``value`` is not a real number.
    ValueError
        If both or neither of ``prior`` and ``value`` are given, the prior is not scalar, or
        the fixed value is not finite.

    See Also
    --------
    Param.fixed : a parameter held at a value (NONMEM ``FIX``).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import bayes_nlme as bn
    >>> bn.Param(bn.dist.LogNormal(jnp.log(3.0), 1.0), unit="L/h")
    Param(LogNormal, unit='L/h')
    >>> bn.Param.fixed(0.7, unit="mg/L")
    Param(fixed=0.7, unit='mg/L')
    """

    prior: dist.Distribution | None = None
    unit: str | None = None
    label: str | None = None
    value: float | None = dataclasses.field(default=None, kw_only=True)

    def __post_init__(self):
        if (self.prior is None) == (self.value is None):
            raise ValueError(
                "Param takes exactly one of a prior (an estimated parameter) or a fixed value "
                "(Param.fixed(value)); got " + ("both." if self.prior is not None else "neither.")
            )
        if self.value is not None:
            v = self.value
            if isinstance(v, bool) or not isinstance(v, numbers.Real | np.ndarray | np.generic):
                raise TypeError(
                    f"Param.fixed(value) takes a real number; got {type(v).__name__}: {v!r}"
                )
            arr = np.asarray(v, dtype=float)
            if arr.shape != ():
                raise ValueError(f"Param.fixed(value) takes a scalar; got shape {arr.shape}.")
            if not np.isfinite(arr):
                raise ValueError(f"Param.fixed(value) must be finite; got {float(arr)}.")
            object.__setattr__(self, "value", float(arr))
            return
        if not isinstance(self.prior, dist.Distribution):
            raise TypeError(
                f"Param(prior=...) takes a numpyro distribution (bayes_nlme.dist.*), got "
                f"{type(self.prior).__name__}: {self.prior!r}"
            )
        if self.prior.batch_shape or self.prior.event_shape:
            raise ValueError(
                "Param priors must be scalar distributions; got batch shape "
                f"{self.prior.batch_shape} and event shape {self.prior.event_shape}."
            )

    @classmethod
    def fixed(cls, value: float, unit: str | None = None, label: str | None = None) -> Param:
        """A population parameter held at ``value`` (NONMEM ``FIX``), not estimated.

        It is not a sample site: the model records it as a deterministic site, so it appears
        in the posterior (every draw equal to ``value``) but has no prior.

        Parameters
        ----------
        value : float
            The fixed value, finite, on the parameter's natural scale.
        unit, label : str, optional
            As for :class:`Param`.

        Examples
        --------
        >>> import bayes_nlme as bn
        >>> bn.Param.fixed(0.7, unit="mg/L").is_fixed
        True
        """
        return cls(None, unit=unit, label=label, value=value)

    @property
    def is_fixed(self) -> bool:
        """True for a fixed parameter (:meth:`fixed`), False for one with a prior."""
        return self.value is not None

    def __repr__(self) -> str:
        unit = f", unit={self.unit!r}" if self.unit else ""
        if self.is_fixed:
            return f"Param(fixed={self.value!r}{unit})"
        return f"Param({type(self.prior).__name__}{unit})"


@dataclasses.dataclass(frozen=True)
class IIV:
    """Inter-individual variability: ETA ~ N(0, OMEGA), one ETA per name per subject.

    OMEGA is parameterised as SDs and a correlation matrix,
    ``OMEGA = diag(sd) · R · diag(sd)``, and by default sampled non-centred:
    ``ETA_i = diag(sd) · L_R · z_i`` with ``z_i ~ N(0, I)`` and ``L_R`` the Cholesky factor of
    ``R`` (Papaspiliopoulos et al. 2007; the usual choice for hierarchical PK in Stan/Torsten);
    ``centered=True`` samples ``ETA_i ~ N(0, OMEGA)`` directly.

    Parameters
    ----------
    names : sequence of str
        Names of the random effects, e.g. ``["ka", "cl", "v"]``; in ``pre`` they are
        ``eta.ka``, ... and in the results ``eta_ka`` (dims ``ID``) with SDs ``omega_ka_sd``.
    sd : Distribution or mapping of str to Distribution or float
        Prior of each SD of ETA (log-scale SD for log-normal parameters). One distribution is
        used for every name; a mapping gives one per name. Must have positive support
        (e.g. ``HalfNormal(0.5)``, or :class:`HalfStudentT` for heavier tails). In a mapping,
        a number (or ``Param.fixed(value)``) FIXES that SD (NONMEM ``$OMEGA ... FIX``): it is
        recorded as a deterministic site, not estimated, and not counted in AIC/BIC.
    corr : None, float or numpyro.distributions.LKJCholesky
        ``None`` (default): diagonal OMEGA. A float ``c``: a full block with an
        ``LKJCholesky(len(names), concentration=c)`` prior on the correlation matrix (``c = 1``
        is uniform over correlation matrices, larger values shrink towards independence).
        The correlation matrix is reported as ``omega_corr`` (dims ``eta``, ``eta_``).
    centered : bool or sequence of str, default False
        Sample the ETAs directly, ``ETA_i ~ N(0, OMEGA)`` (site ``eta_centered``), instead of
        the non-centred ``z_i``. Non-centred (the default) suits sparse data (few samples per
        subject, large shrinkage); centred suits rich data, where each subject's ETA is well
        determined by its own observations and the non-centred form couples every ``z_i`` to
        the typical value (measured on ACOP Infusion_2CPT, 19 samples per subject: R-hat
        1.023 and bulk ESS 147 for ``tvcl`` non-centred with default settings).

        A sequence of names centres those ETAs only and keeps the others non-centred
        (partial centring, Papaspiliopoulos et al. 2007): the usual choice when the data
        inform some parameters per subject but not others, e.g. ``centered=["v", "vm"]``
        with a KM that only the samples above KM inform (ACOP Bolus_1CPTMM: max R-hat 1.023
        with all three MU-referenced, 1.012 with KM non-centred, 1.006 adding a dense mass
        block; see ``model_zoo/acop_mm.py``). The sampled site is then ``eta_partial``
        (dims ``ID``, ``eta``): ``MU + ETA`` for the centred ETAs (MU = 0 without ``mu``)
        and the standard normal ``z`` for the others. A correlated OMEGA block must be
        centred as a whole or not at all.
    mu : mapping of str to str, or callable, optional
        MU-referencing (NONMEM's ``MU_n`` variables; Monolix's ``phi = mu + eta``): the
        expected value of each subject's log parameter, so that the sampled quantity is
        ``PHI_i = MU_i + ETA_i ~ N(MU_i, OMEGA)`` (site ``phi_eta``, dims ``ID``, ``eta``)
        and ``ETA_i = PHI_i - MU_i`` is derived (still reported as ``eta_<name>``). Implies
        ``centered=True`` unless ``centered`` lists the ETAs to centre, which must include
        every ETA with a MU. The model is the same for every ``mu`` (a shift of the sampled
        variable has unit Jacobian); what changes is the geometry: with centred ETAs and
        informative data the typical value and all ETAs are strongly correlated
        (``ETA_i ~ log P_i - log TV``), a ridge NUTS crosses slowly; MU-referenced, the
        ``PHI_i`` are determined by each subject's data and the typical value by their
        mean, nearly independently (Gelfand, Sahu & Carlin 1995 hierarchical centring;
        measured on ACOP Bolus_1CPTMM, see ``model_zoo/acop_mm.py``).

        - A mapping ``{eta name: THETA name}``: ``MU = log(THETA)``, for parameters written
          ``P_i = THETA exp(ETA_i)`` in ``pre``, e.g. ``mu={"cl": "tvcl", "v": "tvv"}``.
        - A callable ``mu(p, cov) -> dict`` of ``{eta name: MU}`` for ONE subject (``p``
          the population parameters, ``cov`` the subject's baseline covariates), for
          covariate models: ``lambda p, cov: dict(cl=jnp.log(p.tvcl) + 0.75 *
          jnp.log(cov.WT / 70))``.

        ETAs not named get ``MU = 0`` (plain centred). ``mu`` should match ``pre`` (the
        individual parameter is ``exp(MU + ETA)`` up to factors that do not depend on
        THETA); a mismatch is not an error but loses the benefit.
    blocks : sequence of sequences of str, optional
        Block-diagonal OMEGA (NONMEM ``$OMEGA BLOCK(2)`` followed by other ``$OMEGA``
        records): each inner sequence names ETAs that are correlated with one another, e.g.
        ``blocks=[["cl", "v"], ["ka"]]``; ETAs of different blocks, and names in no block,
        are independent. Needs ``corr`` (the LKJ concentration, shared by every block); the
        prior is :class:`BlockLKJCholesky` and ``omega_corr`` stays the full
        (n_eta, n_eta) matrix, with exact zeros outside the blocks. Blocks need not be
        contiguous in ``names``. ``None`` (default): one block of all names when ``corr``
        is given.

    Raises
    ------
    ValueError
        If names repeat or are not identifiers, or a name lacks an SD prior.
    ModelError
        (a ValueError) If ``blocks`` names an unknown ETA, repeats one, has no block of two
        or more names, or is given without ``corr``; if ``mu`` names an undeclared ETA or
        is neither a mapping of ETA names to THETA names nor a function; if ``centered``
        names an undeclared ETA, leaves out an ETA with a MU, or splits a correlated block.

    Examples
    --------
    >>> import bayes_nlme as bn
    >>> iiv = bn.IIV(["cl", "v", "ka"], corr=2.0, blocks=[["cl", "v"], ["ka"]])
    >>> iiv.block_indices()
    ((0, 1), (2,))
    >>> bn.IIV(["ka", "cl", "v"], centered=["cl", "v"]).centered_names
    ('cl', 'v')
    """

    names: Sequence[str]
    sd: Any = dataclasses.field(default_factory=lambda: dist.HalfNormal(0.5))
    corr: Any = None
    centered: Any = False
    blocks: Any = None
    mu: Any = None

    def __post_init__(self):
        names = tuple(self.names)
        object.__setattr__(self, "names", names)
        if self.mu is not None:
            if isinstance(self.mu, Mapping):
                unknown = sorted(set(self.mu) - set(names))
                if unknown:
                    raise ModelError(
                        f"IIV(mu=...) names ETAs that are not declared: {unknown}; the ETAs "
                        f"are {list(names)}."
                    )
                bad = sorted(k for k, v in self.mu.items() if not isinstance(v, str))
                if bad:
                    raise ModelError(
                        "IIV(mu={eta name: THETA name}) takes parameter names as strings "
                        f"(MU = log(THETA)); not so for {bad}. For other forms pass a "
                        "function mu(p, cov) -> dict."
                    )
                object.__setattr__(self, "mu", dict(self.mu))
            elif not callable(self.mu):
                raise ModelError(
                    "IIV(mu=...) takes {eta name: THETA name} or a function mu(p, cov) -> "
                    f"dict; got {self.mu!r}."
                )
        self._check_centered(names)
        bad = sorted(n for n in names if not str(n).isidentifier())
        if bad:
            raise ValueError(f"IIV names must be Python identifiers; got {bad}.")
        dups = sorted({n for n in names if names.count(n) > 1})
        if dups:
            raise ValueError(f"IIV names must be unique; repeated: {dups}.")
        if isinstance(self.sd, Mapping):
            missing = sorted(set(names) - set(self.sd))
            extra = sorted(set(self.sd) - set(names))
            if missing or extra:
                raise ValueError(
                    f"IIV sd priors must match the names {list(names)}: missing {missing}, "
                    f"unknown {extra}."
                )
            sd = dict(self.sd)
            for n, v in sd.items():
                if isinstance(v, Param):
                    if not v.is_fixed:
                        v = v.prior
                    else:
                        v = v.value
                if isinstance(v, numbers.Real) and not isinstance(v, bool):
                    if not (np.isfinite(v) and v >= 0):
                        raise ValueError(f"A fixed IIV SD must be finite and >= 0; {n}: {v}.")
                    v = float(v)
                elif not isinstance(v, dist.Distribution):
                    raise TypeError(
                        f"IIV sd for {n!r} must be a distribution (a prior) or a number (fixed); "
                        f"got {v!r}."
                    )
                sd[n] = v
            object.__setattr__(self, "sd", sd)
        if isinstance(self.corr, int | float):
            if self.corr <= 0:
                raise ValueError(f"LKJ concentration must be > 0; got corr={self.corr}.")
        elif self.corr is not None and not isinstance(self.corr, dist.LKJCholesky):
            raise TypeError(
                "IIV(corr=...) takes None (diagonal OMEGA), a float LKJ concentration or a "
                f"numpyro LKJCholesky distribution; got {self.corr!r}."
            )
        if self.blocks is not None:
            object.__setattr__(self, "blocks", self._check_blocks(names))
        if self.is_partially_centered:
            cen = set(self.centered_names)
            blocks = [[names[i] for i in b] for b in self.block_indices()]
            split = [b for b in blocks if 0 < len(cen & set(b)) < len(b)]
            if split:
                raise ModelError(
                    f"IIV(centered=...) must centre a correlated OMEGA block as a whole or not "
                    f"at all; it splits {split}. Centre every ETA of the block, or none, or "
                    "put the ETAs to centre differently in separate blocks (blocks=...)."
                )

    def _check_centered(self, names: tuple[str, ...]) -> None:
        """Normalise ``centered`` to True, False or a tuple naming some (not all) ETAs."""
        c = self.centered
        if isinstance(c, bool | np.bool_):
            c = bool(c) or self.mu is not None
        elif isinstance(c, str) or not isinstance(c, Sequence | set | frozenset):
            raise ModelError(
                "IIV(centered=...) takes True, False or a list of the ETA names to centre, "
                f"e.g. centered=['cl', 'v']; got {c!r}."
            )
        else:
            unknown = sorted({str(n) for n in c if n not in names})
            if unknown:
                raise ModelError(
                    f"IIV(centered=...) names ETAs that are not declared: {unknown}; the ETAs "
                    f"are {list(names)}."
                )
            chosen = tuple(n for n in names if n in set(c))
            c = True if len(chosen) == len(names) else (chosen if chosen else False)
            if isinstance(self.mu, Mapping):
                left_out = sorted(set(self.mu) - set(chosen))
                if left_out:
                    raise ModelError(
                        f"IIV(mu=...) gives a MU for {left_out}, which centered=... leaves "
                        "non-centred; MU-referencing needs the ETA centred: add them to "
                        "centered, or drop their MU."
                    )
        object.__setattr__(self, "centered", c)

    @property
    def centered_names(self) -> tuple[str, ...]:
        """The ETAs sampled centred (``ETA`` or ``MU + ETA``), in the order of ``names``."""
        if self.centered is True:
            return tuple(self.names)
        if self.centered is False:
            return ()
        return tuple(self.centered)

    @property
    def is_partially_centered(self) -> bool:
        """True when some, but not all, ETAs are centred (``centered=[names]``)."""
        return not isinstance(self.centered, bool)

    def _check_blocks(self, names: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
        """Validate ``blocks``; return them as tuples, each in the order of ``names``."""
        blocks = self.blocks
        if isinstance(blocks, str) or not isinstance(blocks, Sequence):
            raise ModelError(
                "IIV(blocks=...) takes a list of lists of ETA names, e.g. "
                f"blocks=[['cl', 'v'], ['ka']]; got {blocks!r}."
            )
        if any(isinstance(b, str) or not isinstance(b, Sequence) for b in blocks):
            raise ModelError(
                "Each IIV block is a list of ETA names: blocks=[['cl', 'v']] for one block of "
                f"CL and V, blocks=[['cl', 'v'], ['ka']] for two; got {self.blocks!r}."
            )
        flat = [n for b in blocks for n in b]
        unknown = sorted({str(n) for n in flat if n not in names})
        if unknown:
            raise ModelError(
                f"IIV blocks name {unknown}, which are not among the ETA names {list(names)}."
            )
        repeated = sorted({n for n in flat if flat.count(n) > 1})
        if repeated:
            raise ModelError(
                f"Each ETA may be in one IIV block only; {repeated} appear more than once."
            )
        if self.corr is None:
            raise ModelError(
                "IIV(blocks=...) declares correlations: give their LKJ prior too, e.g. "
                "IIV(names, corr=2.0, blocks=...) (corr is the LKJ concentration, shared by "
                "every block)."
            )
        if isinstance(self.corr, dist.LKJCholesky) and (
            self.corr.batch_shape or self.corr.dimension != len(names)
        ):
            raise ModelError(
                "With IIV(blocks=...), corr takes a float LKJ concentration (or a scalar "
                f"LKJCholesky({len(names)}, concentration=c), whose concentration is used for "
                "every block)."
            )
        if all(len(b) < 2 for b in blocks):
            raise ModelError(
                "IIV blocks has no block of two or more ETAs, so no correlation to estimate; "
                "use corr=None for a diagonal OMEGA."
            )
        order = {n: i for i, n in enumerate(names)}
        out = [tuple(sorted(b, key=order.__getitem__)) for b in blocks if len(b)]
        return tuple(sorted(out, key=lambda b: order[b[0]]))

    def sd_prior(self, name: str) -> dist.Distribution | None:
        """The prior of ``omega_<name>_sd`` (None when that SD is fixed)."""
        v = self.sd[name] if isinstance(self.sd, Mapping) else self.sd
        return None if isinstance(v, float) else v

    def fixed_sds(self) -> dict[str, float]:
        """``{"omega_<name>_sd": value}`` for the SDs fixed to a value."""
        if not isinstance(self.sd, Mapping):
            return {}
        return {f"omega_{n}_sd": v for n, v in self.sd.items() if isinstance(v, float)}

    def block_indices(self) -> tuple[tuple[int, ...], ...]:
        """The partition of the ETAs (positions in ``names``) into independent blocks.

        Returns
        -------
        tuple of tuple of int
            Every position exactly once; ETAs in no declared block are singletons. Without
            ``blocks``: one block of all ETAs when ``corr`` is given, else all singletons.
            Blocks are ordered by their first position.
        """
        k = len(self.names)
        if self.blocks is None:
            return (tuple(range(k)),) if self.corr is not None else tuple((i,) for i in range(k))
        order = {n: i for i, n in enumerate(self.names)}
        parts = [tuple(order[n] for n in b) for b in self.blocks]
        used = {i for b in parts for i in b}
        parts += [(i,) for i in range(k) if i not in used]
        return tuple(sorted(parts))

    def corr_concentration(self) -> Any:
        """The LKJ concentration of ``corr`` (a float, or the LKJCholesky's), or None."""
        if self.corr is None:
            return None
        if isinstance(self.corr, dist.LKJCholesky):
            return self.corr.concentration
        return float(self.corr)

    def corr_prior(self) -> dist.Distribution | None:
        """The prior of the Cholesky factor of the correlation matrix (site
        ``omega_corr_chol``, event shape (n_eta, n_eta)), or None for a diagonal OMEGA.

        Returns
        -------
        numpyro.distributions.LKJCholesky, BlockLKJCholesky or None
            ``LKJCholesky`` for one full block; :class:`BlockLKJCholesky` when ``blocks``
            splits the ETAs into several independent blocks.
        """
        if self.corr is None:
            return None
        parts = self.block_indices()
        if len(parts) > 1:
            return BlockLKJCholesky(len(self.names), parts, self.corr_concentration())
        if isinstance(self.corr, dist.LKJCholesky):
            return self.corr
        return dist.LKJCholesky(len(self.names), concentration=float(self.corr))


# --------------------------------------------------------------------------- block OMEGA
def _normalise_blocks(dimension: int, blocks) -> tuple[tuple[int, ...], ...]:
    """Check a partition of range(dimension); return its blocks of >= 2 indices, sorted."""
    if isinstance(dimension, bool) or not isinstance(dimension, numbers.Integral):
        raise ValueError(f"dimension must be an int; got {dimension!r}.")
    seen: list[int] = []
    out = []
    for b in blocks:
        idx = sorted(int(i) for i in b)
        bad = [i for i in idx if not 0 <= i < dimension]
        if bad:
            raise ValueError(f"block indices must be in [0, {dimension}); got {bad}.")
        seen += idx
        if len(idx) >= 2:
            out.append(tuple(idx))
    if len(set(seen)) != len(seen):
        raise ValueError(f"blocks must not overlap; got {blocks!r}.")
    if not out:
        raise ValueError("blocks must contain at least one block of two or more indices.")
    return tuple(sorted(out))


def _block_mask(dimension: int, blocks) -> np.ndarray:
    """Boolean (k, k): True where a correlation (or its Cholesky factor) may be non-zero."""
    mask = np.eye(dimension, dtype=bool)
    for b in blocks:
        mask[np.ix_(b, b)] = True
    return mask


def _tril_pairs(block):
    """Positions (rows, cols in the full matrix; rows, cols in the block) of the lower
    triangle, diagonal included, of one block."""
    a, c = np.tril_indices(len(block))
    idx = np.asarray(block)
    return idx[a], idx[c], a, c


class _BlockCorrCholesky(constraints.Constraint):
    """Cholesky factors of block-diagonal correlation matrices: lower triangular, positive
    diagonal, unit-norm rows, exact zeros outside the blocks (event_dim 2)."""

    event_dim = 2

    def __init__(self, dimension: int, blocks):
        self.dimension = int(dimension)
        self.blocks = tuple(tuple(int(i) for i in b) for b in blocks)

    def __call__(self, x):
        xp = np if isinstance(x, np.ndarray | np.generic) else jnp
        chol = constraints.corr_cholesky(x)
        outside = ~_block_mask(self.dimension, self.blocks)
        zeros = xp.all(xp.reshape(xp.where(outside, x == 0, True), x.shape[:-2] + (-1,)), -1)
        return chol & zeros

    def feasible_like(self, prototype):
        return jnp.broadcast_to(jnp.eye(prototype.shape[-1]), prototype.shape)

    def tree_flatten(self):
        return (), ((), dict(dimension=self.dimension, blocks=self.blocks))

    def eq(self, other, static=False):
        return (
            isinstance(other, _BlockCorrCholesky)
            and other.dimension == self.dimension
            and other.blocks == self.blocks
        )

    def __repr__(self):
        return f"BlockCorrCholesky(dimension={self.dimension}, blocks={self.blocks})"


def block_corr_cholesky(dimension: int, blocks) -> constraints.Constraint:
    """Constraint: Cholesky factors of (dimension × dimension) block-diagonal correlation
    matrices with the given blocks (sequences of indices; singletons may be omitted).

    ``numpyro.distributions.transforms.biject_to`` maps it to
    :class:`BlockCorrCholeskyTransform`.

    Raises
    ------
    ValueError
        If the blocks overlap, hold an index outside ``[0, dimension)``, or none has two or
        more indices.
    """
    return _BlockCorrCholesky(dimension, _normalise_blocks(dimension, blocks))


class BlockCorrCholeskyTransform(Transform):
    r"""Unconstrained vector -> Cholesky factor of a block-diagonal correlation matrix.

    Each block of :math:`d_b` indices takes :math:`d_b(d_b-1)/2` consecutive entries of the
    vector (blocks in order of their first index) and becomes the Cholesky factor of its
    correlation matrix through NumPyro's ``CorrCholeskyTransform`` (tanh and signed stick
    breaking, as Stan's ``cholesky_factor_corr``); the factors are placed on their rows and
    columns of the (dimension × dimension) identity.

    Because the Cholesky recursion :math:`L_{ij} = (R_{ij} - \sum_{m<j} L_{im}L_{jm})/L_{jj}`
    never mixes indices of different blocks, the Cholesky factor of a block-diagonal
    correlation matrix (blocks contiguous or not) is exactly this scattered block factor.

    ``log_abs_det_jacobian`` is the sum of the blocks' (the log-Jacobian of the vector to the
    strictly-lower entries of each block's factor, the measure of ``LKJCholesky.log_prob``).

    Parameters
    ----------
    dimension : int
        Number of ETAs, k.
    blocks : sequence of sequences of int
        The correlated blocks (indices into ``range(k)``); singletons may be given or omitted.
    """

    domain = constraints.real_vector

    def __init__(self, dimension: int, blocks):
        self.dimension = int(dimension)
        self.blocks = _normalise_blocks(self.dimension, blocks)

    @property
    def codomain(self):
        return _BlockCorrCholesky(self.dimension, self.blocks)

    @property
    def n_unconstrained(self) -> int:
        """Length of the unconstrained vector: the sum of d_b (d_b − 1) / 2."""
        return sum(len(b) * (len(b) - 1) // 2 for b in self.blocks)

    def _split(self, x):
        out, start = [], 0
        for b in self.blocks:
            n = len(b) * (len(b) - 1) // 2
            out.append(x[..., start : start + n])
            start += n
        return out

    def __call__(self, x):
        x = jnp.asarray(x)
        k = self.dimension
        y = jnp.broadcast_to(jnp.eye(k, dtype=x.dtype), x.shape[:-1] + (k, k))
        for b, xb in zip(self.blocks, self._split(x), strict=True):
            lb = CorrCholeskyTransform()(xb)
            r, c, a, d = _tril_pairs(b)
            y = y.at[..., r, c].set(lb[..., a, d])
        return y

    def _block(self, y, b):
        idx = np.asarray(b)
        return y[..., idx[:, None], idx[None, :]]

    def _inverse(self, y):
        y = jnp.asarray(y)
        parts = [CorrCholeskyTransform().inv(self._block(y, b)) for b in self.blocks]
        return jnp.concatenate(parts, axis=-1)

    def log_abs_det_jacobian(self, x, y, intermediates=None):
        return sum(
            CorrCholeskyTransform().log_abs_det_jacobian(xb, self._block(y, b))
            for b, xb in zip(self.blocks, self._split(jnp.asarray(x)), strict=True)
        )

    def forward_shape(self, shape):
        return tuple(shape[:-1]) + (self.dimension, self.dimension)

    def inverse_shape(self, shape):
        return tuple(shape[:-2]) + (self.n_unconstrained,)

    def tree_flatten(self):
        return (), ((), dict(dimension=self.dimension, blocks=self.blocks))

    def eq(self, other, static=False):
        return (
            isinstance(other, BlockCorrCholeskyTransform)
            and other.dimension == self.dimension
            and other.blocks == self.blocks
        )


@biject_to.register(_BlockCorrCholesky)
def _transform_to_block_corr_cholesky(constraint):
    return BlockCorrCholeskyTransform(constraint.dimension, constraint.blocks)


class BlockLKJCholesky(dist.Distribution):
    r"""LKJ prior on the Cholesky factor of a block-diagonal correlation matrix.

    The prior of a block-diagonal OMEGA (NONMEM ``$OMEGA BLOCK``s next to one another):
    the correlation matrix is block-diagonal, each block of two or more ETAs independently
    ``LKJCholesky(d_b, concentration)`` (Lewandowski, Kurowicka & Joe 2009), correlations
    between blocks exactly 0. A sample is the (k × k) Cholesky factor of the full correlation
    matrix, zeros outside the blocks, so that ``L @ L.T`` is the full correlation matrix
    and ``diag(sd) @ L`` the Cholesky factor of OMEGA.

    Parameters
    ----------
    dimension : int
        Number of ETAs, k (event shape (k, k)).
    blocks : sequence of sequences of int
        Indices (into ``range(k)``) of each correlated block; blocks may be non-contiguous;
        indices in no block (or in singleton blocks) are independent of all others.
    concentration : float, default 1.0
        LKJ concentration η > 0 shared by every block (1: uniform over correlation
        matrices; larger: shrinks towards independence).

    Notes
    -----
    ``log_prob`` is the sum of the blocks' ``LKJCholesky.log_prob`` (densities with respect to
    the strictly-lower entries of each block's factor); the support is
    :func:`block_corr_cholesky`, which ``biject_to`` maps to
    :class:`BlockCorrCholeskyTransform`, so NUTS samples it on
    :math:`\sum_b d_b(d_b-1)/2` unconstrained coordinates.

    Raises
    ------
    ValueError
        If the blocks overlap or fall outside ``range(dimension)``, no block has two or more
        indices, or ``concentration`` is not a positive scalar.
    """

    arg_constraints = {"concentration": constraints.positive}
    pytree_data_fields = ("concentration",)
    pytree_aux_fields = ("dimension", "blocks")

    def __init__(self, dimension: int, blocks, concentration=1.0, *, validate_args=None):
        self.dimension = int(dimension)
        self.blocks = _normalise_blocks(self.dimension, blocks)
        if jnp.shape(concentration) != ():
            raise ValueError(
                "BlockLKJCholesky takes one (scalar) concentration shared by every block; got "
                f"shape {jnp.shape(concentration)}."
            )
        if not isinstance(concentration, jax.core.Tracer) and not float(concentration) > 0:
            raise ValueError(f"LKJ concentration must be > 0; got {concentration}.")
        self.concentration = concentration
        super().__init__(
            batch_shape=(),
            event_shape=(self.dimension, self.dimension),
            validate_args=validate_args,
        )

    @constraints.dependent_property(is_discrete=False, event_dim=2)
    def support(self):
        """:func:`block_corr_cholesky` of this dimension and these blocks."""
        return _BlockCorrCholesky(self.dimension, self.blocks)

    def _lkj(self, b) -> dist.LKJCholesky:
        return dist.LKJCholesky(len(b), concentration=self.concentration)

    def sample(self, key, sample_shape=()):
        """Each block from its ``LKJCholesky`` (independent keys), placed in the identity;
        shape ``sample_shape + (k, k)``."""
        shape = tuple(sample_shape)
        y = jnp.broadcast_to(jnp.eye(self.dimension), shape + self.event_shape)
        for b, k in zip(self.blocks, jax.random.split(key, len(self.blocks)), strict=True):
            lb = self._lkj(b).sample(k, shape)
            r, c, a, d = _tril_pairs(b)
            y = y.at[..., r, c].set(lb[..., a, d])
        return y

    @validate_sample
    def log_prob(self, value):
        """Sum over the blocks of ``LKJCholesky(d_b, concentration).log_prob`` of each
        block's factor; shape ``value.shape[:-2]``."""
        value = jnp.asarray(value)
        return sum(
            self._lkj(b).log_prob(value[..., np.asarray(b)[:, None], np.asarray(b)[None, :]])
            for b in self.blocks
        )

    def __repr__(self):
        return (
            f"BlockLKJCholesky(dimension={self.dimension}, blocks={self.blocks}, "
            f"concentration={self.concentration})"
        )


# --------------------------------------------------------------------------- SD priors
class HalfStudentT(dist.Distribution):
    r"""Half-Student-t distribution: a Student-t with location 0 folded at zero.

    .. math::

        p(x \mid \nu, s) = 2\,t_\nu(x \mid 0, s), \qquad x \ge 0,

    with :math:`t_\nu(\cdot \mid 0, s)` the Student-t density with :math:`\nu` degrees of
    freedom and scale :math:`s`. A weakly informative prior for SDs such as OMEGA SDs and
    residual SDs (Gelman 2006; the ``student_t`` lower-bounded at 0 of Stan): tails heavier
    than ``HalfNormal(s)``, lighter than ``HalfCauchy(s)`` (:math:`\nu = 1`) for
    :math:`\nu > 1`. ``HalfStudentT(3, 0.5)`` is a common choice for a log-scale IIV SD.

    Parameters
    ----------
    df : float or array
        Degrees of freedom :math:`\nu > 0`.
    scale : float or array, default 1.0
        Scale :math:`s > 0`, in the unit of the variable.

    Notes
    -----
    Sampling draws ``|T|`` with ``T ~ StudentT(df, 0, scale)``. Mean
    :math:`2 s \sqrt{\nu/\pi}\,\Gamma((\nu+1)/2) / (\Gamma(\nu/2)(\nu-1))` for
    :math:`\nu > 1` (infinite otherwise); variance :math:`s^2 \nu/(\nu-2) - \text{mean}^2`
    for :math:`\nu > 2` (infinite for :math:`1 < \nu \le 2`).

    References
    ----------
    Gelman A. Prior distributions for variance parameters in hierarchical models.
    Bayesian Analysis 2006;1:515-534.

    Examples
    --------
    >>> import bayes_nlme as bn
    >>> iiv = bn.IIV(["cl", "v"], sd=bn.HalfStudentT(3.0, 0.5))
    """

    arg_constraints = {"df": constraints.positive, "scale": constraints.positive}
    support = constraints.positive
    reparametrized_params = ["scale"]
    pytree_data_fields = ("_student_t", "df", "scale")

    def __init__(self, df, scale=1.0, *, validate_args=None):
        self._student_t = dist.StudentT(df, 0.0, scale)
        self.df, self.scale = df, scale
        batch_shape = jax.lax.broadcast_shapes(jnp.shape(df), jnp.shape(scale))
        super().__init__(batch_shape=batch_shape, validate_args=validate_args)

    def sample(self, key, sample_shape=()):
        """Draws ``|T|``, ``T ~ StudentT(df, 0, scale)``; shape ``sample_shape + batch_shape``."""
        return jnp.abs(self._student_t.sample(key, sample_shape))

    @validate_sample
    def log_prob(self, value):
        """``log 2 + log t_df(value | 0, scale)`` for ``value > 0``."""
        return self._student_t.log_prob(value) + jnp.log(2.0)

    def cdf(self, value):
        """``2 F_t(value) - 1`` with ``F_t`` the Student-t CDF."""
        return 2.0 * self._student_t.cdf(value) - 1.0

    @property
    def mean(self):
        """Mean (infinite for ``df <= 1``); see Notes."""
        df = jnp.asarray(self.df, dtype=float)
        log_m = (
            jnp.log(2.0 * self.scale)
            + 0.5 * jnp.log(df / jnp.pi)
            + gammaln(0.5 * (df + 1))
            - gammaln(0.5 * df)
            - jnp.log(jnp.abs(df - 1))
        )
        return jnp.broadcast_to(jnp.where(df > 1, jnp.exp(log_m), jnp.inf), self.batch_shape)

    @property
    def variance(self):
        """Variance (infinite for ``1 < df <= 2``, NaN for ``df <= 1``); see Notes."""
        df = jnp.asarray(self.df, dtype=float)
        second = jnp.asarray(self.scale, dtype=float) ** 2 * df / (df - 2)
        var = jnp.where(df > 2, second - self.mean**2, jnp.where(df > 1, jnp.inf, jnp.nan))
        return jnp.broadcast_to(var, self.batch_shape)
