"""Predictive simulation: prior and posterior predictive checks, and new designs.

All three functions run the model's own NumPyro program (:meth:`Model.numpyro_model`) with
:class:`numpyro.infer.Predictive`, so simulation and fitting can never disagree about the
model.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from numpyro.infer import Predictive

from .._errors import ModelError
from ..population._model import Model
from ._fit import as_dataset, constant_data, model_coords, model_dims

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    import arviz as az

__all__ = ["sample_prior_predictive", "sample_posterior_predictive", "simulate"]


def _flat_draws(idata, names, n_draws=None, seed=0):
    """Posterior draws of ``names`` flattened over (chain, draw), optionally thinned."""
    post = idata.posterior
    n_chain, n_draw = post.sizes["chain"], post.sizes["draw"]
    total = n_chain * n_draw
    if n_draws is None or n_draws >= total:
        pick = np.arange(total)
    else:
        pick = np.linspace(0, total - 1, n_draws).round().astype(int)
    out = {}
    for name in names:
        if name in post:
            v = post[name].values
            out[name] = v.reshape((total,) + v.shape[2:])[pick]
    return out, pick


def _site_groups(model: Model, result: Mapping[str, np.ndarray], obs_name: str):
    """Split simulated sites into parameter-like sites and the simulated observations."""
    obs_sites = (obs_name, "BLQ")
    params = {k: v for k, v in result.items() if k not in (*obs_sites, f"loglik_{obs_name}")}
    return params, {k: result[k] for k in obs_sites if k in result}


def _as_chain_draw(d: Mapping[str, np.ndarray], n_chain: int) -> dict[str, np.ndarray]:
    out = {}
    for k, v in d.items():
        v = np.asarray(v)
        out[k] = v.reshape((n_chain, v.shape[0] // n_chain) + v.shape[1:])
    return out


def sample_prior_predictive(model: Model, data: Any, *, draws: int = 500, seed: int = 0):
    """Simulate the dataset's design from the prior: a prior predictive check.

    Parameters
    ----------
    model : Model
    data : Dataset, DataFrame or path
        The design (doses, observation times, covariates); DV is kept as ``observed_data``.
    draws : int, default 500
        Number of prior draws.
    seed : int, default 0

    Returns
    -------
    arviz.InferenceData
        Groups ``prior`` (population parameters, ETAs, individual parameters, IPRED; dims
        ``chain`` = 1, ``draw``, ``ID``/``obs``), ``prior_predictive`` (DV, dims ``obs``),
        ``observed_data`` and ``constant_data``.
    """
    ds = as_dataset(data)
    mdata = model.model_data(ds)
    obs_name = model.output_name()
    pred = Predictive(model.numpyro_model, num_samples=draws)
    sim = {k: np.asarray(v) for k, v in pred(jax.random.PRNGKey(seed), mdata).items()}
    params, obs = _site_groups(model, sim, obs_name)
    cdata, cdims = constant_data(model, ds)
    dims = {**model_dims(model, obs_name), **cdims}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return az.from_dict(
            prior=_as_chain_draw(params, 1),
            prior_predictive=_as_chain_draw(obs, 1),
            observed_data={obs_name: np.asarray(ds.dv)},
            constant_data=cdata,
            coords=model_coords(model, ds),
            dims=dims,
        )


def sample_posterior_predictive(
    model: Model, data: Any, idata, *, seed: int = 0, n_draws: int | None = None
):
    """Add a ``posterior_predictive`` group (replicated DV for the fitted subjects) to a fit.

    Each replicate uses one posterior draw of the population parameters AND the subjects' own
    ETAs, then draws DV from the residual error model: the distribution of a repeated
    measurement of the same subjects (used for conditional residuals and posterior checks).

    Parameters
    ----------
    model : Model
    data : Dataset, DataFrame or path
        The fitted dataset.
    idata : arviz.InferenceData
        Result of :func:`bayes_nlme.fit`; modified in place and returned.
    seed : int, default 0
    n_draws : int, optional
        Use this many posterior draws (evenly thinned, whole chains kept); default all.

    Returns
    -------
    arviz.InferenceData
        ``idata`` with ``posterior_predictive[DV]`` of dims (chain, draw, obs).
    """
    ds = as_dataset(data)
    mdata = model.model_data(ds)
    obs_name = model.output_name()
    post = idata.posterior
    n_chain = post.sizes["chain"]
    per_chain = post.sizes["draw"] if n_draws is None else max(1, n_draws // n_chain)
    sub = post.isel(draw=np.linspace(0, post.sizes["draw"] - 1, per_chain).round().astype(int))
    names = [*model.params, *model.random_site_names(), model.eta_site, "z_kappa"]
    samples = {k: sub[k].values.reshape((-1,) + sub[k].shape[2:]) for k in names if k in sub}
    sites = [obs_name] + (["BLQ"] if mdata.obs_lloq is not None else [])
    pred = Predictive(model.numpyro_model, posterior_samples=samples, return_sites=sites)
    out = pred(jax.random.PRNGKey(seed), mdata)
    sim = {k: np.asarray(out[k]).reshape(n_chain, per_chain, -1) for k in sites}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        group = az.from_dict(
            posterior_predictive=sim,
            coords={"obs": np.arange(ds.n_obs), "draw": sub["draw"].values},
            dims={k: ["obs"] for k in sites},
        )
    if "posterior_predictive" in idata.groups():
        del idata.posterior_predictive
    idata.extend(group)
    return idata


def simulate(
    model: Model,
    data: Any,
    source: Any,
    *,
    etas: str = "new",
    n_draws: int | None = None,
    seed: int = 0,
):
    """Simulate a design (new regimens, new or fitted subjects) under known or fitted parameters.

    Parameters
    ----------
    model : Model
    data : Dataset, DataFrame or path
        The design to simulate: subjects, doses, observation times and covariates (its DV
        values are ignored). It may differ from the fitted dataset (a new regimen, a virtual
        trial).
    source : mapping or arviz.InferenceData
        Either known population parameters (a dict with every THETA, residual parameter,
        ``omega_<name>_sd`` and, for a block OMEGA, ``omega_corr`` as an (n_eta, n_eta)
        correlation matrix) giving one replicate, or a fit whose posterior draws are used
        (one replicate per draw: parameter uncertainty included).
    etas : {"new", "fitted"}, default "new"
        ``"new"``: every subject gets new ETAs from N(0, OMEGA) (new subjects from the
        population). ``"fitted"``: subjects keep their posterior ETAs — only with a fit as
        ``source``, and every ID of the design must be a fitted subject (their regimen may
        differ).
    n_draws : int, optional
        With a fit as source: number of posterior draws used (evenly thinned); default all.
    seed : int, default 0

    Returns
    -------
    arviz.InferenceData
        Group ``predictions`` with the simulated observations (e.g. ``DV``, dims ``obs``),
        ``IPRED`` (``obs``), ETAs and individual parameters (``ID``), one ``draw`` per
        replicate (``chain`` = 1); ``predictions_constant_data`` holds the design (TIME,
        subject, doses, covariates).

    Raises
    ------
    ModelError
        Missing parameters in ``source``; ``etas="fitted"`` without a fit or with IDs that
        were not fitted.

    Examples
    --------
    >>> from bayes_nlme.model_zoo.theophylline import model, data
    >>> truth = dict(tvka=1.5, tvcl=2.8, tvv=32.0, add_sd=0.5, omega_ka_sd=0.5,
    ...              omega_cl_sd=0.3, omega_v_sd=0.2)
    >>> sim = bn.simulate(model, data(), truth, seed=1)  # doctest: +SKIP
    >>> sim.predictions["DV"].shape  # doctest: +SKIP
    (1, 1, 132)
    """
    if etas not in ("new", "fitted"):
        raise ModelError(f"etas must be 'new' or 'fitted'; got {etas!r}.")
    ds = as_dataset(data)
    mdata = model.model_data(ds)
    obs_name = model.output_name()
    if hasattr(source, "posterior"):  # a fit (InferenceData is also a Mapping)
        names = [*model.params, *model.random_site_names()]
        samples, _ = _flat_draws(source, names, n_draws)
        if etas == "fitted" and model.eta_names:
            fitted_ids = list(np.asarray(source.posterior["ID"].values))
            missing = [i for i in np.asarray(ds.ids).tolist() if i not in fitted_ids]
            if missing:
                raise ModelError(
                    f"etas='fitted' needs every design ID among the fitted subjects; IDs "
                    f"{missing} were not fitted. Use etas='new' for new subjects."
                )
            z, _ = _flat_draws(source, [model.eta_site, "z_kappa"], n_draws)
            pos = [fitted_ids.index(i) for i in np.asarray(ds.ids).tolist()]
            for site, draws in z.items():
                samples[site] = draws[:, pos]
    elif isinstance(source, Mapping):
        if etas == "fitted":
            raise ModelError("etas='fitted' needs a fit (InferenceData) as source, not a dict.")
        samples = _known_params(model, source)
    else:
        raise ModelError(
            "simulate(source=...) takes a dict of population parameters or a fit "
            f"(InferenceData); got {type(source).__name__}."
        )
    pred = Predictive(model.numpyro_model, posterior_samples=samples)
    sim = {k: np.asarray(v) for k, v in pred(jax.random.PRNGKey(seed), mdata).items()}
    _raise_on_solver_failure(model, ds, sim)
    keep = {
        obs_name,
        "IPRED",
        "BLQ",
        *(f"eta_{n}" for n in model.eta_names),
        *(f"kappa_{n}" for n in model.kappa_names),
        *model._probe()[0],
    }
    keep.discard("solver_ok")
    sim = _as_chain_draw({k: v for k, v in sim.items() if k in keep}, 1)
    cdata, cdims = constant_data(model, ds)
    dims = {**model_dims(model, obs_name), **cdims}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return az.from_dict(
            predictions=sim,
            predictions_constant_data=cdata,
            coords=model_coords(model, ds),
            dims=dims,
        )


def _raise_on_solver_failure(model: Model, ds, sim: Mapping[str, np.ndarray]) -> None:
    """In simulation a failed ODE solve is an error naming the subjects, never a silent
    placeholder."""
    ok = sim.get("solver_ok")
    if ok is None or np.all(ok):
        return
    failed = ~np.asarray(ok, bool)  # (draws, n_id)
    ids = np.asarray(ds.ids)[failed.any(axis=0)].tolist()
    from ..pk._ode import ODESolveError

    raise ODESolveError(
        f"The ODE solve failed for subjects {ids[:20]}{' ...' if len(ids) > 20 else ''} "
        f"(in {int(failed.any(axis=1).sum())} of {failed.shape[0]} simulated replicates)."
        + "\n"
        + model.dynamics.failure_message(int(failed.sum()), int(failed.size))
    )


def _known_params(model: Model, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    fixed = model.fixed_values()
    need = [n for n in (*model.params, *model.omega_sd_names()) if n not in fixed]
    if model.iov is not None:
        need += model.iov.sd_names()
    block = model.random is not None and model.random.corr is not None
    if block:
        need.append("omega_corr")
    missing = [n for n in need if n not in params]
    if missing:
        raise ModelError(
            f"simulate() needs a value for every population parameter; missing {missing}."
        )
    values = {k: np.asarray(params[k], dtype=float)[None] for k in need if k != "omega_corr"}
    if block:
        values["omega_corr_chol"] = np.linalg.cholesky(np.asarray(params["omega_corr"]))[None]
    return values
