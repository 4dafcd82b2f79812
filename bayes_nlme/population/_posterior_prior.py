"""Posterior as prior: carry a previous fit's marginal posteriors into a new model's priors."""

from __future__ import annotations

import copy
import dataclasses
import numbers
from collections.abc import Sequence

import numpy as np
import numpyro.distributions as dist
from numpyro.distributions.transforms import ExpTransform, IdentityTransform, biject_to

from .._errors import ModelError
from ._model import Model
from ._params import Param

__all__ = ["posterior_as_prior"]


def _fitted_prior(prior: dist.Distribution, draws: np.ndarray, inflate: float, name: str):
    """Normal fitted by moments on the unconstrained scale of ``prior``'s support, mapped
    back to the support: returns (distribution, mean, sd) with mean/sd unconstrained."""
    transform = biject_to(prior.support)
    u = np.asarray(transform.inv(np.asarray(draws, dtype=float)), dtype=float)
    if not np.all(np.isfinite(u)):
        raise ModelError(
            f"Posterior draws of {name!r} reach the boundary of its prior's support "
            f"({prior.support}), so they have no value on the unconstrained scale; "
            "exclude it with names=[...] and keep its prior."
        )
    if u.size < 2:
        raise ModelError(f"posterior_as_prior needs at least 2 draws of {name!r}; got {u.size}.")
    mean, sd = float(u.mean()), float(u.std(ddof=1)) * inflate
    if not sd > 0:
        raise ModelError(
            f"The posterior draws of {name!r} are all equal (sd 0 on the unconstrained scale): "
            "no distribution to fit. Exclude it with names=[...] or fix it with Param.fixed."
        )
    base = dist.Normal(mean, sd)
    if isinstance(transform, IdentityTransform):
        return base, mean, sd
    if isinstance(transform, ExpTransform):
        return dist.LogNormal(mean, sd), mean, sd
    return dist.TransformedDistribution(base, transform), mean, sd


