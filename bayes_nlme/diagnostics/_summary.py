"""Parameter tables from a fit (statistics and convergence diagnostics come from ArviZ)."""

from __future__ import annotations

import warnings

import numpy as np

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    import arviz as az

__all__ = ["convergence", "population_names", "summary"]

COLUMNS = [
    "unit",
    "mean",
    "sd",
    "median",
    "5%",
    "95%",
    "ess_bulk",
    "ess_tail",
    "r_hat",
    "iiv_cv%",
]


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
        ArviZ), and ``iiv_cv%`` for the IIV SDs ``omega_<name>_sd``: the posterior median of
        ``100·sqrt(exp(ω²) − 1)``, the exact CV of a log-normally distributed individual
        parameter (≈ 100·ω for small ω; NaN for other rows). ``table.attrs`` holds
        :func:`convergence` (divergences, chains, draws).

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
    cv = []
    for label in table.index:
        if label.startswith("omega_") and label.endswith("_sd") and label in idata.posterior:
            w = idata.posterior[label].values
            cv.append(float(np.median(100 * np.sqrt(np.expm1(w**2)))))
        else:
            cv.append(np.nan)
    table["iiv_cv%"] = cv
    table = table[COLUMNS]
    table.attrs.update(convergence(idata, names))
    return table


def convergence(idata, var_names: list[str] | None = None) -> dict:
    """Convergence digest of a NUTS fit.

    Returns
    -------
    dict
        ``chains``, ``draws`` (per chain), ``divergences`` (count after warmup),
        ``max_tree_depth_hits`` (transitions that reached NUTS' maximum tree depth: a sign
        of poor adaptation or strong posterior curvature), ``max_r_hat``, ``min_ess_bulk``,
        ``min_ess_tail`` over ``var_names`` (default the population parameters), and
        ``converged``: max R-hat < 1.01, no divergences and bulk and tail ESS ≥ 400, the
        thresholds recommended by Vehtari et al. (2021).
    """
    names = var_names or population_names(idata)
    stats = idata.sample_stats
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rhat = az.rhat(idata, var_names=names)
        ess_b = az.ess(idata, var_names=names, method="bulk")
        ess_t = az.ess(idata, var_names=names, method="tail")
    mx = lambda d: float(max(np.nanmax(v.values) for v in d.data_vars.values()))  # noqa: E731
    mn = lambda d: float(min(np.nanmin(v.values) for v in d.data_vars.values()))  # noqa: E731
    out = dict(
        chains=int(stats.sizes["chain"]),
        draws=int(stats.sizes["draw"]),
        divergences=int(stats["diverging"].sum()),
        max_r_hat=mx(rhat),
        min_ess_bulk=mn(ess_b),
        min_ess_tail=mn(ess_t),
    )
    if "tree_depth" in stats and "max_tree_depth" in stats.attrs:
        hits = stats["tree_depth"].values >= int(stats.attrs["max_tree_depth"])
        out["max_tree_depth_hits"] = int(hits.sum())
    out["converged"] = bool(
        out["max_r_hat"] < 1.01
        and out["divergences"] == 0
        and min(out["min_ess_bulk"], out["min_ess_tail"]) >= 400
    )
    return out


def _is_redundant_corr(label: str, order: dict) -> bool:
    """Keep only the strict lower triangle of ``omega_corr`` (the diagonal is 1)."""
    if not label.startswith("omega_corr["):
        return False
    a, b = label[len("omega_corr[") : -1].split(", ")
    return order[a] <= order[b]
