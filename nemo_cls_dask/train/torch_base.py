"""The fitted-model half shared by the two PyTorch estimators (transformer and KimCNN).

:class:`TorchTextEstimator` runs a fitted ``model_`` through the package's inference
engine (sorted, token-budgeted batches) for in-memory input, exports it to a private
temporary checkpoint for dask frames (:meth:`as_operator` gives a
:class:`~nemo_cls_dask.DistributedDataClassifier` over it), keeps the JSON block saved in
``config.json`` and restores it in ``from_pretrained``, and folds regression target scaling
into the head. A subclass provides ``model_`` and its text encoder, the checkpoint layout
name, ``_inference_max_len()`` and ``save_pretrained``.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import frames
from ..engine import BatchSettings, run_model
from ..errors import InputError
from ..models.loading import LoadedModel, ModelInfo
from ..tokenization import clean_texts, encode
from ..problems import get_problem
from .base import TextEstimatorBase, prediction_values


class TorchTextEstimator(TextEstimatorBase):
    """Prediction, export, operator and saved-state helpers of a fitted PyTorch text model."""

    #: ``config.json`` key holding the estimator's parameters, history and fields.
    config_key: str = "nemo_cls_dask_train"
    #: The checkpoint layout :func:`~nemo_cls_dask.models.loading.describe_model` reports.
    layout: str = "head"

    def _is_fitted(self) -> bool:
        return getattr(self, "model_", None) is not None

    # ------------------------------------------------------------------ subclass hooks

    def _encoder(self) -> Any:
        """The fitted tokenizer (or vocabulary) that turns texts into ids."""
        raise NotImplementedError  # pragma: no cover

    def _inference_max_len(self) -> int:
        raise NotImplementedError  # pragma: no cover

    def _autocast(self) -> bool | str | None:
        return getattr(self, "autocast", False)

    @property
    def supports_embeddings(self) -> bool:  # type: ignore[override]
        """Whether the fitted module gives pooled embeddings (``forward_with_embedding``)."""
        return callable(getattr(getattr(self, "model_", None), "forward_with_embedding", None))

    # ------------------------------------------------------------------ in-memory outputs

    def _loaded(self, module: nn.Module | None = None, num_outputs: int | None = None) -> LoadedModel:
        module = module if module is not None else self.model_
        info = ModelInfo(path=Path("."), layout=self.layout, problem_type=self.problem_type.config_name,
                         labels=getattr(self, "labels_", None),
                         num_outputs=num_outputs if num_outputs is not None else len(self.output_names_),
                         max_len=self._inference_max_len(), tokenizer_path=Path("."),
                         config=getattr(module, "config", {}) if isinstance(getattr(module, "config", {}), dict) else {})
        return LoadedModel(info, module, self._encoder(), next(module.parameters()).device)

    def _outputs(self, X: Any, text_field: str, dropout_sampling: int | None = None) -> np.ndarray:
        """Raw outputs ``(n, outputs)`` as float32, ``(n, k, outputs)`` with MC dropout; NaN rows
        for null or blank text."""
        self._check_fitted()
        texts, valid = clean_texts(prediction_values(X, text_field), None)
        encoded = encode(self._encoder(), texts, valid, self._inference_max_len())
        loaded, settings = self._loaded(), BatchSettings(batch_tokens=None, autocast=self._autocast())
        self.model_.eval()
        if dropout_sampling is None:
            return run_model(loaded, encoded, settings).cpu().numpy()
        if isinstance(dropout_sampling, bool) or not isinstance(dropout_sampling, int) or dropout_sampling < 1:
            raise InputError(f"dropout_sampling must be a positive integer, got {dropout_sampling!r}.")
        dropouts = [m for m in self.model_.modules() if isinstance(m, nn.Dropout) and m.p > 0]
        if not dropouts:
            raise InputError("dropout_sampling needs dropout in the model, but every dropout rate is 0.")
        samples = []
        try:
            for module in dropouts:
                module.train()
            for _ in range(dropout_sampling):
                samples.append(run_model(loaded, encoded, settings).cpu().numpy())
        finally:
            self.model_.eval()
        return np.stack(samples, axis=1)

    def _scores(self, outputs: np.ndarray) -> np.ndarray:
        """Probabilities (softmax, or one sigmoid per label) of raw outputs; values for regression."""
        return self.problem_type.probabilities(np.ascontiguousarray(outputs, dtype=np.float32))

    def predict_proba(self, X: Any, *, text_field: str | None = None, dropout_sampling: int | None = None) -> Any:
        """Class probabilities (see :meth:`TextEstimatorBase.predict_proba`).

        ``dropout_sampling=k``: MC dropout on in-memory input, shape ``(n, k, labels)``.
        """
        if dropout_sampling is None:
            return super().predict_proba(X, text_field=text_field)
        self._check_fitted()
        if not self.problem_type.is_classifier:
            raise InputError("predict_proba is for classifiers; a regression model's values come from predict().")
        if frames.is_dask(X):
            raise InputError("dropout_sampling works on in-memory data; compute the dask partition(s) first.")
        return self._scores(self._outputs(X, self._text_field(text_field), dropout_sampling))

    def predict(self, X: Any, *, text_field: str | None = None, dropout_sampling: int | None = None) -> Any:
        """Predictions (see :meth:`TextEstimatorBase.predict`); ``dropout_sampling=k`` gives
        ``(n, k, targets)`` samples of a regression model (for classifiers it is an option
        of :meth:`predict_proba`)."""
        if dropout_sampling is None:
            return super().predict(X, text_field=text_field)
        if self.problem_type.is_classifier:
            raise InputError("For classifiers, dropout_sampling is an option of predict_proba.")
        self._check_fitted()
        raw = self._outputs(X, self._text_field(text_field), dropout_sampling)
        return raw[..., 0] if raw.shape[-1] == 1 else raw

    # ------------------------------------------------------------------ dask: the operator

    def _export_dir(self) -> Path:
        """A private temporary checkpoint of the fitted model that the operator loads (local
        clusters: the workers read it from this machine's disk). Written once per fit."""
        export = getattr(self, "_export", None)
        if export is None:
            export = tempfile.TemporaryDirectory(prefix=f"nemo-cls-dask-{type(self).__name__.lower()}-")
            self._write_export(Path(export.name))
            self._export = export
        return Path(export.name)

    def _write_export(self, folder: Path) -> None:
        self.save_pretrained(folder)

    def as_operator(self, **options: Any) -> Any:
        """A :class:`~nemo_cls_dask.DistributedDataClassifier` over this fitted model.

        ``options`` are the operator's (``label_field``, ``score_field``, ``uncertainty``,
        ``embedding_field``, ``filter_by`` ...); ``text_field`` defaults to the training
        column, ``autocast``/``device`` to the estimator's. The model is exported once to a
        private temporary folder, which workers of a local cluster read.
        """
        from ..classifiers.base import DistributedDataClassifier

        self._check_fitted()
        settings = {"text_field": self._text_field(None), "autocast": self._autocast() or False,
                    "device": getattr(self, "device", "auto")} | options
        return DistributedDataClassifier(model_identifier=str(self._export_dir()), **settings)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_export", None)
        return state

    # ------------------------------------------------------------------ saved state (config.json)

    def _stored_state(self) -> dict[str, Any]:
        """The JSON block saved under :attr:`config_key`: parameters, history and fields."""
        params = {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.get_params(deep=False).items() if json_safe(v)}
        block: dict[str, Any] = {
            "estimator": type(self).__name__,
            "params": params,
            "history": json.loads(json.dumps(self.history_, default=float)),
            "text_field": self.text_field_,
            "label_fields": list(self.label_fields_),
        }
        if getattr(self, "calibration_", None):
            block["calibration"] = dict(self.calibration_)
        return block

    def _labels_config(self) -> dict[str, Any]:
        """``thresholds`` (multi-label) for ``config.json``."""
        return {} if self.thresholds_ is None else {"thresholds": [float(t) for t in self.thresholds_]}

    @classmethod
    def _stored_params(cls, info: ModelInfo) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(constructor parameters saved by this class, the whole stored block)``; the problem
        comes from the checkpoint's ``problem_type``."""
        stored = info.config.get(cls.config_key, {})
        names = cls._get_param_names()
        params = {k: v for k, v in stored.get("params", {}).items() if k in names}
        params["problem"] = get_problem(info.problem_type).name
        return params, stored

    def _restore_fitted(self, info: ModelInfo, stored: dict[str, Any]) -> None:
        """The fitted attributes of a loaded checkpoint (labels, thresholds, history, fields)."""
        config = info.config
        labels = info.labels if get_problem(info.problem_type).is_classifier else None
        self._y_kind = "column"
        self._set_fitted_labels(list(labels) if labels is not None else None, stored.get("text_field", "text"),
                                tuple(stored.get("label_fields", ["label"])))
        self.output_names_ = self.labels_ or tuple(config.get("output_names") or [f"output_{i}" for i in range(info.num_outputs)])
        thresholds = config.get("thresholds")
        self.thresholds_ = None
        if info.problem_type == "multi_label_classification":
            if isinstance(thresholds, dict):
                thresholds = [float(thresholds.get(label, 0.5)) for label in self.labels_]
            elif thresholds is None or isinstance(thresholds, (int, float)):
                thresholds = [float(0.5 if thresholds is None else thresholds)] * len(self.labels_)
            self.thresholds_ = np.asarray(thresholds, dtype=np.float64)
        self.history_ = stored.get("history", [])
        self.best_epoch_ = None
        self.n_train_rows_ = None
        self.calibration_ = stored.get("calibration")
        self.validation_metrics_ = {}
        self._export = None


# ---------------------------------------------------------------------------- helpers


def json_safe(value: Any) -> bool:
    """Whether ``value`` can be written to ``config.json`` as is."""
    try:
        json.dumps(value)
        return True
    except (TypeError, ValueError):
        return False


def fold_scale(fc: nn.Linear, scale: tuple[np.ndarray, np.ndarray]) -> None:
    """Make a head trained on standardised targets ``(t - mean) / std`` output raw target units."""
    mean, std = (torch.as_tensor(a, device=fc.weight.device) for a in scale)
    with torch.no_grad():
        fc.weight.mul_(std[:, None])
        fc.bias.mul_(std).add_(mean)


def unfold_scale(fc: nn.Linear, scale: tuple[np.ndarray, np.ndarray]) -> None:
    """The inverse of :func:`fold_scale` (to continue training a folded head)."""
    mean, std = (torch.as_tensor(a, device=fc.weight.device) for a in scale)
    with torch.no_grad():
        fc.bias.sub_(mean).div_(std)
        fc.weight.div_(std[:, None])


def scale_of(mean: np.ndarray, var: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, std)`` as float32 with a near-zero std replaced by 1 (a constant target)."""
    std = np.sqrt(np.maximum(np.asarray(var, dtype=np.float64), 0.0))
    std[~(std > 1e-8)] = 1.0
    return np.asarray(mean, dtype=np.float32), std.astype(np.float32)
