"""``nemo-cls-dask train``: fine-tune a classifier on a jsonl/parquet file or folder.

The saved folder loads with ``nemo-cls-dask classify --model DIR`` and
``DistributedDataClassifier(model_identifier=DIR)``. :mod:`nemo_cls_dask.cli` registers it;
the options shared with ``classify`` come from :mod:`nemo_cls_dask.cli.options`.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
import warnings
from typing import Any

from .options import add_engine_options, add_overwrite, add_storage_options, add_text_field, autocast_value
from ..errors import NemoClsDaskError


class _DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows every option's default, unless its help already explains the default in words."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if "(default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``train`` subcommand to ``subparsers`` (from ``add_subparsers``) and return it."""
    train = subparsers.add_parser(
        "train",
        help="fine-tune a text classifier on a jsonl/parquet file or folder",
        description="Fine-tune a transformer text classifier (single-label, multi-label or regression) "
        "and save it in the layout that 'classify --model DIR' loads. Options left at 'auto' are "
        "chosen per mode (--frozen-backbone or full fine-tune) and data size; the values used are printed.",
        formatter_class=_DefaultsHelpFormatter,
    )
    train.add_argument("input", help="training data: jsonl/parquet file or folder, or its URL (s3://, gs://, file://)")
    train.add_argument("--out", required=True, help="local folder to save the classifier to")
    add_text_field(train)
    train.add_argument("--label-field", default="label", help="label column (regression: comma-separated target columns)")
    train.add_argument("--problem", default="single_label", choices=["single_label", "multi_label", "regression"],
                       help="softmax + cross-entropy, sigmoid + BCE with tuned thresholds, or MSE")
    train.add_argument("--backbone", default="sentence-transformers/all-MiniLM-L6-v2", help="hub id or folder of the encoder")
    train.add_argument("--labels", default=None, help="comma-separated class names (default: those in the data)")
    train.add_argument("--label-sep", default=None, help="multi-label: delimiter of labels in a string column")
    train.add_argument("--threshold-objective", default="micro_f1", choices=["micro_f1", "label_f1"],
                       help="multi-label: what the per-label thresholds maximize on the validation rows")
    train.add_argument("--validation", default=None, help="validation jsonl/parquet file or folder (default: hold out --validation-fraction)")
    train.add_argument("--validation-fraction", type=float, default=0.1, help="share of the training rows held out without --validation")
    train.add_argument("--epochs", type=_auto(int), default="auto",
                       help="auto: enough for a few hundred optimizer steps (frozen: 10-200 epochs; full fine-tune: 3-6)")
    train.add_argument("--lr", type=_auto(float), default="auto",
                       help="learning rate of the backbone (auto: 1e-4); with --frozen-backbone, of the head unless --head-lr is given")
    train.add_argument("--head-lr", type=_auto(float), default="auto",
                       help="learning rate of the head (auto: 1e-2 with --frozen-backbone, else 1e-3)")
    train.add_argument("--lr-schedule", default="linear", choices=["linear", "cosine", "constant"], help="decay after the warmup")
    train.add_argument("--warmup-ratio", type=float, default=0.1, help="share of training with a linearly rising learning rate")
    train.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay (none on biases and norms)")
    add_engine_options(train, batch_tokens=4096, max_batch_rows=64,
                       batch_tokens_help="tokens per training batch (rows x padded length)")
    train.add_argument("--grad-accum", type=int, default=1, help="batches per optimizer step")
    train.add_argument("--max-len", type=int, default=128, help="tokens per text")
    train.add_argument("--pooling", default="mean", choices=["mean", "cls"], help="how token states become one vector")
    train.add_argument("--fc-dropout", type=float, default=0.1, help="dropout before the head")
    train.add_argument("--frozen-backbone", action="store_true", help="train only the head on cached embeddings (fast on CPU)")
    train.add_argument("--class-weight", default=None, choices=["balanced"], help="weigh rare labels up (default: none)")
    train.add_argument("--early-stopping", type=_auto(int, off=True), default="auto", metavar="PATIENCE",
                       help="stop after PATIENCE epochs without a better validation loss and keep the best epoch; "
                       "auto: 5 with --frozen-backbone, else 2 (when there is validation data); off: train every epoch")
    train.add_argument("--layerwise-lr-decay", type=float, default=1.0, help="each encoder layer down gets this times the lr above it")
    train.add_argument("--gradual-unfreezing", action="store_true", help="epoch 1 trains the head only; each later epoch unfreezes a layer")
    train.add_argument("--in-memory", action="store_true", help="load the whole input into memory (default: stream dask partitions)")
    train.add_argument("--seed", type=int, default=0, help="seed of the head, dropout, shuffling and validation split")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    add_overwrite(train, "replace an existing --out folder")
    add_storage_options(train)
    train.set_defaults(command="train", run=run)
    return train


