"""Test-suite configuration.

- float64 everywhere.
- A persistent compilation cache private to this test run: a new, empty directory made by
  the first pytest process (the xdist controller) and inherited by its workers and by the
  subprocesses tests start (CLI, zoo scripts, notebooks, batch jobs), removed at exit. The
  same sampler program is compiled by many tests (the zoo scripts, the CLI, the notebooks
  and the library tests fit the same models to the same data shapes); with the cache only the
  first compiles. Nothing is carried over between runs, so every run starts cold and cannot
  pass on stale programs. ``BAYES_NLME_TEST_CACHE=0`` turns it off.
- JAX's in-memory caches cleared after each test module: every NUTS fit leaves ~1,100 memory
  maps of compiled code behind, and a single process running the whole suite would otherwise
  exceed Linux's vm.max_map_count (65,530) and abort inside XLA (seen twice).
"""

import atexit
import gc
import os
import shutil
import tempfile

if "BAYES_NLME_TEST_CACHE_OWNER" not in os.environ:  # set below; inherited by workers
    os.environ["BAYES_NLME_TEST_CACHE_OWNER"] = str(os.getpid())
    if os.environ.get("BAYES_NLME_TEST_CACHE", "1") == "0":
        os.environ["BAYES_NLME_CACHE_DIR"] = ""
    else:
        _cache = tempfile.mkdtemp(prefix="bayes_nlme_test_jax_cache_")
        os.environ["BAYES_NLME_CACHE_DIR"] = _cache
        atexit.register(shutil.rmtree, _cache, ignore_errors=True)

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
