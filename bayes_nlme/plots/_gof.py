"""Goodness-of-fit plots: DV vs predictions, residuals, NPDE, ETAs vs covariates, MCMC traces.

Standard diagnostic panels of population PK (Karlsson & Savic 2007; Nguyen et al. 2017),
drawn from the outputs of :func:`bayes_nlme.diagnostics.residuals` and of a fit.

References
----------
Karlsson M.O., Savic R.M. (2007). Diagnosing model diagnostics. Clin Pharmacol Ther
82(1):17-20.

Nguyen T.H.T. et al. (2017). Model evaluation of continuous data pharmacometric models:
metrics and graphics. CPT Pharmacometrics Syst Pharmacol 6(2):87-109.

Brendel K., Comets E., Laffont C., Laveille C., Mentré F. (2006). Metrics for external model
evaluation with an application to the population pharmacokinetics of gliclazide. Pharm Res
23(9):2036-2049 (NPDE).

Savic R.M., Karlsson M.O. (2009). Importance of shrinkage in empirical Bayes estimates for
diagnostics: problems and solutions. AAPS J 11(3):558-569.

Vehtari A., Gelman A., Simpson D., Carpenter B., Bürkner P.-C. (2021). Rank-normalization,
folding, and localization: an improved R-hat for assessing convergence of MCMC. Bayesian Anal
16(2):667-718 (rank plots).
"""

from __future__ import annotations

import math
import warnings
from statistics import NormalDist
from typing import Any

import numpy as np

__all__ = ["plot_gof", "plot_eta_covariates", "plot_trace", "plot_rank"]


def _label(prefix: str, dv_label: str) -> str:
    return prefix if dv_label in ("", "DV", None) else f"{prefix}: {dv_label}"


def _binned_median(x: np.ndarray, y: np.ndarray, n_bins: int = 10, min_count: int = 3):
    """A robust trend line: medians of ``x`` and ``y`` in quantile bins of ``x`` (bins with at
    least ``min_count`` points)."""
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size < 2 * min_count:
        return np.array([]), np.array([])
    n_bins = max(1, min(n_bins, x.size // min_count))
    edges = np.unique(np.quantile(x, np.linspace(0, 1, n_bins + 1)))
    b = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, max(edges.size - 2, 0))
    xs, ys = [], []
    for j in np.unique(b):
        m = b == j
        if m.sum() >= min_count:
            xs.append(np.median(x[m]))
            ys.append(np.median(y[m]))
    return np.asarray(xs), np.asarray(ys)


def _scatter(ax, x, y, *, trend=True, color="C0"):
    ax.plot(x, y, "o", ms=3.5, color=color, alpha=0.55, mec="none")
    if trend:
        tx, ty = _binned_median(np.asarray(x), np.asarray(y))
        if tx.size:
            ax.plot(tx, ty, "-", color="C3", lw=1.8, label="binned median")
    ax.grid(alpha=0.25)


#: On log axes, values below this fraction of the largest are not drawn (pre-dose
#: predictions are 0 up to rounding, e.g. 1e-17, and would stretch the axis over 16 decades).
LOG_FLOOR = 1e-6


def _plain_log_ticks(axis, lo: float, hi: float) -> None:
    """Plain-number tick labels (1, 2, 5, 10 rather than 2 x 10^0) on a log axis; minor ticks
    2 and 5 are labelled when the axis spans less than about 1.5 decades."""
    from matplotlib import ticker

    axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    few = hi > 0 and lo > 0 and np.log10(hi / lo) < 1.5

    def minor(v, _):
        lead = round(v / 10 ** np.floor(np.log10(v)), 6)
        return f"{v:g}" if few and lead in (2.0, 5.0) else ""

    axis.set_minor_formatter(ticker.FuncFormatter(minor))


def _positive(*arrays):
    """Mask of entries positive and above LOG_FLOOR times the largest value in every array."""
    ok = np.ones(arrays[0].shape, bool)
    for a in arrays:
        top = np.nanmax(a) if a.size else 0.0
        ok &= np.isfinite(a) & (a > max(0.0, LOG_FLOOR * top))
    return ok


def _identity_panel(ax, x, y, *, log, xlabel, ylabel):
    x, y = np.asarray(x, float), np.asarray(y, float)
    if log:
        ok = _positive(x, y)
        n_out = int((~ok).sum())
        x, y = x[ok], y[ok]
    _scatter(ax, x, y)
    lo = min(np.nanmin(x), np.nanmin(y))
    hi = max(np.nanmax(x), np.nanmax(y))
    if not log:
        lo = min(lo, 0.0)
    pad = (hi - lo) * 0.03 if not log else 0.0
    ax.plot([lo, hi + pad], [lo, hi + pad], "k--", lw=1, label="identity")
    if log:
        ax.set_xscale("log")
        ax.set_yscale("log")
        _plain_log_ticks(ax.xaxis, lo, hi)
        _plain_log_ticks(ax.yaxis, lo, hi)
        if n_out:
            ax.text(
                0.98,
                0.02,
                f"{n_out} values ≤ 0 (or < {LOG_FLOOR:g} x max) not shown",
                transform=ax.transAxes,
                ha="right",
                va="bottom",
                fontsize=7,
                color="0.4",
            )
    else:
        ax.set_xlim(lo, hi + pad)
        ax.set_ylim(lo, hi + pad)
    if not log:
        ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8, frameon=False, loc="upper left")


