"""The contenders of ``bench_speed2.py`` (issue 18), each run on a :class:`Workload`.

Every contender loads its model outside the timing, gets one small warm-up call, then
classifies all rows once. Each returns a :class:`Run`: seconds, labels in row order, tokens
computed (padding included) and peak resident memory per process.

Peak memory: the process's high-water mark (``VmHWM``) is reset before each in-process
contender (``/proc/self/clear_refs``), so it is that contender's peak, including what the
process already held (Python, torch, the rows). Cluster workers report their own.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from speed2_workloads import Workload


@dataclasses.dataclass
class Run:
    name: str
    seconds: float
    labels: np.ndarray
    computed_tokens: int
    peak_mib: dict[str, float]
    note: str = ""


# ------------------------------------------------------------------------------ memory


def reset_peak_memory() -> None:
    """Reset this process's peak RSS (Linux ``clear_refs`` 5); a no-op elsewhere."""
    gc.collect()
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_memory_mib() -> float:
    """This process's peak RSS since the last reset (``VmHWM``), in MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _padded(batches_lengths: list[np.ndarray]) -> int:
    return int(sum(len(b) * int(b.max()) for b in batches_lengths if len(b)))


# ------------------------------------------------------------------------------ torch


def run_pipeline(workload: Workload, batch_size: int) -> Run:
    """``transformers.pipeline("text-classification")``, fp32, original order."""
    from transformers import pipeline

    classifier = pipeline("text-classification", model=str(workload.hf_folder), device=-1, truncation=True,
                          max_length=workload.max_length)
    classifier(workload.texts[:2], batch_size=batch_size)
    reset_peak_memory()
    start = time.perf_counter()
    outputs = classifier(workload.texts, batch_size=batch_size)
    seconds = time.perf_counter() - start
    lengths = _lengths(classifier.tokenizer, workload)
    computed = _padded([lengths[i : i + batch_size] for i in range(0, len(lengths), batch_size)])
    return Run(f"HF pipeline, batch {batch_size}", seconds, np.array([o["label"] for o in outputs], dtype=object),
               computed, {"process": peak_memory_mib()})


def _lengths(tokenizer, workload: Workload) -> np.ndarray:
    ids = tokenizer(workload.texts, truncation=True, max_length=workload.max_length)["input_ids"]
    return np.array([len(row) for row in ids])


def run_plain_loop(workload: Workload, batch_size: int) -> Run:
    """A fixed-batch loop in the original order, each batch padded to its longest row, fp32."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(workload.hf_folder)
    model = AutoModelForSequenceClassification.from_pretrained(workload.hf_folder).eval()
    labels, computed = [], 0
    with torch.inference_mode():
        model(**tokenizer(workload.texts[:2], truncation=True, max_length=workload.max_length, padding=True,
                          return_tensors="pt"))
        reset_peak_memory()
        start = time.perf_counter()
        for i in range(0, len(workload.texts), batch_size):
            batch = tokenizer(workload.texts[i : i + batch_size], truncation=True, max_length=workload.max_length,
                              padding=True, return_tensors="pt")
            computed += batch["input_ids"].numel()
            labels += [model.config.id2label[j] for j in model(**batch).logits.argmax(-1).tolist()]
        seconds = time.perf_counter() - start
    return Run(f"plain loop, batch {batch_size}, original order", seconds, np.array(labels, dtype=object), computed,
               {"process": peak_memory_mib()})


def run_engine(workload: Workload, autocast=True, name: str = "", batch_tokens: int | None = None) -> Run:
    """Our operator on a pandas frame in this process (the engine: sorted, token-budgeted;
    ``batch_tokens`` None is the library's default budget)."""
    from nemo_cls_dask import DistributedDataClassifier, engine_stats, reset_engine_stats
    from nemo_cls_dask.models.loading import get_model

    classifier = DistributedDataClassifier(model_identifier=str(workload.operator_folder), label_field="pred",
                                           max_seq_length=workload.max_length, autocast=autocast,
                                           batch_tokens=batch_tokens)
    get_model(str(workload.operator_folder), None, "cpu")
    classifier(pd.DataFrame({"text": workload.texts[:2]}))
    reset_engine_stats()
    reset_peak_memory()
    start = time.perf_counter()
    out = classifier(pd.DataFrame({"text": workload.texts}))
    seconds = time.perf_counter() - start
    return Run(name or "nemo_cls_dask engine, 1 process", seconds, out["pred"].to_numpy(dtype=object),
               engine_stats()["padded_tokens"], {"process": peak_memory_mib()})


def _worker_peak_mib() -> float:
    return peak_memory_mib()


def _worker_preload(folder: str) -> int:
    from nemo_cls_dask.models.loading import get_model

    get_model(folder, None, "cpu")
    reset_peak_memory()
    return os.getpid()


def run_operator_on_cluster(workload: Workload, workers: int, threads: int, partitions: int) -> Run:
    """Our operator end to end on a ``distributed`` LocalCluster (``workers`` x ``threads``).

    Every worker loads the model before the timing (through the operator's own model
    cache); the timed pass is a full ``compute`` of the dask frame.
    """
    import dask.dataframe as dd

    from nemo_cls_dask import DistributedDataClassifier, engine_stats, get_client, load_counts, reset_engine_stats

    import cloudpickle

    # Workers cannot import this file (benchmarks/ is not a package): send its helpers by value.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    client = get_client(n_workers=workers, threads_per_worker=threads, device="cpu")
    try:
        folder = str(workload.operator_folder)
        client.run(_worker_preload, folder)
        classifier = DistributedDataClassifier(model_identifier=folder, label_field="pred",
                                               max_seq_length=workload.max_length)
        small = dd.from_pandas(pd.DataFrame({"text": workload.texts[: 2 * workers]}), npartitions=workers, sort=False)
        client.compute(classifier(small)).result()  # warm-up: graph building, first kernels
        client.run(reset_engine_stats)
        client.run(reset_peak_memory)
        frame = dd.from_pandas(pd.DataFrame({"text": workload.texts}), npartitions=partitions, sort=False)
        start = time.perf_counter()
        out = client.compute(classifier(frame)).result()
        seconds = time.perf_counter() - start
        computed = sum(s.get("padded_tokens", 0) for s in client.run(engine_stats).values())
        loads = {w.split(":")[-1]: sum(v.values()) for w, v in client.run(load_counts).items()}
        peaks = {f"worker :{w.split(':')[-1]}": v for w, v in client.run(_worker_peak_mib).items()}
        note = f"model loads per worker {sorted(loads.values())}"
        return Run(f"nemo_cls_dask operator, LocalCluster {workers}x{threads} thread, {partitions} partitions", seconds,
                   out["pred"].to_numpy(dtype=object), computed, peaks, note)
    finally:
        cluster = client.cluster
        client.close()
        cluster.close()
