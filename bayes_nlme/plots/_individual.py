"""Individual fits: observed DV with the posterior IPRED median and credible band per subject."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..infer._fit import as_dataset
from ..infer._predict import predict_ipred

__all__ = ["plot_individual_fits"]


def plot_individual_fits(
    model,
    data: Any,
    idata,
    *,
    path=None,
    band: float = 0.9,
    n_draws: int = 200,
    n_time: int = 100,
    ncols: int = 4,
    log_y: bool = False,
    dv_label: str = "DV",
    time_label: str = "TIME (h)",
):
    """Plot DV and the posterior IPRED band for every subject, one panel each.

    Parameters
    ----------
    model : Model
        The fitted model.
    data : Dataset, DataFrame or path
        The fitted dataset.
    idata : arviz.InferenceData
        Result of :func:`bayes_nlme.fit`.
    path : str or Path, optional
        Where to save the figure (PNG at 120 dpi); not saved when omitted.
    band : float, default 0.9
        Probability of the equal-tailed credible band of IPRED.
    n_draws, n_time : int
        Posterior draws and time points per subject used for the curves.
    ncols : int, default 4
    log_y : bool, default False
        Logarithmic concentration axis.
    dv_label, time_label : str
        Axis labels (put units here, e.g. ``"Theophylline (mg/L)"``).

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    ds = as_dataset(data)
    times, ipred = predict_ipred(model, ds, idata, n_draws=n_draws, n_time=n_time)
    lo, med, hi = np.quantile(ipred, [(1 - band) / 2, 0.5, (1 + band) / 2], axis=0)
    n = ds.n_id
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(3.0 * ncols, 2.4 * nrows),
        sharex=False,
        squeeze=False,
        constrained_layout=True,
    )
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.set_visible(False)
            continue
        m = ds.obs_mask[i]
        ax.fill_between(
            times[i], lo[i], hi[i], color="C0", alpha=0.25, lw=0, label=f"IPRED {band:.0%} CrI"
        )
        ax.plot(times[i], med[i], color="C0", lw=1.5, label="IPRED median")
        ax.plot(ds.obs_time[i][m], ds.obs_dv[i][m], "o", color="k", ms=3.5, label="DV")
        ax.set_title(f"ID {ds.ids[i]}", fontsize=9)
        if log_y:
            ax.set_yscale("log")
        if i % ncols == 0:
            ax.set_ylabel(dv_label, fontsize=8)
        if i >= n - ncols:
            ax.set_xlabel(time_label, fontsize=8)
        ax.tick_params(labelsize=7)
    axes.flat[0].legend(fontsize=7, frameon=False)
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
