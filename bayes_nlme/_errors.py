"""Exceptions raised by bayes_nlme (all carry a message that says what to change)."""

from __future__ import annotations

__all__ = ["BayesNLMEError", "ModelError"]


class BayesNLMEError(Exception):
    """Base class of every error bayes_nlme raises on purpose."""


class ModelError(BayesNLMEError, ValueError):
    """A model definition is inconsistent, or does not fit the dataset it is applied to."""
