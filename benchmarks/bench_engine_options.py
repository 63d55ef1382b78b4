#!/usr/bin/env python
"""Engine options on CPU, one process, same rows: what helps and what does not (issue 5).

Every variant runs the packaged ``debian-topics`` model (all-MiniLM-L6-v2, mean pooling,
a trained 20-section head, max 256 tokens; so label agreement means something) through :func:`nemo_cls_dask.engine.run_model` on the same Debian
descriptions. Variants:

* fp32 (the reference: ``autocast=False``), transformers' default attention (SDPA),
  8,192-token budget;
* bf16 autocast (``autocast=True`` picks it on CPUs with AVX512-BF16 or AMX), with its
  label agreement and largest probability difference against fp32: issue 5 allows a
  reduced precision as the default only at >= 99.5% agreement;
* the backbone's weights cast to bf16 once (no autocast), for comparison;
* eager attention instead of SDPA, in fp32 and in bf16;
* token budgets from 2,048 to 32,768 (bf16 where the CPU has it, else fp32);
* dynamic int8 quantization of every ``nn.Linear`` (``torch.ao.quantization.quantize_dynamic``),
  with its label agreement and largest probability difference against fp32;
* ``torch.compile`` (inductor, ``dynamic=True``) with batch widths rounded up to a multiple
  of 32 (length buckets), compile time reported apart.

Runs are interleaved (every variant once per round, best of ``--rounds``), so a load change
on a shared machine hits all variants alike; ratios are against the default in the same
process.

The rows are the packaged held-out sample (``debian_sample.parquet``), so the table also
gives each variant's accuracy against the true Debian section.

Usage::

    python benchmarks/bench_engine_options.py [--rows 600] [--rounds 3] [--no-compile]
"""

from __future__ import annotations

import argparse
import dataclasses
from copy import deepcopy as copy_module
import importlib.util
import os
import platform
import time
import warnings
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import pandas as pd
import torch

from nemo_cls_dask.batching import pad_batch, plan_batches
from nemo_cls_dask.io import SAMPLE_PATH
from nemo_cls_dask.engine import BatchSettings, cpu_has_fast_bf16, run_model
from nemo_cls_dask.models.loading import LoadedModel, get_model
from nemo_cls_dask.tokenization import EncodedTexts, clean_texts, encode

_spec = importlib.util.spec_from_file_location("bench_inference", Path(__file__).with_name("bench_inference.py"))
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

BUCKET = 32
REFERENCE = "fp32 (autocast=False), SDPA, budget 8192"


