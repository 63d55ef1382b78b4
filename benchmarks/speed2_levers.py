"""Levers and profiles of ``bench_speed2.py`` (issue 18), run in this process.

* :func:`run_engine_int8`: our engine with every backbone ``nn.Linear`` dynamically quantized
  to int8 (``torch.ao.quantization.quantize_dynamic``, per output channel; the head stays
  fp32), the torch counterpart of ORT's dynamic int8. Opt-in only: its label agreement is
  printed beside it. Tokenization is inside the timing, as for every contender.
* :func:`profile_engine`: where one engine batch spends its time (``torch.profiler``, self
  CPU time per operator), to show why an unmet target is unmet.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import time
import warnings
from collections.abc import Iterator

import numpy as np
import torch

from speed2_contenders import Run, peak_memory_mib, reset_peak_memory
from speed2_workloads import Workload


def _loaded(workload: Workload):
    from nemo_cls_dask.models.loading import get_model

    return get_model(str(workload.operator_folder), None, "cpu")


def quantized_copy(module: torch.nn.Module) -> torch.nn.Module:
    """A copy of a head model (``.model`` backbone + head) with an int8-Linear backbone."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    clone = copy.deepcopy(module)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch deprecates this API in favour of torchao
        clone.model = quantize_dynamic(clone.model, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)
    return clone.eval()


def run_engine_int8(workload: Workload) -> Run:
    """The engine's own batching over an int8-Linear copy of the operator's model."""
    from nemo_cls_dask.engine import BatchSettings, engine_stats, reset_engine_stats, run_model
    from nemo_cls_dask.tokenization import clean_texts, encode

    loaded = _loaded(workload)
    int8 = dataclasses.replace(loaded, module=quantized_copy(loaded.module))
    settings = BatchSettings(autocast=False)

    def classify(texts: list[str]) -> np.ndarray:
        cleaned, valid = clean_texts(texts, None)
        encoded = encode(int8.tokenizer, cleaned, valid, workload.max_length)
        outputs = run_model(int8, encoded, settings)
        return np.asarray(int8.info.labels, dtype=object)[outputs.argmax(-1).numpy()]

    classify(workload.texts[:2])
    reset_engine_stats()
    reset_peak_memory()
    start = time.perf_counter()
    labels = classify(workload.texts)
    seconds = time.perf_counter() - start
    computed = engine_stats()["padded_tokens"]
    return Run("nemo_cls_dask engine, torch dynamic int8 Linear (opt-in lever)", seconds, labels, computed,
               {"process": peak_memory_mib()})


def profile_engine(workload: Workload, rows: int, top: int = 12) -> str:
    """Self CPU time per operator for the engine on the first ``rows`` rows, as a markdown table."""
    from torch.profiler import ProfilerActivity, profile

    from nemo_cls_dask import DistributedDataClassifier

    import pandas as pd

    classifier = DistributedDataClassifier(model_identifier=str(workload.operator_folder), label_field="pred",
                                           max_seq_length=workload.max_length)
    frame = pd.DataFrame({"text": workload.texts[:rows]})
    classifier(frame)  # warm
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        classifier(frame)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1
    lines = [f"profile of the engine, {workload.name} rows, first {rows} rows (self CPU time per operator):", "",
             "| operator | share of time | calls |", "|---|---|---|"]
    for event in events[:top]:
        lines.append(f"| {event.key} | {100 * event.self_cpu_time_total / total:.1f}% | {event.count} |")
    return "\n".join(lines)


@contextlib.contextmanager
def position_cache_off() -> Iterator[None]:
    """Models loaded inside compute DeBERTa's relative-position projections on every batch, as
    transformers does (:mod:`nemo_cls_dask.models.deberta_positions` off); the model registry
    is cleared on entry and exit, so no model crosses the boundary."""
    from nemo_cls_dask.models import loading

    loading.clear_models()
    cache = loading.cache_position_projections
    loading.cache_position_projections = lambda module: 0
    try:
        yield
    finally:
        loading.cache_position_projections = cache
        loading.clear_models()


def run_engine_without_position_cache(workload: Workload) -> Run:
    """The engine as shipped but with the DeBERTa position cache off: the in-run baseline for
    that lever."""
    import speed2_contenders

    with position_cache_off():
        return speed2_contenders.run_engine(workload, name="nemo_cls_dask engine, DeBERTa position cache off (lever)")