def _auto(kind: type, off: bool = False):
    """An argparse type: ``"auto"``, ``"off"`` (if allowed) or a number of ``kind``."""

    def parse(text: str) -> Any:
        if text == "auto" or (off and text == "off"):
            return text
        try:
            return kind(text)
        except ValueError:
            allowed = "'auto', 'off' or " if off else "'auto' or "
            raise argparse.ArgumentTypeError(f"expected {allowed}a{'n integer' if kind is int else ' number'}, got {text!r}") from None

    return parse


def _automatic(value: Any) -> Any:
    """The estimator's value for an option: None for 'auto', 'off' -> None for early stopping."""
    return None if value in ("auto", "off") else value


def build_estimator(args: argparse.Namespace):
    from ..train import TextClassifier

    return TextClassifier(
        args.backbone,
        problem=args.problem,
        labels=[label.strip() for label in args.labels.split(",")] if args.labels else None,
        label_sep=args.label_sep,
        threshold_objective=args.threshold_objective,
        pooling=args.pooling,
        max_len=args.max_len,
        fc_dropout=args.fc_dropout,
        epochs=_automatic(args.epochs),
        learning_rate=_automatic(args.lr),
        head_learning_rate=_automatic(args.head_lr),
        lr_schedule=args.lr_schedule,
        warmup_ratio=args.warmup_ratio,
        weight_decay=args.weight_decay,
        batch_tokens=args.batch_tokens,
        max_batch_rows=args.max_batch_rows,
        gradient_accumulation_steps=args.grad_accum,
        class_weight=args.class_weight,
        autocast=autocast_value(args.autocast),
        validation_fraction=args.validation_fraction,
        early_stopping_patience="auto" if args.early_stopping == "auto" else _automatic(args.early_stopping),
        layerwise_lr_decay=args.layerwise_lr_decay,
        gradual_unfreezing=args.gradual_unfreezing,
        frozen_backbone=args.frozen_backbone,
        seed=args.seed,
        verbose=not args.quiet,
        device=args.device,
        cache_dir=args.cache_dir,
    )


def run(args: argparse.Namespace) -> int:
    """Train, save to ``--out`` and print the final validation metrics. Returns the exit code.

    Errors of this package are printed to stderr (exit code 2), as by ``classify``.
    """
    from .options import storage_options
    from ..io import read_frame
    from ..storage import local_path
    from ..train.defaults import NearChanceWarning

    try:
        out = local_path(args.out, "--out")
        if out.exists() and (out.is_file() or any(out.iterdir())):
            if not args.overwrite:
                raise NemoClsDaskError(f"Output {out} already exists; pass --overwrite to replace it.")
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        options = storage_options(args)
        frame = read_frame(args.input, storage_options=options)
        validation = read_frame(args.validation, storage_options=options) if args.validation else None
        if args.in_memory:
            frame = frame.compute()
            validation = validation.compute() if validation is not None else None
        label_field: Any = args.label_field
        if args.problem == "regression" and "," in label_field:
            label_field = [name.strip() for name in label_field.split(",")]
        clf = build_estimator(args)
        print(f"training {args.problem} classifier on {args.input} ({frame.npartitions if hasattr(frame, 'npartitions') else 1} "
              f"partition(s)), backbone {args.backbone}{' (frozen)' if args.frozen_backbone else ''}", flush=True)
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NearChanceWarning)  # printed below, after the metrics
            clf.fit(frame, text_field=args.text_field, label_field=label_field, validation=validation)
        seconds = time.perf_counter() - started
        clf.save_pretrained(out)
    except NemoClsDaskError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"trained on {clf.n_train_rows_} rows in {seconds:.1f}s; {len(clf.history_)} epoch(s)"
          + (f", best epoch {clf.best_epoch_}" if clf.best_epoch_ else ""))
    print(f"settings: {clf.training_plan_.describe()}")
    metrics = clf.validation_metrics_
    if metrics:
        shown = {key: (round(value, 4) if isinstance(value, float) and math.isfinite(value) else value) for key, value in metrics.items()}
        print("validation metrics: " + json.dumps(shown))
    else:
        print("no validation data (validation_fraction=0 and no --validation): no metrics")
    if clf.near_chance_:
        print(f"warning: {clf.near_chance_}", file=sys.stderr)
    print(f"saved to {out} (use: nemo-cls-dask classify INPUT OUTPUT --model {out})")
    return 0
