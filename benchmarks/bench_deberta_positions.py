#!/usr/bin/env python
"""DeBERTa's relative-position cache (issue 18 lever), on and off in the same process.

The long-rows workload of ``bench_speed2.py`` (a DeBERTa-v3-base-shaped classifier in the
NVIDIA quality classifier's layout, ~2,000-character documents, max 512 tokens) run through
our engine (``classifier(pandas_df)``, default settings) with
:mod:`nemo_cls_dask.models.deberta_positions` on and off, alternating for ``--rounds``
rounds, so that the machine's drift hits both alike. Prints the seconds of each pass, the
median of the per-round ratios (off / on: above 1 means the cache helps) and whether the
labels of both are the same.

Usage::

    python benchmarks/bench_deberta_positions.py [--rows 12] [--rounds 4]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import speed2_levers  # noqa: E402
import speed2_workloads  # noqa: E402


def timed_pass(folder: Path, texts: list[str], cached: bool) -> tuple[float, list[str]]:
    """One engine pass over ``texts`` with the model loaded afresh (cache on or off), after a
    two-row warm-up."""
    from nemo_cls_dask import DistributedDataClassifier
    from nemo_cls_dask.models.loading import clear_models

    clear_models()
    with contextlib.nullcontext() if cached else speed2_levers.position_cache_off():
        classifier = DistributedDataClassifier(model_identifier=str(folder), label_field="pred", max_seq_length=512)
        classifier(pd.DataFrame({"text": texts[:2]}))
        start = time.perf_counter()
        out = classifier(pd.DataFrame({"text": texts}))
        seconds = time.perf_counter() - start
    clear_models()
    return seconds, out["pred"].tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    with tempfile.TemporaryDirectory() as tmp:
        workload = speed2_workloads.build_long(Path(tmp), args.rows)
        print(f"{os.cpu_count()} cores, torch {torch.__version__}, {len(workload.texts)} documents, "
              f"load average {os.getloadavg()[0]:.1f}")
        ratios, labels = [], {}
        for round_number in range(args.rounds):
            seconds = {}
            for cached in (round_number % 2 == 0, round_number % 2 == 1):  # alternate which goes first
                seconds[cached], labels[cached] = timed_pass(workload.operator_folder, workload.texts, cached)
            ratios.append(seconds[False] / seconds[True])
            print(f"round {round_number + 1}: cache off {seconds[False]:.2f} s, on {seconds[True]:.2f} s, "
                  f"off/on {ratios[-1]:.3f}", flush=True)
    print(f"median off/on over {args.rounds} rounds: {statistics.median(ratios):.3f} "
          f"(min {min(ratios):.3f}, max {max(ratios):.3f}); labels identical: {labels[True] == labels[False]}; "
          f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
