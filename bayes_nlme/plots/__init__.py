"""Plots (matplotlib): goodness of fit, VPC/pcVPC, ETA vs covariates, individual fits, traces, SBC.

Every function returns the Figure and saves a PNG when ``path=`` is given.
"""

from ._gof import plot_eta_covariates, plot_gof, plot_rank, plot_trace
from ._individual import plot_individual_fits
from ._sbc import plot_sbc
from ._vpc import bin_edges, plot_vpc, vpc_stats

__all__ = [
    "bin_edges",
    "plot_eta_covariates",
    "plot_gof",
    "plot_individual_fits",
    "plot_rank",
    "plot_sbc",
    "plot_trace",
    "plot_vpc",
    "vpc_stats",
]
