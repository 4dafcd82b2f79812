"""Test-suite configuration: every test runs in float64, without the persistent compilation
cache (CI machines are fresh, so it cannot pay off, and JAX 0.10.2 once aborted a test session
while writing a pmap executable to it; subprocesses inherit the setting)."""

import os

os.environ["BAYES_NLME_CACHE_DIR"] = ""

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

# Plots render off-screen in tests.
os.environ.setdefault("MPLBACKEND", "Agg")
