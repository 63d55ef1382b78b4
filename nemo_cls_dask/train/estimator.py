"""``TextClassifier``: fine-tune a transformer classifier, scikit-learn style.

>>> clf = TextClassifier(backbone="sentence-transformers/all-MiniLM-L6-v2", problem="multi_label")
>>> clf.fit(train_df, text_field="text", label_field="tags", validation=valid_df)
>>> proba = clf.predict_proba(test_df)        # numpy (n, labels)
>>> clf.save_pretrained("my-classifier")      # loads in DistributedDataClassifier and the CLI

The model is a :class:`~nemo_cls_dask.models.heads.BackboneHeadModel` (backbone, pooling,
dropout, ``fc``), saved in the NVIDIA head layout. Inference goes through the package's
engine (:func:`~nemo_cls_dask.engine.run_model`), in process for in-memory input and
through :class:`~nemo_cls_dask.DistributedDataClassifier` for dask frames.
"""

from __future__ import annotations

import inspect
import json
import math
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from .. import frames
from ..batching import pad_batch, plan_batches
from ..engine import AUTOCAST_CHOICES, BatchSettings, autocast_dtype, run_model
from ..errors import InputError, ModelNotFoundError, NemoClsDaskError
from ..models.heads import BackboneHeadModel, pool, right_align
from ..models.hub import resolve_backbone_dir
from ..models.loading import LoadedModel, ModelInfo, describe_model, load_head_module, resolve_device
from ..progress import progress_bar
from ..tokenization import EncodedTexts, clean_texts, encode
from . import data as D
from .calibration import TemperatureFit, calibrate_temperature, rescale_thresholds
from .metrics import (
    THRESHOLD_OBJECTIVES,
    accuracy,
    expected_calibration_error,
    macro_f1,
    multilabel_f1,
    regression_metrics,
    tune_thresholds,
)
from .optim import SCHEDULES, lr_factor, parameter_groups, parameter_depths

DEFAULT_BACKBONE = "sentence-transformers/all-MiniLM-L6-v2"
CONFIG_KEY = "nemo_cls_dask_train"
CALIBRATIONS = (None, "temperature")


class TrainingError(NemoClsDaskError, RuntimeError):
    """Training diverged (non-finite loss) or cannot proceed."""


class PooledBackbone(nn.Module):
    """The backbone + pooling of a head model: outputs the pooled vector (for cached embeddings)."""

    def __init__(self, head_model: BackboneHeadModel) -> None:
        super().__init__()
        self.head_model = head_model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        input_ids, attention_mask = right_align(input_ids, attention_mask)
        hidden = self.head_model.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return pool(hidden, attention_mask, self.head_model.pooling)


