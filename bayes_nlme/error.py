"""Residual error models (``bn.error.Additive``, ...); see :mod:`bayes_nlme.population`."""

from .population._error import (
    AbstractError,
    Additive,
    Combined,
    Exponential,
    Power,
    Proportional,
    StudentT,
)

__all__ = [
    "AbstractError",
    "Additive",
    "Combined",
    "Exponential",
    "Power",
    "Proportional",
    "StudentT",
]
