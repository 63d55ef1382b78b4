#!/usr/bin/env python
"""Speed, second round (issue 18): two workloads, every contender on the same rows, one command.

Workloads (see ``speed2_workloads.py``):

* **short**: all-MiniLM-L6-v2 with a fitted 20-way Debian-section head, Debian package
  descriptions, max 256 tokens (the first round's workload);
* **long**: a DeBERTa-v3-base-shaped classifier (bundled config, random weights, 3-label
  head) in the NVIDIA quality classifier's hub layout, on ~2,000-character documents cut
  from Python's ``pydoc_data.topics``, max 512 tokens (MiniLM WordPiece tokenizer: the real
  DeBERTa-v3 one cannot be downloaded).

Contenders (``speed2_contenders.py``, ``speed2_onnx.py``), each after a warm-up call with its
model already loaded:

1. ``transformers.pipeline("text-classification")`` at several batch sizes (the best is the
   baseline of the ratios);
2. a plain fixed-batch loop in the original order;
3. our engine in this process (``classifier(pandas_df)``, default settings);
4. our operator end to end on a ``distributed`` LocalCluster (``--workers`` x 1 thread; other
   thread layouts with ``--extra-layouts 1x2``);
5. levers: the engine with torch dynamic int8 ``nn.Linear`` (opt-in only, agreement printed),
   with a smaller token budget, and (long rows) without the DeBERTa relative-position cache
   (``nemo_cls_dask.models.deberta_positions``), the baseline of that cache;
6. ONNX Runtime (``pip install -e .[bench]``; skipped with a message when absent): exported,
   ORT-transformer-fused, fp32 and dynamic int8, in original-order and length-sorted batches.

Per contender: docs/s, ratio to the best pipeline setting, padding efficiency, MFU against
the fp32 GEMM measured in the same run at the model's own shape (and bf16 where the CPU has
AVX512-BF16/AMX; emulated bf16 elsewhere is not a ceiling), label agreement with fp32 torch
(the plain loop), and peak RSS of the process (or of each cluster worker). Then the issue's
targets, met or not, and a ``torch.profiler`` table of one engine batch per workload (where
the time goes). Markdown tables are printed ready to paste into ``BENCHMARKS.md``.

Usage (from a shell: it starts a LocalCluster)::

    python benchmarks/bench_speed2.py [--short-rows 1000] [--long-rows 24] [--workloads short,long]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402

import speed2_contenders as contenders  # noqa: E402
import speed2_levers as levers  # noqa: E402
import speed2_onnx  # noqa: E402
import speed2_workloads as workloads  # noqa: E402
from speed2_contenders import Run  # noqa: E402

#: Per workload: pipeline batch sizes tried, fixed batch of the plain loop and of ONNX Runtime.
SETTINGS = {
    "short": {"pipeline": (1, 8, 32), "batch": 32, "profile_rows": 64},
    "long": {"pipeline": (1, 8), "batch": 8, "profile_rows": 4},
}


def gemm_flops_per_second(hidden: int, intermediate: int, dtype: torch.dtype, seconds: float = 2.0) -> float:
    """Measured matrix-product throughput at the model's feed-forward shape, on the current threads."""
    return workloads.bench_inference.gemm_flops_per_second(dtype, torch.get_num_threads(), seconds, hidden, intermediate)


