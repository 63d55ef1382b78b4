"""``get_client()``: the right Dask cluster for this machine, or an existing one.

* An address or scheduler file given: join that cluster (multi-node: start workers on the
  other hosts with ``dask worker ADDRESS`` or ``dask cuda worker ADDRESS``).
* GPUs visible and dask-cuda installed: a ``LocalCUDACluster``, one worker per GPU.
* Otherwise: a process-based ``LocalCluster`` with one single-threaded worker per core.
  Dask sets torch/OpenMP to one thread inside workers; on CPUs, one process per core
  outruns fewer processes with more threads each (see BENCHMARKS.md).
"""

from __future__ import annotations

import logging
import os
from typing import Any

logger = logging.getLogger(__name__)

DEVICES = ("auto", "gpu", "cpu")


def visible_gpu_count() -> int:
    """Number of CUDA GPUs this process can see (0 without CUDA); does not start CUDA."""
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # a broken driver counts as no GPU
        return 0


def get_client(
    address: str | None = None,
    *,
    scheduler_file: str | None = None,
    device: str = "auto",
    n_workers: int | None = None,
    threads_per_worker: int = 1,
    **cluster_options: Any,
):
    """A ``distributed.Client`` connected to a cluster suited to classification.

    Parameters
    ----------
    address, scheduler_file
        Join an existing scheduler instead of starting a local cluster.
    device
        ``"auto"`` (GPUs when present and dask-cuda is installed, else CPU), ``"gpu"``
        (fail if GPUs or dask-cuda are missing), ``"cpu"``.
    n_workers
        Local workers (default: one per GPU, or one per CPU core).
    threads_per_worker
        Threads per CPU worker (default 1: one process per core).
    cluster_options
        Passed to ``LocalCUDACluster`` / ``LocalCluster`` (e.g. ``memory_limit``,
        ``dashboard_address``). On GPUs, ``rmm_async=True`` (or ``rmm_pool_size="40GB"``)
        gives the workers one RMM allocator that torch and cupy share too
        (``rmm_allocator_external_lib_list=["torch", "cupy"]`` is added; see ``rmm_settings``).
    """
    from distributed import Client, LocalCluster

    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    if address is not None or scheduler_file is not None:
        return Client(address, scheduler_file=scheduler_file)
    cluster_options.setdefault("dashboard_address", ":0")
    gpus = visible_gpu_count() if device != "cpu" else 0
    if gpus:
        try:
            from dask_cuda import LocalCUDACluster
        except ImportError as error:
            if device == "gpu":
                raise RuntimeError(
                    "device='gpu' needs dask-cuda: pip install 'nemo_cls_dask[gpu]'"
                ) from error
            logger.warning("%d GPU(s) visible but dask-cuda is not installed; using a CPU cluster.", gpus)
        else:
            if n_workers is not None:
                cluster_options.setdefault("n_workers", n_workers)
            from .rmm_settings import share_rmm_allocator

            return Client(LocalCUDACluster(**share_rmm_allocator(cluster_options)))
    elif device == "gpu":
        raise RuntimeError("device='gpu' but no CUDA GPU is visible to this process.")
    cores = os.cpu_count() or 1
    workers = n_workers or max(1, cores // max(1, threads_per_worker))
    cluster = LocalCluster(n_workers=workers, threads_per_worker=threads_per_worker, processes=True, **cluster_options)
    return Client(cluster)
