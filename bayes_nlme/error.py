"""Residual error models (``bn.error.Additive``, ...); see :mod:`bayes_nlme.population`."""

from .population._error import (
    AbstractError,
    Additive,
    Censored,
    Combined,
    Endpoints,
    Exponential,
    Power,
    Proportional,
    StudentT,
)

__all__ = [
    "AbstractError",
    "Additive",
    "Censored",
    "Combined",
    "Endpoints",
    "Exponential",
    "Power",
    "Proportional",
    "StudentT",
]