class TextClassifier:
    """Fine-tune and apply a transformer text classifier (single-label, multi-label, regression).

    Parameters (stored untouched; checked by :meth:`fit`)
    ----------------------------------------------------
    backbone
        Hub id or folder of a transformers encoder (``AutoModel``), loaded with its
        pretrained weights; the head ``fc`` is new.
    problem
        ``"single_label"`` (softmax, cross-entropy), ``"multi_label"`` (sigmoid, BCE; per-label
        thresholds tuned on validation data, see ``threshold_objective``) or ``"regression"``
        (MSE; one output per target column).
    threshold_objective
        Multi-label: what the per-label thresholds maximize on the validation rows:
        ``"micro_f1"`` (default; all thresholds together) or ``"label_f1"`` (each label's own
        F1: higher macro-F1, lower micro-F1; :func:`~nemo_cls_dask.train.metrics.tune_thresholds`).
    labels
        Class names in output order. None: the sorted labels found in the training data (a
        dask frame gets a first pass over its label column). Labels given here that have no
        training row trigger a ``UserWarning`` (kept: the model has an output for them);
        training labels missing from ``labels`` raise :class:`InputError`.
    label_sep
        Multi-label: split string label cells on this delimiter (otherwise cells must be lists).
    pooling, max_len, fc_dropout
        Head settings saved in ``config.json`` (``"mean"`` or ``"cls"``; tokens per text).
    epochs, learning_rate, head_learning_rate, lr_schedule, warmup_ratio, weight_decay
        AdamW with linear warmup over the first ``warmup_ratio`` of training then
        ``"linear"``/``"cosine"``/``"constant"``; ``head_learning_rate`` (default
        ``learning_rate``) is the lr of ``fc``. No weight decay on biases and norms.
    batch_tokens, max_batch_rows
        Training batches hold at most ``batch_tokens`` tokens (``rows x padded length``) and
        ``max_batch_rows`` rows; rows are bucketed by length and the batch order is shuffled
        every epoch. With ``frozen_backbone``, ``max_batch_rows`` is the head's batch size.
    gradient_accumulation_steps
        Batches per optimizer step.
    class_weight
        None, ``"balanced"`` (single-label: ``n / (k * count)``; multi-label: positive weight
        ``negatives / positives`` per label) or a dict label -> weight.
    autocast
        None/False: fp32. True: bf16 (or fp16 with loss scaling) on GPU; on CPU, bf16 where
        the CPU has native bf16 matrix instructions (AVX512-BF16 or AMX), else fp32 (as the
        operator: :func:`nemo_cls_dask.engine.autocast_dtype`). ``"bf16"``/``"fp16"`` force it.
    validation_fraction
        Share of training rows held out for validation when ``fit`` gets no ``validation``
        (stratified for single-label; per partition for dask frames). 0 disables it.
    early_stopping_patience
        Stop after this many epochs without a lower validation loss and restore the best
        epoch's weights. None: train all epochs.
    layerwise_lr_decay
        Encoder layer at depth ``d`` from the top gets ``learning_rate * decay**d``; the
        embeddings are the deepest.
    gradual_unfreezing
        Epoch 0 trains only the head; each later epoch unfreezes one more top layer.
    frozen_backbone
        Train only the head on pooled embeddings computed once (the fast CPU path);
        :meth:`save_pretrained` then writes head-only weights and ``base_model`` supplies
        the backbone.
    calibration
        None (default) or ``"temperature"``: after training, fit one temperature ``T`` on
        the validation split (the one early stopping uses; :mod:`~nemo_cls_dask.train.calibration`)
        so that ``softmax(logits / T)`` (or ``sigmoid``) is calibrated. Classifiers only, and
        it needs validation data. ``T`` is saved as ``temperature`` in ``config.json`` and
        every inference path divides the logits by it; labels do not change (multi-label
        thresholds are rescaled to keep the same decisions). :meth:`calibrate` refits ``T``
        on any labelled data.
    seed
        Seeds weights of the head, dropout, shuffling and the validation split; the same
        seed on CPU gives identical weights. The global torch RNG is left untouched.
    verbose
        Per-epoch validation metrics and progress bars (see ``progress`` of :meth:`fit`);
        False keeps training silent unless ``fit(..., progress=True)``.
    warm_start
        If fitted already (or loaded with :meth:`from_pretrained`), ``fit`` continues from
        the current weights and labels instead of starting afresh.
    device, cache_dir
        ``"auto"``/``"cpu"``/``"cuda"``; Hugging Face cache for hub ids.

    Fitted attributes: ``model_`` (the BackboneHeadModel), ``tokenizer_``, ``labels_``
    (tuple, None for regression), ``output_names_``, ``thresholds_`` (multi-label, numpy),
    ``history_`` (list of per-epoch dicts), ``best_epoch_``, ``n_train_rows_``,
    ``text_field_``, ``calibration_`` (None, or a dict with ``temperature``, ``rows`` and the
    validation ``nll_before``/``nll_after``/``ece_before``/``ece_after``).
    """

    def __init__(
        self,
        backbone: str = DEFAULT_BACKBONE,
        *,
        problem: str = "single_label",
        labels: list[str] | None = None,
        label_sep: str | None = None,
        threshold_objective: str = "micro_f1",
        pooling: str = "mean",
        max_len: int = 128,
        fc_dropout: float = 0.1,
        epochs: int = 3,
        learning_rate: float = 5e-5,
        head_learning_rate: float | None = None,
        lr_schedule: str = "linear",
        warmup_ratio: float = 0.1,
        weight_decay: float = 0.01,
        batch_tokens: int = 4096,
        max_batch_rows: int = 64,
        gradient_accumulation_steps: int = 1,
        class_weight: str | dict | None = None,
        autocast: bool | str | None = True,
        validation_fraction: float = 0.1,
        early_stopping_patience: int | None = None,
        layerwise_lr_decay: float = 1.0,
        gradual_unfreezing: bool = False,
        frozen_backbone: bool = False,
        calibration: str | None = None,
        seed: int = 0,
        verbose: bool = True,
        warm_start: bool = False,
        device: str = "auto",
        cache_dir: str | None = None,
    ) -> None:
        self.backbone = backbone
        self.problem = problem
        self.labels = labels
        self.label_sep = label_sep
        self.threshold_objective = threshold_objective
        self.pooling = pooling
        self.max_len = max_len
        self.fc_dropout = fc_dropout
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.head_learning_rate = head_learning_rate
        self.lr_schedule = lr_schedule
        self.warmup_ratio = warmup_ratio
        self.weight_decay = weight_decay
        self.batch_tokens = batch_tokens
        self.max_batch_rows = max_batch_rows
        self.gradient_accumulation_steps = gradient_accumulation_steps
        self.class_weight = class_weight
        self.autocast = autocast
        self.validation_fraction = validation_fraction
        self.early_stopping_patience = early_stopping_patience
        self.layerwise_lr_decay = layerwise_lr_decay
        self.gradual_unfreezing = gradual_unfreezing
        self.frozen_backbone = frozen_backbone
        self.calibration = calibration
        self.seed = seed
        self.verbose = verbose
        self.warm_start = warm_start
        self.device = device
        self.cache_dir = cache_dir

    # ------------------------------------------------------------------ sklearn protocol

    @classmethod
    def _param_names(cls) -> list[str]:
        signature = inspect.signature(cls.__init__)
        return [name for name in signature.parameters if name != "self"]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor parameters (scikit-learn convention)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> TextClassifier:
        valid = set(self._param_names())
        for name, value in params.items():
            if name not in valid:
                raise InputError(f"Invalid parameter {name!r} for TextClassifier; valid: {sorted(valid)}.")
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        defaults = {name: p.default for name, p in inspect.signature(type(self).__init__).parameters.items()}
        shown = [f"{name}={value!r}" for name, value in self.get_params().items() if defaults.get(name) != value]
        return f"TextClassifier({', '.join(shown)})"

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_export", None)
        return state

    def _check_params(self) -> None:
        if self.problem not in D.PROBLEMS:
            raise InputError(f"problem must be one of {sorted(D.PROBLEMS)}, got {self.problem!r}.")
        if self.pooling not in ("mean", "cls"):
            raise InputError(f"pooling must be 'mean' or 'cls', got {self.pooling!r}.")
        if self.threshold_objective not in THRESHOLD_OBJECTIVES:
            raise InputError(f"threshold_objective must be one of {THRESHOLD_OBJECTIVES}, got {self.threshold_objective!r}.")
        for name in ("max_len", "epochs", "batch_tokens", "max_batch_rows", "gradient_accumulation_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise InputError(f"{name} must be a positive integer, got {value!r}.")
        for name in ("learning_rate", "weight_decay", "fc_dropout", "warmup_ratio", "validation_fraction", "layerwise_lr_decay"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise InputError(f"{name} must be a finite non-negative number, got {value!r}.")
        if not 0 <= self.fc_dropout < 1 or not 0 <= self.warmup_ratio < 1 or not 0 <= self.validation_fraction < 1:
            raise InputError("fc_dropout, warmup_ratio and validation_fraction must be in [0, 1).")
        if self.lr_schedule not in SCHEDULES:
            raise InputError(f"lr_schedule must be one of {SCHEDULES}, got {self.lr_schedule!r}.")
        if self.autocast not in AUTOCAST_CHOICES:
            raise InputError(f"autocast must be one of {AUTOCAST_CHOICES}, got {self.autocast!r}.")
        if self.class_weight is not None and self.class_weight != "balanced" and not isinstance(self.class_weight, dict):
            raise InputError(f"class_weight must be None, 'balanced' or a dict label -> weight, got {self.class_weight!r}.")
        if self.class_weight is not None and self.problem == "regression":
            raise InputError("class_weight is for classification; use sample_weight for regression.")
        if self.early_stopping_patience is not None and (not isinstance(self.early_stopping_patience, int) or self.early_stopping_patience < 1):
            raise InputError(f"early_stopping_patience must be a positive integer or None, got {self.early_stopping_patience!r}.")
        if self.labels is not None and (isinstance(self.labels, str) or len(set(self.labels)) != len(list(self.labels))):
            raise InputError(f"labels must be a list of distinct strings, got {self.labels!r}.")
        if self.calibration not in CALIBRATIONS:
            raise InputError(f"calibration must be one of {CALIBRATIONS}, got {self.calibration!r}.")
        if self.calibration is not None and self.problem == "regression":
            raise InputError("calibration='temperature' is for classifiers; a regression model has no probabilities to calibrate.")

    # ------------------------------------------------------------------ fitting

    def fit(
        self,
        X: Any,
        y: Any = None,
        *,
        text_field: str = "text",
        label_field: str | list[str] = "label",
        validation: Any = None,
        sample_weight: Any = None,
        progress: bool | None = None,
    ) -> TextClassifier:
        """Train on ``X`` and return self.

        ``X``: a pandas or dask DataFrame with ``text_field`` and ``label_field`` (for
        regression, one or several float columns), or texts (list, numpy array, Series) with
        targets ``y``. ``validation``: a frame with the same columns, or a ``(texts, y)``
        tuple; None holds out ``validation_fraction`` of the training rows.
        ``sample_weight``: per-row weights (array for in-memory data, or a column name).
        Dask frames are read one partition at a time and never collected.
        ``progress``: bars for embedding (frozen backbone) and each epoch, with rows done,
        rows/s and ETA; None shows them when stderr is a terminal and ``verbose`` is on.
        """
        self._check_params()
        frame, text_field, label_fields = D.as_frame(X, y, text_field, label_field)
        if self.problem != "regression" and len(label_fields) != 1:
            raise InputError(f"A {self.problem} problem takes one label column, got {list(label_fields)}.")
        train = D.FrameSource(frame, text_field, label_fields, sample_weight, "training data")
        valid = None
        if validation is not None:
            if isinstance(validation, tuple) and len(validation) == 2:
                vframe, vtext, vfields = D.as_frame(validation[0], validation[1], "text", label_fields if len(label_fields) > 1 else "label")
                if not isinstance(validation[0], pd.DataFrame) and not frames.is_dask(validation[0]):
                    vframe = vframe.rename(columns=dict(zip(vfields, label_fields)) | {vtext: text_field})
            else:
                vframe = validation
            valid = D.FrameSource(vframe, text_field, label_fields, None, "validation data")
        if self.calibration is not None and valid is None and not self.validation_fraction:
            raise InputError(
                "calibration='temperature' fits the temperature on validation data, but there is none: "
                "pass validation=... to fit, or set validation_fraction > 0 (or calibrate(X) after fitting)."
            )

        summary = train.summarize(self.problem, self.label_sep)
        n_rows = int(summary.get(D.ROWS_KEY, 0))
        if n_rows == 0:
            raise InputError("training data has no rows.")
        self._check_missing(summary, label_fields)
        continuing = self.warm_start and getattr(self, "model_", None) is not None
        labels = self._choose_labels(summary, label_fields, continuing)
        label2id = {label: i for i, label in enumerate(labels)} if labels is not None else None
        n_outputs = len(labels) if labels is not None else len(label_fields)

        generator_devices = [resolve_device(self.device)] if resolve_device(self.device).type == "cuda" else []
        with torch.random.fork_rng(devices=generator_devices):
            torch.manual_seed(self.seed)
            if continuing:
                model, tokenizer = self.model_, self.tokenizer_
                model.set_temperature(None)  # training moves the logits: an old temperature no longer fits
                if self.problem == "regression":
                    self._unfold_scale(model)
            else:
                model, tokenizer = self._build_model(labels, n_outputs, label_fields)
            device = resolve_device(self.device)
            model.to(device)
            self.target_scale_ = self._target_scale(summary, label_fields)
            if self.problem == "regression" and not continuing:
                with torch.no_grad():
                    model.fc.bias.zero_()
            loss_weights = self._loss_weights(summary, labels, n_rows, device)
            run = _Run(self, model, tokenizer, device, train, valid, label2id, loss_weights, n_rows,
                       progress=progress if progress is not None or self.verbose else False)
            run.train()
        # fitted state
        self.model_ = model.eval()
        self.tokenizer_ = tokenizer
        self.labels_ = tuple(labels) if labels is not None else None
        self.output_names_ = tuple(labels) if labels is not None else tuple(label_fields)
        self.history_ = run.history
        self.best_epoch_ = run.best_epoch
        self.n_train_rows_ = run.n_train_rows
        self.text_field_ = text_field
        self.label_fields_ = label_fields
        if self.problem == "regression":
            self._fold_scale(model)
        if self.problem == "multi_label":
            self.thresholds_ = run.tune_thresholds()
        else:
            self.thresholds_ = None
        self.validation_metrics_ = run.history[-1].get("validation", {}) if run.history else {}
        if run.best_metrics is not None:
            self.validation_metrics_ = run.best_metrics
        if self.problem == "multi_label" and run.has_validation:
            self.validation_metrics_ = dict(self.validation_metrics_) | run.threshold_metrics(self.thresholds_)
        self.calibration_ = None
        if self.calibration == "temperature":
            raw, target, _ = run._validation_outputs()  # temperature 1: the raw logits
            self._set_calibration(self._fit_temperature(raw.cpu().numpy(), target, "validation split"))
            self.validation_metrics_ = dict(self.validation_metrics_) | {
                "temperature": self.calibration_["temperature"], "ece_calibrated": self.calibration_["ece_after"]}
        self._export = None
        return self

    # ------------------------------------------------------------------ calibration

    def _fit_temperature(self, raw: np.ndarray, target: np.ndarray, what: str) -> TemperatureFit:
        keep = ~np.isnan(raw).any(axis=1)
        if not keep.any():
            raise InputError(f"Cannot calibrate: the {what} has no rows with text.")
        return calibrate_temperature(raw[keep], target[keep], self.problem)

    def _set_calibration(self, fit: TemperatureFit) -> None:
        """Give the model the fitted temperature, keeping multi-label decisions unchanged."""
        old = self.model_.temperature
        self.model_.set_temperature(fit.temperature)
        if self.thresholds_ is not None:
            self.thresholds_ = rescale_thresholds(self.thresholds_, old, fit.temperature)
        self.calibration_ = fit.as_dict()
        self._export = None
        if self.verbose:
            from tqdm.auto import tqdm

            tqdm.write(
                f"temperature scaling on {fit.rows} rows: T = {fit.temperature:.4f}; ECE "
                f"{fit.ece_before:.4f} -> {fit.ece_after:.4f}, NLL {fit.nll_before:.4f} -> {fit.nll_after:.4f}"
            )

    def calibrate(self, X: Any, y: Any = None, *, text_field: str | None = None, label_field: str | list[str] | None = None) -> TextClassifier:
        """Fit the temperature on labelled data ``X`` (as for :meth:`evaluate`) and return self.

        Replaces any earlier temperature; predicted labels stay the same. The report is in
        ``calibration_``; :meth:`save_pretrained` writes ``T`` as ``temperature``.
        """
        self._check_fitted()
        if self.problem == "regression":
            raise InputError("calibrate() is for classifiers; a regression model has no probabilities to calibrate.")
        old = self.model_.temperature
        raw, target = self._labelled_outputs(X, y, text_field, label_field, "calibration data")
        # The outputs are divided by the current temperature: undo that to fit on raw logits.
        self._set_calibration(self._fit_temperature(raw * old, target, "calibration data"))
        return self

    def _check_missing(self, summary: pd.Series, label_fields: tuple[str, ...]) -> None:
        if self.problem == "regression":
            for column in label_fields:
                missing = int(summary.get(f"missing:{column}", 0))
                if missing:
                    raise InputError(f"training data: target column {column!r} has {missing} NaN/missing value(s); drop or fill them.")
        else:
            missing = int(summary.get(D.MISSING_KEY, 0))
            if missing:
                raise InputError(f"training data: label column {label_fields[0]!r} has {missing} NaN/missing value(s); drop or fill them.")

    def _choose_labels(self, summary: pd.Series, label_fields: tuple[str, ...], continuing: bool) -> list[str] | None:
        if self.problem == "regression":
            return None
        found = sorted(key[len("label:"):] for key in summary.index if key.startswith("label:"))
        if continuing and self.labels_ is not None:
            chosen = list(self.labels_)
        elif self.labels is not None:
            chosen = [str(label) for label in self.labels]
        else:
            chosen = found
        unknown = sorted(set(found) - set(chosen))
        if unknown:
            raise InputError(
                f"training data: label column {label_fields[0]!r} has labels not in labels=: {unknown}. "
                f"Add them to labels, or drop those rows."
            )
        absent = [label for label in chosen if label not in found]
        if absent:
            warnings.warn(
                f"labels {absent} have no training rows; the model keeps an output for them but will rarely predict them.",
                UserWarning,
                stacklevel=3,
            )
        if self.problem == "single_label" and len(chosen) < 2:
            raise InputError(
                f"A single_label classifier needs at least two classes; the training data has only {found}. "
                f"Pass labels=[...] with all classes, or use problem='multi_label' for a yes/no tag."
            )
        if not chosen:
            raise InputError("multi_label training data has no labels at all.")
        return chosen

    def _target_scale(self, summary: pd.Series, label_fields: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray] | None:
        if self.problem != "regression":
            return None
        n = float(summary[D.ROWS_KEY])
        with np.errstate(invalid="ignore", over="ignore"):  # inf targets: caught as a non-finite loss
            mean = np.array([summary[f"sum:{c}"] / n for c in label_fields])
            var = np.array([summary[f"sumsq:{c}"] / n for c in label_fields]) - mean**2
        std = np.sqrt(np.maximum(var, 0.0))
        std[std < 1e-8] = 1.0
        return mean.astype(np.float32), std.astype(np.float32)

    def _fold_scale(self, model: BackboneHeadModel) -> None:
        """Turn the standardized regression head into one that outputs raw target units."""
        mean, std = (torch.as_tensor(a, device=model.fc.weight.device) for a in self.target_scale_)
        with torch.no_grad():
            model.fc.weight.mul_(std[:, None])
            model.fc.bias.mul_(std).add_(mean)

    def _unfold_scale(self, model: BackboneHeadModel) -> None:
        scale = getattr(self, "target_scale_", None)
        if scale is None:
            return
        mean, std = (torch.as_tensor(a, device=model.fc.weight.device) for a in scale)
        with torch.no_grad():
            model.fc.bias.sub_(mean).div_(std)
            model.fc.weight.div_(std[:, None])

    def _loss_weights(self, summary: pd.Series, labels: list[str] | None, n_rows: int, device: torch.device) -> torch.Tensor | None:
        if self.class_weight is None or labels is None:
            return None
        counts = np.array([float(summary.get("label:" + label, 0.0)) for label in labels])
        if self.class_weight == "balanced":
            if self.problem == "single_label":
                weights = np.where(counts > 0, n_rows / (len(labels) * np.maximum(counts, 1)), 1.0)
            else:
                weights = np.where(counts > 0, (n_rows - counts) / np.maximum(counts, 1), 1.0)
        else:
            unknown = sorted(set(map(str, self.class_weight)) - set(labels))
            if unknown:
                raise InputError(f"class_weight names unknown labels {unknown}; labels are {labels}.")
            weights = np.array([float(self.class_weight.get(label, 1.0)) for label in labels])
        return torch.as_tensor(weights, dtype=torch.float32, device=device)

    def _build_model(self, labels: list[str] | None, n_outputs: int, label_fields: tuple[str, ...]) -> tuple[BackboneHeadModel, Any]:
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        folder = resolve_backbone_dir(str(self.backbone), self.cache_dir)
        if folder is None:
            raise ModelNotFoundError(
                f"Backbone {self.backbone!r} is not a local folder, not in the Hugging Face cache and "
                f"not packaged; download it or pass a folder."
            )
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        try:
            backbone = AutoModel.from_pretrained(folder).float()
            tokenizer = AutoTokenizer.from_pretrained(folder)
        finally:
            hf_logging.set_verbosity(verbosity)
        base_model = str(folder) if Path(str(self.backbone)).expanduser().is_dir() else str(self.backbone)
        backbone_config = backbone.config.to_dict()
        config: dict[str, Any] = {
            "base_model": base_model,
            "fc_dropout": float(self.fc_dropout),
            "max_len": int(self.max_len),
            "pooling": self.pooling,
            "problem_type": D.PROBLEMS[self.problem],
            "backbone_config": backbone_config,
        }
        if labels is not None:
            config["id2label"] = {str(i): label for i, label in enumerate(labels)}
            config["label2id"] = {label: i for i, label in enumerate(labels)}
        else:
            config["num_outputs"] = n_outputs
            config["output_names"] = list(label_fields)
        model = BackboneHeadModel(config, backbone=backbone)
        nn.init.normal_(model.fc.weight, std=0.02)
        nn.init.zeros_(model.fc.bias)
        return model.float(), tokenizer

    # ------------------------------------------------------------------ saving / loading

    def _check_fitted(self) -> None:
        if getattr(self, "model_", None) is None:
            raise InputError("This TextClassifier is not fitted yet; call fit() or TextClassifier.from_pretrained().")

    def _config(self) -> dict[str, Any]:
        config = dict(self.model_.config)
        if self.thresholds_ is not None:
            config["thresholds"] = [float(t) for t in self.thresholds_]
        params = {k: v for k, v in self.get_params().items() if _json_safe(v)}
        config[CONFIG_KEY] = {
            "params": params,
            "history": json.loads(json.dumps(self.history_, default=float)),
            "text_field": self.text_field_,
            "label_fields": list(self.label_fields_),
        }
        if getattr(self, "calibration_", None):
            config[CONFIG_KEY]["calibration"] = dict(self.calibration_)
        return config

    def save_pretrained(self, save_directory: str | Path, *, head_only: bool | None = None) -> Path:
        """Write ``config.json``, ``model.safetensors`` and the tokenizer files to a folder.

        The folder loads with ``DistributedDataClassifier(model_identifier=folder)``, the
        CLI's ``classify --model folder`` and :meth:`from_pretrained`. ``head_only`` (default:
        ``frozen_backbone``) writes only ``fc.*``; the backbone then comes from ``base_model``.
        """
        from safetensors.torch import save_file

        self._check_fitted()
        out = Path(save_directory)
        out.mkdir(parents=True, exist_ok=True)
        head_only = self.frozen_backbone if head_only is None else head_only
        state = self.model_.state_dict()
        if head_only:
            state = {k: v for k, v in state.items() if not k.startswith("model.")}
        tensors = {name: tensor.detach().to("cpu", torch.float32).contiguous().clone() for name, tensor in state.items()}
        save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
        (out / "config.json").write_text(json.dumps(self._config(), indent=2, default=str), encoding="utf-8")
        self.tokenizer_.save_pretrained(str(out))
        return out

    @classmethod
    def from_pretrained(cls, path: str | Path, **overrides: Any) -> TextClassifier:
        """Load a folder written by :meth:`save_pretrained` (or any NVIDIA-layout head checkpoint).

        The result predicts right away; ``warm_start=True`` is set so ``fit`` continues
        training from these weights (pass ``warm_start=False`` to start afresh).
        """
        from transformers import AutoTokenizer

        info = describe_model(str(path))
        if info.layout != "head":
            raise InputError(f"{path} is a {info.layout!r} checkpoint; TextClassifier loads backbone+fc head checkpoints.")
        config = info.config
        stored = config.get(CONFIG_KEY, {})
        params = {k: v for k, v in stored.get("params", {}).items() if k in cls._param_names()}
        problem = {v: k for k, v in D.PROBLEMS.items()}[info.problem_type]
        params.update(problem=problem, max_len=info.max_len, pooling=config.get("pooling", "cls"),
                      fc_dropout=float(config.get("fc_dropout", 0.0)), warm_start=True)
        params.setdefault("backbone", config.get("base_model", DEFAULT_BACKBONE))
        params.update(overrides)
        self = cls(**params)
        model = load_head_module(info.path, config, self.cache_dir).float().eval()
        model.config = {k: v for k, v in config.items() if k not in ("thresholds", CONFIG_KEY)}
        if "backbone_config" not in model.config:
            model.config["backbone_config"] = model.model.config.to_dict()
        self.model_ = model.to(resolve_device(self.device))
        self.tokenizer_ = AutoTokenizer.from_pretrained(info.tokenizer_path)
        self.labels_ = info.labels if info.problem_type != "regression" else None
        self.output_names_ = self.labels_ or tuple(config.get("output_names") or [f"output_{i}" for i in range(info.num_outputs)])
        thresholds = config.get("thresholds")
        if info.problem_type == "multi_label_classification":
            if isinstance(thresholds, dict):
                thresholds = [float(thresholds.get(label, 0.5)) for label in self.labels_]
            elif thresholds is None or isinstance(thresholds, (int, float)):
                thresholds = [float(0.5 if thresholds is None else thresholds)] * len(self.labels_)
            self.thresholds_ = np.asarray(thresholds, dtype=np.float64)
        else:
            self.thresholds_ = None
        self.history_ = stored.get("history", [])
        self.best_epoch_ = None
        self.text_field_ = stored.get("text_field", "text")
        self.label_fields_ = tuple(stored.get("label_fields", ["label"]))
        self.target_scale_ = None
        self.calibration_ = stored.get("calibration")
        self._export = None
        return self

    def _export_dir(self) -> Path:
        """A private folder holding the fitted model (for dask inference through the operator)."""
        export = getattr(self, "_export", None)
        if export is None:
            export = tempfile.TemporaryDirectory(prefix="nemo-cls-dask-train-")
            self.save_pretrained(export.name, head_only=False)
            self._export = export
        return Path(export.name)

    # ------------------------------------------------------------------ inference

    def _loaded(self) -> LoadedModel:
        device = next(self.model_.parameters()).device
        info = ModelInfo(
            path=Path("."),
            layout="head",
            problem_type=D.PROBLEMS[self.problem],
            labels=self.labels_,
            num_outputs=len(self.output_names_),
            max_len=int(self.max_len),
            tokenizer_path=Path("."),
            config=self.model_.config,
        )
        return LoadedModel(info, self.model_, self.tokenizer_, device)

    def _settings(self) -> BatchSettings:
        return BatchSettings(batch_tokens=None, autocast=self.autocast)

    def _raw_outputs(self, X: Any, text_field: str | None, dropout_sampling: int | None) -> np.ndarray:
        """Raw outputs ``(n, outputs)``, or ``(n, k, outputs)`` with MC dropout; NaN rows for blank text."""
        self._check_fitted()
        field = text_field or self.text_field_
        if isinstance(X, pd.DataFrame):
            if field not in X.columns:
                raise InputError(f"Text column {field!r} is not in the DataFrame; its columns are {list(X.columns)}.")
            values = frames.text_values(X[field])
        else:
            values = D.texts_input(X)
        texts, valid = clean_texts(values, None)
        encoded = encode(self.tokenizer_, texts, valid, int(self.max_len))
        loaded = self._loaded()
        model = self.model_
        model.eval()
        if dropout_sampling is None:
            return run_model(loaded, encoded, self._settings()).cpu().numpy()
        if isinstance(dropout_sampling, bool) or not isinstance(dropout_sampling, int) or dropout_sampling < 1:
            raise InputError(f"dropout_sampling must be a positive integer, got {dropout_sampling!r}.")
        dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout) and m.p > 0]
        if not dropouts:
            raise InputError("dropout_sampling needs dropout in the model, but every dropout rate is 0 (fc_dropout=0 and a backbone without dropout).")
        samples = []
        try:
            for module in dropouts:
                module.train()
            for _ in range(dropout_sampling):
                samples.append(run_model(loaded, encoded, self._settings()).cpu().numpy())
        finally:
            model.eval()
        return np.stack(samples, axis=1)

    def _to_proba(self, raw: np.ndarray) -> np.ndarray:
        tensor = torch.from_numpy(raw)
        if self.problem == "multi_label":
            return torch.sigmoid(tensor).numpy()
        return torch.softmax(tensor, dim=-1).numpy()

    def predict_proba(self, X: Any, *, text_field: str | None = None, dropout_sampling: int | None = None) -> Any:
        """Class probabilities.

        In-memory input (DataFrame, Series, list, numpy array): a float32 numpy array
        ``(n, labels)`` (softmax for single-label, sigmoid per label for multi-label); rows
        with null or blank text are NaN, as in the operator. ``dropout_sampling=k``: MC
        dropout, shape ``(n, k, labels)``. A dask DataFrame gives a lazy dask DataFrame with
        one float32 column per label, same index and partitions (via
        :class:`~nemo_cls_dask.DistributedDataClassifier`).
        """
        self._check_fitted()
        if self.problem == "regression":
            raise InputError("predict_proba is for classifiers; a regression model's values come from predict().")
        if frames.is_dask(X):
            if dropout_sampling is not None:
                raise InputError("dropout_sampling works on in-memory data; compute the dask partition(s) first.")
            return self._dask_outputs(X, text_field, proba=True)
        return self._to_proba(self._raw_outputs(X, text_field, dropout_sampling))

    def predict(self, X: Any, *, text_field: str | None = None, dropout_sampling: int | None = None) -> Any:
        """Predictions for in-memory input as a numpy array.

        Single-label: object array of label strings; multi-label: object array of lists of
        labels (probability >= the tuned threshold); regression: float32 ``(n,)`` for one
        target, ``(n, targets)`` for several (``dropout_sampling=k``: ``(n, k, targets)``).
        Null/blank texts give None (NaN for regression). A dask DataFrame gives a lazy dask
        Series (one target) or DataFrame (several regression targets) with the same index.
        """
        self._check_fitted()
        if frames.is_dask(X):
            return self._dask_outputs(X, text_field, proba=False)
        if self.problem == "regression":
            raw = self._raw_outputs(X, text_field, dropout_sampling)
            return raw[..., 0] if raw.shape[-1] == 1 else raw
        if dropout_sampling is not None:
            raise InputError("For classifiers, dropout_sampling is an option of predict_proba.")
        proba = self.predict_proba(X, text_field=text_field)
        valid = ~np.isnan(proba).any(axis=1)
        out = np.empty(len(proba), dtype=object)
        labels = self.labels_
        if self.problem == "single_label":
            codes = np.nan_to_num(proba).argmax(axis=1)
            for i in range(len(proba)):
                out[i] = labels[codes[i]] if valid[i] else None
        else:
            chosen = proba >= self.thresholds_[None, :]
            for i in range(len(proba)):
                out[i] = [labels[j] for j in np.flatnonzero(chosen[i])] if valid[i] else None
        return out

    def _dask_outputs(self, ddf: Any, text_field: str | None, proba: bool) -> Any:
        from ..classifiers.base import DistributedDataClassifier

        field = text_field or self.text_field_
        if field not in ddf.columns:
            raise InputError(f"Text column {field!r} is not in the DataFrame; its columns are {list(ddf.columns)}.")
        folder = self._export_dir()
        classifier = DistributedDataClassifier(
            model_identifier=str(folder),
            text_field=field,
            label_field="__pred__",
            score_field="__proba__" if self.problem != "regression" else None,
            autocast=self.autocast,
            device=self.device,
        )
        out = classifier(ddf[[field]])
        if not proba:
            if self.problem == "regression" and len(self.output_names_) > 1:
                names = list(self.output_names_)
                meta = pd.DataFrame({name: pd.Series(dtype="float32") for name in names})
                return out.map_partitions(_list_column_to_frame, "__pred__", names, meta=meta)
            return out["__pred__"].rename("prediction")
        names = list(self.output_names_)
        meta = pd.DataFrame({name: pd.Series(dtype="float32") for name in names})
        return out.map_partitions(_list_column_to_frame, "__proba__", names, meta=meta)

    def evaluate(self, X: Any, y: Any = None, *, text_field: str | None = None, label_field: str | list[str] | None = None) -> dict[str, Any]:
        """Metrics on labelled data (in-memory, or a dask frame computed partition by partition).

        Single-label: ``accuracy``, ``macro_f1``, ``ece``. Multi-label (tuned thresholds):
        ``micro_f1``, ``macro_f1``, ``per_label_f1`` (dict), ``ece``. Regression: ``mse``,
        ``mae``. ``ece`` is the expected calibration error of the probabilities as predicted
        (after any temperature; 15 equal-width bins; top-label for single-label, every
        (row, label) probability for multi-label: see
        :func:`~nemo_cls_dask.train.metrics.expected_calibration_error`).
        """
        self._check_fitted()
        raw, target = self._labelled_outputs(X, y, text_field, label_field, "evaluation data")
        return self._metrics(raw, target, self.thresholds_)

    def _labelled_outputs(self, X: Any, y: Any, text_field: str | None, label_field: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
        """Model outputs (NaN rows for blank text) and encoded targets of labelled data."""
        text_field = text_field or self.text_field_
        label_field = label_field or (list(self.label_fields_) if len(self.label_fields_) > 1 else self.label_fields_[0])
        frame, text_field, fields = D.as_frame(X, y, text_field, label_field)
        source = D.FrameSource(frame, text_field, fields, None, what)
        label2id = {label: i for i, label in enumerate(self.labels_)} if self.labels_ else None
        outputs, targets = [], []
        for index in range(source.n_chunks):
            part = source.chunk(index)
            targets.append(D.encode_targets(part, self.problem, fields, self.label_sep, label2id, what))
            outputs.append(self._raw_outputs(part, text_field, None))
        return np.concatenate(outputs), np.concatenate(targets)

    def _metrics(self, raw: np.ndarray, target: np.ndarray, thresholds: np.ndarray | None, labels: Any = None) -> dict[str, Any]:
        labels = labels if labels is not None else getattr(self, "labels_", None)
        keep = ~np.isnan(raw).any(axis=1)  # blank texts have no prediction in the engine
        raw, target = raw[keep], target[keep]
        if self.problem == "regression":
            return regression_metrics(target, raw)
        proba = self._to_proba(raw.astype(np.float32, copy=False))
        if self.problem == "single_label":
            predicted = raw.argmax(axis=1)
            return {"accuracy": accuracy(target, predicted), "macro_f1": macro_f1(target, predicted, raw.shape[1]),
                    "ece": expected_calibration_error(proba, target)}
        chosen = proba >= (thresholds if thresholds is not None else 0.5)
        micro, macro, per_label = multilabel_f1(target > 0.5, chosen)
        return {"micro_f1": micro, "macro_f1": macro, "per_label_f1": dict(zip(labels, map(float, per_label))),
                "ece": expected_calibration_error(proba, target, multi_label=True)}


def _list_column_to_frame(part: pd.DataFrame, column: str, names: list[str]) -> pd.DataFrame:
    """Spread a list<float32> column into one float32 column per name (null rows -> NaN)."""
    values = frames.text_values(part[column])
    matrix = np.full((len(values), len(names)), np.nan, dtype=np.float32)
    for i, value in enumerate(values):
        if isinstance(value, (list, tuple, np.ndarray)):
            matrix[i] = np.asarray(value, dtype=np.float32)
    return pd.DataFrame(matrix, columns=names, index=part.index)


def _json_safe(value: Any) -> bool:
    try:
        json.dumps(value)
        return True
    except (TypeError, ValueError):
        return False


class _Run:
    """One call of ``fit``: data preparation, the epoch loop, validation and early stopping."""

    def __init__(self, est: TextClassifier, model: BackboneHeadModel, tokenizer: Any, device: torch.device,
                 train: D.FrameSource, valid: D.FrameSource | None, label2id: dict[str, int] | None,
                 loss_weights: torch.Tensor | None, n_rows: int, progress: bool | None = None) -> None:
        self.est, self.model, self.tokenizer, self.device = est, model, tokenizer, device
        self.progress = progress
        self.train_source, self.valid_source = train, valid
        self.label2id, self.loss_weights = label2id, loss_weights
        self.problem = est.problem
        self.split = valid is None and est.validation_fraction > 0
        self.has_validation = valid is not None or self.split
        self.cache_chunks = not train.is_dask
        self._chunks: dict[tuple[int, str], tuple[EncodedTexts, np.ndarray, np.ndarray]] = {}
        self._embeddings: dict[str, tuple[torch.Tensor, np.ndarray, np.ndarray]] = {}
        self.history: list[dict[str, Any]] = []
        self.best_epoch: int | None = None
        self.best_metrics: dict[str, Any] | None = None
        self.n_rows = n_rows
        self.n_train_rows = int(round(n_rows * (1 - est.validation_fraction))) if self.split else n_rows
        self.pad_id = int(tokenizer.pad_token_id or 0)
        self.dtype = autocast_dtype(device, est.autocast)
        scale = est.target_scale_
        self.scale = None if scale is None else tuple(torch.as_tensor(a, device=device) for a in scale)

    # ---------------------------------------------------------------- data

    def _prepared(self, index: int, side: str) -> tuple[EncodedTexts, np.ndarray, np.ndarray]:
        key = (index, side)
        if key in self._chunks:
            return self._chunks[key]
        source = self.valid_source if side == "valid" and not self.split else self.train_source
        est = self.est
        part = source.chunk(index)
        what = source.what
        target = D.encode_targets(part, est.problem, source.label_fields, est.label_sep, self.label2id, what)
        weights = D.sample_weights_of(part, what)
        texts = D.texts_of(part, source.text_field)
        if self.split:
            rng = np.random.default_rng([est.seed, index, 7])
            mask = D.split_mask(len(part), est.validation_fraction, rng, target if est.problem == "single_label" else None)
            rows = np.flatnonzero(mask if side == "valid" else ~mask)
            texts = [texts[i] for i in rows]
            target, weights = target[rows], weights[rows]
        encoded = encode(self.tokenizer, texts, np.ones(len(texts), dtype=bool), int(est.max_len))
        result = (encoded, target, weights)
        if self.cache_chunks or (side == "valid" and self.valid_source is not None and not self.valid_source.is_dask):
            self._chunks[key] = result
        return result

    def _n_chunks(self, side: str) -> int:
        if side == "valid" and not self.split:
            return self.valid_source.n_chunks
        return self.train_source.n_chunks

    # ---------------------------------------------------------------- loss

    def _loss(self, outputs: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Weighted mean loss of a batch (sample weights multiply each row's loss)."""
        outputs = outputs.float()
        if self.problem == "single_label":
            rows = nn.functional.cross_entropy(outputs, target, weight=self.loss_weights, reduction="none")
        elif self.problem == "multi_label":
            rows = nn.functional.binary_cross_entropy_with_logits(
                outputs, target, pos_weight=self.loss_weights, reduction="none"
            ).mean(dim=1)
        else:
            mean, std = self.scale
            rows = ((outputs - (target - mean) / std) ** 2).mean(dim=1)
        return (rows * weights).mean()

    def _check_finite(self, loss: torch.Tensor, epoch: int, step: int) -> None:
        if not torch.isfinite(loss):
            raise TrainingError(
                f"The training loss became {loss.item()} at epoch {epoch + 1}, batch {step + 1}. Lower "
                f"learning_rate, check the targets and sample weights for inf values, or train in fp32 "
                f"(autocast=False)."
            )

    # ---------------------------------------------------------------- training

    def _optimizer(self, train_backbone: bool) -> torch.optim.Optimizer:
        est = self.est
        groups = parameter_groups(
            self.model,
            learning_rate=est.learning_rate,
            head_learning_rate=est.head_learning_rate if est.head_learning_rate is not None else est.learning_rate,
            weight_decay=est.weight_decay,
            layerwise_lr_decay=est.layerwise_lr_decay,
            train_backbone=train_backbone,
        )
        for group in groups:
            group.pop("names")
        return torch.optim.AdamW(groups, lr=est.learning_rate, weight_decay=est.weight_decay)

    def _set_lr(self, optimizer: torch.optim.Optimizer, progress: float) -> float:
        factor = lr_factor(progress, self.est.warmup_ratio, self.est.lr_schedule)
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"] * factor
        return factor

    def train(self) -> None:
        est = self.est
        if est.frozen_backbone:
            self._train_head()
        else:
            self._train_full()
        if self.restore_state is not None:
            self.model.load_state_dict(self.restore_state)

    def _progress_bar(self, epoch: int, total: int):
        return progress_bar(total, desc=f"epoch {epoch + 1}/{self.est.epochs}", unit="row", progress=self.progress)

    def _train_full(self) -> None:
        est, model = self.est, self.model
        depths = parameter_depths(model)
        optimizer = self._optimizer(train_backbone=True)
        scaler = torch.amp.GradScaler("cuda") if (self.dtype == torch.float16 and self.device.type == "cuda") else None
        cast = (lambda: torch.autocast(self.device.type, dtype=self.dtype)) if self.dtype is not None else None
        total_rows = max(self.n_train_rows * est.epochs, 1)
        seen = 0
        accumulation = est.gradient_accumulation_steps
        self._early_setup()
        for epoch in range(est.epochs):
            started = time.perf_counter()
            if est.gradual_unfreezing:
                for name, parameter in model.named_parameters():
                    parameter.requires_grad_(depths[name] < epoch)
            rng = np.random.default_rng([est.seed, epoch, 11])
            model.train()
            bar = self._progress_bar(epoch, self.n_train_rows)
            loss_sum, loss_rows, step, pending = 0.0, 0, 0, 0
            optimizer.zero_grad(set_to_none=True)
            for index in rng.permutation(self._n_chunks("train")):
                encoded, target, weights = self._prepared(int(index), "train")
                if encoded.num_rows == 0:
                    continue
                batches = plan_batches(encoded.lengths, rng.permutation(encoded.num_rows), batch_tokens=est.batch_tokens, max_batch_rows=est.max_batch_rows)
                for b in rng.permutation(len(batches)):
                    rows = batches[b]
                    input_ids, attention_mask = pad_batch(encoded, rows, self.pad_id)
                    input_ids, attention_mask = input_ids.to(self.device), attention_mask.to(self.device)
                    y = torch.as_tensor(target[rows], device=self.device)
                    w = torch.as_tensor(weights[rows], device=self.device)
                    if cast is not None:
                        with cast():
                            outputs = model(input_ids, attention_mask)
                    else:
                        outputs = model(input_ids, attention_mask)
                    loss = self._loss(outputs, y, w)
                    self._check_finite(loss, epoch, step)
                    scaled = loss / accumulation
                    (scaler.scale(scaled) if scaler else scaled).backward()
                    pending += 1
                    seen += len(rows)
                    if pending == accumulation:
                        self._step(optimizer, scaler, seen / total_rows)
                        pending = 0
                    loss_sum += loss.detach().item() * len(rows)
                    loss_rows += len(rows)
                    step += 1
                    bar.update(len(rows))
                    bar.set_postfix(loss=f"{loss_sum / loss_rows:.4f}", refresh=False)
            if pending:
                self._step(optimizer, scaler, seen / total_rows)
            for parameter in model.parameters():
                parameter.requires_grad_(True)
            stop = self._end_epoch(epoch, loss_sum / max(loss_rows, 1), bar, started, self._validation_outputs)
            if stop:
                break

    def _step(self, optimizer, scaler, progress: float) -> None:
        self._set_lr(optimizer, progress)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    # --- frozen backbone: pooled embeddings once, then the head alone

    def _embed(self, side: str) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
        if side in self._embeddings:
            return self._embeddings[side]
        pooled = PooledBackbone(self.model).eval()
        hidden = self.model.fc.in_features
        info = ModelInfo(path=Path("."), layout="head", problem_type="embedding", labels=None, num_outputs=hidden,
                         max_len=int(self.est.max_len), tokenizer_path=Path("."), config={})
        loaded = LoadedModel(info, pooled, self.tokenizer, self.device)
        vectors, targets, weights = [], [], []
        total = {"train": self.n_train_rows, "valid": self.n_rows - self.n_train_rows if self.split else None}[side]
        bar = progress_bar(total, desc=f"embedding {side} rows", unit="row", progress=self.progress)
        for index in range(self._n_chunks(side)):
            encoded, target, weight = self._prepared(index, side)
            vectors.append(run_model(loaded, encoded, BatchSettings(batch_tokens=None, autocast=self.est.autocast), on_batch=bar.update))
            bar.update(int((~encoded.valid).sum()))  # rows without text are not batched
            targets.append(target)
            weights.append(weight)
        bar.close()
        hidden_states = torch.cat(vectors) if vectors else torch.zeros((0, hidden), device=self.device)
        result = (hidden_states, np.concatenate(targets), np.concatenate(weights))
        self._embeddings[side] = result
        self._chunks.clear()  # token ids are not needed any more
        return result

    def _train_head(self) -> None:
        est, model = self.est, self.model
        for parameter in model.model.parameters():
            parameter.requires_grad_(False)
        optimizer = self._optimizer(train_backbone=False)
        x, target, weights = self._embed("train")
        if self.has_validation:
            self._embed("valid")
        self.n_train_rows = len(x)
        n = len(x)
        total = max(n * est.epochs, 1)
        seen = 0
        self._early_setup()
        batch = est.max_batch_rows * est.gradient_accumulation_steps
        try:
            for epoch in range(est.epochs):
                started = time.perf_counter()
                model.train()
                rng = np.random.default_rng([est.seed, epoch, 13])
                order = rng.permutation(n)
                bar = self._progress_bar(epoch, n)
                loss_sum = 0.0
                for step, start in enumerate(range(0, n, batch)):
                    rows = order[start:start + batch]
                    rows_t = torch.as_tensor(rows, device=self.device)
                    outputs = model.fc(model.dropout(x[rows_t]))
                    loss = self._loss(outputs, torch.as_tensor(target[rows], device=self.device), torch.as_tensor(weights[rows], device=self.device))
                    self._check_finite(loss, epoch, step)
                    loss.backward()
                    seen += len(rows)
                    self._step(optimizer, None, seen / total)
                    loss_sum += loss.detach().item() * len(rows)
                    bar.update(len(rows))
                    bar.set_postfix(loss=f"{loss_sum / max(seen - epoch * n, 1):.4f}", refresh=False)
                if self._end_epoch(epoch, loss_sum / max(n, 1), bar, started, self._validation_outputs):
                    break
        finally:
            for parameter in model.model.parameters():
                parameter.requires_grad_(True)

    # ---------------------------------------------------------------- validation / early stopping

    def _early_setup(self) -> None:
        self.best_loss = math.inf
        self.bad_epochs = 0
        self.restore_state = None

    def _validation_outputs(self) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
        """Raw outputs, targets and weights of the validation rows (model in eval mode)."""
        self.model.eval()
        if self.est.frozen_backbone:
            x, target, weights = self._embed("valid")
            with torch.inference_mode():
                return self.model.fc(x).float(), target, weights
        info = ModelInfo(path=Path("."), layout="head", problem_type="", labels=None, num_outputs=self.model.fc.out_features,
                         max_len=int(self.est.max_len), tokenizer_path=Path("."), config={})
        loaded = LoadedModel(info, self.model, self.tokenizer, self.device)
        outputs, targets, weights = [], [], []
        for index in range(self._n_chunks("valid")):
            encoded, target, weight = self._prepared(index, "valid")
            outputs.append(run_model(loaded, encoded, BatchSettings(batch_tokens=None, autocast=self.est.autocast)))
            targets.append(target)
            weights.append(weight)
        return torch.cat(outputs), np.concatenate(targets), np.concatenate(weights)

    def _scaled_metrics(self, raw: torch.Tensor, target: np.ndarray, thresholds=None) -> dict[str, Any]:
        raw = raw.float()
        if self.scale is not None:
            mean, std = self.scale
            raw = raw * std + mean
        labels = sorted(self.label2id, key=self.label2id.get) if self.label2id else None
        metrics = self.est._metrics(raw.cpu().numpy(), target, thresholds, labels)
        metrics.pop("per_label_f1", None)
        return metrics

    def _end_epoch(self, epoch: int, train_loss: float, bar, started: float, outputs_fn) -> bool:
        record: dict[str, Any] = {"epoch": epoch + 1, "train_loss": train_loss}
        stop = False
        if self.has_validation:
            raw, target, weights = outputs_fn()
            if len(target):
                with torch.no_grad():
                    loss = float(self._loss(raw, torch.as_tensor(target, device=raw.device), torch.as_tensor(weights, device=raw.device)))
                metrics = {"loss": loss} | self._scaled_metrics(raw, target)
                record["validation"] = metrics
                if loss < self.best_loss - 1e-12:
                    self.best_loss, self.bad_epochs, self.best_epoch, self.best_metrics = loss, 0, epoch + 1, metrics
                    if self.est.early_stopping_patience is not None:
                        self.restore_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
                else:
                    self.bad_epochs += 1
                    patience = self.est.early_stopping_patience
                    stop = patience is not None and self.bad_epochs >= patience
        record["seconds"] = time.perf_counter() - started
        self.history.append(record)
        shown = {"loss": f"{train_loss:.4f}"}
        for key, value in record.get("validation", {}).items():
            shown["val_" + key] = f"{value:.4f}"
        bar.set_postfix(shown, refresh=True)
        bar.close()
        if stop and self.est.verbose:
            from tqdm.auto import tqdm

            tqdm.write(f"early stopping after epoch {epoch + 1}; restoring epoch {self.best_epoch}")
        return stop

    def tune_thresholds(self) -> np.ndarray:
        n_labels = len(self.label2id)
        if not self.has_validation:
            return np.full(n_labels, 0.5)
        raw, target, _ = self._validation_outputs()
        if not len(target):
            return np.full(n_labels, 0.5)
        proba = torch.sigmoid(raw.float()).cpu().numpy()
        self._last_valid = (raw, target)
        return tune_thresholds(target > 0.5, proba, objective=self.est.threshold_objective)

    def threshold_metrics(self, thresholds: np.ndarray) -> dict[str, Any]:
        raw, target = self._last_valid
        tuned = self._scaled_metrics(raw, target, thresholds)
        return {"tuned_" + key: value for key, value in tuned.items()}
