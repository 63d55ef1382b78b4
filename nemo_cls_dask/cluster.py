"""``get_client()``: the right Dask cluster for this machine, or an existing one.

* An address or scheduler file given: join that cluster (multi-node: start workers on the
  other hosts with ``dask worker ADDRESS`` or ``dask cuda worker ADDRESS``).
* GPUs visible and dask-cuda installed: a ``LocalCUDACluster``, one worker per GPU.
* Otherwise: a process-based ``LocalCluster`` with one single-threaded worker per core.
  Dask sets torch/OpenMP to one thread inside workers; on CPUs, one process per core
  outruns fewer processes with more threads each (see BENCHMARKS.md).
"""

from __future__ import annotations

import ast
import logging
import os
import sys
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


def workers_have_gpus(client: Any) -> bool:
    """True when every worker of ``client``'s cluster sees at least one CUDA GPU."""
    counts = client.run(visible_gpu_count)
    return bool(counts) and all(count > 0 for count in counts.values())


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

    check_cluster_options(address, scheduler_file=scheduler_file, device=device, n_workers=n_workers,
                          threads_per_worker=threads_per_worker, **cluster_options)
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

            return Client(_graceful(LocalCUDACluster)(**share_rmm_allocator(cluster_options)))
    elif device == "gpu":
        raise RuntimeError("device='gpu' but no CUDA GPU is visible to this process.")
    if cluster_options.get("processes", True):
        check_main_guard()
    cores = os.cpu_count() or 1
    workers = n_workers or max(1, cores // max(1, threads_per_worker))
    cluster = _graceful(LocalCluster)(n_workers=workers, threads_per_worker=threads_per_worker, processes=True, **cluster_options)
    return Client(cluster)


#: Seconds a worker process gets to exit on close. A process that loaded torch and a model
#: spends seconds in interpreter teardown (2-7 s measured on a busy 2-core machine), more
#: than the 4 s distributed's nanny waits before it kills the process and logs a warning.
WORKER_CLOSE_TIMEOUT = 60.0


class _GracefulClose:
    """Mixin for a local cluster: on close, give each worker process time to exit by itself."""

    async def _close(self) -> None:
        import asyncio

        from distributed.core import Status

        if self.status == Status.running:
            nannies = [w for w in self.workers.values() if hasattr(w, "close")]
            await asyncio.gather(*(w.close(timeout=WORKER_CLOSE_TIMEOUT) for w in nannies), return_exceptions=True)
        await super()._close()


def _graceful(cluster_class: type) -> type:
    """``cluster_class`` with :class:`_GracefulClose` (same name, so it reads the same in reprs)."""
    return type(cluster_class.__name__, (_GracefulClose, cluster_class), {"__module__": cluster_class.__module__})


def check_cluster_options(
    address: str | None = None,
    *,
    scheduler_file: str | None = None,
    device: str = "auto",
    n_workers: int | None = None,
    threads_per_worker: int = 1,
    **cluster_options: Any,
) -> None:
    """Raise :class:`~nemo_cls_dask.errors.InputError` for options no cluster can start with.

    Called by :func:`get_client` and before any work starts, so that ``n_workers=-1`` is an
    error at once instead of a cluster with no workers that waits forever.
    """
    from .errors import InputError

    if device not in DEVICES:
        raise InputError(f"device must be one of {DEVICES}, got {device!r}.")
    if address is not None and scheduler_file is not None:
        raise InputError("Give a scheduler address or a scheduler file, not both.")
    if scheduler_file is not None and not os.path.isfile(scheduler_file):
        raise InputError(f"Scheduler file {scheduler_file} does not exist.")
    for name, value in (("n_workers", n_workers), ("threads_per_worker", threads_per_worker)):
        if value is None and name == "n_workers":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{name} must be a whole number of at least 1, got {value!r}.")
    limit = cluster_options.get("memory_limit")
    if limit is not None and not isinstance(limit, str) and (isinstance(limit, bool) or not isinstance(limit, (int, float)) or limit < 0):
        raise InputError(f"memory_limit must be a size such as '4GiB', a number of bytes, 0 or 'auto'; got {limit!r}.")
    if isinstance(limit, str) and limit not in ("auto",):
        from dask.utils import parse_bytes

        try:
            if parse_bytes(limit) < 0:
                raise ValueError
        except (ValueError, TypeError):
            raise InputError(f"memory_limit must be a size such as '4GiB', a number of bytes, 0 or 'auto'; got {limit!r}.") from None


def close_client(client: Any) -> None:
    """Close ``client`` and, if it started a local cluster, that cluster too."""
    cluster = client.cluster
    client.close()
    if cluster is not None:
        cluster.close()


def memory_advice(classifiers: Any, client: Any = None) -> str:
    """What memory the models need (from their weights' size) against the workers' limit."""
    from dask.utils import format_bytes

    weights = 0
    for classifier in classifiers or ():
        try:
            folder = classifier.describe().path
        except Exception:  # the advice must never hide the original error
            continue
        weights += sum(f.stat().st_size for f in folder.glob("*.safetensors"))
    limits = set()
    if client is not None:
        try:
            limits = {w.get("memory_limit") for w in client.scheduler_info().get("workers", {}).values()}
        except Exception:
            limits = set()
        if not limits:  # every worker may be dead right now: ask the cluster what it starts them with
            limits = _spec_memory_limits(getattr(client, "cluster", None))
    need = (
        f"The model weights take {format_bytes(weights)}; a worker needs about {format_bytes(2 * weights + 2**30)} "
        f"(weights, a copy while loading, and ~1 GiB for the runtime and a batch)"
        if weights else "The model's memory need is unknown"
    )
    limit = f"; the workers' memory limit is {', '.join(format_bytes(x) if x else 'none' for x in sorted(limits, key=lambda x: x or 0))}" if limits else ""
    return (
        f"{need}{limit}. Give workers more memory (memory_limit / fewer workers), or lower --max-chars "
        f"or --batch-tokens if one row is huge."
    )


def _spec_memory_limits(cluster: Any) -> set[int]:
    """The ``memory_limit`` (bytes) a local cluster gives the workers it starts; empty if unknown."""
    from dask.utils import parse_bytes

    limits: set[int] = set()
    for spec in (getattr(cluster, "worker_spec", None) or {}).values():
        limit = (spec.get("options") or {}).get("memory_limit") if isinstance(spec, dict) else None
        try:
            if isinstance(limit, str):
                limits.add(parse_bytes(limit))
            elif isinstance(limit, (int, float)) and limit > 0:
                limits.add(int(limit))
        except ValueError:
            continue
    return limits


def check_main_guard() -> None:
    """Raise a clear error when a script starts a local cluster without a ``__main__`` guard.

    Worker processes are started with ``spawn``: each one imports the script again, so a
    script whose top level starts a cluster makes every worker start one too, and the run
    ends in pages of "Nanny failed to start". Detected before anything starts, from the
    script's source: the statement of the script now running must sit under
    ``if __name__ == "__main__":``.
    """
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or not path or not str(path).endswith(".py") or getattr(main, "__spec__", None) is not None:
        return  # an interactive session, a notebook, python -c, or python -m (a module's main is fine)
    frame = sys._getframe(1)
    while frame is not None and not (frame.f_code.co_name == "<module>" and frame.f_globals is vars(main)):
        frame = frame.f_back
    if frame is None:
        return
    try:
        tree = ast.parse(open(path, encoding="utf-8").read())
    except (OSError, SyntaxError, ValueError):
        return
    line = frame.f_lineno
    if not any(_is_main_guard(node) and node.lineno <= line <= (node.end_lineno or line) for node in tree.body):
        from .errors import InputError

        raise InputError(
            f"{path} starts a Dask cluster at line {line} outside `if __name__ == \"__main__\":`. Worker processes "
            "import the script again, so each would start a cluster too. Put the code that starts the cluster "
            "(and the work) under\n\n    if __name__ == \"__main__\":\n        ...\n"
        )


def _is_main_guard(node: ast.stmt) -> bool:
    """``if __name__ == "__main__":`` (either operand order)."""
    if not isinstance(node, ast.If) or not isinstance(node.test, ast.Compare) or len(node.test.comparators) != 1:
        return False
    sides = [node.test.left, node.test.comparators[0]]
    names = [side.id for side in sides if isinstance(side, ast.Name)]
    values = [side.value for side in sides if isinstance(side, ast.Constant)]
    return isinstance(node.test.ops[0], ast.Eq) and names == ["__name__"] and values == ["__main__"]
