"""Inference: NUTS fits and predictive simulation."""

from ._batch import fit_batch
from ._fit import as_dataset, fit, init_to_typical
from ._predict import predict_ipred
from ._predictive import sample_posterior_predictive, sample_prior_predictive, simulate

__all__ = [
    "as_dataset",
    "fit",
    "fit_batch",
    "init_to_typical",
    "predict_ipred",
    "sample_posterior_predictive",
    "sample_prior_predictive",
    "simulate",
]