def _residual_panel(ax, x, r, *, xlabel, ylabel, log_x=False):
    x, r = np.asarray(x, float), np.asarray(r, float)
    if log_x:
        ok = _positive(x)
        x, r = x[ok], r[ok]
    _scatter(ax, x, r)
    ax.axhline(0, color="k", lw=1)
    for v in (-2, 2):
        ax.axhline(v, color="k", lw=0.9, ls="--")
    if log_x:
        ax.set_xscale("log")
        if x.size:
            _plain_log_ticks(ax.xaxis, float(x.min()), float(x.max()))
    m = np.nanmax(np.abs(r)) if r.size else 3
    ax.set_ylim(-max(3.2, 1.08 * m), max(3.2, 1.08 * m))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    out = float(np.mean(np.abs(r) > 2)) if r.size else 0.0
    ax.text(
        0.98,
        0.97,
        f"|{ylabel}| > 2: {out:.1%}",
        transform=ax.transAxes,
        ha="right",
        va="top",
        fontsize=8,
        color="0.3",
    )


def _qq_panel(ax, r):
    r = np.sort(np.asarray(r, float)[np.isfinite(r)])
    n = r.size
    nd = NormalDist()
    theo = np.array([nd.inv_cdf((i + 0.5) / n) for i in range(n)])
    # pointwise 95% band of sorted N(0, 1) samples of size n (simulated, fixed seed)
    rng = np.random.default_rng(0)
    sims = np.sort(rng.standard_normal((2000, n)), axis=1)
    lo, hi = np.quantile(sims, [0.025, 0.975], axis=0)
    ax.fill_between(theo, lo, hi, color="0.6", alpha=0.3, lw=0, label="95% band under N(0, 1)")
    ax.plot(theo, r, "o", ms=3.5, color="C0", alpha=0.7, mec="none")
    lim = max(3.0, np.abs(r).max() * 1.05, np.abs(theo).max() * 1.05)
    ax.plot([-lim, lim], [-lim, lim], "k--", lw=1, label="identity")
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_xlabel("N(0, 1) quantiles")
    ax.set_ylabel("Sample quantiles of NPDE")
    ax.grid(alpha=0.25)
    ax.legend(fontsize=8, frameon=False, loc="upper left")


def _hist_panel(ax, r):
    r = np.asarray(r, float)[np.isfinite(r)]
    ax.hist(r, bins="auto", density=True, color="C0", alpha=0.55, label="NPDE")
    g = np.linspace(-4, 4, 201)
    ax.plot(g, np.exp(-0.5 * g**2) / math.sqrt(2 * math.pi), "k-", lw=1.2, label="N(0, 1)")
    ax.set_xlabel("NPDE")
    ax.set_ylabel("Density")
    ax.set_xlim(-4, 4)
    ax.legend(fontsize=8, frameon=False)
    ax.text(
        0.02,
        0.97,
        f"mean {r.mean():.2f} (0)\nvariance {r.var(ddof=1):.2f} (1)\nn = {r.size}",
        transform=ax.transAxes,
        va="top",
        fontsize=8,
        color="0.3",
    )


