"""NVIDIA's prompt task and complexity classifier (nvidia/prompt-task-and-complexity-classifier).

A DeBERTa-v3-base backbone, mean pooling, and one linear head per target (the
``"multihead"`` layout of :mod:`nemo_cls_dask.models.multihead`). Its ``config.json``
gives the heads a meaning:

* ``target_sizes``: ``task_type`` (12 classes) and six complexity dimensions plus
  ``no_label_reason``, each a small number of classes;
* ``task_type_map``: class id (as a string) -> task type name (``"Code Generation"``, ...);
* ``weights_map`` / ``divisor_map``: each dimension's score is the softmax over its classes,
  weighted by ``weights_map[target]`` and divided by ``divisor_map[target]``.

The 11 output columns, named, rounded and typed like NeMo Curator's:

==========================  =========  =====================================================
column                      dtype      value
==========================  =========  =====================================================
``task_type_1``             string     most likely task type
``task_type_2``             string     second most likely, ``"NA"`` if its probability < 0.1
``task_type_prob``          float32    probability of ``task_type_1``, rounded to 3 places
``creativity_scope``        float64    weighted score, rounded to 4 places (also the next 5)
``reasoning``               float64
``contextual_knowledge``    float64
``number_of_few_shots``     float64    as above, and 0 where below 0.05
``domain_knowledge``        float64
``no_label_reason``         float64
``constraint_ct``           float64
``prompt_complexity_score`` float64    0.35 creativity + 0.25 reasoning + 0.15 constraints +
                                       0.15 domain knowledge + 0.05 contextual knowledge +
                                       0.05 few shots (of the rounded scores), rounded to 5
==========================  =========  =====================================================

NeMo Curator types ``number_of_few_shots`` as int64 in batches where every value rounds to
0 and float64 otherwise; here it is always float64, so that ``meta`` is right.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from .. import frames
from ..errors import InputError, ModelLoadError
from ..models.loading import ModelInfo
from ..models.multihead import split_heads, target_sizes
from .hub import DEFAULT, HubClassifier
from .options import check_filter_labels

TASK_TARGET = "task_type"
#: The complexity targets, in NeMo Curator's column order.
SCORE_TARGETS = (
    "creativity_scope",
    "reasoning",
    "contextual_knowledge",
    "number_of_few_shots",
    "domain_knowledge",
    "no_label_reason",
    "constraint_ct",
)
#: Weights of the overall ``prompt_complexity_score`` (from the model card).
COMPLEXITY_WEIGHTS = {
    "creativity_scope": 0.35,
    "reasoning": 0.25,
    "constraint_ct": 0.15,
    "domain_knowledge": 0.15,
    "contextual_knowledge": 0.05,
    "number_of_few_shots": 0.05,
}
#: Output columns in NeMo Curator's order (before ``column_prefix``).
OUTPUT_COLUMNS = ("task_type_1", "task_type_2", "task_type_prob", *SCORE_TARGETS, "prompt_complexity_score")
#: ``task_type_2`` is this when the second task type's probability is below the threshold.
NO_SECOND_TASK = "NA"
SECOND_TASK_MIN_PROB = 0.1
FEW_SHOTS_MIN = 0.05
_REQUIRED_KEYS = ("task_type_map", "weights_map", "divisor_map")


class PromptTaskComplexityClassifier(HubClassifier):
    """Task type (11 kinds plus "Unknown") and six complexity scores of English prompts.

    Writes the 11 columns listed in :mod:`~nemo_cls_dask.classifiers.prompt_complexity`
    (``task_type_1``, ..., ``prompt_complexity_score``), each prefixed by ``column_prefix``
    (default none) to avoid clashes. ``filter_by`` keeps rows whose ``task_type_1`` is one
    of the given task types. Text is cut to 2,000 characters and 512 tokens.

    Takes the other options of :class:`DistributedDataClassifier` (``text_field``,
    ``max_chars``, ``batch_tokens``, ``device``, ``cache_dir``, ``model_identifier``, ...);
    its columns are fixed, so ``label_field``/``score_field`` are not accepted.
    """

    own_columns = True
    MODEL_ID = "nvidia/prompt-task-and-complexity-classifier"
    MAX_CHARS = 2000
    MAX_SEQ_LENGTH = 512

    def __init__(self, *, column_prefix: str = "", **options: Any) -> None:
        given = sorted({"label_field", "score_field"} & set(options))
        if given:
            raise InputError(
                f"PromptTaskComplexityClassifier writes NeMo Curator's columns {list(OUTPUT_COLUMNS)}; "
                f"{given} cannot be set: use column_prefix='...' to rename them all."
            )
        if not isinstance(column_prefix, str):
            raise InputError(f"column_prefix must be a string, got {column_prefix!r}.")
        self.column_prefix = column_prefix
        super().__init__(label_field=column_prefix + "task_type_1", score_field=None, **options)

    def output_names(self) -> list[str]:
        return [self.column_prefix + name for name in OUTPUT_COLUMNS]

    def output_dtypes(self, info: ModelInfo) -> dict[str, Any]:
        dtypes: dict[str, Any] = {}
        for name in OUTPUT_COLUMNS:
            if name.startswith("task_type_") and name != "task_type_prob":
                dtype: Any = frames.LABEL_DTYPE
            elif name == "task_type_prob":
                dtype = np.dtype("float32")
            else:
                dtype = np.dtype("float64")
            dtypes[self.column_prefix + name] = dtype
        return dtypes

    def check_model(self, info: ModelInfo) -> None:
        source = info.path / "config.json"
        if info.layout != "multihead":
            raise InputError(
                f"{info.path} is not a prompt task and complexity checkpoint: its config.json has no "
                f"'target_sizes' (it is a {info.layout!r} checkpoint)."
            )
        config = info.config
        for key in _REQUIRED_KEYS:
            if not isinstance(config.get(key), Mapping):
                raise ModelLoadError(f"{source}: missing required key {key!r}.")
        sizes = target_sizes(config)
        missing = [name for name in (TASK_TARGET, *SCORE_TARGETS) if name not in sizes]
        if missing:
            raise ModelLoadError(f"{source}: target_sizes lacks the target(s) {missing}; it has {list(sizes)}.")
        if sizes[TASK_TARGET] < 2:
            raise ModelLoadError(f"{source}: target_sizes['task_type'] must be at least 2 (top-2 task types).")
        if not info.labels or len(info.labels) != sizes[TASK_TARGET]:
            raise ModelLoadError(
                f"{source}: task_type_map has {len(info.labels or ())} names for "
                f"{sizes[TASK_TARGET]} task_type classes."
            )
        for name in SCORE_TARGETS:
            weights = config["weights_map"].get(name)
            if not isinstance(weights, list) or len(weights) != sizes[name]:
                raise ModelLoadError(
                    f"{source}: weights_map[{name!r}] must list {sizes[name]} weights (one per class), "
                    f"got {weights!r}."
                )
            divisor = config["divisor_map"].get(name)
            if isinstance(divisor, bool) or not isinstance(divisor, (int, float)) or divisor == 0:
                raise ModelLoadError(f"{source}: divisor_map[{name!r}] must be a non-zero number, got {divisor!r}.")
        check_filter_labels(self.filter_by, info.labels, info.path)

    def postprocess(self, outputs: torch.Tensor, valid: np.ndarray, info: ModelInfo, like: Any) -> dict[str, Any]:
        config = info.config
        heads = split_heads(torch.nan_to_num(outputs.float(), nan=0.0), target_sizes(config))
        prefix = self.column_prefix
        columns: dict[str, Any] = {}

        probabilities = torch.softmax(heads[TASK_TARGET], dim=1)
        top_probs, top_codes = torch.topk(probabilities, k=2, dim=1)
        top_probs = torch.round(top_probs, decimals=3)
        names = tuple(info.labels) + (NO_SECOND_TASK,)
        second = torch.where(
            top_probs[:, 1] < SECOND_TASK_MIN_PROB, torch.full_like(top_codes[:, 1], len(names) - 1), top_codes[:, 1]
        )
        columns[prefix + "task_type_1"] = frames.label_column(names, top_codes[:, 0], valid, like)
        columns[prefix + "task_type_2"] = frames.label_column(names, second, valid, like)
        columns[prefix + "task_type_prob"] = frames.float_column(top_probs[:, 0], valid, like, dtype="float32")

        scores: dict[str, torch.Tensor] = {}
        for name in SCORE_TARGETS:
            weights = torch.as_tensor(config["weights_map"][name], dtype=torch.float64, device=outputs.device)
            dimension = torch.softmax(heads[name], dim=1).double()
            score = (dimension * weights).sum(dim=1) / float(config["divisor_map"][name])
            score = torch.round(score, decimals=4)
            if name == "number_of_few_shots":
                score = torch.where(score >= FEW_SHOTS_MIN, score, torch.zeros_like(score))
            scores[name] = score
            columns[prefix + name] = frames.float_column(score, valid, like, dtype="float64")
        overall = sum(weight * scores[name] for name, weight in COMPLEXITY_WEIGHTS.items())
        columns[prefix + "prompt_complexity_score"] = frames.float_column(
            torch.round(overall, decimals=5), valid, like, dtype="float64"
        )
        return columns


__all__ = ["DEFAULT", "OUTPUT_COLUMNS", "PromptTaskComplexityClassifier"]
