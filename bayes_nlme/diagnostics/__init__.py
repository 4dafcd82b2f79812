"""Diagnostics of a fit: parameter tables, residuals (PRED, IPRED, IWRES, CWRES, NPDE),
shrinkage."""

from ._residuals import npde, pred, residuals, shrinkage
from ._summary import convergence, population_names, summary

__all__ = ["convergence", "npde", "population_names", "pred", "residuals", "shrinkage", "summary"]
