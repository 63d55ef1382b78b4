"""GPU inference benchmark (issue 17): the operator against a plain loop and the HF pipeline.

Model: a ``DebertaV2ForSequenceClassification`` shaped like DeBERTa-v3-base (the bundled
``microsoft__deberta-v3-base.json`` config, 184M parameters) with random weights and 3
labels, saved with ``save_pretrained`` so all three contenders load the same folder.
Tokenizer: the offline DeBERTa-style tokenizer of ``nemo_cls_dask.testing``. Its vocabulary
is small (875 pieces), so a ~2,000-character document is ~900-1,800 tokens and every one is
cut to the 512-token window: all rows are full, padding plays no part, and the contest is
about batching and precision alone (the real 128k-piece tokenizer, not available offline,
would give about 450 tokens).
Text: real English prose, Python's own ``pydoc_data`` topics, cut into documents of
1,500 to 2,500 characters (about 2,000).

Contenders, on one device, same rows:

1. the operator, ``classifier(pandas_df)`` eagerly in this process (sorted, token-budgeted
   batches; default precision: bf16 autocast on the GPU);
2. a plain loop: fixed batches of 64 in the original order, each padded to its longest
   row, under the same autocast;
3. ``transformers.pipeline("text-classification")`` with the model in bf16 (GPU), batch 64.

Each gets one warm-up call. Printed: docs/s, real tokens/s, padding efficiency, and MFU:
model FLOPs on real tokens per second over a bf16 matrix product (8192^3) measured in the
same run. FLOPs of a row of ``n`` tokens: ``n * (2 * P + 4 * layers * hidden * n)``, P =
non-embedding parameters; DeBERTa's extra disentangled-attention products are not counted,
so MFU is a lower bound.

``--tiny`` runs the same code on the CPU with the tiny test model, a few rows and fp32 for
every contender (what the test suite runs; no GPU needed). Writes a markdown report with a JSON block to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

MAX_LENGTH = 512
PLAIN_BATCH = 64
LABELS = ["low", "medium", "high"]
NO_CUDA_EXIT = 3


def documents(rows: int, seed: int = 0) -> list[str]:
    """``rows`` documents of 1,500-2,500 characters of real English prose (pydoc topics)."""
    from pydoc_data.topics import topics

    prose = " ".join(" ".join(text.split()) for _, text in sorted(topics.items()))
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1500, 2501, size=rows)
    starts = rng.integers(0, len(prose) - 2600, size=rows)
    return [prose[start : start + size] for start, size in zip(starts.tolist(), sizes.tolist())]


def build_model(folder: Path, tiny: bool) -> Path:
    """A DeBERTa-v3-base-shaped (or tiny) sequence classifier with random weights, saved to ``folder``."""
    from transformers import AutoModelForSequenceClassification, DebertaV2Config

    from nemo_cls_dask.testing import make_hf_sequence_checkpoint, make_tokenizer

    if tiny:
        return make_hf_sequence_checkpoint(folder, LABELS, arch="deberta", max_len=MAX_LENGTH)
    import nemo_cls_dask

    bundled = Path(nemo_cls_dask.__file__).parent / "models" / "backbone_configs" / "microsoft__deberta-v3-base.json"
    settings = json.loads(bundled.read_text())
    settings.pop("model_type", None)
    config = DebertaV2Config(
        **settings,
        num_labels=len(LABELS),
        id2label=dict(enumerate(LABELS)),
        label2id={name: i for i, name in enumerate(LABELS)},
    )
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(config).eval()
    model.save_pretrained(folder)
    make_tokenizer("deberta", max_len=MAX_LENGTH).save_pretrained(folder)
    return folder


def gemm_flops_per_second(device: torch.device, tiny: bool) -> tuple[float, str]:
    """Measured matrix-product throughput: bf16 8192^3 on a GPU (fp32 512^3 in tiny mode)."""
    size, dtype = (512, torch.float32) if tiny else (8192, torch.bfloat16)
    a = torch.randn(size, size, dtype=dtype, device=device)
    b = torch.randn(size, size, dtype=dtype, device=device)
    for _ in range(3):
        a @ b
    _sync(device)
    reps = 3 if tiny else 10
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    _sync(device)
    return reps * 2 * size**3 / (time.perf_counter() - start), f"{str(dtype).replace('torch.', '')} {size}^3"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def model_flops(lengths: np.ndarray, params: int, layers: int, hidden: int) -> float:
    lengths = lengths.astype(np.float64)
    return float(np.sum(lengths * (2 * params + 4 * layers * hidden * lengths)))


def run_operator(folder: Path, texts: list[str], device: torch.device, autocast: bool) -> dict:
    from nemo_cls_dask import DistributedDataClassifier, engine_stats, reset_engine_stats

    classifier = DistributedDataClassifier(
        model_identifier=str(folder), label_field="pred", device=str(device), max_seq_length=MAX_LENGTH,
        autocast=autocast,
    )
    classifier(pd.DataFrame({"text": texts[:PLAIN_BATCH]}))  # load and warm up
    frame = pd.DataFrame({"text": texts})
    reset_engine_stats()
    _sync(device)
    start = time.perf_counter()
    out = classifier(frame)
    _sync(device)
    seconds = time.perf_counter() - start
    stats = engine_stats()
    return {"seconds": seconds, "labels": out["pred"].astype(object).tolist(), "computed_tokens": stats["padded_tokens"],
            "oom_splits": stats.get("oom_splits", 0)}


def run_plain_loop(folder: Path, texts: list[str], device: torch.device, autocast: bool) -> dict:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from nemo_cls_dask.engine import autocast_dtype

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).to(device).eval()
    dtype = autocast_dtype(device, autocast)
    cast = torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)

    def run(batch_texts: list[str]) -> tuple[list[str], int]:
        labels, computed = [], 0
        with torch.inference_mode(), cast:
            for i in range(0, len(batch_texts), PLAIN_BATCH):
                batch = tokenizer(batch_texts[i : i + PLAIN_BATCH], truncation=True, max_length=MAX_LENGTH,
                                  padding=True, return_tensors="pt").to(device)
                computed += batch["input_ids"].numel()
                labels += [model.config.id2label[k] for k in model(**batch).logits.argmax(-1).tolist()]
        return labels, computed

    run(texts[:PLAIN_BATCH])
    _sync(device)
    start = time.perf_counter()
    labels, computed = run(texts)
    _sync(device)
    return {"seconds": time.perf_counter() - start, "labels": labels, "computed_tokens": computed}


def run_pipeline(folder: Path, texts: list[str], device: torch.device, autocast: bool) -> dict:
    from transformers import pipeline

    dtype = torch.bfloat16 if autocast and device.type == "cuda" else torch.float32
    classifier = pipeline("text-classification", model=str(folder), device=device, dtype=dtype,
                          truncation=True, max_length=MAX_LENGTH)
    classifier(texts[:PLAIN_BATCH], batch_size=PLAIN_BATCH)
    _sync(device)
    start = time.perf_counter()
    outputs = classifier(texts, batch_size=PLAIN_BATCH)
    _sync(device)
    return {"seconds": time.perf_counter() - start, "labels": [o["label"] for o in outputs], "computed_tokens": None}


def benchmark(rows: int, device: torch.device, tiny: bool, workdir: Path) -> dict:
    from transformers import AutoConfig, AutoTokenizer

    folder = build_model(workdir / "model", tiny)
    config = AutoConfig.from_pretrained(folder)
    texts = documents(rows)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    lengths = np.array([len(ids) for ids in tokenizer(texts, truncation=True, max_length=MAX_LENGTH)["input_ids"]])
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(folder)
    params = sum(p.numel() for name, p in model.named_parameters() if "embeddings" not in name)
    del model
    flops = model_flops(lengths, params, config.num_hidden_layers, config.hidden_size)
    ceiling, gemm = gemm_flops_per_second(device, tiny)
    report = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__, "python": platform.python_version(), "tiny": tiny, "rows": rows,
        "model": "tiny DeBERTa-v2" if tiny else "DeBERTa-v3-base shape, random weights",
        "non_embedding_params": params, "mean_chars": float(np.mean([len(t) for t in texts])),
        "mean_tokens": float(lengths.mean()), "real_tokens": int(lengths.sum()),
        "gemm": gemm, "gemm_tflops": ceiling / 1e12, "contenders": {},
    }
    for name, run in (("operator", run_operator), ("plain loop (batch 64)", run_plain_loop),
                      ("HF pipeline (batch 64)", run_pipeline)):
        result = run(folder, texts, device, autocast=not tiny)
        labels = result.pop("labels")
        computed = result.pop("computed_tokens")
        seconds = result["seconds"]
        report["contenders"][name] = {
            **result,
            "docs_per_s": rows / seconds,
            "tokens_per_s": lengths.sum() / seconds,
            "padding_efficiency": lengths.sum() / computed if computed else None,
            "mfu": flops / seconds / ceiling,
            "labels_sample": labels[:3],
            "label_rows": len(labels),
        }
        if name == "operator":
            reference = labels
        else:
            report["contenders"][name]["agreement_with_operator"] = float(np.mean(np.array(labels) == np.array(reference)))
    return report


def markdown(report: dict) -> str:
    lines = [
        f"GPU benchmark on {report['device']} (torch {report['torch']}, Python {report['python']}): "
        f"{report['model']}, {report['rows']} documents of {report['mean_chars']:.0f} characters on average, "
        f"{report['mean_tokens']:.0f} tokens (max {MAX_LENGTH}); {report['gemm']} GEMM "
        f"{report['gemm_tflops']:.3g} TFLOP/s.",
        "",
        "| contender | docs/s | tokens/s | padding efficiency | MFU vs GEMM | label agreement |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in report["contenders"].items():
        padding = f"{row['padding_efficiency']:.3f}" if row["padding_efficiency"] else "n/a"
        agreement = f"{row.get('agreement_with_operator', 1.0):.3f}"
        lines.append(f"| {name} | {row['docs_per_s']:.1f} | {row['tokens_per_s']:.0f} | {padding} | "
                     f"{100 * row['mfu']:.1f}% | {agreement} |")
    return "\n".join(lines) + "\n\n```json\n" + json.dumps(report, indent=1, default=str) + "\n```\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny model, few rows, CPU allowed (the test suite's mode)")
    parser.add_argument("--rows", type=int, default=None, help="documents (default 4096; 16 with --tiny)")
    parser.add_argument("--device", default=None, help="cuda (default) or cpu (only with --tiny)")
    parser.add_argument("--out", type=Path, required=True, help="markdown report to write")
    args = parser.parse_args(argv)
    device = torch.device(args.device or ("cpu" if args.tiny else "cuda"))
    if device.type == "cuda" and not torch.cuda.is_available():
        print("bench_gpu: no CUDA GPU is visible to torch (torch.cuda.is_available() is False); "
              "nothing was measured. Use --tiny --device cpu for the CPU smoke run.", file=sys.stderr)
        return NO_CUDA_EXIT
    if device.type != "cuda" and not args.tiny:
        parser.error("a CPU run is only the --tiny smoke run")
    rows = args.rows or (16 if args.tiny else 4096)
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as workdir:
        report = benchmark(rows, device, args.tiny, Path(workdir))
    text = markdown(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(text.split("```json")[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