def posterior_as_prior(idata, model: Model, *, inflate: float = 1.0, names=None) -> Model:
    r"""A copy of ``model`` whose THETA and OMEGA-SD priors are a previous fit's posteriors.

    For each selected parameter :math:`\theta` with prior support :math:`S`, the posterior
    draws are mapped to the unconstrained scale, :math:`u = T^{-1}(\theta)` with
    :math:`T` = ``numpyro.distributions.transforms.biject_to(S)`` (log for positive
    parameters, a shifted log for ``greater_than``, logit for intervals, identity for real
    ones); a normal :math:`N(\bar u, (\text{inflate}\cdot s_u)^2)` is fitted by moments
    (mean and SD, ``ddof=1``) and mapped back by :math:`T`. A positive parameter thus gets a
    ``LogNormal`` prior, a real one a ``Normal`` and others a ``TransformedDistribution``.

    This is the informative (sequential) prior of a previous study: analyse study 2 with the
    parameter uncertainty of study 1 as prior, as NONMEM's ``$PRIOR NWPRI`` does with
    normal/inverse-Wishart priors from an earlier run (Gisleskog, Karlsson & Beal 2002) and
    Pumas/Stan users do by fitting distributions to the previous posterior.

    Parameters
    ----------
    idata : arviz.InferenceData
        A fit of ``model`` (or of a model with the same parameter names and supports) by
        :func:`bayes_nlme.fit`: ``idata.posterior`` must hold every selected parameter.
    model : Model
        The model to copy. It is not modified.
    inflate : float, default 1.0
        Factor (> 0) on the SD of each fitted prior on the unconstrained scale: > 1 widens the
        priors (down-weights the earlier study, e.g. for between-study differences), 1 keeps
        the posterior's width.
    names : sequence of str, optional
        Parameters to replace: names of ``params`` and/or ``omega_<eta>_sd``. Default: every
        estimated THETA and residual parameter and every OMEGA SD. Fixed parameters
        (``Param.fixed``) stay fixed and are skipped (naming one is an error).

    Returns
    -------
    Model
        A shallow copy of ``model`` (``copy.copy``) with new ``params`` (same units and labels)
        and ``random`` (new ``sd`` priors; correlation prior, blocks and centring kept).

    Raises
    ------
    ModelError
        If ``inflate`` is not a positive number; ``names`` names an unknown or fixed
        parameter; the posterior lacks a selected parameter; or the draws of one lie on the
        boundary of its support or are all equal.

    Notes
    -----
    A marginal approximation: each parameter's prior is fitted to its own marginal
    posterior, and the posterior correlations between parameters (e.g. CL and V, or THETA
    and OMEGA) are dropped, as is any non-normal shape on the unconstrained scale. The prior
    of the OMEGA correlation matrix (LKJ) is kept as declared in ``model``, as are the priors
    of inter-occasion variability (``bn.IOV``). The combined
    analysis is therefore close to, not identical with, a single fit of the pooled data; the
    approximation is best when the first posterior is near normal on the unconstrained scale
    and the parameters are weakly correlated.

    References
    ----------
    Gisleskog PO, Karlsson MO, Beal SL. Use of prior information to stabilize a population
    data analysis. J Pharmacokinet Pharmacodyn 2002;29:473-505.

    Examples
    --------
    >>> first = bn.fit(model, study1)  # doctest: +SKIP
    >>> informed = bn.posterior_as_prior(first, model, inflate=1.5)  # doctest: +SKIP
    >>> second = bn.fit(informed, study2)  # doctest: +SKIP
    """
    if not isinstance(model, Model):
        raise ModelError(
            f"posterior_as_prior(idata, model): model must be a bn.Model; got {model!r}."
        )
    if (
        isinstance(inflate, bool)
        or not isinstance(inflate, numbers.Real)
        or not np.isfinite(inflate)
        or not inflate > 0
    ):
        raise ModelError(f"inflate must be a positive number (1 keeps the width); got {inflate!r}.")
    post = getattr(idata, "posterior", None)
    if post is None:
        raise ModelError("posterior_as_prior needs the InferenceData of a fit (a posterior group).")
    estimated = [n for n, p in model.params.items() if not p.is_fixed]
    fixed = list(model.fixed_values())
    omega = {
        f"omega_{e}_sd": e for e in model.eta_names if f"omega_{e}_sd" not in model.fixed_values()
    }
    if names is None:
        selected = [*estimated, *omega]
    else:
        if isinstance(names, str) or not isinstance(names, Sequence):
            raise ModelError(f"names must be a list of parameter names; got {names!r}.")
        selected = list(names)
        named_fixed = sorted(set(selected) & set(fixed))
        if named_fixed:
            raise ModelError(
                f"{named_fixed} are fixed (Param.fixed) and have no posterior to use as prior; "
                "remove them from names."
            )
        unknown = sorted(set(selected) - set(estimated) - set(omega))
        if unknown:
            raise ModelError(
                f"names {unknown} are not estimated parameters of the model; choose among "
                f"{[*estimated, *omega]}."
            )
    missing = [n for n in selected if n not in post]
    if missing:
        raise ModelError(
            f"The posterior lacks {missing}: was idata fitted with this model? It holds "
            f"{sorted(post.data_vars)[:30]}."
        )

    params = dict(model.params)
    sd_priors = {
        e: model.random.fixed_sds().get(f"omega_{e}_sd") or model.random.sd_prior(e)
        for e in model.eta_names
    }
    for name in selected:
        draws = np.asarray(post[name].values, dtype=float).ravel()
        if name in omega:
            e = omega[name]
            sd_priors[e] = _fitted_prior(sd_priors[e], draws, float(inflate), name)[0]
        else:
            old = model.params[name]
            prior = _fitted_prior(old.prior, draws, float(inflate), name)[0]
            params[name] = Param(prior, unit=old.unit, label=old.label)

    new = copy.copy(model)
    new.params = params
    if model.random is not None:
        new.random = dataclasses.replace(model.random, sd=sd_priors)
    return new
