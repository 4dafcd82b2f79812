"""Residual error models (``bn.error.Additive``, ...); see :mod:`bayes_nlme.population`."""

from .population._error import AbstractError, Additive, Combined, Exponential, Proportional

__all__ = ["AbstractError", "Additive", "Combined", "Exponential", "Proportional"]
