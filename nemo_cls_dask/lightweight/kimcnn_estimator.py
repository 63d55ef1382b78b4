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

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..batching import pad_batch, plan_batches
from ..engine import BatchSettings, run_model
from ..errors import InputError
from ..models.loading import LoadedModel, ModelInfo, describe_model, resolve_device
from ..tokenization import EncodedTexts, encode
from ..train.base import SINGLE_LABEL
from ..train.data import split_mask
from ..train.metrics import outcome_metrics, tune_thresholds
from ..train.torch_base import TorchTextEstimator, fold_scale, scale_of
from ..train.transformer_loop import TrainingError
from .checkpoint import LAYOUT, load_kimcnn_module, write_checkpoint
from .kimcnn import DEFAULT_KERNEL_SIZES, KimCNN
from .labelled import Labelled, training_rows, validation_rows
from .vocab import LEVELS, PAD_ID, TextVocab

CONFIG_KEY = "nemo_cls_dask_light"
DEFAULT_MAX_LEN = {"char": 1024, "word": 256}
DEFAULT_MIN_FREQ = {"char": 1, "word": 2}


class KimCNNClassifier(TorchTextEstimator):
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

    config_key = CONFIG_KEY
    layout = LAYOUT

    # ------------------------------------------------------------------ parameters

    def _check_params(self) -> None:
        self._check_problem_params()
        if self.level not in LEVELS:
            raise InputError(f"level must be one of {LEVELS}, got {self.level!r}.")
        self._check_numbers(positive_ints=("embedding_dim", "num_filters", "epochs", "batch_tokens", "max_batch_rows"),
                            optional_ints=("max_len", "min_freq", "early_stopping_patience"),
                            fractions=("dropout", "validation_fraction"), non_negative=("learning_rate", "weight_decay"))
        sizes = self.kernel_sizes
        if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__len__") or len(sizes) == 0 or any(
                isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1 for k in sizes):
            raise InputError(f"kernel_sizes must be a non-empty tuple of positive integers, got {sizes!r}.")
        if not self.learning_rate > 0:
            raise InputError("learning_rate must be positive.")

    def _inference_max_len(self) -> int:
        return int(self.max_len) if self.max_len is not None else DEFAULT_MAX_LEN[self.level]

    def _encoder(self) -> Any:
        return self.vocab_

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
        train, labels = training_rows(self, X, y, text_field, label_field)
        text_field, fields = train.text_field, train.label_fields
        valid = validation_rows(self, validation, train, labels)
        if valid is None and self.validation_fraction > 0:
            rng = np.random.default_rng([self.seed, 7])
            mask = split_mask(len(train.texts), self.validation_fraction, rng, train.targets if self.problem_type == SINGLE_LABEL else None)
            valid, dropped = train.subset(mask), train.dropped
            train = train.subset(~mask)
            train.dropped = dropped

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
        scale = scale_of(train.targets.mean(axis=0), train.targets.var(axis=0)) if not self.problem_type.is_classifier else None
        n_outputs = len(labels) if labels is not None else len(fields)
        device = resolve_device(self.device)
        devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.seed)
            model = KimCNN(len(vocab), n_outputs, embedding_dim=self.embedding_dim, num_filters=self.num_filters,
                           kernel_sizes=tuple(self.kernel_sizes), dropout=self.dropout).to(device)
            run = KimCNNRun(self, model, vocab, device, train, valid, scale)
            run.train()
        model.eval()
        if scale is not None:
            fold_scale(model.fc, scale)
        self.model_ = model
        self.vocab_ = vocab
        self._set_fitted_labels(labels, text_field, fields)
        self.output_names_ = tuple(labels) if labels is not None else tuple(fields)
        self.history_ = run.history
        self.best_epoch_ = run.best_epoch
        self.n_train_rows_ = len(train.texts)
        self.thresholds_ = run.thresholds() if self.problem_type.multi_label else None
        self.validation_metrics_ = run.best_metrics or {}
        self._export = None
        return self

    # ------------------------------------------------------------------ saving and loading

    def _config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"problem_type": self.problem_type.config_name, "max_len": self._inference_max_len()}
        if self.labels_ is not None:
            config["id2label"] = {str(i): label for i, label in enumerate(self.labels_)}
            config["label2id"] = {label: i for i, label in enumerate(self.labels_)}
        else:
            config["output_names"] = list(self.output_names_)
        return config | self._labels_config() | {self.config_key: self._stored_state()}

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
        params, stored = cls._stored_params(info)
        if "kernel_sizes" in params:
            params["kernel_sizes"] = tuple(params["kernel_sizes"])
        params.update(max_len=info.max_len)
        params.update(overrides)
        self = cls(**params)
        self.vocab_ = TextVocab.load(info.tokenizer_path)
        self.level = self.vocab_.level
        self.model_ = load_kimcnn_module(info).to(resolve_device(self.device)).eval()
        self._restore_fitted(info, stored)
        return self


class KimCNNRun:
    """One call of ``fit``: the epoch loop, validation, early stopping and thresholds."""

    def __init__(self, est: KimCNNClassifier, model: KimCNN, vocab: TextVocab, device: torch.device,
                 train: Labelled, valid: Labelled | None, scale: tuple[np.ndarray, np.ndarray] | None) -> None:
        self.est, self.model, self.device, self.problem = est, model, device, est.problem_type
        max_len = est._inference_max_len()
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
        if self.problem == SINGLE_LABEL:
            return nn.functional.cross_entropy(outputs, target)
        if self.problem.multi_label:
            return nn.functional.binary_cross_entropy_with_logits(outputs, target)
        return nn.functional.mse_loss(outputs, target)

    def _outputs(self, encoded: EncodedTexts) -> torch.Tensor:
        """Eval-mode outputs through the inference engine (the same batching as prediction)."""
        self.model.eval()
        info = ModelInfo(path=Path("."), layout=LAYOUT, problem_type="", labels=None,
                         num_outputs=self.model.fc.out_features, max_len=self.est._inference_max_len(), tokenizer_path=Path("."), config={})
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
        if not self.problem.is_classifier:  # metrics in the targets' own units
            mean, std = self.scale
            raw, target = raw * std + mean, target * std + mean
        metrics = outcome_metrics(self.problem.name, self.est._scores(raw), target, None, None)
        metrics.pop("per_label_f1", None)
        return {"loss": loss} | metrics

    def thresholds(self) -> np.ndarray:
        """Per-label thresholds tuned on the validation rows (0.5 without them)."""
        n_labels = self.model.fc.out_features
        if self.valid_ids is None:
            return np.full(n_labels, 0.5)
        proba = torch.sigmoid(self._outputs(self.valid_ids)).cpu().numpy()
        return tune_thresholds(self.valid_targets > 0.5, proba, objective=self.est.threshold_objective)
