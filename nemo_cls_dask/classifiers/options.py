"""Checks of the operator's options that need no model, and NeMo Curator's argument names.

Kept apart from :mod:`~nemo_cls_dask.classifiers.base` so the operator class reads as its
contract; everything here is a plain function of option values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError
from ..uncertainty import UNCERTAINTY_MEASURES

if TYPE_CHECKING:
    from ..models.loading import ModelInfo

PADDING_SIDES = ("right", "left")
#: ``long_documents`` choices: cut at the window, or split into windows and aggregate.
LONG_DOCUMENT_MODES = ("truncate", "mean", "max")
#: ``score_format`` choices: one ``list<float32>`` column, or one float32 column per label.
SCORE_FORMATS = ("list", "columns")

#: NeMo Curator's argument names (1.x, and the Dask era's where they differ) -> ours. Code
#: written for NeMo Curator runs unchanged: ``DomainClassifier(pred_column="d",
#: model_inference_batch_size=64)`` works here.
NEMO_CURATOR_NAMES = {
    "pred_column": "label_field",
    "prob_column": "score_field",
    "model_inference_batch_size": "model_inference_batch_size",
    "batch_size": "model_inference_batch_size",  # the Dask-era name: rows per batch
    "has_seq_order": "sort_by_length",
    "device_type": "device",
}
#: The FineWeb-Edu classifiers' own NeMo Curator names (1.x).
FINEWEB_NEMO_CURATOR_NAMES = {
    "float_score_column": "score_field",
    "int_score_column": "int_score_field",
}


def adopt_nemo_curator_names(
    chosen: dict[str, Any], options: dict[str, Any], unset: Any, extra: dict[str, str] | None = None
) -> None:
    """Move NeMo Curator's argument names out of ``options`` under our names.

    A name whose target is a key of ``chosen`` (the caller's own arguments, ``unset`` when
    not given) lands there; any other lands in ``options``. Giving both spellings of one
    option is an error naming both.
    """
    names = {**NEMO_CURATOR_NAMES, **(extra or {})}
    for alias in [name for name in options if name in names and names[name] != name]:
        target = names[alias]
        value = options.pop(alias)
        where = chosen if target in chosen else options
        if target in where and where[target] is not unset:
            raise InputError(f"{alias} is NeMo Curator's name for {target}; pass one of them, not both.")
        where[target] = value


def check_positive_or_none(name: str, value: Any, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InputError(f"{name} must be a positive integer{' or None' if allow_none else ''}, got {value!r}.")


def names_tuple(value: Any) -> Any:
    """A str or a list of names as a tuple; None stays None, anything else is left for the checks."""
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, tuple)):
        return tuple(value)
    return value


def check_extra_options(operator: Any) -> None:
    """Check the uncertainty, embedding, long-document and score options (no model needed)."""
    uncertainty = operator.uncertainty
    if uncertainty is not None:
        if not isinstance(uncertainty, tuple) or not uncertainty or any(n not in UNCERTAINTY_MEASURES for n in uncertainty):
            raise InputError(f"uncertainty must be a non-empty list of {list(UNCERTAINTY_MEASURES)}, got {uncertainty!r}.")
        if len(set(uncertainty)) != len(uncertainty):
            raise InputError(f"uncertainty lists a measure twice: {list(uncertainty)}.")
    wants_mc = "mc_variance" in (uncertainty or ())
    if operator.dropout_samples is not None:
        value = operator.dropout_samples
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 2:
            raise InputError(f"dropout_samples must be an integer >= 2 (the MC dropout passes), got {value!r}.")
        if not wants_mc:
            raise InputError(
                "dropout_samples only feeds the 'mc_variance' uncertainty column; add it to "
                "uncertainty=[..., 'mc_variance'] or drop dropout_samples."
            )
    elif wants_mc:
        raise InputError(
            "uncertainty 'mc_variance' needs dropout_samples=k (k >= 2 forward passes with dropout "
            "active), e.g. dropout_samples=8."
        )
    embedding = operator.embedding_field
    if embedding is not None and (not isinstance(embedding, str) or not embedding):
        raise InputError(f"embedding_field must be a column name or None, got {embedding!r}.")
    if operator.long_documents not in LONG_DOCUMENT_MODES:
        raise InputError(f"long_documents must be one of {LONG_DOCUMENT_MODES}, got {operator.long_documents!r}.")
    overlap = operator.chunk_overlap
    if isinstance(overlap, bool) or not isinstance(overlap, (int, np.integer)) or overlap < 0:
        raise InputError(f"chunk_overlap must be an integer >= 0 (tokens), got {overlap!r}.")
    if operator.score_format not in SCORE_FORMATS:
        raise InputError(f"score_format must be one of {SCORE_FORMATS}, got {operator.score_format!r}.")
    if not isinstance(operator.deterministic, bool):
        raise InputError(f"deterministic must be True or False, got {operator.deterministic!r}.")
    if operator.deterministic and operator.autocast not in (True, False, None, "fp32", "float32"):
        raise InputError(
            f"deterministic=True runs in fp32 so that results do not depend on batching; it "
            f"cannot be combined with autocast={operator.autocast!r}."
        )
    check_positive_or_none("model_inference_batch_size", operator.model_inference_batch_size)


def config_has_dropout(info: ModelInfo, cache_dir: str | None = None) -> bool | None:
    """Whether the checkpoint's config gives some dropout a rate above 0 (None: cannot tell).

    Reads ``fc_dropout`` and the backbone config's ``*dropout*`` keys (NVIDIA head layout),
    or the ``*dropout*`` keys of a transformers config. The worker checks the loaded module
    too, so None only postpones the error.
    """
    from ..models.heads import backbone_config_from

    rates: list[Any] = []
    config = info.config
    if info.layout == "hf":
        backbone = config
    elif info.layout == "head":
        rates.append(config.get("fc_dropout", 0.0))
        try:
            backbone = backbone_config_from(config, cache_dir).to_dict()
        except Exception:  # the worker has the last word
            return None
    else:
        return None
    rates += [value for key, value in backbone.items() if "dropout" in key]
    numbers = [float(value) for value in rates if isinstance(value, (int, float)) and not isinstance(value, bool)]
    return any(value > 0 for value in numbers)


def check_filter_labels(filter_by: Sequence[str] | None, labels: Sequence[str] | None, path: Any) -> None:
    """Raise an :class:`InputError` listing the valid labels if ``filter_by`` names others."""
    if filter_by is None:
        return
    if not labels:
        raise InputError(f"filter_by needs a model with labels; {path} declares none.")
    unknown = [label for label in filter_by if label not in labels]
    if unknown:
        raise InputError(f"filter_by labels {unknown} are not labels of the model; choose from {list(labels)}.")
