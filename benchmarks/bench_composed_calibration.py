#!/usr/bin/env python
"""Temperature scaling and composed heads on real text: Debian package descriptions.

Prints only; writes nothing outside a temporary folder. Data as in ``bench_training.py``
(bookworm ``main`` descriptions from the apt lists, split by source package).

(a) Calibration: a frozen all-MiniLM-L6-v2 head on the 20 largest sections
    (``TextClassifier(frozen_backbone=True, calibration="temperature")``) and one on the
    30 most frequent debtags (multi-label). For each: the fitted ``T`` and the expected
    calibration error (15 bins) and NLL on the validation split (where ``T`` was fitted)
    and on held-out rows of unseen source packages, before (``T = 1``) and after.
(b) Composition: the two heads composed into one model
    (:func:`nemo_cls_dask.compose`) and run with ``ComposedClassifier`` over the held-out
    texts, against the same two heads as two ``DistributedDataClassifier`` operators
    (one after the other, and in one ``classify`` pass, which shares the tokenization but
    still runs the backbone twice). Docs/s are for in-process pandas partitions, fp32,
    ``--threads`` torch threads; the CPU may be shared, so the load average is printed.

Usage::

    HF_HUB_OFFLINE=1 python benchmarks/bench_composed_calibration.py [--train-rows 3000]
        [--test-rows 1000] [--head-epochs 30] [--threads 2] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import build_default_model as debian  # noqa: E402
from bench_training import N_TAGS, load_tags, tag_matrix  # noqa: E402

from nemo_cls_dask import ComposedClassifier, DistributedDataClassifier, TextClassifier, classify, compose  # noqa: E402
from nemo_cls_dask.train.calibration import negative_log_likelihood  # noqa: E402
from nemo_cls_dask.train.metrics import expected_calibration_error  # noqa: E402

BACKBONE = "sentence-transformers/all-MiniLM-L6-v2"


def load_average() -> str:
    return "load average " + ", ".join(f"{value:.2f}" for value in os.getloadavg())


def head(problem: str, args) -> TextClassifier:
    return TextClassifier(
        BACKBONE, problem=problem, max_len=args.max_len, epochs=args.head_epochs, learning_rate=2e-3,
        frozen_backbone=True, max_batch_rows=64, validation_fraction=0.15, calibration="temperature",
        seed=0, verbose=False, autocast=None,
    )


def held_out_calibration(clf: TextClassifier, test: pd.DataFrame, label_field: str) -> dict[str, float]:
    """ECE and NLL on held-out rows with the fitted T and with T = 1 (same weights)."""
    problem = clf.problem
    multi = problem == "multi_label"
    temperature = clf.model_.temperature
    clf.model_.set_temperature(None)
    try:
        raw_proba = clf.predict_proba(test, text_field="text").astype(np.float64)
    finally:
        clf.model_.set_temperature(temperature)
    if multi:
        target = tag_matrix(test, list(clf.labels_), label_field).astype(np.float64)
        logits = np.log(raw_proba) - np.log1p(-raw_proba)
    else:
        index = {label: j for j, label in enumerate(clf.labels_)}
        target = test[label_field].map(index).to_numpy()
        logits = np.log(raw_proba)
    out = {}
    for name, t in (("before", 1.0), ("after", temperature)):
        z = logits / t
        proba = 1 / (1 + np.exp(-z)) if multi else np.exp(z - np.logaddexp.reduce(z, axis=1, keepdims=True))
        out["ece_" + name] = expected_calibration_error(proba, target, multi_label=multi)
        out["nll_" + name] = negative_log_likelihood(logits, target, problem, t)
    return out


def report_calibration(name: str, clf: TextClassifier, test: pd.DataFrame, label_field: str, seconds: float) -> None:
    fit = clf.calibration_
    held = held_out_calibration(clf, test, label_field)
    print(f"  {name}: T = {fit['temperature']:.3f} (fit {seconds:.0f}s)\n"
          f"    validation ({fit['rows']} rows): ECE {fit['ece_before']:.4f} -> {fit['ece_after']:.4f}   "
          f"NLL {fit['nll_before']:.4f} -> {fit['nll_after']:.4f}\n"
          f"    held-out   ({len(test)} rows): ECE {held['ece_before']:.4f} -> {held['ece_after']:.4f}   "
          f"NLL {held['nll_before']:.4f} -> {held['nll_after']:.4f}", flush=True)


def timed(run, repeats: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - started)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train-rows", type=int, default=3000)
    parser.add_argument("--test-rows", type=int, default=1000)
    parser.add_argument("--head-epochs", type=int, default=30)
    parser.add_argument("--max-len", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="timing runs per variant (the best is shown)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch threads {torch.get_num_threads()}; {load_average()}", flush=True)

    frame = debian.deduplicate(debian.load_records(debian.PACKAGES_FILE, debian.TRANSLATION_FILE))
    sections = debian.top_sections(frame, debian.N_LABELS)
    topics = frame[frame["section"].isin(sections)].reset_index(drop=True)
    topic_split = debian.split_by_source(topics, args.train_rows, args.test_rows, debian.SEED)
    tags = load_tags()
    tagged = frame.assign(tags=frame["package"].map(tags))
    tagged = tagged[tagged["tags"].map(lambda t: isinstance(t, list) and len(t) > 0)]
    counts = pd.Series([t for ts in tagged["tags"] for t in ts]).value_counts()
    top = set(counts.index[:N_TAGS])
    tagged = tagged.assign(tags=tagged["tags"].map(lambda ts: sorted(set(ts) & top)))
    tagged = tagged[tagged["tags"].map(len) > 0].reset_index(drop=True)
    tag_split = debian.split_by_source(tagged, args.train_rows, args.test_rows, debian.SEED)

    print(f"(a) temperature scaling, frozen MiniLM heads, {args.train_rows} training rows "
          f"(15% held for validation/T), {args.head_epochs} epochs", flush=True)
    started = time.perf_counter()
    topic = head("single_label", args).fit(topic_split.train, text_field="text", label_field="section")
    report_calibration(f"topic ({len(sections)} sections, single-label)", topic, topic_split.heldout, "section",
                       time.perf_counter() - started)
    started = time.perf_counter()
    tagger = head("multi_label", args).fit(tag_split.train, text_field="text", label_field="tags")
    report_calibration(f"tags ({N_TAGS} debtags, multi-label)", tagger, tag_split.heldout, "tags",
                       time.perf_counter() - started)

    texts = topic_split.heldout[["text"]].reset_index(drop=True)
    with tempfile.TemporaryDirectory() as tmp:
        folders = {"topic": topic.save_pretrained(Path(tmp) / "topic"), "tags": tagger.save_pretrained(Path(tmp) / "tags")}
        composed = compose(folders, Path(tmp) / "composed")
        options = dict(text_field="text", autocast=False, device="cpu")
        both = ComposedClassifier(model_identifier=composed, **options)
        alone = [DistributedDataClassifier(model_identifier=str(folders[name]), label_field=f"{name}_label", **options)
                 for name in ("topic", "tags")]
        # warm up: load the models (once per process) and the tokenizers
        both(texts.head(8))
        classify(texts.head(8), alone)
        print(f"(b) composed topic + tags vs two classifiers, {len(texts)} held-out descriptions; {load_average()}", flush=True)
        composed_s, out = timed(lambda: both(texts), args.repeats)
        separate_s, _ = timed(lambda: alone[1](alone[0](texts)), args.repeats)
        one_pass_s, reference = timed(lambda: classify(texts, alone), args.repeats)
        same = (out["topic_label"] == reference["topic_label"]).all() and all(
            list(a) == list(b) for a, b in zip(out["tags_label"], reference["tags_label"]))
        for name, seconds in (("ComposedClassifier (1 backbone pass)", composed_s),
                              ("two operators, one after the other", separate_s),
                              ("two operators in one classify() pass", one_pass_s)):
            print(f"  {name:40s} {len(texts) / seconds:7.1f} docs/s  ({seconds:.1f}s)", flush=True)
        print(f"  speed-up of the composed model: {separate_s / composed_s:.2f}x vs one after the other, "
              f"{one_pass_s / composed_s:.2f}x vs classify(); same labels: {bool(same)}; {load_average()}", flush=True)


if __name__ == "__main__":
    main()
