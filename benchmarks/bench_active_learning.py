#!/usr/bin/env python
"""Active learning on real text: accuracy against the number of labels, per query strategy.

Data: the English Debian bookworm ``main`` descriptions from the apt lists, the 20 largest
sections, split by source package with ``scripts/build_default_model.py`` (as in
``bench_training.py``): a pool of 4,000 rows (a dask DataFrame indexed by package name,
on a ``LocalCluster``) and 2,000 held-out rows from source packages never in the pool.

Simulated labelling: the oracle answers with the package's real section. Each run starts
from ``--start`` random labels (``ActiveLearner.initialize``; the same rows for every
strategy under one seed), then adds ``--step`` labels per round chosen by the strategy,
refitting a fresh model each round, up to ``--budget`` labels. Accuracy is measured on the
held-out rows after every refit, averaged over ``--seeds`` seeds.

Model: TF-IDF + logistic regression (``SGDClassifier(loss="log_loss")``, fast enough to
refit dozens of times on 2 cores) through ``SklearnTextClassifier``; it has no embeddings,
so ``kmeans``/``coreset`` are not run with it. ``--minilm`` adds a frozen-backbone
MiniLM ``TextClassifier`` (random, entropy, kmeans); it embeds the whole pool every round,
so give it a small ``--minilm-pool`` on a CPU.

Prints markdown tables (writes nothing): mean accuracy per number of labels and strategy,
and the labels each strategy needs to reach the accuracy random sampling reaches at the
full budget.

Usage::

    python benchmarks/bench_active_learning.py [--seeds 5] [--workers 2] [--minilm]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import dask.dataframe as dd  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import build_default_model as debian  # noqa: E402

from nemo_cls_dask import ActiveLearner, TextClassifier, get_client  # noqa: E402
from nemo_cls_dask.lightweight import SklearnTextClassifier  # noqa: E402


@dataclass
class Curve:
    """One run: accuracy after each refit, with the seconds spent querying and fitting."""

    labels: list[int] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    query_s: list[float] = field(default_factory=list)
    fit_s: list[float] = field(default_factory=list)


def tfidf_sgd(seed: int) -> SklearnTextClassifier:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import SGDClassifier
    from sklearn.pipeline import make_pipeline

    return SklearnTextClassifier(make_pipeline(TfidfVectorizer(sublinear_tf=True),
                                               SGDClassifier(loss="log_loss", alpha=1e-4, random_state=seed)))


def frozen_minilm(seed: int) -> TextClassifier:
    return TextClassifier(frozen_backbone=True, epochs=30, learning_rate=1e-2, max_len=128, verbose=False,
                          seed=seed, validation_fraction=0.0, device="cpu")


def load_split(pool_rows: int, test_rows: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Pool and held-out rows indexed by (unique) package name, with text and section."""
    frame = debian.deduplicate(debian.load_records(debian.PACKAGES_FILE, debian.TRANSLATION_FILE))
    sections = debian.top_sections(frame, debian.N_LABELS)
    data = frame[frame["section"].isin(sections)].reset_index(drop=True)
    split = debian.split_by_source(data, pool_rows, test_rows, debian.SEED)
    return (split.train.set_index("package")[["text", "section"]],
            split.heldout.set_index("package")[["text", "section"]])


def run_curve(make_model: Callable[[int], Any], strategy: str, seed: int, pool: pd.DataFrame, test: pd.DataFrame,
              args: argparse.Namespace, npartitions: int) -> Curve:
    """One simulated labelling run; the oracle answers with the true section."""
    truth = pool["section"]
    ddf = dd.from_pandas(pool[["text"]], npartitions=npartitions, sort=False)
    learner = ActiveLearner(make_model(seed), ddf, text_field="text", label_field="section")
    curve = Curve()
    rows = learner.initialize(args.start, seed=seed)
    while True:
        learner.update(rows.index, truth.loc[rows.index])
        predicted = learner.model_.predict(test, text_field="text")
        curve.labels.append(learner.n_labeled)
        curve.accuracy.append(float((predicted == test["section"].to_numpy()).mean()))
        curve.query_s.append(learner.history_[-1]["query_s"])
        curve.fit_s.append(learner.history_[-1]["fit_s"])
        if learner.n_labeled >= args.budget:
            return curve
        rows = learner.query(min(args.step, args.budget - learner.n_labeled), strategy, seed=seed)


def labels_to_reach(labels: list[int], accuracy: np.ndarray, target: float) -> str:
    """The first label count whose mean accuracy reaches ``target`` ("> budget" if none)."""
    for count, value in zip(labels, accuracy):
        if value >= target - 1e-12:
            return str(count)
    return f"> {labels[-1]}"


