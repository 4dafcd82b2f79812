"""Predictions and residuals per observation: PRED, IPRED, IWRES, CWRES, NPDE; shrinkage.

Definitions (``i`` subject, ``j`` observation; posterior draws ``s = 1..S``):

- **PRED** — the population prediction: the model at ETA = 0 and the posterior median of each
  population parameter (NONMEM's PRED at the final estimates).
- **IPRED** — the posterior median of the individual prediction ``f(θ_s, η_is, t_ij)``.
- **IWRES** — ``(DV - IPRED) / σ(IPRED)`` with the residual SD of the error model evaluated at
  IPRED and the posterior median of the residual parameters.
- **CWRES** — a conditional weighted residual computed from the posterior predictive
  distribution of each observation, ``(DV - E[y_rep]) / SD[y_rep]``, where the replicates
  ``y_rep`` use the subject's own posterior ETAs (the Bayesian analogue of NONMEM's CWRES,
  which weights by the FOCE covariance conditional on the EBEs).
- **NPDE** — normalised prediction distribution errors (Brendel et al. 2006, Comets et al.
  2008): ``K`` datasets are simulated with NEW subjects (new ETAs) from posterior draws; per
  subject, observations and simulations are decorrelated with the Cholesky factor of the
  simulated covariance, ``pde_ij`` is the fraction of decorrelated simulations below the
  decorrelated observation (ties at 0 and 1 shifted to ``1/(2K)`` and ``1 - 1/(2K)``), and
  ``NPDE = Φ⁻¹(pde)``. Under a correct model NPDE ~ N(0, 1), independent.
- **ETA shrinkage** (per random effect ``k``) — ``1 - SD_i(E[η_ik | y]) / ω_k`` with ``ω_k``
  the posterior median of ``omega_<k>_sd`` (Savic & Karlsson 2009, SD form).
- **ε shrinkage** — ``1 - SD(IWRES)`` (Karlsson & Savic 2007).

With several endpoints (DVID) each observation is weighted by the error model of its own
endpoint. Censored observations (BLQ, CENS=1) have no residual: IWRES, CWRES and NPDE are NaN
there, and NPDE decorrelates each subject's uncensored observations only (the imputation of
Nguyen et al. 2012 is not implemented); PRED and IPRED are given.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer import Predictive

from ..infer._fit import as_dataset
from ..infer._predictive import sample_posterior_predictive, simulate
from ..population._model import Model

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    import xarray as xr

__all__ = ["pred", "residuals", "npde", "shrinkage"]


def _median_params(model: Model, idata) -> dict[str, np.ndarray]:
    post = idata.posterior
    names = [*model.params, *model.omega_sd_names(), *model.random_site_names()]
    out = {
        k: np.asarray(post[k].median(("chain", "draw")))[None]
        for k in dict.fromkeys(names)
        if k in post and k != "omega_corr_chol"
    }
    if "omega_corr_chol" in post:
        corr = np.asarray(post["omega_corr"].median(("chain", "draw")))
        out["omega_corr_chol"] = np.linalg.cholesky(corr)[None]
    return out


def pred(model: Model, data: Any, idata) -> np.ndarray:
    """PRED: the model at ETA = 0 and the posterior median population parameters.

    Parameters
    ----------
    model : Model
    data : Dataset, DataFrame or path
        Any design with the model's covariates (the fitted data or a new one).
    idata : arviz.InferenceData
        A fit of ``model``.

    Returns
    -------
    ndarray, shape (n_obs,)
        PRED in DV units, in the order of the design's observations.
    """
    ds = as_dataset(data)
    mdata = model.model_data(ds)
    values = _median_params(model, idata)
    if model.eta_names:
        theta = {k: jnp.asarray(values[k][0]) for k in model.params}
        values[model.eta_site] = np.asarray(model.eta_site_at_zero(theta, mdata))[None]
    if model.iov is not None:
        values["z_kappa"] = np.zeros((1, ds.n_id, mdata.n_occ, len(model.kappa_names)))
    out = Predictive(model.numpyro_model, posterior_samples=values, return_sites=["IPRED"])(
        jax.random.PRNGKey(0), mdata
    )
    return np.asarray(out["IPRED"])[0]


def npde(
    model: Model,
    data: Any,
    idata,
    *,
    n_sim: int = 500,
    seed: int = 0,
) -> np.ndarray:
    """NPDE of every observation (Brendel et al. 2006; Comets et al. 2008).

    Parameters
    ----------
    model, data, idata
        The model, the fitted dataset and its fit.
    n_sim : int, default 500
        Number of simulated replicates ``K`` (new subjects, posterior draws evenly thinned).
    seed : int, default 0

    Returns
    -------
    ndarray, shape (n_obs,)
        NPDE; bounded by ``±Φ⁻¹(1 - 1/(2K))`` (±2.88 for K = 500).
    """
    ds = as_dataset(data)
    sims = simulate(model, ds, idata, etas="new", n_draws=n_sim, seed=seed)
    name = model.output_name()
    ysim = np.asarray(sims.predictions[name].values[0])  # (K, n_obs)
    yobs = np.asarray(ds.dv)
    subj = ds.obs_index[0]
    cens = ds.obs_cens[ds.obs_index]
    out = np.full_like(yobs, np.nan)
    k = ysim.shape[0]
    for i in np.unique(subj):
        cols = np.nonzero((subj == i) & ~cens)[0]
        if cols.size == 0:
            continue
        ys = ysim[:, cols]
        mean = ys.mean(axis=0)
        cov = np.atleast_2d(np.cov(ys, rowvar=False))
        cov = cov + 1e-12 * np.trace(cov) / len(cols) * np.eye(len(cols))
        chol = np.linalg.cholesky(cov)
        dec_obs = np.linalg.solve(chol, yobs[cols] - mean)
        dec_sim = np.linalg.solve(chol, (ys - mean).T).T
        pde = (dec_sim < dec_obs).mean(axis=0)
        out[cols] = np.clip(pde, 1 / (2 * k), 1 - 1 / (2 * k))
    from jax.scipy.stats import norm

    return np.where(np.isnan(out), np.nan, np.asarray(norm.ppf(np.nan_to_num(out, nan=0.5))))


def residuals(
    model: Model,
    data: Any,
    idata,
    *,
    n_sim: int = 500,
    seed: int = 0,
):
    """Per-observation table of predictions and residuals.

    Parameters
    ----------
    model, data, idata
        The model, the fitted dataset and its fit (from :func:`bayes_nlme.fit`).
    n_sim : int, default 500
        Simulated replicates for NPDE.
    seed : int, default 0

    Returns
    -------
    xarray.Dataset
        Dimension ``obs``; variables ``ID``, ``TIME``, ``DV``, ``PRED``, ``IPRED``, ``IWRES``,
        ``CWRES``, ``NPDE`` (definitions in the module docstring). ``.to_dataframe()`` gives a
        table.
    """
    ds = as_dataset(data)
    name = model.output_name()
    post = idata.posterior
    ipred_draws = post["IPRED"].values.reshape(-1, ds.n_obs)
    ipred = np.median(ipred_draws, axis=0)
    # residual SD at IPRED with median residual parameters: evaluate the error model
    med = {k: float(post[k].median()) for k in model.params}
    scale = _error_scale(model, med, ipred, model.model_data(ds).obs_which)
    if "posterior_predictive" not in idata.groups() or name not in idata.posterior_predictive:
        sample_posterior_predictive(model, ds, idata, seed=seed)
    yrep = idata.posterior_predictive[name].values.reshape(-1, ds.n_obs)
    dv = np.asarray(ds.dv)
    s, j = ds.obs_index
    cens = ds.obs_cens[s, j]
    variables = {
        "ID": ("obs", np.asarray(ds.obs_id)),
        "TIME": ("obs", ds.obs_time[s, j]),
        "DV": ("obs", dv),
        "PRED": ("obs", pred(model, ds, idata)),
        "IPRED": ("obs", ipred),
        "IWRES": ("obs", np.where(cens, np.nan, (dv - ipred) / scale)),
        "CWRES": (
            "obs",
            np.where(cens, np.nan, (dv - yrep.mean(axis=0)) / yrep.std(axis=0, ddof=1)),
        ),
        "NPDE": ("obs", npde(model, ds, idata, n_sim=n_sim, seed=seed)),
    }
    if ds.dvid_levels:
        variables["DVID"] = ("obs", np.asarray(ds.dvid_levels)[ds.obs_dvid[s, j]])
    if cens.any():
        variables["CENS"] = ("obs", cens.astype(int))
    return xr.Dataset(variables, coords={"obs": np.arange(ds.n_obs)})


def _error_scale(model: Model, theta: dict, ipred: np.ndarray, which=None) -> np.ndarray:
    """Residual SD of the model's error model, at population parameters ``theta``, evaluated
    at the given IPRED values (error models whose parameters depend on individual
    parameters are evaluated for a typical subject); ``which`` picks each observation's
    output for a model with several."""
    import jax.numpy as jnp

    from ..data._dataset import Doses

    doses = Doses(
        jnp.zeros(1), jnp.ones(1), jnp.zeros(1), jnp.zeros(1, jnp.int32), jnp.ones(1, bool)
    )
    eta = {k: jnp.asarray(0.0) for k in model.eta_names}
    cov = {k: jnp.asarray(1.0) for k in model.covariates}
    theta = {k: jnp.asarray(v) for k, v in theta.items()}
    _, out = model.subject(theta, eta, cov, doses, jnp.ones(1))
    scales = []
    for err in out.values():
        err = jax.tree_util.tree_map(lambda x: x[0], err)
        scales.append(np.asarray(dataclasses.replace(err, ipred=jnp.asarray(ipred)).scale()))
    if len(scales) == 1:
        return scales[0]
    return np.choose(np.asarray(which), scales)


def shrinkage(model: Model, idata, res=None) -> dict[str, float]:
    """ETA shrinkage per random effect and epsilon shrinkage (SD form, fractions).

    Parameters
    ----------
    model : Model
    idata : arviz.InferenceData
    res : xarray.Dataset, optional
        Output of :func:`residuals`; needed for epsilon shrinkage.

    Returns
    -------
    dict of str to float
        ``eta_<name>`` (``1 - SD_i(E[η_i | y]) / median(omega_<name>_sd)``) and, when ``res``
        is given, ``epsilon`` (``1 - SD(IWRES)``). 0 means individual data dominate, values
        near 1 mean the individual estimates shrink to the population.
    """
    post = idata.posterior
    out = {}
    for n in model.eta_names:
        means = post[f"eta_{n}"].mean(("chain", "draw")).values
        omega = float(post[f"omega_{n}_sd"].median())
        out[f"eta_{n}"] = float(1 - np.std(means, ddof=1) / omega)
    if res is not None:
        out["epsilon"] = float(1 - np.std(res["IWRES"].values, ddof=1))
    return out
