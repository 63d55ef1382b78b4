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

import copy
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..engine import AUTOCAST_CHOICES
from ..errors import InputError, ModelNotFoundError
from ..models.heads import BackboneHeadModel
from ..models.hub import resolve_backbone_dir
from ..models.layouts import layout_named
from ..models.loading import describe_model, load_head_module, resolve_device
from . import data as D
from .calibration import TemperatureFit, calibrate_temperature, rescale_thresholds
from .defaults import NearChanceWarning, TrainingPlan, check_training_params, near_chance_message, resolve_training_plan
from .hf_interop import TransformersClassifierModel, to_transformers
from .optim import SCHEDULES
from .base import SINGLE_LABEL
from .torch_base import TorchTextEstimator, fold_scale, scale_of, unfold_scale
from .transformer_loop import TrainingError, TransformerRun  # noqa: F401  (TrainingError: public here)

DEFAULT_BACKBONE = "sentence-transformers/all-MiniLM-L6-v2"
CONFIG_KEY = TorchTextEstimator.config_key
CALIBRATIONS = (None, "temperature")


class TextClassifier(TorchTextEstimator):
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
        ``"linear"``/``"cosine"``/``"constant"``; ``learning_rate`` is the backbone's lr and
        ``head_learning_rate`` the lr of ``fc``. No weight decay on biases and norms. None
        (the default) picks measured defaults per mode and data size when ``fit`` runs
        (:func:`~nemo_cls_dask.train.defaults.resolve_training_plan`; the values used are in
        ``training_plan_``).
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
        epoch's weights. ``"auto"`` (default): the mode's patience whenever there is
        validation data (:mod:`~nemo_cls_dask.train.defaults`). None: train all epochs.
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
    validation ``nll_before``/``nll_after``/``ece_before``/``ece_after``), ``training_plan_``
    (the resolved :class:`~nemo_cls_dask.train.defaults.TrainingPlan`), ``near_chance_``
    (None, or the text of the :class:`~nemo_cls_dask.train.defaults.NearChanceWarning` issued
    when the validation metric does not clearly beat a constant prediction).
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
        epochs: int | None = None,
        learning_rate: float | None = None,
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
        early_stopping_patience: int | str | None = "auto",
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

    # ------------------------------------------------------------------ parameters

    def _check_params(self) -> None:
        self._check_problem_params()
        if self.pooling not in ("mean", "cls"):
            raise InputError(f"pooling must be 'mean' or 'cls', got {self.pooling!r}.")
        check_training_params(self.epochs, self.learning_rate, self.head_learning_rate, self.early_stopping_patience)
        self._check_numbers(positive_ints=("max_len", "batch_tokens", "max_batch_rows", "gradient_accumulation_steps"),
                            fractions=("fc_dropout", "warmup_ratio", "validation_fraction"),
                            non_negative=("weight_decay", "layerwise_lr_decay"))
        if self.lr_schedule not in SCHEDULES:
            raise InputError(f"lr_schedule must be one of {SCHEDULES}, got {self.lr_schedule!r}.")
        if self.autocast not in AUTOCAST_CHOICES:
            raise InputError(f"autocast must be one of {AUTOCAST_CHOICES}, got {self.autocast!r}.")
        if self.class_weight is not None and self.class_weight != "balanced" and not isinstance(self.class_weight, dict):
            raise InputError(f"class_weight must be None, 'balanced' or a dict label -> weight, got {self.class_weight!r}.")
        if self.class_weight is not None and not self.problem_type.is_classifier:
            raise InputError("class_weight is for classification; use sample_weight for regression.")
        if self.calibration not in CALIBRATIONS:
            raise InputError(f"calibration must be one of {CALIBRATIONS}, got {self.calibration!r}.")
        if self.calibration is not None and not self.problem_type.is_classifier:
            raise InputError("calibration='temperature' is for classifiers; a regression model has no probabilities to calibrate.")

    def _inference_max_len(self) -> int:
        return int(self.max_len)

    def _encoder(self) -> Any:
        return self.tokenizer_

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
        frame, text_field, label_fields = self._fit_frame(X, y, text_field, label_field)
        train = D.FrameSource(frame, text_field, label_fields, sample_weight, "training data")
        valid = None
        if validation is not None:
            vframe = self._validation_frame(validation, text_field, label_fields)
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
        D.check_missing(summary, self.problem, label_fields, "training data")
        continuing = self.warm_start and getattr(self, "model_", None) is not None
        labels = self._choose_labels(summary, label_fields, self.labels_ if continuing and self.labels_ else None)
        label2id = {label: i for i, label in enumerate(labels)} if labels is not None else None
        n_outputs = len(labels) if labels is not None else len(label_fields)

        generator_devices = [resolve_device(self.device)] if resolve_device(self.device).type == "cuda" else []
        with torch.random.fork_rng(devices=generator_devices):
            torch.manual_seed(self.seed)
            if continuing and self.frozen_backbone and isinstance(self.model_, TransformersClassifierModel):
                raise InputError("frozen_backbone=True cannot continue a transformers sequence classifier "
                                 "(its head has layers of its own); set frozen_backbone=False.")
            if continuing:
                model, tokenizer = self.model_, self.tokenizer_
                model.set_temperature(None)  # training moves the logits: an old temperature no longer fits
                if not self.problem_type.is_classifier and getattr(self, "target_scale_", None) is not None:
                    unfold_scale(model.fc, self.target_scale_)
            else:
                model, tokenizer = self._build_model(labels, n_outputs, label_fields)
            device = resolve_device(self.device)
            model.to(device)
            self.target_scale_ = self._target_scale(summary, label_fields)
            if not self.problem_type.is_classifier and not continuing:
                with torch.no_grad():
                    model.fc.bias.zero_()
            loss_weights = self._loss_weights(summary, labels, n_rows, device)
            self.training_plan_ = self._training_plan(n_rows, split=valid is None and self.validation_fraction > 0,
                                                      has_validation=valid is not None or self.validation_fraction > 0)
            settings = copy.copy(self)  # the estimator as the loop reads it: automatic values resolved
            vars(settings).update(self.training_plan_.estimator_params())
            run = TransformerRun(settings, model, tokenizer, device, train, valid, label2id, loss_weights, n_rows,
                                 progress=progress if progress is not None or self.verbose else False)
            run.train()
        # fitted state
        self.model_ = model.eval()
        self.tokenizer_ = tokenizer
        self._set_fitted_labels(labels, text_field, label_fields)
        self.output_names_ = tuple(labels) if labels is not None else tuple(label_fields)
        self.history_ = run.history
        self.best_epoch_ = run.best_epoch
        self.n_train_rows_ = run.n_train_rows
        if not self.problem_type.is_classifier:
            fold_scale(model.fc, self.target_scale_)
        if self.problem_type.multi_label:
            self.thresholds_ = run.tune_thresholds()
        else:
            self.thresholds_ = None
        self.validation_metrics_ = run.history[-1].get("validation", {}) if run.history else {}
        if run.best_metrics is not None:
            self.validation_metrics_ = run.best_metrics
        if self.problem_type.multi_label and run.has_validation:
            self.validation_metrics_ = dict(self.validation_metrics_) | run.threshold_metrics(self.thresholds_)
        self.calibration_ = None
        if self.calibration == "temperature":
            raw, target, _ = run.validation_outputs()  # temperature 1: the raw logits
            self._set_calibration(self._fit_temperature(raw.cpu().numpy(), target, "validation split"))
            self.validation_metrics_ = dict(self.validation_metrics_) | {
                "temperature": self.calibration_["temperature"], "ece_calibrated": self.calibration_["ece_after"]}
        self._export = None
        self.near_chance_ = near_chance_message(self.problem, self.validation_metrics_, dict(summary), n_outputs, self.training_plan_)
        if self.near_chance_:
            warnings.warn(self.near_chance_, NearChanceWarning, stacklevel=2)
        return self

    def _training_plan(self, n_rows: int, split: bool, has_validation: bool) -> TrainingPlan:
        """Epochs, learning rates and early stopping for this fit (:mod:`.defaults`)."""
        return resolve_training_plan(
            frozen_backbone=self.frozen_backbone,
            n_train_rows=int(round(n_rows * (1 - self.validation_fraction))) if split else n_rows,
            rows_per_step=int(self.max_batch_rows) * int(self.gradient_accumulation_steps),
            has_validation=has_validation,
            epochs=self.epochs, learning_rate=self.learning_rate, head_learning_rate=self.head_learning_rate,
            early_stopping_patience=self.early_stopping_patience,
        )

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
        if not self.problem_type.is_classifier:
            raise InputError("calibrate() is for classifiers; a regression model has no probabilities to calibrate.")
        old = self.model_.temperature
        raw, target = self._labelled_outputs(X, y, text_field, label_field, "calibration data")
        # The outputs are divided by the current temperature: undo that to fit on raw logits.
        self._set_calibration(self._fit_temperature(raw * old, target, "calibration data"))
        return self

    def _target_scale(self, summary: pd.Series, label_fields: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray] | None:
        if self.problem_type.is_classifier:
            return None
        n = float(summary[D.ROWS_KEY])
        with np.errstate(invalid="ignore", over="ignore"):  # inf targets: caught as a non-finite loss
            mean = np.array([summary[f"sum:{c}"] / n for c in label_fields])
            var = np.array([summary[f"sumsq:{c}"] / n for c in label_fields]) - mean**2
        return scale_of(mean, var)

    def _loss_weights(self, summary: pd.Series, labels: list[str] | None, n_rows: int, device: torch.device) -> torch.Tensor | None:
        if self.class_weight is None or labels is None:
            return None
        counts = np.array([float(summary.get("label:" + label, 0.0)) for label in labels])
        if self.class_weight == "balanced":
            if self.problem_type == SINGLE_LABEL:
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
            "problem_type": self.problem_type.config_name,
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

    def _config(self) -> dict[str, Any]:
        return dict(self.model_.config) | self._labels_config() | {self.config_key: self._stored_state()}

    def save_pretrained(self, save_directory: str | Path, *, head_only: bool | None = None, layout: str | None = None) -> Path:
        """Write ``config.json``, ``model.safetensors`` and the tokenizer files to a folder.

        The folder loads with ``DistributedDataClassifier(model_identifier=folder)``, the
        CLI's ``classify --model folder`` and :meth:`from_pretrained`. ``layout``:
        ``"head"`` (the NVIDIA backbone + ``fc`` layout; default for models trained here) or
        ``"transformers"`` (default for models loaded from a transformers checkpoint): a
        folder ``AutoModelForSequenceClassification.from_pretrained`` and ``pipeline`` open,
        with the same probabilities. A trained head maps to it only where the architecture's
        own head computes the same thing (``pooling="cls"`` on DeBERTa;
        :mod:`~nemo_cls_dask.train.hf_interop` says why others are refused).
        ``head_only`` (default: ``frozen_backbone``; head layout only) writes only ``fc.*``;
        the backbone then comes from ``base_model``.
        """
        from safetensors.torch import save_file

        self._check_fitted()
        if layout is None:
            layout = "transformers" if isinstance(self.model_, TransformersClassifierModel) else "head"
        if layout not in ("head", "transformers"):
            raise InputError(f"layout must be 'head' or 'transformers', got {layout!r}.")
        if layout == "transformers":
            return self._save_transformers(Path(save_directory))
        if isinstance(self.model_, TransformersClassifierModel):
            raise InputError("This model was loaded from a transformers checkpoint; it saves only with layout='transformers'.")
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

    def _save_transformers(self, out: Path) -> Path:
        """The transformers layout: ``save_pretrained`` of an equivalent sequence classifier."""
        if isinstance(self.model_, TransformersClassifierModel):
            hf_model = self.model_.to_transformers()
        else:
            labels = list(self.labels_) if self.labels_ is not None else None
            hf_model = to_transformers(self.model_.cpu(), labels, self.problem_type.config_name)
            self.model_.to(resolve_device(self.device))
        if self.labels_ is None:
            hf_model.config.id2label = dict(enumerate(self.output_names_))
            hf_model.config.label2id = {name: i for i, name in enumerate(self.output_names_)}
        hf_model.config.problem_type = self.problem_type.config_name
        for key, value in (self._labels_config() | {self.config_key: self._stored_state()}).items():
            setattr(hf_model.config, key, value)
        out.mkdir(parents=True, exist_ok=True)
        hf_model.save_pretrained(str(out), safe_serialization=True)
        tokenizer = copy.deepcopy(self.tokenizer_)
        tokenizer.model_max_length = int(self.max_len)  # pipeline(truncation=True) cuts where training did
        tokenizer.save_pretrained(str(out))
        return out

    @classmethod
    def from_pretrained(cls, path: str | Path, **overrides: Any) -> TextClassifier:
        """Load a folder written by :meth:`save_pretrained` (or any NVIDIA-layout head checkpoint).

        The result predicts right away; ``warm_start=True`` is set so ``fit`` continues
        training from these weights (pass ``warm_start=False`` to start afresh).
        """
        from transformers import AutoTokenizer

        info = describe_model(str(path))
        if info.layout == "hf":
            return cls._from_transformers(info, overrides)
        if info.layout != "head":
            raise InputError(f"{path} is a {info.layout!r} checkpoint; TextClassifier loads backbone+fc head "
                             f"checkpoints and transformers sequence-classification checkpoints.")
        config = info.config
        params, stored = cls._stored_params(info)
        params.update(max_len=info.max_len, pooling=config.get("pooling", "cls"),
                      fc_dropout=float(config.get("fc_dropout", 0.0)), warm_start=True)
        params.setdefault("backbone", config.get("base_model", DEFAULT_BACKBONE))
        params.update(overrides)
        self = cls(**params)
        model = load_head_module(info.path, config, self.cache_dir).float().eval()
        model.config = {k: v for k, v in config.items() if k not in ("thresholds", cls.config_key)}
        if "backbone_config" not in model.config:
            model.config["backbone_config"] = model.model.config.to_dict()
        self.model_ = model.to(resolve_device(self.device))
        self.tokenizer_ = AutoTokenizer.from_pretrained(info.tokenizer_path)
        self._restore_fitted(info, stored)
        self.target_scale_ = None
        return self

    @classmethod
    def _from_transformers(cls, info: Any, overrides: dict[str, Any]) -> TextClassifier:
        """A transformers ``...ForSequenceClassification`` folder as a fitted, trainable estimator."""
        from transformers import AutoTokenizer

        if overrides.get("frozen_backbone"):
            raise InputError("frozen_backbone=True needs a backbone + fc head; a transformers sequence classifier "
                             "has its own head layers between the encoder and the output layer.")
        params, stored = cls._stored_params(info)
        params.update(max_len=info.max_len, warm_start=True, backbone=str(info.path), pooling="cls",
                      frozen_backbone=False)  # a head trained frozen and saved here is now a whole classifier
        params.update(overrides)
        self = cls(**params)
        hf_model = layout_named("hf").load(info, self.cache_dir).model.float().eval()
        model = TransformersClassifierModel(hf_model, {"problem_type": info.problem_type})
        self.model_ = model.to(resolve_device(self.device)).eval()
        self.tokenizer_ = AutoTokenizer.from_pretrained(info.tokenizer_path)
        self._restore_fitted(info, stored)
        self.target_scale_ = None
        return self

    def _write_export(self, folder: Path) -> None:
        self.save_pretrained(folder, head_only=False)