def plot_gof(
    res,
    *,
    kind: str = "standard",
    path=None,
    log: bool = False,
    dv_label: str = "DV",
    time_label: str = "TIME (h)",
):
    """Goodness-of-fit panels (2 x 2) from a residual table.

    ``kind="standard"``: DV vs PRED and DV vs IPRED (identity line), CWRES vs TIME and CWRES
    vs PRED (zero line and ±2). ``kind="npde"``: NPDE vs TIME, NPDE vs PRED (zero, ±2), a QQ
    plot of NPDE against N(0, 1) with a simulated pointwise 95% band, and a histogram with the
    N(0, 1) density (Brendel et al. 2006). Every scatter has a binned-median trend line (red;
    medians of x and y in up to 10 quantile bins of x), a model-free alternative to loess.

    Parameters
    ----------
    res : xarray.Dataset
        Output of :func:`bayes_nlme.diagnostics.residuals` (variables ``TIME``, ``DV``,
        ``PRED``, ``IPRED``, ``CWRES``, ``NPDE``; dim ``obs``).
    kind : {"standard", "npde"}, default "standard"
    path : str or Path, optional
        Save the figure there (PNG, 120 dpi).
    log : bool, default False
        Log-log axes for DV vs PRED/IPRED and a log PRED axis for residuals vs PRED. Values
        <= 0 or below ``1e-6`` times the largest (pre-dose predictions, 0 up to rounding) are
        not drawn; their number is shown.
    dv_label, time_label : str
        Axis labels with units (e.g. ``"Theophylline (mg/L)"``, ``"Time after dose (h)"``).

    Returns
    -------
    matplotlib.figure.Figure

    References
    ----------
    Nguyen T.H.T. et al. (2017). CPT Pharmacometrics Syst Pharmacol 6(2):87-109.
    Brendel K. et al. (2006). Pharm Res 23(9):2036-2049.
    """
    import matplotlib.pyplot as plt

    if kind not in ("standard", "npde"):
        raise ValueError(f"kind must be 'standard' or 'npde'; got {kind!r}")
    need = ["TIME", "PRED"] + (["DV", "IPRED", "CWRES"] if kind == "standard" else ["NPDE"])
    missing = [v for v in need if v not in res]
    if missing:
        raise ValueError(f"res lacks {missing}; pass bayes_nlme.diagnostics.residuals(...)")
    t = np.asarray(res["TIME"].values, float)
    pred = np.asarray(res["PRED"].values, float)
    fig, axes = plt.subplots(2, 2, figsize=(10, 8.4), constrained_layout=True)
    pred_lab = _label("Population prediction (PRED)", dv_label)
    if kind == "standard":
        dv = np.asarray(res["DV"].values, float)
        ipred = np.asarray(res["IPRED"].values, float)
        cw = np.asarray(res["CWRES"].values, float)
        _identity_panel(
            axes[0, 0], pred, dv, log=log, xlabel=pred_lab, ylabel=_label("Observed (DV)", dv_label)
        )
        _identity_panel(
            axes[0, 1],
            ipred,
            dv,
            log=log,
            xlabel=_label("Individual prediction (IPRED)", dv_label),
            ylabel=_label("Observed (DV)", dv_label),
        )
        _residual_panel(axes[1, 0], t, cw, xlabel=time_label, ylabel="CWRES")
        _residual_panel(axes[1, 1], pred, cw, xlabel=pred_lab, ylabel="CWRES", log_x=log)
        fig.suptitle(f"Goodness of fit ({t.size} observations)", fontsize=11)
    else:
        r = np.asarray(res["NPDE"].values, float)
        _residual_panel(axes[0, 0], t, r, xlabel=time_label, ylabel="NPDE")
        _residual_panel(axes[0, 1], pred, r, xlabel=pred_lab, ylabel="NPDE", log_x=log)
        _qq_panel(axes[1, 0], r)
        _hist_panel(axes[1, 1], r)
        fig.suptitle(f"NPDE ({r.size} observations)", fontsize=11)
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


# --------------------------------------------------------------------------------------------
# ETAs vs covariates
# --------------------------------------------------------------------------------------------


