"""Covariate models for ``pre`` (``bn.covariate.power``, ...); see
:mod:`bayes_nlme.population._covariates`."""

from .population._covariates import categorical, exponential, linear, power

__all__ = ["categorical", "exponential", "linear", "power"]
