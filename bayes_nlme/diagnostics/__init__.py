"""Diagnostics of a fit: parameter tables (more to come: shrinkage, NPDE, VPC, LOO)."""

from ._summary import population_names, summary

__all__ = ["population_names", "summary"]
