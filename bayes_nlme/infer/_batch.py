"""Many NUTS fits of one model in one compiled program: ``fit_batch``.

The NUTS kernel is the one :func:`bayes_nlme.fit` uses (NumPyro's ``NUTS`` with the same
initialisation, adaptation and key handling), driven here by a pure function of
``(key, data)`` that is ``jax.vmap``-ed over chains and datasets and ``jax.shard_map``-ped
over the local devices. On an accelerator that turns many small fits into one program that
keeps the device busy; on CPU the host devices run their shards in parallel.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec
from numpyro.infer import NUTS

from .._errors import ModelError
from ..data._dataset import Dataset
from ..population._model import Model, ModelData
from ._fit import (
    _EXTRA_FIELDS,
    check_init,
    draws_to_inference_data,
    init_to_typical,
    optimise_etas,
    prepare,
    typical_start,
)

__all__ = ["fit_batch"]

#: Deterministic sites with an ``obs`` axis, trimmed back from the padded length.
_OBS_SITES = ("IPRED", "BLQ")


def _signature(mdata: ModelData) -> tuple:
    """What must agree for datasets to share one compiled program: the numbers of subjects,
    units and occasions (parameter dimensions: padding them would add ETAs) and which
    optional fields exist."""
    intervals = ()
    if mdata.int_start is not None:
        # time-varying covariates: dose fields and obs_time carry an interval axis, and
        # outputs are gathered through it; such datasets share a program only when these
        # shapes agree (only the obs vector is padded)
        intervals = (mdata.int_start.shape, mdata.dose_time.shape, mdata.obs_time.shape)
    return (
        intervals,
        mdata.n_id,
        mdata.n_unit,
        mdata.n_occ,
        tuple(f for f in mdata._fields if getattr(mdata, f) is None),
        tuple(sorted(mdata.covariates)),
        tuple(sorted(mdata.id_covariates or {})),
    )


def _pad_axis(x: np.ndarray, axis: int, size: int, fill: str) -> np.ndarray:
    """Pad ``x`` along ``axis`` to ``size``: ``"zero"``, or repeat the ``"last"``/``"first"``
    entry."""
    x = np.asarray(x)
    n = x.shape[axis]
    if n == size:
        return x
    if fill == "zero":
        shape = list(x.shape)
        shape[axis] = size - n
        extra = np.zeros(shape, x.dtype)
    else:
        at = 0 if fill == "first" else n - 1
        extra = np.repeat(np.take(x, [at], axis=axis), size - n, axis=axis)
    return np.concatenate([x, extra], axis=axis)


_DOSE_FIELDS = ("dose_time", "dose_amt", "dose_rate", "dose_cmt", "dose_mask", "dose_ss", "dose_ii")
_OBS_FIELDS = ("obs_unit", "obs_slot", "obs_which", "obs_cens", "obs_lloq")


def stack_designs(mdatas: Sequence[ModelData], dvs: Sequence[np.ndarray]):
    """Pad datasets of one :func:`_signature` to common shapes and stack them.

    Dose slots are padded with masked (``dose_mask`` False) zero doses, evaluation times
    with the unit's last time, and the ``obs`` vector with copies of the first observation
    flagged False in ``obs_mask``: their log-likelihood is 0, and being real observations
    they keep every value and gradient finite. When all datasets have the same number of
    observations ``obs_mask`` stays None, so the program is the one :func:`fit` runs.

    Returns
    -------
    mdata : ModelData with a leading batch axis on every array
    dv : ndarray, shape (n_batch, n_obs_max)
    """
    n_dose = max(m.dose_time.shape[1] for m in mdatas)
    n_time = max(m.obs_time.shape[1] for m in mdatas)
    n_obs = max(m.n_obs for m in mdatas)
    ragged = any(m.n_obs != n_obs for m in mdatas)
    out, out_dv = [], []
    for m, dv in zip(mdatas, dvs, strict=True):
        rep = {
            f: _pad_axis(getattr(m, f), 1, n_dose, "zero")
            for f in _DOSE_FIELDS
            if getattr(m, f) is not None
        }
        rep["obs_time"] = _pad_axis(m.obs_time, 1, n_time, "last")
        rep.update(
            {
                f: _pad_axis(getattr(m, f), 0, n_obs, "first")
                for f in _OBS_FIELDS
                if getattr(m, f) is not None
            }
        )
        if ragged:
            rep["obs_mask"] = np.arange(n_obs) < m.n_obs
        out.append(m._replace(**rep))
        out_dv.append(_pad_axis(np.asarray(dv, float), 0, n_obs, "first"))
    stacked = jax.tree_util.tree_map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *out)
    return stacked, np.stack(out_dv)


def _chain_keys(seed: int, chains: int) -> np.ndarray:
    """The per-chain keys :class:`numpyro.infer.MCMC` derives from ``PRNGKey(seed)``."""
    key = jax.random.PRNGKey(seed)
    if chains > 1:
        return np.asarray(jax.random.split(key, chains))
    return np.asarray(key)[None]


class _Program:
    """One compiled NUTS program for a model, sampler settings and device set."""

    def __init__(
        self,
        model: Model,
        *,
        chains,
        warmup,
        samples,
        target_accept,
        max_tree_depth,
        dense_mass,
        init,
        devices,
    ):
        self.warmup, self.samples, self.chains, self.init = warmup, samples, chains, init
        self.model = model
        self.kernel = NUTS(
            model.numpyro_model,
            target_accept_prob=target_accept,
            max_tree_depth=max_tree_depth,
            dense_mass=dense_mass,
            init_strategy=init_to_typical(),
        )
        self.devices = list(devices)
        self._run = None
        self._post = None

    def _chain(self, key, mdata, dv):
        """One chain: NumPyro's ``NUTS.init`` then ``warmup + samples`` transitions, the
        same sequence :class:`numpyro.infer.MCMC` runs; keeps the unconstrained draws."""
        kernel, args, kwargs = self.kernel, (mdata,), {"DV": dv}
        z0 = None
        if self.init == "ebe":  # as fit(init="ebe"): ebe_init_params with this chain's key
            z0 = optimise_etas(*typical_start(key, self.model, mdata, dv))
        state = kernel.init(key, self.warmup, z0, args, kwargs)
        ok = jnp.isfinite(state.potential_energy)

        def fields_of(s):
            return {
                "potential_energy": s.potential_energy,
                "energy": s.energy,
                "num_steps": s.num_steps,
                "mean_accept_prob": s.mean_accept_prob,
                "diverging": s.diverging,
                "adapt_state.step_size": s.adapt_state.step_size,
            }

        # One loop over warmup + samples (one copy of the NUTS transition in the compiled
        # program, as in NumPyro's fori_collect): warmup iterations write to slot 0, which
        # the first kept draw overwrites.
        n = self.samples
        buf = jax.tree_util.tree_map(
            lambda x: jnp.zeros((n, *jnp.shape(x)), jnp.result_type(x)),
            (state.z, fields_of(state)),
        )

        def body(i, carry):
            s, buf = carry
            s = kernel.sample(s, args, kwargs)
            j = jnp.maximum(i - self.warmup, 0)
            buf = jax.tree_util.tree_map(lambda b, x: b.at[j].set(x), buf, (s.z, fields_of(s)))
            return s, buf

        _, (z, fields) = jax.lax.fori_loop(0, self.warmup + n, body, (state, buf))
        return z, fields, ok

    def run(self, keys, mdata, dv):
        """keys (n, chains, 2), mdata/dv with leading axis n (a multiple of the devices)."""
        if self._run is None:
            per_data = jax.vmap(self._chain, in_axes=(0, None, None))
            batched = jax.vmap(per_data, in_axes=(0, 0, 0))
            if len(self.devices) > 1:
                mesh = Mesh(np.asarray(self.devices), ("batch",))
                spec = PartitionSpec("batch")
                batched = jax.shard_map(
                    batched,
                    mesh=mesh,
                    in_specs=(spec, spec, spec),
                    out_specs=spec,
                    check_vma=False,
                )
            self._run = jax.jit(batched)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="There are not enough devices")
            return self._run(keys, mdata, dv)

    def postprocess(self, z, mdata, dv):
        """Constrained sites and deterministics of one dataset's draws (chain, draw, ...)."""
        if self._post is None:

            def post(z, mdata, dv):
                f = self.kernel.postprocess_fn((mdata,), {"DV": dv})
                return jax.vmap(jax.vmap(f))(z)

            self._post = jax.jit(post)
        return self._post(z, mdata, dv)


