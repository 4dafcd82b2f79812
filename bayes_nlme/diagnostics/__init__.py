"""Diagnostics of a fit: parameter tables, residuals (PRED, IPRED, IWRES, CWRES, NPDE),
shrinkage, PSIS-LOO and model comparison."""

from ._loo import compare, loo, subject_log_likelihood, subject_marginal_log_likelihood
from ._residuals import npde, pred, residuals, shrinkage
from ._summary import convergence, population_names, summary

__all__ = [
    "compare",
    "convergence",
    "loo",
    "npde",
    "population_names",
    "pred",
    "residuals",
    "shrinkage",
    "subject_log_likelihood",
    "subject_marginal_log_likelihood",
    "summary",
]
