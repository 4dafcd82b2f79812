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
    output: str | None = None,
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
    output : str, optional
        For a model with several outputs (endpoints, DVID): the one to plot, with its
        observations only (default: the first output).

    Notes
    -----
    For datasets with reset records (EVID 3/4, occasions) and models with IOV, the curves
    are the posterior IPRED at the observation times, one line per occasion (segment),
    instead of a fine time grid.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    ds = as_dataset(data)
    names = model.output_names()
    output = names[0] if output is None else output
    if output not in names:
        raise ValueError(f"output {output!r} is not one of the model's outputs {names}.")
    which = model.model_data(ds).obs_which
    s_idx, j_idx = ds.obs_index
    shown = np.zeros(ds.obs_mask.shape, bool)
    keep = np.ones(ds.n_obs, bool) if which is None else np.asarray(which) == names.index(output)
    shown[s_idx[keep], j_idx[keep]] = True
    q = [(1 - band) / 2, 0.5, (1 + band) / 2]
    grid = not (ds.has_resets or model.iov is not None)
    if grid:
        times, ipred = predict_ipred(
            model, ds, idata, n_draws=n_draws, n_time=n_time, output=output
        )
        lo, med, hi = np.quantile(ipred, q, axis=0)
    else:  # posterior IPRED at the observation times, per segment
        draws = idata.posterior["IPRED"].values.reshape(-1, ds.n_obs)
        flat = np.quantile(draws, q, axis=0)
        obs_q = np.full((3, *ds.obs_mask.shape), np.nan)
        obs_q[:, s_idx, j_idx] = flat
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
        m = shown[i]
        if grid:
            ax.fill_between(
                times[i],
                lo[i],
                hi[i],
                color="C0",
                alpha=0.25,
                lw=0,
                label=f"IPRED {band:.0%} CrI",
            )
            ax.plot(times[i], med[i], color="C0", lw=1.5, label="IPRED median")
        else:
            for g in np.unique(ds.obs_seg[i][m]):
                sel = m & (ds.obs_seg[i] == g)
                order = np.argsort(ds.obs_time[i][sel], kind="stable")
                t = ds.obs_time[i][sel][order]
                lo_g, med_g, hi_g = (obs_q[k, i][sel][order] for k in range(3))
                label = f"IPRED {band:.0%} CrI" if g == 0 else None
                ax.fill_between(t, lo_g, hi_g, color=f"C{g}", alpha=0.25, lw=0, label=label)
                ax.plot(t, med_g, color=f"C{g}", lw=1.5, label=f"segment {g}")
        ax.plot(ds.obs_time[i][m], ds.obs_dv[i][m], "o", color="k", ms=3.5, label="DV")
        cens = m & ds.obs_cens[i]
        if cens.any():
            ax.plot(
                ds.obs_time[i][cens],
                ds.obs_dv[i][cens],
                "v",
                color="C3",
                ms=4,
                label="BLQ (at LLOQ)",
            )
        title = f"ID {ds.ids[i]}" + (f" · {output}" if len(names) > 1 else "")
        ax.set_title(title, fontsize=9)
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