def _covariate_table(idata, data, covariates):
    """Per-subject covariates: ``{name: (values, levels or None)}`` from ``constant_data``
    (variables with dims ``("ID",)``) and, when given, the dataset's covariate columns."""
    out = {}
    if "constant_data" in idata.groups():
        cd = idata.constant_data
        for k, v in cd.data_vars.items():
            if v.dims == ("ID",):
                out[k] = (np.asarray(v.values, dtype=float), None)
    if data is not None:
        from ..infer._fit import as_dataset

        ds = as_dataset(data)
        fitted = [str(i) for i in np.asarray(idata.posterior["ID"].values)]
        if [str(i) for i in np.asarray(ds.ids)] != fitted:
            raise ValueError("data has other subjects (IDs) than the fit")
        for k, v in ds.covariates.items():
            if k not in out:
                out[k] = (np.asarray(v, dtype=float), ds.covariate_levels.get(k))
    if covariates is not None:
        covariates = [covariates] if isinstance(covariates, str) else list(covariates)
        by_lower = {k.lower(): k for k in out}
        missing = [c for c in covariates if c.lower() not in by_lower]
        if missing:
            raise ValueError(
                f"covariates {missing} not found; available: {sorted(out)} (covariates the "
                "model does not use are only available through data=)"
            )
        out = {by_lower[c.lower()]: out[by_lower[c.lower()]] for c in covariates}
    if not out:
        raise ValueError(
            "No per-subject covariates: the model uses none, so the fit stores none; pass the "
            "dataset as data= to plot the ETAs against its covariate columns."
        )
    return out


def plot_eta_covariates(
    idata,
    covariates: Any = None,
    *,
    data: Any = None,
    path=None,
    max_levels: int = 5,
):
    """Posterior-mean ETA of each subject against each covariate (one panel per pair).

    Continuous covariates: scatter with a least-squares line and Pearson's r; categorical
    ones (level labels in the dataset, or at most ``max_levels`` distinct values): jittered
    strip plot with the median per level. A trend suggests a covariate relation missing from
    the model. ETA shrinkage, ``1 - SD(E[η|y]) / ω`` with the posterior median ω, is shown
    with each ETA: above about 30% the posterior-mean ETAs are pulled to 0 and such plots
    can hide or invent relations (Savic & Karlsson 2009).

    Parameters
    ----------
    idata : arviz.InferenceData
        A fit (posterior variables ``eta_<name>`` with dim ``ID``).
    covariates : str or list of str, optional
        Covariates to plot; default all available.
    data : Dataset, DataFrame or path, optional
        The fitted dataset: adds its covariate columns (the fit's ``constant_data`` holds only
        the covariates the model uses), with level labels of non-numeric columns.
    path : str or Path, optional
        Save the figure there (PNG, 120 dpi).
    max_levels : int, default 5
        Numeric covariates with at most this many distinct values are drawn as categorical.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        No ETAs in the fit, no covariates (pass ``data=``), unknown covariate names.
    """
    import matplotlib.pyplot as plt

    post = idata.posterior
    etas = [k for k in post.data_vars if k.startswith("eta_") and post[k].dims[2:] == ("ID",)]
    if "eta" in post.coords:  # the model's order of the random effects
        order = [f"eta_{n}" for n in np.asarray(post["eta"].values).tolist()]
        etas = [e for e in order if e in etas] + [e for e in etas if e not in order]
    if not etas:
        raise ValueError("The fit has no ETAs (posterior eta_<name> with dim ID)")
    covs = _covariate_table(idata, data, covariates)
    n_e, n_c = len(etas), len(covs)
    fig, axes = plt.subplots(
        n_e,
        n_c,
        figsize=(max(4.6, 3.4 * n_c + 0.6), 2.8 * n_e + 0.4),
        squeeze=False,
        sharey="row",
        constrained_layout=True,
    )
    rng = np.random.default_rng(0)
    for i, e in enumerate(etas):
        eta = np.asarray(post[e].mean(("chain", "draw")).values, float)
        name = e[len("eta_") :]
        omega = f"omega_{name}_sd"
        ylab = f"η {name} (posterior mean)"
        if omega in post:
            shr = 1 - np.std(eta, ddof=1) / float(post[omega].median())
            ylab += f"\nshrinkage {shr:.0%}"
        for j, (cname, (v, levels)) in enumerate(covs.items()):
            ax = axes[i, j]
            ok = np.isfinite(v)
            u = np.unique(v[ok])
            ax.axhline(0, color="k", lw=0.8)
            if levels is not None or u.size <= max_levels:
                for pos, level in enumerate(u):
                    m = ok & (v == level)
                    x = pos + rng.uniform(-0.15, 0.15, m.sum())
                    ax.plot(x, eta[m], "o", ms=4, color="C0", alpha=0.7, mec="none")
                    ax.plot([pos - 0.3, pos + 0.3], [np.median(eta[m])] * 2, color="C3", lw=2)
                ticks = (
                    [str(levels[int(c)]) for c in u]
                    if levels is not None
                    else [f"{c:g}" for c in u]
                )
                ax.set_xticks(range(u.size), ticks)
                ax.set_xlim(-0.6, u.size - 0.4)
            else:
                ax.plot(v[ok], eta[ok], "o", ms=4, color="C0", alpha=0.7, mec="none")
                if u.size > 2:
                    slope, icpt = np.polyfit(v[ok], eta[ok], 1)
                    g = np.linspace(u[0], u[-1], 2)
                    ax.plot(g, icpt + slope * g, "-", color="C3", lw=1.5)
                    r = np.corrcoef(v[ok], eta[ok])[0, 1]
                    ax.text(
                        0.97,
                        0.95,
                        f"r = {r:.2f}",
                        transform=ax.transAxes,
                        ha="right",
                        va="top",
                        fontsize=8,
                        color="0.3",
                    )
            ax.grid(alpha=0.25)
            if j == 0:
                ax.set_ylabel(ylab)
            if i == n_e - 1:
                ax.set_xlabel(cname)
    fig.suptitle(f"ETAs vs covariates ({post.sizes['ID']} subjects)", fontsize=11)
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


