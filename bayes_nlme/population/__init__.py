"""Population model: THETA with priors, IIV (OMEGA), covariates in ``pre``, residual error."""

from ._error import AbstractError, Additive, Combined, Exponential, Power, Proportional, StudentT
from ._iov import IOV
from ._model import Model, ModelData, Namespace
from ._params import IIV, Param

__all__ = [
    "AbstractError",
    "Additive",
    "Combined",
    "Exponential",
    "Power",
    "Proportional",
    "StudentT",
    "IIV",
    "IOV",
    "Model",
    "ModelData",
    "Namespace",
    "Param",
]
