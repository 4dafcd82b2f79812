"""Simulation from a model at known population parameters (simulate-then-recover, trials)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from numpyro import handlers

from .._errors import ModelError
from ..population._model import Model
from ._fit import as_dataset

__all__ = ["simulate"]


def simulate(model: Model, data: Any, params: Mapping[str, Any], *, seed: int = 0) -> dict:
    """Simulate one replicate of a dataset's design at known population parameters.

    New ETAs are drawn for every subject from N(0, OMEGA) and DV from the residual error
    model, at the dataset's dose events and observation times (its DV values are ignored).

    Parameters
    ----------
    model : Model
    data : Dataset, DataFrame or path
        The design: subjects, doses, observation times and covariates.
    params : mapping of str to float
        Every population parameter of the model (THETA, residual SDs, ``omega_<name>_sd``;
        ``omega_corr`` as an (n_eta, n_eta) correlation matrix for a block OMEGA).
    seed : int, default 0

    Returns
    -------
    dict of str to ndarray
        ``DV`` (shape (n_obs,), in the order of the dataset's observation rows, see
        ``Dataset.obs_row``), ``IPRED`` (n_obs,), ``eta_<name>`` (n_id,) and the individual
        parameters (n_id,).

    Raises
    ------
    ModelError
        If a population parameter is missing from ``params``.
    """
    ds = as_dataset(data)
    mdata = model.model_data(ds)
    values = dict(params)
    need = [n for n in [*model.params, *model.omega_sd_names()]]
    if model.random is not None and model.random.corr is not None:
        need.append("omega_corr")
    missing = [n for n in need if n not in values]
    if missing:
        raise ModelError(
            f"simulate() needs a value for every population parameter; missing {missing}."
        )
    if "omega_corr" in values:
        values["omega_corr_chol"] = np.linalg.cholesky(np.asarray(values.pop("omega_corr")))
    values = {k: np.asarray(v, dtype=float) for k, v in values.items()}
    conditioned = handlers.condition(model.numpyro_model, data=values)
    name = model.output_name()
    keep = [name, "IPRED", *(f"eta_{n}" for n in model.eta_names), *model._probe()[0]]

    @jax.jit
    def run(key, mdata):
        trace = handlers.trace(handlers.seed(conditioned, key)).get_trace(mdata)
        return {k: trace[k]["value"] for k in keep if k in trace}

    return {k: np.asarray(v) for k, v in run(jax.random.PRNGKey(seed), mdata).items()}
