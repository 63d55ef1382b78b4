#!/usr/bin/env python
"""Light models on real text: TF-IDF + LR through the scikit-learn adapter, KimCNN (char, word).

Data: the English Debian bookworm ``main`` descriptions from the apt lists, the 20 largest
sections, split by source package with ``scripts/build_default_model.py`` (as in
``bench_training.py``): 5,000 training rows, 2,000 held-out rows from source packages never
seen in training. Prints a markdown table (writes nothing): held-out accuracy and macro-F1,
fit time, and inference speed (``predict_proba`` over the held-out rows in this process,
torch at ``--threads`` threads, fp32). On a machine whose cores are busy with other work,
``--threads 1`` can be several times faster than 2 (OpenMP threads wait for each other).

Usage::

    python benchmarks/bench_light_models.py [--epochs 6] [--char-max-len 384] [--word-max-len 128] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import build_default_model as debian  # noqa: E402

from nemo_cls_dask.lightweight import KimCNNClassifier, SklearnTextClassifier  # noqa: E402
from nemo_cls_dask.train.metrics import accuracy, macro_f1  # noqa: E402


def tfidf_lr():
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    return make_pipeline(TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=2),
                         LogisticRegression(max_iter=2000, C=10.0))


def contenders(args) -> dict[str, object]:
    common = dict(epochs=args.epochs, early_stopping_patience=2, validation_fraction=0.1, seed=0, verbose=args.verbose,
                  device="cpu", num_filters=args.filters, learning_rate=args.lr, dropout=0.5)
    return {
        "TF-IDF (1-2 grams) + LR, `SklearnTextClassifier`": SklearnTextClassifier(tfidf_lr()),
        f"KimCNN char (max_len {args.char_max_len}, emb {args.char_dim})": KimCNNClassifier(
            level="char", max_len=args.char_max_len, embedding_dim=args.char_dim, **common),
        f"KimCNN word (max_len {args.word_max_len}, emb {args.word_dim})": KimCNNClassifier(
            level="word", max_len=args.word_max_len, embedding_dim=args.word_dim, **common),
    }


def measure(name: str, model, train: pd.DataFrame, test: pd.DataFrame) -> dict[str, object]:
    started = time.perf_counter()
    model.fit(train, text_field="text", label_field="section")
    fit_seconds = time.perf_counter() - started
    started = time.perf_counter()
    proba = model.predict_proba(test, text_field="text")
    predict_seconds = time.perf_counter() - started
    codes = np.nan_to_num(proba).argmax(axis=1)
    truth = test["section"].map({label: i for i, label in enumerate(model.labels_)}).to_numpy()
    epochs = len(getattr(model, "history_", [])) or None
    row = {
        "model": name,
        "accuracy": accuracy(truth, codes),
        "macro-F1": macro_f1(truth, codes, len(model.labels_)),
        "fit s": fit_seconds,
        "epochs run": epochs,
        "docs/s": len(test) / predict_seconds,
    }
    print(f"  {name}: accuracy {row['accuracy']:.4f}, fit {fit_seconds:.1f}s ({epochs or '-'} epochs), "
          f"{row['docs/s']:.0f} docs/s", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=6, help="KimCNN epochs at most (early stopping, patience 2)")
    parser.add_argument("--char-max-len", type=int, default=384)
    parser.add_argument("--char-dim", type=int, default=16, help="character embedding width")
    parser.add_argument("--word-max-len", type=int, default=128)
    parser.add_argument("--word-dim", type=int, default=64, help="word embedding width")
    parser.add_argument("--filters", type=int, default=100, help="KimCNN filters per kernel size (3, 4, 5)")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--test-rows", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    started = time.perf_counter()
    frame = debian.deduplicate(debian.load_records(debian.PACKAGES_FILE, debian.TRANSLATION_FILE))
    sections = debian.top_sections(frame, debian.N_LABELS)
    data = frame[frame["section"].isin(sections)].reset_index(drop=True)
    split = debian.split_by_source(data, debian.N_TRAIN, args.test_rows, debian.SEED)
    print(f"{len(split.train)} train rows, {len(split.heldout)} held-out rows (unseen source packages), "
          f"{len(sections)} sections; data read in {time.perf_counter() - started:.0f}s; torch threads "
          f"{torch.get_num_threads()}; load average {os.getloadavg()[0]:.2f}", flush=True)

    rows = [measure(name, model, split.train, split.heldout) for name, model in contenders(args).items()]
    majority = split.heldout["section"].value_counts(normalize=True).iloc[0]
    print(f"\nload average at the end {os.getloadavg()[0]:.2f} / {os.getloadavg()[1]:.2f}; "
          f"majority-class accuracy {majority:.3f}\n")
    print("| model | accuracy | macro-F1 | fit (s) | epochs | inference docs/s |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['model']} | {row['accuracy']:.3f} | {row['macro-F1']:.3f} | {row['fit s']:.1f} | "
              f"{row['epochs run'] or '-'} | {row['docs/s']:.0f} |")


if __name__ == "__main__":
    main()
