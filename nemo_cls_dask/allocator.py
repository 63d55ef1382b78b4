"""Keep glibc from mapping and unmapping every large tensor in Dask worker processes.

Dask's nanny starts each worker with ``MALLOC_TRIM_THRESHOLD_=65536``
(``distributed.nanny.pre-spawn-environ``) so that freed memory goes back to the system.
Setting any malloc threshold by hand also switches off glibc's *dynamic* mmap threshold,
so every allocation above 128 KiB (almost every activation tensor of a transformer batch)
becomes a fresh ``mmap`` whose pages fault in, and is unmapped again when freed. On the
2-core development machine that nearly halved a worker's throughput: the packaged MiniLM
model in bf16 on one thread ran 50–56 docs/s in that environment, 90–100 without it, and
86–94 with this module's fix (interleaved runs; ``benchmarks/bench_inference.py``
measures the operator on a ``LocalCluster``).

:func:`tune_for_tensors` raises the mmap threshold back to glibc's own dynamic ceiling
(32 MiB on 64-bit), only in a process whose environment fixed a malloc threshold and left
``MALLOC_MMAP_THRESHOLD_`` unset (so a choice made by the user stands). The trim threshold
is left as Dask set it. It runs once per process, when the first model is loaded.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import threading

#: ``mallopt`` parameter number of ``M_MMAP_THRESHOLD`` (glibc ``malloc.h``).
M_MMAP_THRESHOLD = -3
#: glibc's largest dynamic mmap threshold on 64-bit systems (``DEFAULT_MMAP_THRESHOLD_MAX``).
MMAP_THRESHOLD = 32 * 1024 * 1024
#: Settings that freeze glibc's mmap threshold at 128 KiB (environment variables, and the
#: same as ``GLIBC_TUNABLES`` names).
FREEZING_VARIABLES = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")
FREEZING_TUNABLES = ("glibc.malloc.trim_threshold", "glibc.malloc.top_pad")
#: Settings by which a user chose the mmap behaviour: then it is left alone.
MMAP_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_MMAP_MAX_")
MMAP_TUNABLES = ("glibc.malloc.mmap_threshold", "glibc.malloc.mmap_max")

_LOCK = threading.Lock()
_STATE: dict[str, bool | None] = {"tuned": None}


def tune_for_tensors() -> bool:
    """Raise glibc's mmap threshold where Dask's environment froze it; True if it was raised.

    Idempotent and cheap after the first call. Does nothing (returns False) off glibc, when
    the environment chose the mmap behaviour (``MALLOC_MMAP_THRESHOLD_``/``MALLOC_MMAP_MAX_``
    or their ``GLIBC_TUNABLES``), or when it fixed no malloc threshold.
    """
    with _LOCK:
        if _STATE["tuned"] is None:
            _STATE["tuned"] = _tune()
        return bool(_STATE["tuned"])


def _tune() -> bool:
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    if any(name in os.environ for name in MMAP_VARIABLES) or any(name in tunables for name in MMAP_TUNABLES):
        return False
    if not (any(name in os.environ for name in FREEZING_VARIABLES) or any(name in tunables for name in FREEZING_TUNABLES)):
        return False
    mallopt = _mallopt()
    if mallopt is None:
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))


def release_free_heap() -> bool:
    """Give the free pages inside the C heap back to the system (glibc ``malloc_trim(0)``).

    A transformer batch's activations on CPU are tensors of a few MiB, which glibc serves
    from its heap (below the mmap threshold :func:`tune_for_tensors` sets). Freed, they stay
    in the heap as free chunks of assorted sizes, and batches of other shapes rarely reuse
    them exactly: measured on the packaged MiniLM model, a worker's memory in use stayed at
    ~185 MiB over six 2,500-row partitions while the free space kept in its heap grew from
    279 to 631 MiB, so its RSS rose with every partition (945 to 1,299 MiB); one
    ``malloc_trim(0)`` brought it to 675 MiB. The engine calls this after each CPU inference
    call, so a worker's memory is bounded by one partition's work, not by its history.
    Returns True if memory was released; False off glibc.
    """
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False


def _malloc_trim():
    """glibc's ``malloc_trim``, or None on another C library."""
    return _libc_function("malloc_trim", (ctypes.c_size_t,))


def _mallopt():
    """glibc's ``mallopt``, or None on another C library."""
    return _libc_function("mallopt", (ctypes.c_int, ctypes.c_int))


@functools.lru_cache(maxsize=None)
def _libc_function(name: str, argtypes: tuple):
    """The C library's function ``name`` returning ``int``, or None where it has none."""
    library = ctypes.util.find_library("c")
    if library is None:
        return None
    try:
        function = getattr(ctypes.CDLL(library), name)
    except (OSError, AttributeError):
        return None
    function.argtypes = argtypes
    function.restype = ctypes.c_int
    return function
