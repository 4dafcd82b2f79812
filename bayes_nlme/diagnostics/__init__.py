"""Diagnostics of a fit: parameter tables, residuals (PRED, IPRED, IWRES, CWRES, NPDE),
shrinkage, PSIS-LOO and model comparison, and for NONMEM users the objective function value
(Laplace or FOCE-I), MAP fits, AIC and BIC."""

from ._loo import compare, loo, subject_log_likelihood, subject_marginal_log_likelihood
from ._ofv import MAPResult, OFVResult, focei_ofv, laplace_ofv, map_fit, ofv_function
from ._residuals import npde, pred, residuals, shrinkage
from ._summary import convergence, omega_table, population_names, summary

__all__ = [
    "MAPResult",
    "OFVResult",
    "compare",
    "convergence",
    "focei_ofv",
    "laplace_ofv",
    "loo",
    "map_fit",
    "npde",
    "ofv_function",
    "omega_table",
    "population_names",
    "pred",
    "residuals",
    "shrinkage",
    "subject_log_likelihood",
    "subject_marginal_log_likelihood",
    "summary",
]
