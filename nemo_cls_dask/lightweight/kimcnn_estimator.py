"""``KimCNNClassifier``: train a character- or word-level KimCNN, scikit-learn style.

>>> clf = KimCNNClassifier(level="char", epochs=10).fit(train_df, text_field="text", label_field="topic")
>>> clf.predict_proba(test_df)            # numpy (n, labels)
>>> clf.save_pretrained("topic-cnn")      # DistributedDataClassifier(model_identifier="topic-cnn")

Small and fast on a CPU: no pretrained weights, a vocabulary fitted on the training text
(:class:`~nemo_cls_dask.lightweight.vocab.TextVocab`) and a few hundred thousand parameters.
Inference uses the package's engine (sorted, token-budgeted batches) in process, and the
operator for dask frames.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from .. import frames
from ..batching import pad_batch, plan_batches
from ..engine import BatchSettings, run_model
from ..errors import InputError
from ..models.loading import LoadedModel, ModelInfo, describe_model, resolve_device
from ..tokenization import EncodedTexts, clean_texts, encode
from ..train.estimator import TrainingError, _list_column_to_frame
from ..train.metrics import THRESHOLD_OBJECTIVES, tune_thresholds
from . import common as C
from .checkpoint import LAYOUT, load_kimcnn_module, write_checkpoint
from .kimcnn import DEFAULT_KERNEL_SIZES, KimCNN
from .params import ParamsMixin
from .vocab import LEVELS, PAD_ID, TextVocab

CONFIG_KEY = "nemo_cls_dask_light"
DEFAULT_MAX_LEN = {"char": 1024, "word": 256}
DEFAULT_MIN_FREQ = {"char": 1, "word": 2}


class KimCNNClassifier(ParamsMixin):
    """A KimCNN text classifier (single-label, multi-label or regression) trained from scratch.

    Parameters (stored untouched; checked by :meth:`fit`)
    ----------------------------------------------------
    problem
        ``"single_label"`` (softmax, cross-entropy), ``"multi_label"`` (sigmoid, BCE; per-label
        thresholds tuned on the validation rows, see ``threshold_objective``) or
        ``"regression"`` (MSE on standardised targets; one output per target column).
    threshold_objective
        Multi-label: ``"micro_f1"`` (default: the thresholds together maximize micro-F1) or
        ``"label_f1"`` (each label's own F1), as in :class:`~nemo_cls_dask.TextClassifier`.
    labels, label_sep
        Class names in output order (None: the sorted labels of the training data);
        multi-label string cells are split on ``label_sep``.
    level
        ``"char"`` (characters: no out-of-vocabulary words, robust to typos) or ``"word"``.
    lowercase, unicode_normalization, min_freq, max_vocab_size
        The vocabulary (see :class:`~nemo_cls_dask.lightweight.vocab.TextVocab`). ``min_freq`` None:
        1 for characters, 2 for words. Unseen tokens map to the unknown id.
    max_len
        Tokens per text (longer text is cut); None: 1,024 characters or 256 words.
    embedding_dim, num_filters, kernel_sizes, dropout
        The network: embedding width, filters per kernel size, n-gram widths, dropout.
    epochs, learning_rate, weight_decay
        Adam with a constant learning rate.
    batch_tokens, max_batch_rows
        A training batch holds at most ``batch_tokens`` (rows x padded length) and
        ``max_batch_rows`` rows; rows are bucketed by length, batch order shuffled each epoch.
    validation_fraction
        Share of the training rows held out (stratified for single-label) when ``fit`` gets
        no ``validation``; 0 disables validation (and early stopping).
    early_stopping_patience
        Stop after this many epochs without a lower validation loss and keep the best
        epoch's weights. None: train all epochs (the last epoch's weights are kept).
    seed
        Seeds initialisation, dropout, shuffling and the split; the same seed on CPU gives
        identical weights. The global torch RNG is left as it was.
    verbose
        Print one line per epoch.
    device
        ``"auto"`` (GPU if any), ``"cpu"`` or ``"cuda"``.

    Fitted attributes: ``model_`` (:class:`~nemo_cls_dask.lightweight.kimcnn.KimCNN`), ``vocab_``,
    ``labels_`` (None for regression), ``output_names_``, ``thresholds_`` (multi-label),
    ``history_`` (per-epoch dicts), ``best_epoch_``, ``n_train_rows_``, ``text_field_``,
    ``label_fields_``, ``validation_metrics_``.
    """

    def __init__(
        self,
        *,
        problem: str = "single_label",
        labels: list[str] | None = None,
        label_sep: str | None = None,
        threshold_objective: str = "micro_f1",
        level: str = "char",
        lowercase: bool = True,
        unicode_normalization: str | None = "NFKC",
        min_freq: int | None = None,
        max_vocab_size: int | None = None,
        max_len: int | None = None,
        embedding_dim: int = 64,
        num_filters: int = 100,
        kernel_sizes: tuple[int, ...] = DEFAULT_KERNEL_SIZES,
        dropout: float = 0.5,
        epochs: int = 10,
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        batch_tokens: int = 16384,
        max_batch_rows: int = 64,
        validation_fraction: float = 0.1,
        early_stopping_patience: int | None = 2,
        seed: int = 0,
        verbose: bool = False,
        device: str = "auto",
    ) -> None:
        self.problem = problem
        self.labels = labels
        self.label_sep = label_sep
        self.threshold_objective = threshold_objective
        self.level = level
        self.lowercase = lowercase
        self.unicode_normalization = unicode_normalization
        self.min_freq = min_freq
        self.max_vocab_size = max_vocab_size
        self.max_len = max_len
        self.embedding_dim = embedding_dim
        self.num_filters = num_filters
        self.kernel_sizes = kernel_sizes
        self.dropout = dropout
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.batch_tokens = batch_tokens
        self.max_batch_rows = max_batch_rows
        self.validation_fraction = validation_fraction
        self.early_stopping_patience = early_stopping_patience
        self.seed = seed
        self.verbose = verbose
        self.device = device

    # ------------------------------------------------------------------ parameters

    def _check_params(self) -> None:
        if self.problem not in C.PROBLEMS:
            raise InputError(f"problem must be one of {sorted(C.PROBLEMS)}, got {self.problem!r}.")
        if self.level not in LEVELS:
            raise InputError(f"level must be one of {LEVELS}, got {self.level!r}.")
        if self.threshold_objective not in THRESHOLD_OBJECTIVES:
            raise InputError(f"threshold_objective must be one of {THRESHOLD_OBJECTIVES}, got {self.threshold_objective!r}.")
        for name in ("embedding_dim", "num_filters", "epochs", "batch_tokens", "max_batch_rows"):
            _check_positive_int(name, getattr(self, name))
        for name in ("max_len", "min_freq", "early_stopping_patience"):
            if getattr(self, name) is not None:
                _check_positive_int(name, getattr(self, name), " or None")
        sizes = self.kernel_sizes
        if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__len__") or len(sizes) == 0:
            raise InputError(f"kernel_sizes must be a non-empty tuple of positive integers, got {sizes!r}.")
        for size in sizes:
            _check_positive_int("kernel_sizes", size)
        for name in ("learning_rate", "weight_decay", "dropout", "validation_fraction"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise InputError(f"{name} must be a finite non-negative number, got {value!r}.")
        if not self.learning_rate > 0:
            raise InputError("learning_rate must be positive.")
        if not self.dropout < 1 or not self.validation_fraction < 1:
            raise InputError("dropout and validation_fraction must be in [0, 1).")

    def _max_len(self) -> int:
        return int(self.max_len) if self.max_len is not None else DEFAULT_MAX_LEN[self.level]

    # ------------------------------------------------------------------ fitting

    def fit(self, X: Any, y: Any = None, *, text_field: str = "text", label_field: str | list[str] = "label",
            validation: Any = None) -> KimCNNClassifier:
        """Fit the vocabulary and the network; return self.

        ``X``: a pandas DataFrame with ``text_field`` and ``label_field`` (regression: one or
        more float columns), or texts (list, numpy array, Series) with targets ``y``.
        ``validation``: a DataFrame with the same columns or a ``(texts, y)`` tuple; None
        holds out ``validation_fraction`` of the rows. Rows with null or blank text are
        skipped (the operator gives such rows null outputs). Missing labels raise.
        """
        self._check_params()
        frame, text_field, fields = C.labelled_frame(X, y, text_field, label_field, self.problem, "training data")
        summary = C.summarize(frame, self.problem, fields, self.label_sep, "training data")
        labels = C.choose_labels(summary, fields, self.problem, self.labels)
        label2id = {label: i for i, label in enumerate(labels)} if labels is not None else None
        train = C.labelled_rows(frame, text_field, fields, self.problem, self.label_sep, label2id, "training data")
        if not train.texts:
            raise InputError(f"training data: every value of {text_field!r} is null or blank.")
        valid = self._validation_rows(validation, train, label2id)
        if valid is None and self.validation_fraction > 0:
            rng = np.random.default_rng([self.seed, 7])
            classes = train.targets if self.problem == "single_label" else None
            mask = C.D.split_mask(len(train.texts), self.validation_fraction, rng, classes)
            valid = C.Labelled([t for t, m in zip(train.texts, mask) if m], train.targets[mask], text_field, fields, 0)
            train = C.Labelled([t for t, m in zip(train.texts, mask) if not m], train.targets[~mask], text_field, fields, train.dropped)

        vocab = TextVocab(
            self.level,
            lowercase=self.lowercase,
            unicode_normalization=self.unicode_normalization,
            min_freq=self.min_freq if self.min_freq is not None else DEFAULT_MIN_FREQ[self.level],
            max_size=self.max_vocab_size,
        ).fit(train.texts)
        if not vocab.fitted:
            raise InputError(
                f"No {self.level} occurs at least min_freq={vocab.min_freq} times in the training text; "
                f"lower min_freq or give more text."
            )
        scale = _target_scale(train.targets) if self.problem == "regression" else None
        n_outputs = len(labels) if labels is not None else len(fields)
        device = resolve_device(self.device)
        devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.seed)
            model = KimCNN(len(vocab), n_outputs, embedding_dim=self.embedding_dim, num_filters=self.num_filters,
                           kernel_sizes=tuple(self.kernel_sizes), dropout=self.dropout).to(device)
            run = _Run(self, model, vocab, device, train, valid, scale)
            run.train()
        model.eval()
        if scale is not None:
            _fold_scale(model, scale)
        self.model_ = model
        self.vocab_ = vocab
        self.labels_ = tuple(labels) if labels is not None else None
        self.output_names_ = tuple(labels) if labels is not None else tuple(fields)
        self.history_ = run.history
        self.best_epoch_ = run.best_epoch
        self.n_train_rows_ = len(train.texts)
        self.text_field_ = text_field
        self.label_fields_ = fields
        self.thresholds_ = run.thresholds() if self.problem == "multi_label" else None
        self.validation_metrics_ = run.best_metrics or {}
        self._export = None
        return self

    def _validation_rows(self, validation: Any, train: C.Labelled, label2id: dict[str, int] | None) -> C.Labelled | None:
        if validation is None:
            return None
        fields = train.label_fields
        if isinstance(validation, tuple) and len(validation) == 2:
            frame, text_field, vfields = C.labelled_frame(validation[0], validation[1], train.text_field,
                                                          fields if len(fields) > 1 else fields[0], self.problem, "validation data")
        else:
            frame, text_field, vfields = C.labelled_frame(validation, None, train.text_field,
                                                          fields if len(fields) > 1 else fields[0], self.problem, "validation data")
        C.summarize(frame, self.problem, vfields, self.label_sep, "validation data")
        rows = C.labelled_rows(frame, text_field, vfields, self.problem, self.label_sep, label2id, "validation data")
        return rows if rows.texts else None

    # ------------------------------------------------------------------ inference

    def _check_fitted(self) -> None:
        if getattr(self, "model_", None) is None:
            raise InputError(f"This {type(self).__name__} is not fitted yet; call fit() or {type(self).__name__}.from_pretrained().")

    def _loaded(self) -> LoadedModel:
        info = ModelInfo(path=Path("."), layout=LAYOUT, problem_type=C.PROBLEMS[self.problem], labels=self.labels_,
                         num_outputs=len(self.output_names_), max_len=self._max_len(), tokenizer_path=Path("."), config={})
        return LoadedModel(info, self.model_, self.vocab_, next(self.model_.parameters()).device)

    def _raw_outputs(self, X: Any, text_field: str | None) -> np.ndarray:
        """Raw outputs ``(n, outputs)`` as float32; NaN rows for null or blank text."""
        self._check_fitted()
        texts, valid = clean_texts(C.prediction_values(X, text_field or self.text_field_), None)
        encoded = encode(self.vocab_, texts, valid, self._max_len())
        self.model_.eval()
        return run_model(self._loaded(), encoded, BatchSettings(autocast=False)).cpu().numpy()

    def _to_proba(self, raw: np.ndarray) -> np.ndarray:
        tensor = torch.from_numpy(raw)
        return (torch.sigmoid(tensor) if self.problem == "multi_label" else torch.softmax(tensor, dim=-1)).numpy()

    def predict_proba(self, X: Any, *, text_field: str | None = None) -> Any:
        """Class probabilities: float32 numpy ``(n, labels)`` for in-memory input (NaN rows for
        null/blank text); a lazy dask DataFrame with one float32 column per label (same index)
        for a dask DataFrame, computed by :class:`~nemo_cls_dask.DistributedDataClassifier`."""
        self._check_fitted()
        if self.problem == "regression":
            raise InputError("predict_proba is for classifiers; a regression model's values come from predict().")
        if frames.is_dask(X):
            return self._dask_outputs(X, text_field, proba=True)
        return self._to_proba(self._raw_outputs(X, text_field))

    def predict(self, X: Any, *, text_field: str | None = None) -> Any:
        """Predictions: an object array of labels (single-label) or of label lists (multi-label,
        tuned thresholds), None for null/blank text; regression: float32 ``(n,)`` or
        ``(n, targets)``. A dask DataFrame gives a lazy dask Series (or DataFrame)."""
        self._check_fitted()
        if frames.is_dask(X):
            return self._dask_outputs(X, text_field, proba=False)
        if self.problem == "regression":
            raw = self._raw_outputs(X, text_field)
            return raw[:, 0] if raw.shape[1] == 1 else raw
        return C.predictions(self.predict_proba(X, text_field=text_field), self.labels_, self.problem, self.thresholds_)

    def evaluate(self, X: Any, y: Any = None, *, text_field: str | None = None,
                 label_field: str | list[str] | None = None) -> dict[str, Any]:
        """Metrics on labelled in-memory data: ``accuracy``/``macro_f1`` (single-label),
        ``micro_f1``/``macro_f1``/``per_label_f1`` (multi-label), ``mse``/``mae`` (regression).
        Rows with null or blank text are left out."""
        self._check_fitted()
        fields = label_field or (list(self.label_fields_) if len(self.label_fields_) > 1 else self.label_fields_[0])
        frame, text_field, fields = C.labelled_frame(X, y, text_field or self.text_field_, fields, self.problem, "evaluation data")
        C.summarize(frame, self.problem, fields, self.label_sep, "evaluation data")
        label2id = {label: i for i, label in enumerate(self.labels_)} if self.labels_ else None
        rows = C.labelled_rows(frame, text_field, fields, self.problem, self.label_sep, label2id, "evaluation data")
        raw = self._raw_outputs(rows.texts, None)
        scores = raw if self.problem == "regression" else self._to_proba(raw)
        return C.metrics(self.problem, scores, rows.targets, self.labels_, self.thresholds_)

    def _dask_outputs(self, ddf: Any, text_field: str | None, proba: bool) -> Any:
        from ..classifiers.base import DistributedDataClassifier

        field = text_field or self.text_field_
        if field not in ddf.columns:
            raise InputError(f"Text column {field!r} is not in the DataFrame; its columns are {list(ddf.columns)}.")
        regression = self.problem == "regression"
        operator = DistributedDataClassifier(
            model_identifier=str(self._export_dir()), text_field=field, label_field="__pred__",
            score_field=None if regression else "__proba__", autocast=False, device=self.device,
        )
        out = operator(ddf[[field]])
        names = list(self.output_names_)
        meta = pd.DataFrame({name: pd.Series(dtype="float32") for name in names})
        if proba:
            return out.map_partitions(_list_column_to_frame, "__proba__", names, meta=meta)
        if regression and len(names) > 1:
            return out.map_partitions(_list_column_to_frame, "__pred__", names, meta=meta)
        return out["__pred__"].rename("prediction")

    # ------------------------------------------------------------------ saving and loading

    def _config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"problem_type": C.PROBLEMS[self.problem], "max_len": self._max_len()}
        if self.labels_ is not None:
            config["id2label"] = {str(i): label for i, label in enumerate(self.labels_)}
            config["label2id"] = {label: i for i, label in enumerate(self.labels_)}
        else:
            config["output_names"] = list(self.output_names_)
        if self.thresholds_ is not None:
            config["thresholds"] = [float(t) for t in self.thresholds_]
        params = {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.get_params(deep=False).items() if _json_safe(v)}
        config[CONFIG_KEY] = {
            "estimator": type(self).__name__,
            "params": params,
            "history": json.loads(json.dumps(self.history_, default=float)),
            "text_field": self.text_field_,
            "label_fields": list(self.label_fields_),
        }
        return config

    def save_pretrained(self, save_directory: str | Path) -> Path:
        """Write ``config.json``, ``model.safetensors`` and ``text_vocab.json`` to a folder that
        ``DistributedDataClassifier(model_identifier=folder)``, the CLI and
        :meth:`from_pretrained` load with no other options."""
        self._check_fitted()
        return write_checkpoint(Path(save_directory), self.model_, self.vocab_, self._config())

    @classmethod
    def from_pretrained(cls, path: str | Path, **overrides: Any) -> KimCNNClassifier:
        """Load a folder written by :meth:`save_pretrained`; it predicts right away."""
        info = describe_model(str(path))
        if info.layout != LAYOUT:
            raise InputError(f"{path} is a {info.layout!r} checkpoint; {cls.__name__} loads KimCNN checkpoints.")
        stored = info.config.get(CONFIG_KEY, {})
        params = {k: v for k, v in stored.get("params", {}).items() if k in cls._param_names()}
        if "kernel_sizes" in params:
            params["kernel_sizes"] = tuple(params["kernel_sizes"])
        params.update(problem={v: k for k, v in C.PROBLEMS.items()}[info.problem_type], max_len=info.max_len)
        params.update(overrides)
        self = cls(**params)
        self.vocab_ = TextVocab.load(info.tokenizer_path)
        self.level = self.vocab_.level
        self.model_ = load_kimcnn_module(info).to(resolve_device(self.device)).eval()
        self.labels_ = info.labels
        self.output_names_ = info.labels or tuple(info.config.get("output_names") or [f"output_{i}" for i in range(info.num_outputs)])
        thresholds = info.config.get("thresholds")
        self.thresholds_ = None
        if info.problem_type == "multi_label_classification":
            self.thresholds_ = np.asarray(thresholds if isinstance(thresholds, list) else [0.5] * info.num_outputs, dtype=np.float64)
        self.history_ = stored.get("history", [])
        self.best_epoch_ = None
        self.n_train_rows_ = None
        self.text_field_ = stored.get("text_field", "text")
        self.label_fields_ = tuple(stored.get("label_fields", ["label"]))
        self.validation_metrics_ = {}
        self._export = None
        return self

    def _export_dir(self) -> Path:
        """A private temporary checkpoint of the fitted model, for the dask operator (local
        clusters: the workers read it from this machine's disk)."""
        if getattr(self, "_export", None) is None:
            self._export = tempfile.TemporaryDirectory(prefix="nemo-cls-dask-kimcnn-")
            self.save_pretrained(self._export.name)
        return Path(self._export.name)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_export", None)
        return state


class _Run:
    """One call of ``fit``: the epoch loop, validation, early stopping and thresholds."""

    def __init__(self, est: KimCNNClassifier, model: KimCNN, vocab: TextVocab, device: torch.device,
                 train: C.Labelled, valid: C.Labelled | None, scale: tuple[np.ndarray, np.ndarray] | None) -> None:
        self.est, self.model, self.device, self.problem = est, model, device, est.problem
        max_len = est._max_len()
        self.train_ids = encode(vocab, train.texts, np.ones(len(train.texts), dtype=bool), max_len)
        self.train_targets = self._scaled(train.targets, scale)
        self.valid_ids = None if valid is None else encode(vocab, valid.texts, np.ones(len(valid.texts), dtype=bool), max_len)
        self.valid_targets = None if valid is None else self._scaled(valid.targets, scale)
        self.vocab, self.scale = vocab, scale
        self.history: list[dict[str, Any]] = []
        self.best_epoch: int | None = None
        self.best_metrics: dict[str, Any] | None = None

    @staticmethod
    def _scaled(targets: np.ndarray, scale: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
        return targets if scale is None else ((targets - scale[0]) / scale[1]).astype(np.float32)

    def _loss(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.problem == "single_label":
            return nn.functional.cross_entropy(outputs, target)
        if self.problem == "multi_label":
            return nn.functional.binary_cross_entropy_with_logits(outputs, target)
        return nn.functional.mse_loss(outputs, target)

    def _outputs(self, encoded: EncodedTexts) -> torch.Tensor:
        """Eval-mode outputs through the inference engine (the same batching as prediction)."""
        self.model.eval()
        info = ModelInfo(path=Path("."), layout=LAYOUT, problem_type="", labels=None,
                         num_outputs=self.model.fc.out_features, max_len=self.est._max_len(), tokenizer_path=Path("."), config={})
        return run_model(LoadedModel(info, self.model, self.vocab, self.device), encoded, BatchSettings(autocast=False))

    def train(self) -> None:
        est, model = self.est, self.model
        optimizer = torch.optim.Adam(model.parameters(), lr=est.learning_rate, weight_decay=est.weight_decay)
        best_loss, bad_epochs, best_state = math.inf, 0, None
        n = self.train_ids.num_rows
        for epoch in range(est.epochs):
            started = time.perf_counter()
            model.train()
            rng = np.random.default_rng([est.seed, epoch, 11])
            batches = plan_batches(self.train_ids.lengths, rng.permutation(n), batch_tokens=est.batch_tokens,
                                   max_batch_rows=est.max_batch_rows)
            loss_sum = 0.0
            for b in rng.permutation(len(batches)):
                rows = batches[b]
                input_ids, attention_mask = pad_batch(self.train_ids, rows, PAD_ID)
                outputs = model(input_ids.to(self.device), attention_mask.to(self.device))
                loss = self._loss(outputs, torch.as_tensor(self.train_targets[rows], device=self.device))
                if not torch.isfinite(loss):
                    raise TrainingError(f"The training loss became {loss.item()} at epoch {epoch + 1}; lower learning_rate "
                                        f"or check the targets for inf values.")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss_sum += loss.item() * len(rows)
            record: dict[str, Any] = {"epoch": epoch + 1, "train_loss": loss_sum / max(n, 1)}
            stop = False
            if self.valid_ids is not None:
                metrics = self._validate()
                record["validation"] = metrics
                if metrics["loss"] < best_loss - 1e-12:
                    best_loss, bad_epochs, self.best_epoch, self.best_metrics = metrics["loss"], 0, epoch + 1, metrics
                    if est.early_stopping_patience is not None:
                        best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                else:
                    bad_epochs += 1
                    stop = est.early_stopping_patience is not None and bad_epochs >= est.early_stopping_patience
            record["seconds"] = time.perf_counter() - started
            self.history.append(record)
            if est.verbose:
                shown = ", ".join(f"val_{k} {v:.4f}" for k, v in record.get("validation", {}).items() if isinstance(v, float))
                print(f"epoch {epoch + 1}/{est.epochs}: loss {record['train_loss']:.4f} {shown} ({record['seconds']:.1f}s)", flush=True)
            if stop:
                break
        if best_state is not None:
            model.load_state_dict(best_state)
        model.eval()

    def _validate(self) -> dict[str, Any]:
        raw = self._outputs(self.valid_ids)
        target = torch.as_tensor(self.valid_targets, device=raw.device)
        with torch.no_grad():
            loss = float(self._loss(raw, target))
        raw = raw.cpu().numpy()
        target = self.valid_targets
        if self.problem == "single_label":
            scores = torch.softmax(torch.from_numpy(raw), dim=-1).numpy()
        elif self.problem == "multi_label":
            scores = torch.sigmoid(torch.from_numpy(raw)).numpy()
        else:  # metrics in the targets' own units
            mean, std = self.scale
            scores, target = raw * std + mean, target * std + mean
        metrics = C.metrics(self.problem, scores, target, None, None)
        metrics.pop("per_label_f1", None)
        return {"loss": loss} | metrics

    def thresholds(self) -> np.ndarray:
        """Per-label thresholds tuned on the validation rows (0.5 without them)."""
        n_labels = self.model.fc.out_features
        if self.valid_ids is None:
            return np.full(n_labels, 0.5)
        proba = torch.sigmoid(self._outputs(self.valid_ids)).cpu().numpy()
        return tune_thresholds(self.valid_targets > 0.5, proba, objective=self.est.threshold_objective)


def _target_scale(targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = targets.mean(axis=0).astype(np.float32)
    std = targets.std(axis=0).astype(np.float32)
    std[~(std > 1e-8)] = 1.0
    return mean, std


def _fold_scale(model: KimCNN, scale: tuple[np.ndarray, np.ndarray]) -> None:
    """Make the head trained on standardised targets output raw target units."""
    mean, std = (torch.as_tensor(a, device=model.fc.weight.device) for a in scale)
    with torch.no_grad():
        model.fc.weight.mul_(std[:, None])
        model.fc.bias.mul_(std).add_(mean)


def _check_positive_int(name: str, value: Any, extra: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InputError(f"{name} must be a positive integer{extra}, got {value!r}.")


def _json_safe(value: Any) -> bool:
    try:
        json.dumps(value)
        return True
    except (TypeError, ValueError):
        return False
