#!/usr/bin/env python
"""The speed cost of ``deterministic=True`` (issue 14 item 17), on the packaged MiniLM model.

``deterministic=True`` runs every row alone in fp32, so its outputs cannot depend on the
partition or batch it lands in. This compares it with the default (token-budget batches
of sorted rows, ``autocast=True``: bf16 where the CPU has AMX/AVX512-BF16, else fp32) on
the same held-out Debian descriptions, through the engine only (no dask), interleaved
rounds, best of ``--rounds``. Prints docs/s of both, the ratio, and the largest
probability difference between them.

Usage::

    python benchmarks/bench_deterministic.py [--rows 400] [--rounds 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import pandas as pd
import torch

from nemo_cls_dask import DistributedDataClassifier
from nemo_cls_dask.engine import autocast_dtype, cpu_has_fast_bf16, run_model
from nemo_cls_dask.io import SAMPLE_PATH
from nemo_cls_dask.models.loading import get_model
from nemo_cls_dask.tokenization import clean_texts, encode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (a dask worker has 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    texts = list(pd.read_parquet(SAMPLE_PATH).head(args.rows)["text"])
    default = DistributedDataClassifier(model_identifier="debian-topics")
    deterministic = default.with_options(deterministic=True)
    loaded = get_model("debian-topics")
    cleaned, valid = clean_texts(texts, None)
    encoded = encode(loaded.tokenizer, cleaned, valid, loaded.info.max_len)
    variants = {"default": default.batch_settings(loaded.info), "deterministic": deterministic.batch_settings(loaded.info)}
    best = {name: float("inf") for name in variants}
    outputs = {}
    run_model(loaded, encoded, variants["default"])  # warm-up
    for _ in range(args.rounds):
        for name, settings in variants.items():
            start = time.perf_counter()
            outputs[name] = run_model(loaded, encoded, settings)
            best[name] = min(best[name], time.perf_counter() - start)
            print(f"  {name}: {time.perf_counter() - start:.2f} s", flush=True)
    probabilities = {name: torch.softmax(out, dim=-1).numpy() for name, out in outputs.items()}
    cpu = torch.device("cpu")
    print(f"CPU: {platform.processor() or platform.machine()}, torch capability "
          f"{torch.backends.cpu.get_cpu_capability()}, fast bf16: {cpu_has_fast_bf16()}, threads {torch.get_num_threads()}")
    print(f"default autocast dtype here: {autocast_dtype(cpu, variants['default'].autocast)}")
    rows = int(valid.sum())
    for name in variants:
        print(f"{name:14s} {rows / best[name]:8.1f} docs/s  ({best[name]:.2f} s for {rows} rows)")
    print(f"deterministic / default time: {best['deterministic'] / best['default']:.2f}x")
    diff = np.nanmax(np.abs(probabilities["deterministic"] - probabilities["default"]))
    agree = np.mean(probabilities["deterministic"].argmax(1) == probabilities["default"].argmax(1))
    print(f"largest probability difference {diff:.2e}, labels agreeing {agree:.4f}")


if __name__ == "__main__":
    main()
