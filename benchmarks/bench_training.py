#!/usr/bin/env python
"""Training benchmark on real text: Debian package descriptions (prints only, writes nothing).

Data: the English descriptions of Debian bookworm ``main`` from the apt lists, parsed and
split by source package with the functions of ``scripts/build_default_model.py`` (so no
text of a held-out source package is seen in training). 5,000 training rows.

(a) single-label, the 20 largest sections: our TextClassifier (all-MiniLM-L6-v2; frozen
    backbone and/or full fine-tune) vs a TF-IDF + logistic regression baseline
    (scikit-learn, used only here) trained on the same rows.
(b) multi-label debtags (``Tag:`` of the Packages file, the 30 most frequent tags):
    held-out micro-F1 with per-label thresholds tuned on a validation split of unseen source
    packages (the default micro-F1 objective, and each label's own F1) vs a fixed 0.5.

Usage::

    HF_HUB_OFFLINE=1 python benchmarks/bench_training.py [--modes frozen,finetune]
        [--finetune-rows 5000] [--epochs 3] [--test-rows 2000] [--autocast auto|fp32|bf16]

``--autocast auto`` (the default) is the library's default, ``autocast=True``: bf16 on CPUs
with AVX512-BF16 or AMX, else fp32; the precision used is printed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import build_default_model as debian  # noqa: E402

from nemo_cls_dask import TextClassifier  # noqa: E402
from nemo_cls_dask.engine import autocast_dtype  # noqa: E402
from nemo_cls_dask.train.data import encode_targets  # noqa: E402
from nemo_cls_dask.train.metrics import multilabel_f1, tune_thresholds  # noqa: E402

BACKBONE = "sentence-transformers/all-MiniLM-L6-v2"
N_TAGS = 30


def load_tags() -> dict[str, list[str]]:
    """Package -> debtags (the Packages file's ``Tag:`` field, comma separated)."""
    tags = {}
    for record in debian.parse_deb822(debian.read_lz4_text(debian.PACKAGES_FILE)):
        if "Tag" in record:
            tags.setdefault(record["Package"], [t.strip() for t in record["Tag"].replace("\n", " ").split(",") if t.strip()])
    return tags


def baseline(train: pd.DataFrame, test: pd.DataFrame) -> tuple[float, float]:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    started = time.perf_counter()
    vectorizer = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=2)
    x = vectorizer.fit_transform(train["text"])
    model = LogisticRegression(max_iter=2000, C=10.0).fit(x, train["section"])
    accuracy = float((model.predict(vectorizer.transform(test["text"])) == test["section"]).mean())
    return accuracy, time.perf_counter() - started


def single_classifier(mode: str, args) -> TextClassifier:
    """``frozen``: head on frozen embeddings; ``finetune``: everything from a fresh head;
    ``lpft``: the frozen head first (linear probing), then everything from that head."""
    frozen = mode in ("frozen", "lpft")
    return TextClassifier(
        BACKBONE, problem="single_label", max_len=128, epochs=args.head_epochs if frozen else args.epochs,
        learning_rate=2e-3 if frozen else args.lr, head_learning_rate=2e-3 if frozen else args.head_lr,
        frozen_backbone=frozen, batch_tokens=args.batch_tokens, max_batch_rows=64 if frozen else 32,
        autocast=args.autocast, validation_fraction=0.1, seed=0, verbose=args.verbose, weight_decay=0.01,
    )


def run_single(train, test, mode: str, args) -> None:
    clf = single_classifier(mode, args)
    rows = train if mode == "frozen" else train.head(args.finetune_rows)
    started = time.perf_counter()
    clf.fit(rows, text_field="text", label_field="section")
    if mode == "lpft":
        probe = clf.evaluate(test, text_field="text", label_field="section")["accuracy"]
        print(f"  (lpft) linear probe on {len(rows)} rows: accuracy {probe:.4f}, "
              f"{time.perf_counter() - started:.0f}s", flush=True)
        clf.set_params(frozen_backbone=False, warm_start=True, epochs=args.epochs, learning_rate=args.lr,
                       head_learning_rate=args.head_lr, max_batch_rows=32)
        clf.fit(rows, text_field="text", label_field="section")
    fit_seconds = time.perf_counter() - started
    started = time.perf_counter()
    metrics = clf.evaluate(test, text_field="text", label_field="section")
    print(f"  TextClassifier {mode:8s} rows={len(rows)} epochs={clf.epochs} lr={args.lr:g}: accuracy {metrics['accuracy']:.4f}  "
          f"macro-F1 {metrics['macro_f1']:.4f}  fit {fit_seconds:.0f}s  predict {time.perf_counter() - started:.0f}s "
          f"({len(test)} rows)", flush=True)


def tag_matrix(frame: pd.DataFrame, labels: list[str], column: str = "tags") -> np.ndarray:
    """Boolean ``(rows, labels)`` matrix of the list column ``column``, as training encodes it."""
    label2id = {label: j for j, label in enumerate(labels)}
    return encode_targets(frame, "multi_label", (column,), None, label2id, "benchmark rows") > 0.5


