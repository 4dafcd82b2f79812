"""Population model: THETA with priors, IIV (OMEGA), covariates in ``pre``, residual error."""

from ._covariates import categorical, exponential, linear, power
from ._error import AbstractError, Additive, Combined, Exponential, Power, Proportional, StudentT
from ._iov import IOV
from ._model import Model, ModelData, Namespace
from ._params import (
    IIV,
    BlockCorrCholeskyTransform,
    BlockLKJCholesky,
    HalfStudentT,
    Param,
    block_corr_cholesky,
)
from ._posterior_prior import posterior_as_prior

__all__ = [
    "AbstractError",
    "Additive",
    "BlockCorrCholeskyTransform",
    "BlockLKJCholesky",
    "Combined",
    "Exponential",
    "HalfStudentT",
    "Power",
    "Proportional",
    "StudentT",
    "IIV",
    "IOV",
    "Model",
    "ModelData",
    "Namespace",
    "Param",
    "block_corr_cholesky",
    "categorical",
    "exponential",
    "linear",
    "posterior_as_prior",
    "power",
]
