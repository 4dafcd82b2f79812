"""Test-suite configuration: float64 everywhere; no persistent compilation cache (CI machines
are fresh, so it cannot pay off; subprocesses inherit the setting); JAX's in-memory caches
cleared after each test module: every NUTS fit leaves ~1,100 memory maps of compiled code
behind, and a single process running the whole suite would otherwise exceed Linux's
vm.max_map_count (65,530) and abort inside XLA (seen twice)."""

import gc
import os

os.environ["BAYES_NLME_CACHE_DIR"] = ""

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_enable_x64", True)

# Plots render off-screen in tests.
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_code():
    yield
    jax.clear_caches()
    gc.collect()
