"""Fan a batch job out on a Dask cluster (``[engine] kind = "dask"``).

Why Dask rather than Ray: Dask is pure Python (``pip install "dask[distributed]"``), starts a
local cluster in seconds with nothing but processes and loopback TCP, and reaches the
schedulers pharmacometric HPC sites already run (SLURM, PBS, SGE, LSF through
``dask-jobqueue``; Kubernetes through ``dask-kubernetes``). Ray brings its own object store
and daemons, a heavier wheel, and adds nothing a batch of independent, file-writing fits
needs.

Each task fits one chunk of datasets with :func:`bayes_nlme.fit_batch` in a worker (one
compiled program per worker) and writes its results into the job's output directory, which
must therefore be on a file system every worker sees (a shared disk on a cluster).
"""

from __future__ import annotations

import sys

__all__ = ["run_chunks_dask"]


def _client(engine: dict):
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError as e:  # pragma: no cover - the extra is part of the test install
        from ._jobs import JobError

        raise JobError(
            '[engine] kind = "dask" needs Dask: pip install "bayes-nlme[distributed]".'
        ) from e
    address = engine.get("address")
    if address:
        return Client(address), None
    cluster = LocalCluster(
        n_workers=int(engine.get("n_workers", 2)),
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    )
    return Client(cluster), cluster


def run_chunks_dask(job: dict, todo: list[int], *, progress: bool = False) -> list[str]:
    """Run the job's datasets ``todo`` as Dask tasks of ``sampler.batch_size`` datasets.

    Returns the names written, in completion order.
    """
    from dask.distributed import as_completed
    from tqdm.auto import tqdm

    from ._jobs import fit_chunk

    engine = job["engine"]
    size = int(job["sampler"].get("batch_size", 1) or 1)
    chunks = [todo[k : k + size] for k in range(0, len(todo), size)]
    client, cluster = _client(engine)
    written: list[str] = []
    bar = tqdm(total=len(todo), desc="fits", disable=not progress, file=sys.stderr)
    try:
        futures = [client.submit(fit_chunk, job, c, pure=False) for c in chunks]
        for fut in as_completed(futures):
            names = fut.result()  # a failed task re-raises its error here
            written += names
            bar.update(len(names))
    finally:
        bar.close()
        client.close()
        if cluster is not None:
            cluster.close()
    return written
