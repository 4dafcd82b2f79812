"""Process-wide JAX settings bayes_nlme applies at import (documented in the README).

1. **CPU devices for parallel chains.** Unless ``XLA_FLAGS`` already sets
   ``--xla_force_host_platform_device_count``, it is set to ``max(16, os.cpu_count())`` so
   that NUTS chains run in parallel on CPU (NumPyro's ``chain_method="parallel"``) and
   :func:`bayes_nlme.fit_batch` splits a batch into shards small enough that one slow dataset
   does not hold up many others (vmapped NUTS runs each iteration until the deepest tree of
   its shard is done: 64 Theophylline trials took 123 s over 4 host devices and 61 s over 16
   on 2 cores, ``bench/batch.py``). More devices than cores cost nothing. This only takes
   effect if bayes_nlme is imported before JAX initialises its backends; otherwise
   :func:`bayes_nlme.fit` falls back to running chains sequentially. Set
   ``BAYES_NLME_HOST_DEVICES=N`` to choose ``N`` yourself.
2. **float64.** PK concentrations span many orders of magnitude, so ``jax_enable_x64`` is on.
3. **Persistent compilation cache.** Compiled XLA programs are cached on disk (default
   ``~/.cache/bayes_nlme/jax``; ``BAYES_NLME_CACHE_DIR`` overrides it, ``BAYES_NLME_CACHE_DIR=""``
   disables it), so a repeated fit of the same model and data shape skips most compilation.

Many fits in ONE process: each :func:`bayes_nlme.fit` compiles new executables that JAX keeps
in memory (about 1,100 memory maps per fit, measured); after roughly 55 fits Linux's default
``vm.max_map_count`` (65,530) is exhausted and the process aborts inside XLA. Call
``jax.clear_caches()`` between fits in long loops (the test suite does so between modules).
"""

from __future__ import annotations

import os
import re

_FLAG = "--xla_force_host_platform_device_count"


def _configure_host_devices() -> None:
    flags = os.environ.get("XLA_FLAGS", "")
    if _FLAG in flags:
        return
    n = os.environ.get("BAYES_NLME_HOST_DEVICES")
    count = int(n) if n else max(16, os.cpu_count() or 1)
    os.environ["XLA_FLAGS"] = f"{flags} {_FLAG}={count}".strip()


def _cache_dir(default: bool) -> str | None:
    env = os.environ.get("BAYES_NLME_CACHE_DIR")
    if env is not None:
        return env or None
    if not default:
        return None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "bayes_nlme", "jax")


def configure() -> None:
    """Apply the settings above. Called once by ``import bayes_nlme``."""
    _configure_host_devices()
    import jax

    jax.config.update("jax_enable_x64", True)
    enable_compilation_cache()


def enable_compilation_cache(default: bool = True) -> None:
    """Turn on JAX's persistent compilation cache (see the module docstring).

    Parameters
    ----------
    default : bool, default True
        Use ``~/.cache/bayes_nlme/jax`` when ``BAYES_NLME_CACHE_DIR`` is unset; with False the
        cache is only enabled when that variable names a directory.
    """
    import jax

    cache = _cache_dir(default)
    if cache and not jax.config.jax_compilation_cache_dir:
        try:
            os.makedirs(cache, exist_ok=True)
            jax.config.update("jax_compilation_cache_dir", cache)
            jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
            jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
        except OSError:  # read-only home: run without the cache
            pass


def host_device_count() -> int:
    """Number of CPU devices requested through ``XLA_FLAGS`` (1 when not set)."""
    m = re.search(rf"{_FLAG}=(\d+)", os.environ.get("XLA_FLAGS", ""))
    return int(m.group(1)) if m else 1
