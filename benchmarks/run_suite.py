#!/usr/bin/env python
"""The inference speed suite in one command; its results are appended to ``BENCHMARKS.md``.

Runs, one after another in fresh processes on the same machine (so one cannot warm the
other's caches or hold its cores):

1. ``bench_inference.py``: the HF pipeline (best of batch 1/8/32), a plain fixed-batch
   loop, our engine in one process and our operator on a ``LocalCluster``, on the same
   Debian descriptions, with docs/s, ratios, tokens/s, padding efficiency, MFU against a
   GEMM ceiling measured in that run, label agreement, time to first result, loads and
   peak memory per worker;
2. ``bench_engine_options.py``: SDPA vs eager, token budgets, dynamic int8 and
   ``torch.compile`` with length buckets, with label agreement against fp32;
3. ``bench_speed2.py`` (issue 18): the short MiniLM rows and the long DeBERTa-v3-base-shaped
   rows against the HF pipeline, a plain loop, our engine, our operator on a LocalCluster and
   ONNX Runtime (fp32 and int8, when ``onnxruntime`` is installed), with the issue's targets;
4. ``bench_scaling.py``: warm seconds per 1,000 rows at 1k, 10k and 100k rows on a
   ``LocalCluster`` (linear cost means a constant).

Each script's tables go into a new dated section at the end of ``BENCHMARKS.md``, with the
machine, the load average before and after, and the exact commands; everything else it
printed goes in a text block below its tables. ``--no-append`` only prints.

Usage::

    python benchmarks/run_suite.py [--quick] [--no-append]

``--quick`` runs every script on few rows (a minute or two: a check that the suite runs,
not figures to record). The full suite takes about 35-40 minutes on 2 idle CPU cores.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS_MD = HERE.parent / "BENCHMARKS.md"

#: (script, full arguments, quick arguments)
SUITE = [
    ("bench_inference.py", ["--rows", "2000"], ["--rows", "60", "--pipeline-batch-sizes", "1,8"]),
    ("bench_engine_options.py", ["--rows", "600", "--rounds", "3"], ["--rows", "60", "--rounds", "1", "--no-compile"]),
    ("bench_speed2.py", ["--short-rows", "1000", "--long-rows", "24"],
     ["--short-rows", "40", "--long-rows", "2", "--long-layers", "1", "--no-levers"]),
    ("bench_scaling.py", ["--thin-rows", "1000,10000,100000", "--minilm-rows", "1000,10000"],
     ["--thin-rows", "200,400", "--minilm-rows", "", "--partition-rows", "100"]),
]

#: Lines a script prints that are progress noise, not results.
NOISE = re.compile(r"^(Loading weights|Device set to use|\s*$)")


def machine() -> str:
    """One line: CPU model, cores, memory, Python and torch."""
    cpu = platform.processor() or platform.machine()
    flags: list[str] = []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu == (platform.processor() or platform.machine()):
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                present = set(line.split(":", 1)[1].split())
                flags = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in present]
    except OSError:
        pass
    cpu += f" ({' '.join(flags) or 'flags unknown'})"
    try:
        memory = f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB"
    except (ValueError, OSError, AttributeError):
        memory = "memory unknown"
    import torch

    return (f"{cpu}, {os.cpu_count()} cores, {memory}, Python {platform.python_version()}, torch {torch.__version__} "
            f"(CPU capability {torch.backends.cpu.get_cpu_capability()}, CUDA {'yes' if torch.cuda.is_available() else 'no'})")


def run_script(script: str, arguments: list[str]) -> tuple[str, float, int]:
    """Run one benchmark script, echoing its output; return (stdout, seconds, exit code)."""
    command = [sys.executable, str(HERE / script), *arguments]
    print(f"\n$ {' '.join(['python', 'benchmarks/' + script, *arguments])}", flush=True)
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=HERE.parent,
                               env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
    lines = []
    for line in process.stdout:
        print(line, end="", flush=True)
        lines.append(line)
    code = process.wait()
    return "".join(lines), time.perf_counter() - started, code


def as_markdown(script: str, arguments: list[str], output: str, seconds: float, code: int) -> str:
    """A script's tables as markdown, its other lines in a text block."""
    tables, other = [], []
    for line in output.splitlines():
        line = line.split("\r")[-1].rstrip()
        if NOISE.match(line):
            continue
        (tables if line.startswith("|") else other).append(line)
    shown = " ".join(["python", "benchmarks/" + script, *(f'"{a}"' if not a else a for a in arguments)])
    status = "" if code == 0 else f" **(exited with code {code})**"
    parts = [f"### `{shown}`", "", f"{seconds / 60:.1f} min{status}.", ""]
    if tables:
        parts += [*tables, ""]
    if other:
        parts += ["```text", *other, "```", ""]
    return "\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few rows: check the suite runs (results not worth recording)")
    parser.add_argument("--no-append", action="store_true", help=f"print only; do not append to {BENCHMARKS_MD.name}")
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    started = dt.datetime.now().astimezone()
    sections, failed = [], []
    for script, full, quick in SUITE:
        arguments = quick if args.quick else full
        output, seconds, code = run_script(script, arguments)
        sections.append(as_markdown(script, arguments, output, seconds, code))
        if code != 0:
            failed.append(script)
    load_after = os.getloadavg()[0]

    header = (
        f"## Suite run of {started:%Y-%m-%d %H:%M %Z}{' (quick)' if args.quick else ''}\n\n"
        f"`python benchmarks/run_suite.py{' --quick' if args.quick else ''}`. Machine: {machine()}. "
        f"Load average {load_before:.1f} before, {load_after:.1f} after.\n"
    )
    report = "\n".join([header, *sections])
    if args.no_append:
        print("\n" + report)
    else:
        with open(BENCHMARKS_MD, "a", encoding="utf-8") as handle:
            handle.write("\n" + report)
        print(f"\nappended to {BENCHMARKS_MD}")
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
