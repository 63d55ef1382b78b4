"""ONNX Runtime contenders of ``bench_speed2.py`` (issue 18): export, fuse, quantize, run.

The HF ``*ForSequenceClassification`` folder of a workload is exported with the TorchScript
exporter (``torch.onnx.export(..., dynamo=False)``, eager attention, dynamic batch and sequence
axes, logits out), then:

* ``optimize_model`` from ``onnxruntime.transformers.optimizer`` fuses what it recognises
  (``model_type="bert"``: attention, LayerNorm, GELU, bias and skip-layer-norm fusions); the
  fused-operator counts are reported, so what did not fuse (DeBERTa's disentangled attention
  has no fused kernel in ORT) is visible;
* ``quantize_dynamic`` gives an int8 copy (weights int8 per tensor, activations quantized per
  batch at run time: opt-in only, its label agreement is printed).

Each model runs in two batchings: pipeline-like (original order, fixed batch, padded to the
longest row of the batch) and sorted (rows sorted by token count, fixed batch), one
``InferenceSession`` with ``intra_op_num_threads`` = cores, all graph optimisations on.
Everything here needs the optional ``onnx`` and ``onnxruntime`` packages
(``pip install -e .[bench]``); :func:`missing` says which are absent.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from speed2_contenders import Run, peak_memory_mib, reset_peak_memory
from speed2_workloads import Workload


def missing() -> list[str]:
    """The ONNX packages this module needs that are not installed."""
    return [name for name in ("onnx", "onnxruntime") if importlib.util.find_spec(name) is None]


def export(workload: Workload, folder: Path) -> Path:
    """The workload's classifier as ``folder/model.onnx`` (fp32 logits, dynamic axes)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    # Eager attention: ORT's fusion recognises its MatMul-Softmax-MatMul pattern (a fused
    # ``Attention`` per layer); the SDPA export does not fuse.
    model = AutoModelForSequenceClassification.from_pretrained(workload.hf_folder, attn_implementation="eager").eval()
    model.config.return_dict = False
    tokenizer = AutoTokenizer.from_pretrained(workload.hf_folder)
    sample = tokenizer(workload.texts[:2], truncation=True, max_length=workload.max_length, padding=True,
                       return_tensors="pt")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.onnx"
    axes = {0: "batch", 1: "sequence"}
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # tracer warnings about Python values in the graph
        torch.onnx.export(
            model, (sample["input_ids"], sample["attention_mask"]), str(path), dynamo=False,
            input_names=["input_ids", "attention_mask"], output_names=["logits"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "logits": {0: "batch"}}, opset_version=17,
        )
    return path


def optimize(workload: Workload, source: Path) -> tuple[Path, dict[str, int]]:
    """ORT's transformer fusions on ``source``; returns the fused model and its fused-op counts."""
    from onnxruntime.transformers.optimizer import optimize_model

    optimized = optimize_model(str(source), model_type="bert", num_heads=workload.heads, hidden_size=workload.hidden,
                               opt_level=1)
    path = source.with_name("model.opt.onnx")
    optimized.save_model_to_file(str(path))
    statistics = {k: int(v) for k, v in optimized.get_fused_operator_statistics().items() if v}
    return path, statistics


def quantize(source: Path) -> Path:
    """Dynamic int8 quantization of the encoder in ``source`` (MatMul and fused Attention).

    The head (``pooler``, ``classifier``) stays fp32, as in ``bench_engine_options.py``: its
    inputs are a few pooled values and int8 there moves labels for no measurable speed.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(source), load_external_data=False).graph
    head = [node.name for node in graph.node if any(part in node.name for part in ("classifier", "pooler"))]
    path = source.with_name(source.stem + ".int8.onnx")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # "consider pre-processing" advice on every call
    try:
        quantize_dynamic(str(source), str(path), weight_type=QuantType.QInt8, nodes_to_exclude=head,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    finally:
        root.setLevel(level)  # only this call is quietened: the caller's warnings still reach their handlers
    return path


def session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_onnx(workload: Workload, path: Path, name: str, batch_size: int, sort: bool, threads: int | None = None) -> Run:
    """Classify every row with the ONNX model at ``path`` in fixed batches of ``batch_size``."""
    from transformers import AutoConfig, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(workload.hf_folder)
    id2label = AutoConfig.from_pretrained(workload.hf_folder).id2label
    runner = session(path, threads or os.cpu_count() or 1)
    warm = tokenizer(workload.texts[:2], truncation=True, max_length=workload.max_length, padding=True,
                     return_tensors="np")
    runner.run(["logits"], {"input_ids": warm["input_ids"], "attention_mask": warm["attention_mask"]})
    reset_peak_memory()
    start = time.perf_counter()
    encoded = tokenizer(workload.texts, truncation=True, max_length=workload.max_length)["input_ids"]
    lengths = np.array([len(row) for row in encoded])
    order = np.argsort(-lengths, kind="stable") if sort else np.arange(len(encoded))
    predictions = np.empty(len(encoded), dtype=np.int64)
    computed = 0
    pad = tokenizer.pad_token_id or 0
    for begin in range(0, len(order), batch_size):
        rows = order[begin : begin + batch_size]
        width = int(lengths[rows].max())
        ids = np.full((len(rows), width), pad, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for k, row in enumerate(rows):
            ids[k, : lengths[row]] = encoded[row]
            mask[k, : lengths[row]] = 1
        computed += ids.size
        logits = runner.run(["logits"], {"input_ids": ids, "attention_mask": mask})[0]
        predictions[rows] = logits.argmax(-1)
    seconds = time.perf_counter() - start
    labels = np.array([id2label[int(i)] for i in predictions], dtype=object)
    batching = "sorted by length" if sort else "original order"
    return Run(f"{name}, batch {batch_size}, {batching}", seconds, labels, computed, {"process": peak_memory_mib()})


def onnx_runs(workload: Workload, folder: Path, batch_size: int, log=print) -> list[Run]:
    """Export, fuse and quantize, then run fp32 and int8 in both batchings."""
    start = time.perf_counter()
    raw = export(workload, folder)
    log(f"  ONNX export: {time.perf_counter() - start:.0f} s")
    start = time.perf_counter()
    try:
        fused, statistics = optimize(workload, raw)
        log(f"  ORT transformer optimizer (model_type bert): {time.perf_counter() - start:.0f} s, fused ops {statistics}")
    except Exception as error:  # a model family the optimizer cannot handle: run the plain export
        fused, statistics = raw, {}
        log(f"  ORT transformer optimizer failed ({type(error).__name__}: {error}); running the plain export")
    int8 = quantize(fused)
    runs = []
    for path, precision in ((fused, "fp32"), (int8, "dynamic int8 (opt-in)")):
        for sort in (False, True):
            runs.append(run_onnx(workload, path, f"ONNX Runtime, fused, {precision}", batch_size, sort))
            log(f"  {runs[-1].name}: {len(workload.texts) / runs[-1].seconds:.2f} docs/s")
    return runs
