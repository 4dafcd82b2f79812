"""Parameter tables from a fit (statistics and convergence diagnostics come from ArviZ)."""

from __future__ import annotations

import warnings

import numpy as np

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    import arviz as az

__all__ = ["summary", "population_names"]

COLUMNS = ["unit", "mean", "sd", "median", "5%", "95%", "ess_bulk", "ess_tail", "r_hat"]


def population_names(idata) -> list[str]:
    """Population-level variables of a bayes_nlme fit (THETA, OMEGA SDs, ``omega_corr``)."""
    names = idata.posterior.attrs.get("population_parameters", "")
    return [n for n in names.split(",") if n and n in idata.posterior]


def summary(idata, var_names: list[str] | None = None):
    """One row per population parameter: mean, sd, median, 90% interval, ESS, R-hat.

    Parameters
    ----------
    idata : arviz.InferenceData
        Result of :func:`bayes_nlme.fit`.
    var_names : list of str, optional
        Variables to report; default the model's population parameters (THETA, OMEGA SDs and,
        for a block OMEGA, the off-diagonal correlations ``omega_corr[a, b]``).

    Returns
    -------
    pandas.DataFrame
        Index: parameter names as in the model. Columns: ``unit``, ``mean``, ``sd``,
        ``median``, ``5%``, ``95%`` (equal-tailed 90% credible interval), ``ess_bulk``,
        ``ess_tail``, ``r_hat`` (rank-normalised split R-hat, Vehtari et al. 2021, computed by
        ArviZ).

    Examples
    --------
    >>> bn.summary(idata).loc["tvcl", "median"]  # doctest: +SKIP
    """
    names = var_names or population_names(idata)
    stat_funcs = {
        "median": np.median,
        "5%": lambda x: np.quantile(x, 0.05),
        "95%": lambda x: np.quantile(x, 0.95),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = az.summary(
            idata, var_names=names, stat_funcs=stat_funcs, extend=True, round_to="none"
        )
    if "omega_corr" in names:
        order = {n: k for k, n in enumerate(idata.posterior["omega_corr"].coords["eta"].values)}
        table = table[[not _is_redundant_corr(label, order) for label in table.index]]
    units = {n: idata.posterior[n].attrs.get("unit", "") for n in names}
    table.insert(0, "unit", [units.get(i.split("[")[0], "") for i in table.index])
    return table[COLUMNS]


def _is_redundant_corr(label: str, order: dict) -> bool:
    """Keep only the strict lower triangle of ``omega_corr`` (the diagonal is 1)."""
    if not label.startswith("omega_corr["):
        return False
    a, b = label[len("omega_corr[") : -1].split(", ")
    return order[a] <= order[b]