def cpu_line() -> str:
    """CPU model and the flags that decide the fast paths."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    shown = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8") if f in flags]
    return f"{model} ({' '.join(shown) or 'flags unknown'}), {os.cpu_count()} cores"


def run_workload(workload: workloads.Workload, args, scratch: Path) -> str:
    """Every contender on ``workload``; returns its markdown section."""
    from nemo_cls_dask.engine import cpu_has_fast_bf16

    settings = SETTINGS[workload.name]
    lengths = workloads.token_lengths(workload)
    flops = workload.flops(lengths)
    fp32 = gemm_flops_per_second(workload.hidden, workload.intermediate, torch.float32)
    bf16 = gemm_flops_per_second(workload.hidden, workload.intermediate, torch.bfloat16, 1.0) if cpu_has_fast_bf16() else None
    print(f"\n== {workload.name}: {len(workload.texts)} rows of {workload.text_source}; tokens per row mean "
          f"{lengths.mean():.0f}, min {lengths.min()}, max {lengths.max()} (max_length {workload.max_length}); "
          f"{flops / 1e12:.2f} TFLOP on real tokens; GEMM fp32 {fp32 / 1e9:.0f} GFLOP/s"
          + (f", bf16 {bf16 / 1e9:.0f} GFLOP/s" if bf16 else ", bf16: no AVX512-BF16/AMX (not measured)"), flush=True)

    runs: list[Run] = []

    def record(run: Run) -> None:
        runs.append(run)
        print(f"  {run.name}: {len(workload.texts) / run.seconds:.2f} docs/s", flush=True)

    skip = {part.strip() for part in args.skip.split(",") if part.strip()}
    if "pipeline" not in skip:
        for batch in settings["pipeline"]:
            record(contenders.run_pipeline(workload, batch))
    record(contenders.run_plain_loop(workload, settings["batch"]))  # the fp32 reference: always
    if "engine" not in skip:
        record(contenders.run_engine(workload))
    if not args.no_levers and "levers" not in skip:
        record(levers.run_engine_int8(workload))
        if workload.name == "long":  # DeBERTa: the engine without its relative-position cache
            record(levers.run_engine_without_position_cache(workload))
        # Lever: one long row per batch (DeBERTa's batch x heads x n x n position tensors
        # leave the caches as batches grow); for short rows, a quarter of the default budget.
        small = 512 if workload.name == "long" else 2048
        record(contenders.run_engine(workload, batch_tokens=small,
                                     name=f"nemo_cls_dask engine, batch_tokens={small} (lever)"))
    partitions = args.partitions or 4 * args.workers
    if "cluster" not in skip:
        record(contenders.run_operator_on_cluster(workload, args.workers, 1, partitions))
    for layout in [tuple(int(x) for x in item.split("x")) for item in args.extra_layouts.split(",") if item]:
        record(contenders.run_operator_on_cluster(workload, layout[0], layout[1], partitions))
    reason = onnx_skip_reason(args.no_onnx or "onnx" in skip)
    if reason:
        print(f"  ONNX Runtime contenders skipped: {reason}")
    else:
        for run in speed2_onnx.onnx_runs(workload, scratch / f"onnx-{workload.name}", settings["batch"]):
            runs.append(run)
    section = table(workload, runs, lengths, flops, fp32, bf16)
    if not args.no_levers and "levers" not in skip:
        section += "\n\n" + levers.profile_engine(workload, min(settings["profile_rows"], len(workload.texts)))
    return section


def onnx_skip_reason(no_onnx: bool) -> str:
    """Why the ONNX Runtime contenders do not run ("" when they do)."""
    if no_onnx:
        return "--no-onnx"
    absent = speed2_onnx.missing()
    return f"{' and '.join(absent)} not installed (pip install -e .[bench])" if absent else ""


def table(workload, runs: list[Run], lengths: np.ndarray, flops: float, fp32: float, bf16: float | None) -> str:
    """The markdown table of one workload and its target lines."""
    rows = len(workload.texts)
    real = int(lengths.sum())
    reference = next(r for r in runs if r.name.startswith("plain loop")).labels
    pipelines = [r for r in runs if r.name.startswith("HF pipeline")]
    # Baseline: the best pipeline setting (the plain loop when --skip pipeline).
    best_pipeline = min(pipelines or [r for r in runs if r.name.startswith("plain loop")], key=lambda r: r.seconds)
    lines = [
        f"#### {workload.name} rows: {rows} x {workload.text_source}, max {workload.max_length} tokens, "
        f"mean {lengths.mean():.0f} tokens",
        "",
        "| contender | docs/s | vs best pipeline | padding efficiency | MFU vs fp32 GEMM | MFU vs bf16 GEMM | "
        "label agreement with fp32 torch | peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        docs = rows / run.seconds
        padding = f"{real / run.computed_tokens:.3f}" if run.computed_tokens else "n/a"
        mfu_bf16 = f"{100 * flops / run.seconds / bf16:.1f}%" if bf16 else "n/a"
        peaks = ", ".join(f"{v:.0f}" for v in run.peak_mib.values())
        lines.append(
            f"| {run.name}{' (best)' if run is best_pipeline else ''} | {docs:.2f} | "
            f"{best_pipeline.seconds / run.seconds:.2f}x | {padding} | {100 * flops / run.seconds / fp32:.1f}% | "
            f"{mfu_bf16} | {np.mean(run.labels == reference):.4f} | {peaks} |"
        )
    lines += ["", *targets(workload.name, runs, best_pipeline, reference)]
    notes = [f"{r.name}: {r.note}" for r in runs if r.note]
    if notes:
        lines += ["", *notes]
    return "\n".join(lines)


def targets(name: str, runs: list[Run], best_pipeline: Run, reference: np.ndarray) -> list[str]:
    """The issue's targets for this workload, each marked met or not met."""
    operator = next((r for r in runs if r.name.startswith("nemo_cls_dask operator")), None)
    if operator is None:
        return ["- targets: not checked (the operator was skipped)"]
    ratio = best_pipeline.seconds / operator.seconds
    agreement = float(np.mean(operator.labels == reference))
    want = 5.0 if name == "short" else 3.0
    out = [f"- operator vs best pipeline: {ratio:.2f}x (target >= {want:g}x): {'met' if ratio >= want else 'NOT met'}"]
    onnx = [r for r in runs if r.name.startswith("ONNX Runtime")]
    if onnx:
        want_onnx = 1.5 if name == "short" else 1.0
        goal = ">= 1.5x" if name == "short" else "ahead, > 1x"
        faithful = [r for r in onnx if np.mean(r.labels == reference) >= 0.995]
        for label, pool in (("at >= 0.995 agreement (fp32)", faithful), ("at any agreement (int8 included)", onnx)):
            if not pool:
                continue
            best = min(pool, key=lambda r: r.seconds)
            versus = best.seconds / operator.seconds
            met = versus >= want_onnx and versus > 1.0 and agreement >= np.mean(best.labels == reference)
            out.append(f"- operator vs best ONNX Runtime {label}: {best.name} (agreement "
                       f"{np.mean(best.labels == reference):.4f}): {versus:.2f}x (target {goal}): "
                       f"{'met' if met else 'NOT met'}")
    out.append(f"- operator label agreement with fp32 torch: {agreement:.4f} (target >= 0.995 at the default precision): "
               f"{'met' if agreement >= 0.995 else 'NOT met'}")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--short-rows", type=int, default=1000)
    parser.add_argument("--long-rows", type=int, default=24)
    parser.add_argument("--head-rows", type=int, default=600, help="labelled rows the short workload's head is fitted on")
    parser.add_argument("--workloads", default="short,long")
    parser.add_argument("--long-layers", type=int, default=12,
                        help="DeBERTa layers (12: the real shape; fewer only to check the script runs)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--partitions", type=int, default=None, help="default: 4 per worker")
    parser.add_argument("--extra-layouts", default="", help="more operator thread layouts, e.g. 1x2 (workers x threads)")
    parser.add_argument("--no-onnx", action="store_true", help="skip the ONNX Runtime contenders")
    parser.add_argument("--skip", default="", help="contender groups to skip, comma-separated: pipeline, engine, "
                        "cluster, levers, onnx (the plain loop, the fp32 reference, always runs)")
    parser.add_argument("--no-levers", action="store_true", help="skip the torch int8 lever and the profiles")
    args = parser.parse_args(argv)
    torch.set_num_threads(os.cpu_count() or 1)

    started = time.perf_counter()
    print(f"machine: {cpu_line()}; torch {torch.__version__} (CPU capability {torch.backends.cpu.get_cpu_capability()}); "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    sections = []
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        for name in [n.strip() for n in args.workloads.split(",") if n.strip()]:
            begin = time.perf_counter()
            if name == "short":
                workload = workloads.build_short(scratch / "minilm", args.short_rows, args.head_rows)
            elif name == "long":
                shrink = {} if args.long_layers == 12 else {"num_hidden_layers": args.long_layers}
                workload = workloads.build_long(scratch / "deberta", args.long_rows, config_overrides=shrink)
            else:
                raise SystemExit(f"unknown workload {name!r}: use short and/or long")
            print(f"{name}: checkpoint built in {time.perf_counter() - begin:.0f} s", flush=True)
            sections.append(run_workload(workload, args, scratch))
            print("\n" + sections[-1] + "\n", flush=True)  # now, in case a later workload is cut short
    print(f"\ntotal {time.perf_counter() - started:.0f} s; load average after "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
    print("all tables:\n")
    print("\n\n".join(sections))


if __name__ == "__main__":
    main()
