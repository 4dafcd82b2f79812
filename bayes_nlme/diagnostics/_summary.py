"""Parameter tables from a fit (statistics and convergence diagnostics come from ArviZ)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    import arviz as az

__all__ = ["convergence", "omega_table", "population_names", "summary"]

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
        :func:`convergence` (divergences, chains, draws). Correlations that are 0 in every
        draw (between blocks of a block-diagonal OMEGA, ``IIV(blocks=...)``) are left out.

    See Also
    --------
    omega_table : OMEGA as SDs, variances, CV% and correlations/covariances, with 90% CrIs.

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
        zero = _structural_zero_corr(idata)
        table = table[
            [not _is_redundant_corr(label, order) and label not in zero for label in table.index]
        ]
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


def _corr_label(a: str, b: str) -> str:
    return f"omega_corr[{a}, {b}]"


def _structural_zero_corr(idata) -> set[str]:
    """Labels ``omega_corr[a, b]`` that are exactly 0 in every draw (off-block pairs)."""
    if "omega_corr" not in idata.posterior:
        return set()
    corr = idata.posterior["omega_corr"]
    names = [str(n) for n in corr.coords["eta"].values]
    zero = np.all(corr.values == 0, axis=(0, 1))
    return {
        _corr_label(a, b) for i, a in enumerate(names) for j, b in enumerate(names) if zero[i, j]
    }


def omega_table(idata, prob: float = 0.9):
    r"""OMEGA of a fit as NONMEM and Monolix users read it: SDs, variances, CV% and
    correlations (and covariances), each with its posterior median and central interval.

    For each random effect ``n`` with SD :math:`\omega_n` (``omega_<n>_sd``), computed draw
    by draw:

    - ``omega_<n>_sd``: :math:`\omega_n`, the SD of :math:`\eta_n` (Monolix ``omega_n``);
    - ``omega_<n>_var``: :math:`\omega_n^2`, the diagonal element of OMEGA (NONMEM
      ``$OMEGA``);
    - ``omega_<n>_cv%``: :math:`100\sqrt{\exp(\omega_n^2) - 1}`, the exact CV of a
      log-normally distributed individual parameter :math:`P = \mathrm{TV}\,e^{\eta_n}`
      (the ``iiv_cv%`` of :func:`summary`; :math:`\approx 100\,\omega_n` for small
      :math:`\omega_n`, the CV% NONMEM users often quote). Meaningful for exponential
      (log-normal) IIV only.

    and, for each pair :math:`a \ne b` of a block OMEGA (lower triangle, in the order of the
    ETAs; pairs that are 0 in every draw, between blocks of ``IIV(blocks=...)``, are left
    out):

    - ``omega_corr[a, b]``: the correlation :math:`\rho_{ab}`;
    - ``omega_cov[a, b]``: the covariance :math:`\rho_{ab}\,\omega_a\,\omega_b`, the
      off-diagonal element of NONMEM's ``$OMEGA BLOCK``.

    Inter-occasion SDs ``omega_iov_<n>_sd`` (``bn.IOV``) get the same three rows, with
    ``eta`` ``iov_<n>``. Medians and intervals are of the transformed draws (for the
    monotone transforms of one SD they equal the transforms of the SD's quantiles).

    Parameters
    ----------
    idata : arviz.InferenceData
        Result of :func:`bayes_nlme.fit` with IIV.
    prob : float, default 0.9
        Mass of the equal-tailed credible interval.

    Returns
    -------
    pandas.DataFrame
        Index: the labels above (per ETA: sd, var, cv%; then per pair: corr, cov). Columns:
        ``eta`` (the ETA name, or ``"a, b"`` for a pair), ``quantity`` (``"sd"``, ``"var"``,
        ``"cv%"``, ``"corr"``, ``"cov"``), ``mean``, ``median``, and the interval bounds
        named by their quantiles (``"5%"``, ``"95%"`` for ``prob=0.9``). Empty for a model
        without IIV.

    Raises
    ------
    ValueError
        If ``prob`` is not in (0, 1).

    Examples
    --------
    >>> bn.diagnostics.omega_table(idata).loc["omega_cl_cv%", "median"]  # doctest: +SKIP
    """
    if not 0 < prob < 1:
        raise ValueError(f"prob must be in (0, 1); got {prob}.")
    lo_q, hi_q = (1 - prob) / 2, (1 + prob) / 2
    lo_name, hi_name = f"{100 * lo_q:g}%", f"{100 * hi_q:g}%"
    post = idata.posterior
    names = [
        n[len("omega_") : -len("_sd")]
        for n in population_names(idata)
        if n.startswith("omega_") and n.endswith("_sd")
    ]
    rows, index = [], []

    def add(label, eta, quantity, draws):
        draws = np.asarray(draws, dtype=float).ravel()
        index.append(label)
        rows.append(
            {
                "eta": eta,
                "quantity": quantity,
                "mean": float(np.mean(draws)),
                "median": float(np.median(draws)),
                lo_name: float(np.quantile(draws, lo_q)),
                hi_name: float(np.quantile(draws, hi_q)),
            }
        )

    sds = {n: np.asarray(post[f"omega_{n}_sd"].values, dtype=float) for n in names}
    for n in names:
        w = sds[n]
        add(f"omega_{n}_sd", n, "sd", w)
        add(f"omega_{n}_var", n, "var", w**2)
        add(f"omega_{n}_cv%", n, "cv%", 100 * np.sqrt(np.expm1(w**2)))
    if "omega_corr" in post:
        corr = post["omega_corr"]
        order = [str(e) for e in corr.coords["eta"].values]
        values = np.asarray(corr.values, dtype=float)
        zero = _structural_zero_corr(idata)
        for i, a in enumerate(order):
            for j, b in enumerate(order[:i]):
                if _corr_label(a, b) in zero:
                    continue
                r = values[:, :, i, j]
                add(_corr_label(a, b), f"{a}, {b}", "corr", r)
                add(f"omega_cov[{a}, {b}]", f"{a}, {b}", "cov", r * sds[a] * sds[b])
    columns = ["eta", "quantity", "mean", "median", lo_name, hi_name]
    return pd.DataFrame(rows, index=pd.Index(index, dtype=object), columns=columns)