# --------------------------------------------------------------------------------------------
# MCMC diagnostics
# --------------------------------------------------------------------------------------------


def _names(idata, var_names):
    if var_names is not None:
        return [var_names] if isinstance(var_names, str) else list(var_names)
    from ..diagnostics._summary import population_names

    names = population_names(idata)
    if not names:
        raise ValueError("No population parameters recorded in the fit; pass var_names")
    return names


def _figure_of(axes):
    return np.asarray(axes).ravel()[0].figure


def plot_trace(idata, var_names: Any = None, *, path=None, **kwargs):
    """Trace plots (marginal density per chain and draws vs iteration) of the population
    parameters: a thin wrapper over :func:`arviz.plot_trace`.

    Parameters
    ----------
    idata : arviz.InferenceData
    var_names : str or list of str, optional
        Default :func:`bayes_nlme.diagnostics.population_names` (THETA, OMEGA SDs,
        ``omega_corr``).
    path : str or Path, optional
        Save the figure there (PNG, 120 dpi).
    **kwargs
        Passed to :func:`arviz.plot_trace` (e.g. ``compact``, ``kind="rank_bars"``).

    Returns
    -------
    matplotlib.figure.Figure
    """
    import arviz as az

    return _arviz_plot(az.plot_trace, idata, var_names, path, kwargs)


def plot_rank(idata, var_names: Any = None, *, path=None, **kwargs):
    """Rank plots (histograms of the ranks of each chain's draws among all chains) of the
    population parameters: a thin wrapper over :func:`arviz.plot_rank` (Vehtari et al. 2021).

    Well-mixed chains give uniform histograms; a chain whose ranks pile up at one end has
    not explored the same distribution as the others.

    Parameters
    ----------
    idata : arviz.InferenceData
    var_names : str or list of str, optional
        Default :func:`bayes_nlme.diagnostics.population_names`.
    path : str or Path, optional
        Save the figure there (PNG, 120 dpi).
    **kwargs
        Passed to :func:`arviz.plot_rank` (e.g. ``kind="vlines"``).

    Returns
    -------
    matplotlib.figure.Figure
    """
    import arviz as az

    return _arviz_plot(az.plot_rank, idata, var_names, path, kwargs)


def _arviz_plot(plot, idata, var_names, path, kwargs):
    """Run an ArviZ plot on the population parameters; return (and optionally save) its
    Figure."""
    names = _names(idata, var_names)
    kwargs.setdefault("backend_kwargs", {"layout": "constrained"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (FutureWarning, UserWarning))
        axes = plot(idata, var_names=names, **kwargs)
    fig = _figure_of(axes)
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