#: Compiled programs by (model, sampler settings, devices): later calls of fit_batch with
#: the same model and settings (batch jobs, loops over chunks) reuse the compiled program.
_PROGRAMS: dict[tuple, tuple[Model, _Program]] = {}


def _program(model: Model, devices: list, settings: dict) -> _Program:
    key = (id(model), tuple(sorted(settings.items())), tuple(d.id for d in devices))
    hit = _PROGRAMS.get(key)
    if hit is not None and hit[0] is model:
        return hit[1]
    if len(_PROGRAMS) >= 8:
        _PROGRAMS.pop(next(iter(_PROGRAMS)))
    program = _Program(model, devices=devices, **settings)
    _PROGRAMS[key] = (model, program)
    return program


def _resolve_devices(devices) -> list:
    if devices is None:
        return jax.local_devices()
    if isinstance(devices, int):
        avail = jax.local_devices()
        if devices < 1 or devices > len(avail):
            raise ModelError(f"devices={devices}: there are {len(avail)} local devices.")
        return avail[:devices]
    return list(devices)


def fit_batch(
    model: Model,
    datasets: Sequence[Any],
    *,
    chains: int = 4,
    warmup: int = 1000,
    samples: int = 1000,
    seed: int = 0,
    seeds: Sequence[int] | None = None,
    target_accept: float = 0.9,
    max_tree_depth: int = 10,
    dense_mass: bool = False,
    init: str = "typical",
    devices: Any = None,
    batch_size: int | None = None,
    progress: bool | None = None,
    on_result: Callable[[int, Any], None] | None = None,
):
    """Fit one model to many datasets with NUTS in one compiled program per dataset shape.

    Chains are vectorised and datasets ``jax.vmap``-ed; the batch is split over ``devices``
    with ``jax.shard_map`` (one shard per device, no communication between them). Each
    dataset gets exactly the computation :func:`bayes_nlme.fit` runs for it: the same NUTS
    kernel, initialisation, adaptation and keys, so ``fit_batch(model, [d], seeds=[s])``
    gives the draws of ``fit(model, d, seed=s)`` to floating-point round-off.

    Parameters
    ----------
    model : Model
    datasets : sequence of Dataset, pandas.DataFrame or CSV path
        Datasets of the same model (e.g. simulated trials). Datasets with the same number
        of subjects (and occasions) share one program; within it, dose slots, evaluation
        times and observations are padded and masked (padding never enters the
        likelihood). Datasets with different numbers of subjects are run as separate
        programs: padding subjects would add ETA dimensions and change the posterior of a
        centred OMEGA.
    chains, warmup, samples, target_accept, max_tree_depth, dense_mass, init
        As in :func:`bayes_nlme.fit` (``init="ebe"``: each chain's ETAs start at their
        empirical Bayes estimates, optimised inside the compiled program).
    seed : int, default 0
        Dataset ``i`` uses seed ``seed + i`` unless ``seeds`` is given.
    seeds : sequence of int, optional
        One seed per dataset (the ``seed`` :func:`bayes_nlme.fit` would take).
    devices : int or sequence of jax.Device, optional
        Devices to shard the batch over; default all local devices of the default backend
        (``import bayes_nlme`` gives the CPU ``max(16, cpu_count)`` host devices). For
        several hosts, start every process with ``jax.distributed.initialize()`` and call
        ``fit_batch`` on each with its own share of the datasets (README, "Batch jobs").
    batch_size : int, optional
        Datasets per compiled call (bounds memory: the draws of a whole call are kept on
        the device). Calls of one shape reuse the compiled program. Default: all datasets
        of a shape in one call.
    progress : bool, optional
        Print one line per finished call to stderr (default: when stderr is a terminal).
    on_result : callable, optional
        ``on_result(i, idata)`` is called as soon as dataset ``i``'s result is ready (batch
        jobs write it to disk there).

    Returns
    -------
    list of arviz.InferenceData
        One per dataset, in input order, with the groups :func:`bayes_nlme.fit` returns.

    Raises
    ------
    DatasetError
        If a dataset is not a valid NONMEM dataset.
    ModelError
        If the model does not fit a dataset (the message names the dataset's position),
        NUTS finds no finite starting point for some datasets, or ``init`` is unknown.

    Examples
    --------
    >>> import bayes_nlme as bn
    >>> from bayes_nlme.model_zoo.theophylline import model, data
    >>> fits = bn.fit_batch(model, [data(), data()], chains=2, warmup=200,
    ...                     samples=200)  # doctest: +SKIP
    """
    check_init(init)
    if len(datasets) == 0:
        return []
    if seeds is None:
        seeds = [seed + i for i in range(len(datasets))]
    if len(seeds) != len(datasets):
        raise ModelError(f"seeds has {len(seeds)} entries for {len(datasets)} datasets.")
    if progress is None:
        progress = sys.stderr.isatty() and not os.environ.get("CI")
    devs = _resolve_devices(devices)
    obs_name = model.output_name()
    prepared = []
    for i, d in enumerate(datasets):
        try:
            prepared.append(prepare(model, d))
        except ModelError as e:
            raise ModelError(f"Dataset {i}: {e}") from None
    groups: dict[tuple, list[int]] = {}
    for i, (_, m) in enumerate(prepared):
        groups.setdefault(_signature(m), []).append(i)
    settings = dict(
        chains=chains,
        warmup=warmup,
        samples=samples,
        target_accept=target_accept,
        max_tree_depth=max_tree_depth,
        dense_mass=dense_mass,
        init=init,
    )
    results: list[Any] = [None] * len(datasets)
    done = 0
    t0 = time.perf_counter()
    for members in groups.values():
        stacked, dv = stack_designs(
            [prepared[i][1] for i in members], [prepared[i][0].dv for i in members]
        )
        size = batch_size or len(members)
        n_dev = min(len(devs), size)
        size = -(-size // n_dev) * n_dev  # a multiple of the devices
        program = _program(model, devs[:n_dev], settings)
        for start in range(0, len(members), size):
            chunk = list(range(start, min(start + size, len(members))))
            take = np.asarray(chunk + [chunk[0]] * (size - len(chunk)))  # fill the shards
            keys = np.stack([_chain_keys(int(seeds[members[k]]), chains) for k in take])
            m_chunk = jax.tree_util.tree_map(lambda x, t=take: x[t], stacked)
            z, fields, ok = program.run(keys, m_chunk, dv[take])
            bad = [
                members[k]
                for k, good in zip(chunk, np.asarray(ok)[: len(chunk)], strict=True)
                if not np.all(good)
            ]
            if bad:
                raise ModelError(
                    f"NUTS found no starting point with a finite log density for datasets "
                    f"{bad[:20]}: check the priors and that pre() gives valid parameters "
                    "for their data."
                )
            for pos, k in enumerate(chunk):
                i = members[k]
                ds = prepared[i][0]
                zi = jax.tree_util.tree_map(lambda x, p=pos: x[p], z)
                mk = jax.tree_util.tree_map(lambda x, k=k: x[k], stacked)
                draws = program.postprocess(zi, mk, dv[k])
                draws = {n: np.asarray(v) for n, v in draws.items()}
                for n in (*_OBS_SITES, f"loglik_{obs_name}"):
                    if n in draws:
                        draws[n] = draws[n][:, :, : ds.n_obs]
                extra = {f: np.asarray(fields[f][pos]) for f in _EXTRA_FIELDS}
                idata = draws_to_inference_data(model, ds, draws, extra, obs_name)
                idata.sample_stats.attrs.update(
                    max_tree_depth=max_tree_depth,
                    target_accept=target_accept,
                    warmup=warmup,
                    seed=int(seeds[i]),
                    chain_method="batch",
                    init=init,
                )
                results[i] = idata
                if on_result is not None:
                    on_result(i, idata)
            done += len(chunk)
            if progress:
                print(
                    f"fit_batch: {done}/{len(datasets)} datasets "
                    f"({time.perf_counter() - t0:.0f} s)",
                    file=sys.stderr,
                    flush=True,
                )
    return results


def replace_dv(ds: Dataset, dv: np.ndarray) -> Dataset:
    """``ds`` with its observations replaced by the flat vector ``dv`` (shape (n_obs,))."""
    s, j = ds.obs_index
    obs_dv = np.array(ds.obs_dv, dtype=float, copy=True)
    obs_dv[s, j] = np.asarray(dv, float)
    return dataclasses.replace(ds, obs_dv=obs_dv)
