"""Posterior predictions of IPRED on arbitrary time grids (for plots and tables)."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from numpyro.infer import Predictive

from ..population._model import Model
from ._fit import as_dataset
from ._predictive import _flat_draws

__all__ = ["predict_ipred", "time_grid"]


def time_grid(ds, n_time: int = 100) -> np.ndarray:
    """A per-subject grid from 0 to the last observation or dose time, shape (n_id, n_time)."""
    t_obs = np.where(ds.obs_mask, ds.obs_time, 0.0).max(axis=1)
    t_dose = np.where(ds.dose_mask, ds.dose_time, 0.0).max(axis=1)
    t_end = np.maximum(np.maximum(t_obs, t_dose), 1e-9)
    return np.linspace(0.0, 1.0, n_time)[None, :] * t_end[:, None]


def predict_ipred(
    model: Model,
    data: Any,
    idata,
    *,
    times: np.ndarray | None = None,
    n_time: int = 100,
    n_draws: int = 200,
    seed: int = 0,
    output: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Posterior draws of IPRED for each subject on a time grid.

    Parameters
    ----------
    model : Model
        The model that produced ``idata``.
    data : Dataset, DataFrame or path
        The dataset that was fitted (same subjects, same order).
    idata : arviz.InferenceData
        Result of :func:`bayes_nlme.fit`.
    times : ndarray, shape (n_id, n_time), optional
        Times per subject; default :func:`time_grid` with ``n_time`` points.
    n_draws : int, default 200
        Number of posterior draws used, evenly thinned over all chains.
    seed : int, default 0
    output : str, optional
        For a model with several outputs (endpoints): which one (default the first).

    Returns
    -------
    times : ndarray, shape (n_id, n_time)
    ipred : ndarray, shape (n_draws, n_id, n_time)
        IPRED (DV units) under each posterior draw, ETAs included.
    """
    ds = as_dataset(data)
    if times is None:
        times = time_grid(ds, n_time)
    times = np.asarray(times, dtype=float)
    mdata = model.model_data(ds, times=times, output=output)
    names = [*model.params, *model.random_site_names(), model.eta_site]
    samples, pick = _flat_draws(idata, names, n_draws)
    pred = Predictive(model.numpyro_model, posterior_samples=samples, return_sites=["IPRED"])
    out = pred(jax.random.PRNGKey(seed), mdata)
    ipred = np.asarray(out["IPRED"]).reshape(len(pick), *times.shape)
    return times, ipred
