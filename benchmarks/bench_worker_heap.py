#!/usr/bin/env python
"""Where a CPU worker's memory goes over many partitions: in use, or kept free by the C heap (issue 18).

One process does what a Dask worker does: the packaged all-MiniLM-L6-v2 model with a
random 20-way head (``bench_inference.build_checkpoint``) classifies ``--partitions``
pandas partitions of 2,500 Debian package descriptions one after another through the
operator. After each it prints the process's RSS, its peak RSS (``VmHWM``) and glibc's
heap statistics (``mallinfo2``): the heap's size, the bytes in use and the bytes free
inside it. ``--no-trim`` switches off the engine's ``malloc_trim`` after each inference
call (:func:`nemo_cls_dask.allocator.release_free_heap`), to see what it does.

Run it with Dask's worker environment, so that :func:`~nemo_cls_dask.allocator.tune_for_tensors`
acts as in a worker::

    MALLOC_TRIM_THRESHOLD_=65536 python benchmarks/bench_worker_heap.py [--partitions 6] [--no-trim]

glibc only (``mallinfo2``, glibc 2.33 or later).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pandas as pd
import psutil
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_inference as bench  # noqa: E402
from speed2_contenders import peak_memory_mib  # noqa: E402

MiB = 1 << 20
ROWS = 2500


class MallInfo2(ctypes.Structure):
    """glibc's ``struct mallinfo2`` (all ``size_t``)."""

    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--no-trim", action="store_true", help="no malloc_trim after each inference call")
    args = parser.parse_args()

    from nemo_cls_dask import DistributedDataClassifier, engine

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    if args.no_trim:
        engine.release_free_heap = lambda: False

    def report(tag: str) -> None:
        heap = libc.mallinfo2()
        print(f"| {tag} | {psutil.Process().memory_info().rss / MiB:.0f} | {peak_memory_mib():.0f} | {heap.arena / MiB:.0f} | "
              f"{heap.uordblks / MiB:.0f} | {heap.fordblks / MiB:.0f} |", flush=True)

    torch.set_num_threads(args.threads)
    texts = bench.load_texts(args.partitions * ROWS)
    print(f"{os.cpu_count()} cores, {args.threads} threads, torch {torch.__version__}, malloc_trim after each call: "
          f"{not args.no_trim}, MALLOC_TRIM_THRESHOLD_={os.environ.get('MALLOC_TRIM_THRESHOLD_')}")
    print("| after | RSS MiB | peak RSS MiB | heap MiB | in use MiB | free in heap MiB |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        folder = bench.build_checkpoint(Path(tmp) / "minilm", trained=False)
        classifier = DistributedDataClassifier(model_identifier=str(folder), label_field="pred")
        classifier(pd.DataFrame({"text": texts[:2]}))
        report("warm-up (model loaded)")
        for number in range(args.partitions):
            start = time.perf_counter()
            classifier(pd.DataFrame({"text": texts[number * ROWS:(number + 1) * ROWS]}))
            report(f"partition {number + 1} ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