def quantized(module: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``module`` whose backbone ``nn.Linear`` layers run int8 weights (per output
    channel), activations quantized per batch. The 20-way head stays fp32: quantizing it
    too changed most labels in a first try (its inputs are small mean-pooled values)."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    copy = copy_module(module)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch deprecates the quantized tensor API in favour of torchao
        copy.model = quantize_dynamic(copy.model, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)
    return copy.eval()


def bf16_backbone(module: torch.nn.Module) -> torch.nn.Module:
    """A copy of the head model whose backbone weights are bf16 (the pooled vector and the
    head stay fp32: pooling sums in fp32)."""
    copy = copy_module(module)
    copy.model.to(torch.bfloat16)
    return copy.eval()


def eager_module(module: torch.nn.Module) -> torch.nn.Module:
    """A copy of the head model whose backbone uses transformers' eager attention."""
    copy = copy_module(module)
    copy.model.set_attn_implementation("eager")
    return copy.eval()


def run_bucketed(module: Callable, loaded: LoadedModel, encoded: EncodedTexts, budget: int,
                 dtype: torch.dtype | None) -> torch.Tensor:
    """Like ``run_model``, but each batch is padded up to a multiple of ``BUCKET`` tokens."""
    out = torch.full((encoded.num_rows, loaded.info.num_outputs), float("nan"))
    rows_all = np.flatnonzero(encoded.valid)
    # Plan with bucketed lengths, so the budget counts the padded width.
    bucketed = -(-encoded.lengths // BUCKET) * BUCKET
    batches = plan_batches(bucketed, rows_all, batch_tokens=budget, max_batch_rows=256, sort_by_length=True)
    pad_id = int(loaded.tokenizer.pad_token_id or 0)
    with torch.inference_mode(), torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        for rows in batches:
            ids, mask = pad_batch(encoded, rows, pad_id)
            width = -(-ids.shape[1] // BUCKET) * BUCKET
            if width > ids.shape[1]:
                extra = width - ids.shape[1]
                ids = torch.nn.functional.pad(ids, (0, extra), value=pad_id)
                mask = torch.nn.functional.pad(mask, (0, extra), value=0)
            out[torch.from_numpy(rows)] = module(ids, mask).float()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-compile", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)

    sample = pd.read_parquet(SAMPLE_PATH).head(args.rows)  # held-out rows with their true section
    texts = list(sample["text"])
    loaded = get_model("debian-topics", None, "cpu")
    cleaned, valid = clean_texts(texts, None)
    encoded = encode(loaded.tokenizer, cleaned, valid, bench.MAX_LENGTH)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}, attention "
          f"{loaded.module.model.config._attn_implementation}; load average {os.getloadavg()[0]:.1f}")
    print(f"rows {encoded.num_rows}, real tokens {encoded.num_tokens}")

    has_bf16 = cpu_has_fast_bf16()
    fp32 = BatchSettings(autocast=False)
    fast = BatchSettings(autocast="bf16") if has_bf16 else fp32
    fast_name = "bf16" if has_bf16 else "fp32"
    variants: dict[str, Callable[[], torch.Tensor]] = {REFERENCE: lambda: run_model(loaded, encoded, fp32)}
    if has_bf16:
        variants["bf16 autocast (the default on this CPU)"] = lambda: run_model(loaded, encoded, fast)
        bf16_weights = dataclasses.replace(loaded, module=bf16_backbone(loaded.module))
        variants["bf16 backbone weights, no autocast"] = lambda: run_model(bf16_weights, encoded, fp32)
    else:
        print("no AVX512-BF16/AMX on this CPU: bf16 variants skipped (emulated bf16 is ~100x slower)")
    eager = dataclasses.replace(loaded, module=eager_module(loaded.module))
    variants["eager attention, fp32"] = lambda: run_model(eager, encoded, fp32)
    if has_bf16:
        variants["eager attention, bf16"] = lambda: run_model(eager, encoded, fast)
    for budget in (2048, 4096, 16384, 32768):
        settings = dataclasses.replace(fast, batch_tokens=budget)
        variants[f"budget {budget}, {fast_name}"] = lambda settings=settings: run_model(loaded, encoded, settings)
    int8 = dataclasses.replace(loaded, module=quantized(loaded.module))
    variants["dynamic int8 (opt-in)"] = lambda: run_model(int8, encoded, fp32)
    cast = torch.bfloat16 if has_bf16 else None
    variants[f"buckets of {BUCKET}, not compiled, {fast_name}"] = lambda: run_bucketed(loaded.module, loaded, encoded, 8192, cast)
    compile_seconds = None
    if not args.no_compile:
        compiled = torch.compile(loaded.module, dynamic=True)
        start = time.perf_counter()
        run_bucketed(compiled, loaded, encoded, 8192, cast)  # compiles (and recompiles) here
        compile_seconds = time.perf_counter() - start
        variants[f"torch.compile, buckets of {BUCKET}, {fast_name}"] = lambda: run_bucketed(compiled, loaded, encoded, 8192, cast)

    for run in variants.values():  # warm up every variant once (allocator, kernels, caches)
        run()
    best: dict[str, float] = {}
    outputs: dict[str, torch.Tensor] = {}
    for round_ in range(args.rounds):
        for name, run in variants.items():
            start = time.perf_counter()
            outputs[name] = run()
            seconds = time.perf_counter() - start
            best[name] = min(best.get(name, float("inf")), seconds)
        print(f"round {round_ + 1}/{args.rounds} done, load average {os.getloadavg()[0]:.1f}", flush=True)

    labels = loaded.info.labels
    reference = torch.softmax(outputs[REFERENCE], dim=-1)
    base = best[REFERENCE]
    print()
    print("| variant | docs/s | vs fp32 | label agreement with fp32 | max prob. diff | accuracy |")
    print("|---|---|---|---|---|---|")
    for name, seconds in best.items():
        proba = torch.softmax(outputs[name], dim=-1)
        agreement = float((proba.argmax(-1) == reference.argmax(-1)).float().mean())
        diff = float((proba - reference).abs().max())
        accuracy = float(np.mean(np.asarray(labels)[proba.argmax(-1).numpy()] == sample["section"].to_numpy()))
        print(f"| {name} | {encoded.num_rows / seconds:.1f} | {base / seconds:.2f}x | {agreement:.4f} | {diff:.2e} | {accuracy:.3f} |")
    if compile_seconds is not None:
        print(f"\ntorch.compile: first pass (compiling) took {compile_seconds:.1f} s")


if __name__ == "__main__":
    main()
