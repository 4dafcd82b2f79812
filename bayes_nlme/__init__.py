"""bayes_nlme: Bayesian population PK/PD (hierarchical NLME models) with JAX and NumPyro.

Importing the package configures JAX for the process (float64, parallel CPU chains, a
persistent compilation cache): see :mod:`bayes_nlme._config`.
"""

from ._config import configure as _configure

_configure()

import numpyro.distributions as dist  # noqa: E402

from . import covariate, datasets, error, pk  # noqa: E402
from ._errors import BayesNLMEError, ModelError  # noqa: E402
from .data import Dataset, DatasetError, read_nonmem  # noqa: E402
from .diagnostics import summary  # noqa: E402
from .infer import (  # noqa: E402
    fit,
    fit_batch,
    predict_ipred,
    sample_posterior_predictive,
    sample_prior_predictive,
    simulate,
)
from .plots import plot_individual_fits  # noqa: E402
from .population import (  # noqa: E402
    IIV,
    IOV,
    BlockLKJCholesky,
    HalfStudentT,
    Model,
    Param,
    posterior_as_prior,
)

__version__ = "0.1.0"

__all__ = [
    "BayesNLMEError",
    "BlockLKJCholesky",
    "Dataset",
    "DatasetError",
    "HalfStudentT",
    "IIV",
    "IOV",
    "Model",
    "ModelError",
    "Param",
    "covariate",
    "datasets",
    "dist",
    "error",
    "fit",
    "fit_batch",
    "pk",
    "plot_individual_fits",
    "posterior_as_prior",
    "predict_ipred",
    "read_nonmem",
    "sample_posterior_predictive",
    "sample_prior_predictive",
    "simulate",
    "summary",
]
