"""``ci/gpu-proof`` and ``benchmarks/bench_gpu.py`` on a machine without CUDA (issue 17).

Without CUDA the proof stops at once with a clear message and installs nothing; the
benchmark runs its tiny CPU mode end to end, so its code is exercised before a GPU is lent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour without CUDA")


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", **extra}


@no_cuda
def test_gpu_proof_without_cuda_stops_at_once(tmp_path):
    out = tmp_path / "out"
    done = subprocess.run([str(ROOT / "ci" / "gpu-proof"), "run"], env=_env(OUT=str(out)), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 3
    assert "no CUDA GPU here" in done.stderr and "Nothing was installed or run" in done.stderr
    assert not out.exists()


def test_gpu_proof_usage():
    done = subprocess.run([str(ROOT / "ci" / "gpu-proof")], capture_output=True, text=True, timeout=30)
    assert done.returncode == 64 and "usage: ci/gpu-proof wheelhouse|run" in done.stderr


@no_cuda
def test_gpu_benchmark_needs_cuda_unless_tiny(tmp_path):
    report = tmp_path / "bench.md"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_gpu.py"), "--out", str(report)],
                          env=_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 3 and "no CUDA GPU" in done.stderr and not report.exists()


def test_gpu_benchmark_tiny_mode_runs_on_cpu(tmp_path):
    report = tmp_path / "bench.md"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_gpu.py"), "--tiny", "--device", "cpu", "--rows", "6",
         "--out", str(report)],
        env=_env(), capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    text = report.read_text()
    results = json.loads(text.split("```json\n", 1)[1].split("\n```", 1)[0])
    assert results["rows"] == 6 and results["tiny"] is True and results["real_tokens"] > 0
    assert list(results["contenders"]) == ["operator", "plain loop (batch 64)", "HF pipeline (batch 64)"]
    for name, row in results["contenders"].items():
        assert row["label_rows"] == 6 and row["docs_per_s"] > 0 and 0 < row["mfu"], name
    # Same weights and fp32 on the CPU: the plain loop picks the operator's labels.
    assert results["contenders"]["plain loop (batch 64)"]["agreement_with_operator"] == 1.0
    assert "| operator |" in text and "MFU vs GEMM" in text