def run_multi(train, test, mode: str, args) -> None:
    """Fit on ``train`` minus a validation split of its own source packages (15%), on which the
    thresholds are tuned; report held-out micro/macro-F1 with the default thresholds
    (``threshold_objective="micro_f1"``), with each label's own best F1 (``"label_f1"``,
    tuned on the same validation outputs), and at a fixed 0.5."""
    frozen = mode == "frozen"
    clf = TextClassifier(
        BACKBONE, problem="multi_label", max_len=128, epochs=args.head_epochs if frozen else args.epochs,
        learning_rate=2e-3 if frozen else args.lr, head_learning_rate=2e-3 if frozen else args.head_lr,
        frozen_backbone=frozen, batch_tokens=args.batch_tokens, max_batch_rows=64 if frozen else 32,
        autocast=args.autocast, seed=0, verbose=args.verbose,
    )
    rows = train if frozen else train.head(args.finetune_rows)
    # A validation split by source package, as the held-out rows are: a random split would
    # put libfoo-dev in validation and libfoo1 in training, and thresholds tuned on those
    # near-copies are too low for new packages.
    is_valid = debian.in_group(rows["source"], 0.15, salt="valid")
    started = time.perf_counter()
    clf.fit(rows[~is_valid], text_field="text", label_field="tags", validation=rows[is_valid])
    fit_seconds = time.perf_counter() - started
    labels = list(clf.labels_)
    proba = clf.predict_proba(test, text_field="text")
    truth = tag_matrix(test, labels)
    per_label = tune_thresholds(tag_matrix(rows[is_valid], labels), clf.predict_proba(rows[is_valid], text_field="text"),
                                objective="label_f1")
    results = {name: multilabel_f1(truth, proba >= thresholds[None, :])[:2] for name, thresholds in
               (("micro_f1", clf.thresholds_), ("label_f1", per_label), ("0.5", np.full(len(labels), 0.5)))}
    shown = "  ".join(f"{name} {micro:.4f}/{macro:.4f}" for name, (micro, macro) in results.items())
    print(f"  TextClassifier {mode:8s} rows={len(rows)} ({int((~is_valid).sum())} train, {int(is_valid.sum())} validation) "
          f"epochs={clf.epochs}: held-out micro-F1/macro-F1 with thresholds  {shown}  fit {fit_seconds:.0f}s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--modes", default="frozen,finetune", help="comma list of frozen, finetune, lpft (single-label)")
    parser.add_argument("--lr", type=float, default=1e-4, help="backbone learning rate of the fine-tune")
    parser.add_argument("--head-lr", type=float, default=1e-3, help="head learning rate of the fine-tune")
    parser.add_argument("--tasks", default="single,multi")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of the full fine-tune")
    parser.add_argument("--head-epochs", type=int, default=30, help="epochs of the frozen-backbone head")
    parser.add_argument("--finetune-rows", type=int, default=5000)
    parser.add_argument("--test-rows", type=int, default=2000)
    parser.add_argument("--batch-tokens", type=int, default=4096)
    parser.add_argument("--autocast", default="auto", choices=["auto", "fp32", "bf16"],
                        help="auto: the library default (bf16 on CPUs with AVX512-BF16/AMX, else fp32)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    modes = args.modes.split(",")
    args.autocast = {"auto": True, "fp32": False, "bf16": "bf16"}[args.autocast]
    dtype = autocast_dtype(torch.device("cpu"), args.autocast)
    precision = "fp32" if dtype is None else "bf16"

    started = time.perf_counter()
    frame = debian.deduplicate(debian.load_records(debian.PACKAGES_FILE, debian.TRANSLATION_FILE))
    print(f"{len(frame)} packages with English descriptions (read in {time.perf_counter() - started:.0f}s); "
          f"torch threads {torch.get_num_threads()}, precision {precision} (autocast={args.autocast!r})", flush=True)

    if "single" in args.tasks:
        sections = debian.top_sections(frame, debian.N_LABELS)
        data = frame[frame["section"].isin(sections)].reset_index(drop=True)
        split = debian.split_by_source(data, debian.N_TRAIN, args.test_rows, debian.SEED)
        print(f"(a) single-label, {len(sections)} sections: {len(split.train)} train rows, "
              f"{len(split.heldout)} held-out rows from unseen source packages", flush=True)
        accuracy, seconds = baseline(split.train, split.heldout)
        print(f"  TF-IDF + logistic regression: accuracy {accuracy:.4f}  fit+predict {seconds:.0f}s", flush=True)
        for mode in modes:
            run_single(split.train, split.heldout, mode, args)

    if "multi" in args.tasks:
        tags = load_tags()
        data = frame.assign(tags=frame["package"].map(tags))
        data = data[data["tags"].map(lambda t: isinstance(t, list) and len(t) > 0)]
        counts = pd.Series([t for ts in data["tags"] for t in ts]).value_counts()
        top = sorted(counts.index[:N_TAGS])
        data = data.assign(tags=data["tags"].map(lambda ts: sorted(set(ts) & set(top))))
        data = data[data["tags"].map(len) > 0].reset_index(drop=True)
        split = debian.split_by_source(data, debian.N_TRAIN, args.test_rows, debian.SEED)
        mean_tags = split.train["tags"].map(len).mean()
        print(f"(b) multi-label debtags, {N_TAGS} most frequent tags: {len(split.train)} train rows "
              f"({mean_tags:.1f} tags/row), {len(split.heldout)} held-out rows", flush=True)
        for mode in (m for m in modes if m != "lpft"):
            run_multi(split.train, split.heldout, mode, args)


if __name__ == "__main__":
    main()
