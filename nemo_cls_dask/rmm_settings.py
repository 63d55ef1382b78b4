"""One GPU memory pool for cuDF, torch and cupy on a ``LocalCUDACluster``.

With an RMM pool (``rmm_pool_size=...``) or RMM's asynchronous allocator (``rmm_async=True``)
and nothing else, the pool holds its memory for cuDF alone while torch's caching allocator
and cupy's memory pool each reserve their own: three pools compete for one GPU and the
model's batches run out of memory early. dask-cuda's ``rmm_allocator_external_lib_list``
makes torch and cupy allocate through the same RMM resource in every worker.
"""

from __future__ import annotations

from typing import Any

#: Libraries that allocate through RMM on the workers when an RMM allocator is chosen.
SHARED_ALLOCATOR_LIBRARIES = ["torch", "cupy"]
#: ``LocalCUDACluster`` options that choose an RMM allocator for the workers.
RMM_OPTIONS = ("rmm_pool_size", "rmm_maximum_pool_size", "rmm_async", "rmm_managed_memory")


def share_rmm_allocator(cluster_options: dict[str, Any]) -> dict[str, Any]:
    """``cluster_options`` with torch and cupy routed through RMM when an RMM allocator is asked for.

    A choice the caller made (``rmm_allocator_external_lib_list=...``, even ``None``) stands;
    without any RMM option nothing changes (each library keeps its own allocator).
    """
    options = dict(cluster_options)
    if any(options.get(name) for name in RMM_OPTIONS):
        options.setdefault("rmm_allocator_external_lib_list", list(SHARED_ALLOCATOR_LIBRARIES))
    return options
