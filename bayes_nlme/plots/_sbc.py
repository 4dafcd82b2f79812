"""Simulation-based calibration plots: rank histograms and ECDF differences.

References
----------
Talts S., Betancourt M., Simpson D., Vehtari A., Gelman A. (2018). Validating Bayesian
inference algorithms with simulation-based calibration. arXiv:1804.06788 (rank histograms).

Säilynoja T., Bürkner P.-C., Vehtari A. (2022). Graphical test for discrete uniformity and its
applications in goodness-of-fit evaluation and multiple sample comparison. Statistics and
Computing 32:32 (ECDF difference with simultaneous confidence bands).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

__all__ = ["plot_sbc"]


def plot_sbc(result: Any, *, prob: float = 0.95, path: Any = None):
    """Rank histogram and ECDF-difference plot of an SBC run, one row per parameter.

    Parameters
    ----------
    result : SBCResult
        From :func:`bayes_nlme.batch.sbc`.
    prob : float, default 0.95
        Coverage of the grey band: pointwise binomial interval of each histogram bin, and
        ArviZ's simultaneous band (Säilynoja et al. 2022) around the ECDF difference.
    path : str or path, optional
        Save a PNG there.

    Returns
    -------
    matplotlib.figure.Figure
        Left: ranks in ``result.bins`` bins with the uniform expectation; right: ECDF of the
        scaled ranks minus the uniform CDF (inside the band: calibrated). The title of each
        row gives the chi-square p-value.
    """
    import matplotlib.pyplot as plt
    from scipy import stats

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        import arviz as az

    names = list(result.ranks)
    fig, axes = plt.subplots(len(names), 2, figsize=(9, 2.4 * len(names)), squeeze=False)
    n_r, bins = result.n_ranks, result.bins
    for row, name in zip(axes, names, strict=True):
        ranks = np.asarray(result.ranks[name])
        n = ranks.size
        which = np.arange(n_r + 1) * bins // (n_r + 1)
        p_bin = np.bincount(which, minlength=bins) / (n_r + 1)
        counts = np.bincount(ranks * bins // (n_r + 1), minlength=bins)
        lo = stats.binom.ppf((1 - prob) / 2, n, p_bin)
        hi = stats.binom.ppf(1 - (1 - prob) / 2, n, p_bin)
        x = np.arange(bins)
        row[0].fill_between(
            np.r_[x - 0.5, x[-1] + 0.5],
            np.r_[lo, lo[-1]],
            np.r_[hi, hi[-1]],
            step="post",
            color="0.85",
            label=f"{prob:.0%} binomial",
        )
        row[0].bar(x, counts, width=0.9, color="C0")
        row[0].axhline(n / bins, color="0.4", lw=1)
        row[0].set_ylabel(name)
        row[0].set_xticks([])
        cut = result.alpha / max(len(result.pvalues), 1)
        flag = "" if result.pvalues[name] >= cut else "  (FAILS)"
        row[0].set_title(f"{name}: chi-square p = {result.pvalues[name]:.3g}{flag}", fontsize=9)
        u = (ranks + 0.5) / (n_r + 1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            az.plot_ecdf(
                u,
                cdf=stats.uniform(0, 1).cdf,
                difference=True,
                confidence_bands=True,
                ci_prob=prob,
                ax=row[1],
                rvs=None,
                random_state=0,
            )
        row[1].set_title("ECDF - uniform", fontsize=9)
    axes[-1][0].set_xlabel(f"rank bin ({n_r + 1} ranks, {bins} bins)")
    axes[-1][1].set_xlabel("scaled rank")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig
