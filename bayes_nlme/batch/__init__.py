"""Batch work: simulated trials, simulation-based calibration, batch jobs."""

from ._sbc import SBCResult, sbc, simulate_datasets

__all__ = ["SBCResult", "sbc", "simulate_datasets"]