def report(name: str, curves: dict[str, list[Curve]]) -> None:
    labels = curves["random"][0].labels
    means = {s: np.mean([c.accuracy for c in runs], axis=0) for s, runs in curves.items()}
    spread = {s: np.std([c.accuracy for c in runs], axis=0) for s, runs in curves.items()}
    strategies = list(curves)
    print(f"\n### {name}: held-out accuracy (mean ± std over {len(curves['random'])} seeds)\n")
    print("| labels | " + " | ".join(f"`{s}`" for s in strategies) + " |")
    print("|---:|" + "---:|" * len(strategies))
    for i, count in enumerate(labels):
        cells = [f"{means[s][i]:.3f} ± {spread[s][i]:.3f}" for s in strategies]
        values = [means[s][i] for s in strategies]
        if values.count(max(values)) == 1:  # bold a clear winner only
            cells = [f"**{c}**" if v == max(values) else c for c, v in zip(cells, values)]
        print(f"| {count} | " + " | ".join(cells) + " |")
    target = float(means["random"][-1])
    print(f"\nLabels needed to reach {target:.3f} (what `random` reaches with {labels[-1]} labels):\n")
    print("| strategy | labels needed | mean query s / round | mean refit s / round |")
    print("|---|---:|---:|---:|")
    for s, runs in curves.items():
        query_s = np.mean([q for c in runs for q in c.query_s if q is not None])
        fit_s = np.mean([f for c in runs for f in c.fit_s])
        print(f"| `{s}` | {labels_to_reach(labels, means[s], target)} | {query_s:.2f} | {fit_s:.2f} |")


def run_model(name: str, make_model: Callable[[int], Any], strategies: list[str], pool: pd.DataFrame,
              test: pd.DataFrame, args: argparse.Namespace) -> None:
    curves: dict[str, list[Curve]] = {s: [] for s in strategies}
    for seed in range(args.seeds):
        for strategy in strategies:
            started = time.perf_counter()
            curve = run_curve(make_model, strategy, seed, pool, test, args, args.partitions)
            curves[strategy].append(curve)
            print(f"  {name} seed {seed} {strategy}: " + " ".join(f"{a:.3f}" for a in curve.accuracy)
                  + f"  ({time.perf_counter() - started:.0f}s, load {os.getloadavg()[0]:.1f})", flush=True)
    report(name, curves)


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pool-rows", type=int, default=4000)
    parser.add_argument("--test-rows", type=int, default=2000)
    parser.add_argument("--start", type=int, default=100, help="random labels before the first query")
    parser.add_argument("--step", type=int, default=100, help="labels added per round")
    parser.add_argument("--budget", type=int, default=1000, help="labels at the end")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--partitions", type=int, default=8, help="partitions of the pool")
    parser.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes (0: this process)")
    parser.add_argument("--strategies", default="random,least_confidence,entropy,breaking_ties")
    parser.add_argument("--minilm", action="store_true", help="also run a frozen MiniLM TextClassifier (slow on CPU)")
    parser.add_argument("--minilm-pool", type=int, default=1000, help="pool rows for the MiniLM runs")
    parser.add_argument("--minilm-strategies", default="random,entropy,kmeans")
    args = parser.parse_args()

    started = time.perf_counter()
    pool, test = load_split(args.pool_rows, args.test_rows)
    print(f"{len(pool)} pool rows, {len(test)} held-out rows (unseen source packages), "
          f"{pool['section'].nunique()} sections; data read in {time.perf_counter() - started:.0f}s", flush=True)
    print(f"before: {uptime()}", flush=True)
    client = get_client(n_workers=args.workers, device="cpu", threads_per_worker=1) if args.workers else None
    try:
        if client is not None:
            client.wait_for_workers(args.workers, timeout=120)
            print(f"LocalCluster: {args.workers} worker processes x 1 thread; pool in {args.partitions} partitions",
                  flush=True)
        t0 = time.perf_counter()
        run_model("TF-IDF + logistic regression (SGD), `SklearnTextClassifier`", tfidf_sgd,
                  args.strategies.split(","), pool, test, args)
        print(f"\n(TF-IDF runs took {time.perf_counter() - t0:.0f}s)")
        if args.minilm:
            small = pool.iloc[: args.minilm_pool]
            run_model(f"frozen MiniLM `TextClassifier`, pool {len(small)}", frozen_minilm,
                      args.minilm_strategies.split(","), small, test, args)
    finally:
        if client is not None:
            cluster = client.cluster
            client.close()
            if cluster is not None:
                cluster.close()
    majority = test["section"].value_counts(normalize=True).iloc[0]
    print(f"\nmajority-class accuracy {majority:.3f}; total {time.perf_counter() - started:.0f}s")
    print(f"after: {uptime()}")


if __name__ == "__main__":
    main()
