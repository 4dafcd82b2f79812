"""Plots (matplotlib): individual fits (GOF, VPC and more arrive with the diagnostics issue)."""

from ._individual import plot_individual_fits

__all__ = ["plot_individual_fits"]
