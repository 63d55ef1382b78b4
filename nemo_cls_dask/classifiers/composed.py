"""``ComposedClassifier``: run a composed model (one backbone, several heads) as one operator.

The model is a folder in the ``"composed"`` layout (:mod:`nemo_cls_dask.models.composed`).
The backbone runs once per batch; every head writes its own columns, exactly as that head
would alone through :class:`DistributedDataClassifier`:

======================  ===========================================================
column                  value (dtype)
======================  ===========================================================
``{name}_label``        single-label: the label (string); multi-label: the list of
                        labels whose probability reaches the head's saved thresholds
                        (list<string>); regression: the value (float32, or a
                        list<float32> for several targets)
``{name}_score``        classifiers, when asked (``scores=``): the probabilities in
                        label order (list<float32>), after the head's temperature
======================  ===========================================================

``{name}`` is the head's component name, or ``columns[name]``; ``column_prefix`` goes in
front of every column and ``label_suffix`` / ``score_suffix`` replace ``_label`` /
``_score``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..models.composed import LAYOUT, split_outputs
from ..models.loading import ModelInfo
from ..problems import problem_of
from .base import DistributedDataClassifier


class ComposedClassifier(DistributedDataClassifier):
    """Write every head of a composed model as columns, from one backbone pass per batch.

    Parameters
    ----------
    model_identifier
        A composed folder (or hub id), as written by
        :func:`~nemo_cls_dask.models.composed.compose` or ``ComposedModel.save_pretrained``.
    heads
        The heads whose columns to write, in this order (None: all, in the model's order).
        Every head still runs (heads are one linear layer each).
    columns
        Head name -> base column name (default: the head name), e.g. ``{"topic": "section"}``.
    column_prefix, label_suffix, score_suffix
        Column ``{column_prefix}{base}{label_suffix}`` (and ``...{score_suffix}``).
    scores
        True (every classification head), False (none) or a list of head names: which
        heads also write their probabilities. Naming a regression head is an error.

    Takes the other options of :class:`DistributedDataClassifier` (``text_field``,
    ``max_chars``, ``max_seq_length``, ``batch_tokens``, ``autocast``, ``device``,
    ``cache_dir``, ...). ``embedding_field`` writes the first component's pooled vector
    (the embedding that component gives alone); ``long_documents="mean"/"max"``
    aggregates each head's window probabilities as that head would alone. Not accepted:
    ``label_field``, ``score_field`` and ``filter_by`` (the columns come from the heads;
    filter the output frame instead), and ``uncertainty`` (run a head alone for it). Head
    names, column clashes and ``scores`` are checked against the model when the operator
    is applied, before any compute.
    """

    own_columns = True

    def __init__(
        self,
        *,
        model_identifier: str | os.PathLike,
        heads: Sequence[str] | None = None,
        columns: Mapping[str, str] | None = None,
        column_prefix: str = "",
        label_suffix: str = "_label",
        score_suffix: str = "_score",
        scores: bool | Sequence[str] = False,
        **options: Any,
    ) -> None:
        given = sorted({"label_field", "score_field", "filter_by"} & set(options))
        if given:
            raise InputError(
                f"ComposedClassifier writes one set of columns per head; {given} cannot be set: use "
                f"columns={{head: name}}, column_prefix=..., scores=[...], and filter the output frame."
            )
        self.heads = None if heads is None else ([heads] if isinstance(heads, str) else list(heads))
        self.columns = dict(columns) if columns is not None else {}
        self.column_prefix = column_prefix
        self.label_suffix = label_suffix
        self.score_suffix = score_suffix
        self.scores = scores if isinstance(scores, bool) else ([scores] if isinstance(scores, str) else list(scores))
        self._head_cache: dict[str, DistributedDataClassifier] = {}
        super().__init__(model_identifier=model_identifier, score_field=None, **options)

    # ------------------------------------------------------------------ validation

    def _check_options(self) -> None:
        # The output columns depend on the model's heads, read when the operator is
        # applied; the base checks run here on everything else.
        self._options_only = True
        try:
            super()._check_options()
        finally:
            self._options_only = False
        for name, value in (("column_prefix", self.column_prefix), ("label_suffix", self.label_suffix), ("score_suffix", self.score_suffix)):
            if not isinstance(value, str):
                raise InputError(f"{name} must be a string, got {value!r}.")
        if self.label_suffix == self.score_suffix:
            raise InputError(f"label_suffix and score_suffix must differ, both are {self.label_suffix!r}.")
        if self.heads is not None and (not self.heads or not all(isinstance(h, str) for h in self.heads) or len(set(self.heads)) != len(self.heads)):
            raise InputError(f"heads must be a non-empty list of distinct head names or None, got {self.heads!r}.")
        if not all(isinstance(k, str) and isinstance(v, str) and v for k, v in self.columns.items()):
            raise InputError(f"columns must map head names to non-empty column names, got {self.columns!r}.")
        if not isinstance(self.scores, bool) and not all(isinstance(h, str) for h in self.scores):
            raise InputError(f"scores must be True, False or a list of head names, got {self.scores!r}.")

    def check_model(self, info: ModelInfo) -> None:
        if info.layout != LAYOUT:
            raise InputError(
                f"{info.path} is a {info.layout!r} checkpoint, not a composed model (a config.json with "
                f"'components'); run it with DistributedDataClassifier, or compose heads with "
                f"nemo_cls_dask.models.composed.compose()."
            )
        names = list(info.components)
        for option, asked in (("heads", self.heads or []), ("columns", list(self.columns)),
                              ("scores", [] if isinstance(self.scores, bool) else self.scores)):
            unknown = [name for name in asked if name not in names]
            if unknown:
                raise InputError(f"{option} names unknown head(s) {unknown}; the model's heads are {names}.")
        selected = self._selected(info)
        if not isinstance(self.scores, bool):
            left_out = [name for name in self.scores if name not in selected]
            if left_out:
                raise InputError(f"scores names head(s) {left_out} that heads={self.heads} leaves out.")
            regression = [name for name in self.scores if not problem_of(info.components[name]).is_classifier]
            if regression:
                raise InputError(f"scores names regression head(s) {regression}: their value is already the label column.")
        outputs = [column for name in selected for column in self._column_names(name, info.components[name])]
        duplicated = sorted({column for column in outputs if outputs.count(column) > 1})
        if duplicated:
            raise InputError(f"Several heads would write the column(s) {duplicated}; rename them with columns={{head: name}}.")

    # ------------------------------------------------------------------ outputs

    def _selected(self, info: ModelInfo) -> list[str]:
        return list(self.heads) if self.heads is not None else list(info.components)

    def _wants_score(self, name: str, component: ModelInfo) -> bool:
        if not problem_of(component).is_classifier:
            return False
        return self.scores if isinstance(self.scores, bool) else name in self.scores

    def _column_names(self, name: str, component: ModelInfo) -> list[str]:
        base = self.column_prefix + self.columns.get(name, name)
        return [base + self.label_suffix] + ([base + self.score_suffix] if self._wants_score(name, component) else [])

    def _head_operator(self, name: str, component: ModelInfo) -> DistributedDataClassifier:
        """A plain operator for one head: its ``postprocess``/``output_dtypes`` give the columns."""
        operator = self._head_cache.get(name)
        if operator is None:
            label, *score = self._column_names(name, component)
            operator = DistributedDataClassifier(
                model_identifier=str(component.path), text_field=self.text_field,
                label_field=label, score_field=score[0] if score else None,
            )
            self._head_cache[name] = operator
        return operator

    def output_names(self) -> list[str]:
        if getattr(self, "_options_only", False):
            return []
        return list(self.output_dtypes(self.describe()))

    def summary_column(self) -> str:
        return self.output_names()[0]

    def output_dtypes(self, info: ModelInfo) -> dict[str, Any]:
        dtypes: dict[str, Any] = {}
        for name in self._selected(info):
            component = info.components[name]
            dtypes.update(self._head_operator(name, component).output_dtypes(component))
        return dtypes

    def _per_head(self, values: torch.Tensor, info: ModelInfo) -> list[tuple[str, ModelInfo, torch.Tensor]]:
        """``(name, component info, that head's slice of the last dimension)`` for every head."""
        parts = split_outputs(values, {name: component.num_outputs for name, component in info.components.items()})
        return [(name, component, parts[name]) for name, component in info.components.items()]

    def postprocess(self, outputs: torch.Tensor, valid: np.ndarray, info: ModelInfo, like: Any) -> dict[str, Any]:
        parts = {name: (component, part) for name, component, part in self._per_head(outputs, info)}
        columns: dict[str, Any] = {}
        for name in self._selected(info):
            component, part = parts[name]
            columns.update(self._head_operator(name, component).postprocess(part, valid, component, like))
        return columns

    def postprocess_aggregated(
        self, probabilities: torch.Tensor, single_window_outputs: torch.Tensor, valid: np.ndarray, info: ModelInfo, like: Any
    ) -> dict[str, Any]:
        """Long documents: every head writes its window-aggregated probabilities as it would alone."""
        parts = {name: (component, part) for name, component, part in self._per_head(probabilities, info)}
        singles = {name: part for name, _, part in self._per_head(single_window_outputs, info)}
        columns: dict[str, Any] = {}
        for name in self._selected(info):
            component, part = parts[name]
            operator = self._head_operator(name, component)
            columns.update(operator.postprocess_aggregated(part, singles[name], valid, component, like))
        return columns

    def _reset_model_state(self) -> None:
        super()._reset_model_state()
        self._head_cache = {}

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_head_cache"] = {}
        return state
