"""``DistributedDataClassifier``: a transformer classifier as a DataFrame operator.

``classifier(ddf)`` returns a lazy dask DataFrame with the same partitions, index and
columns plus the classifier's output columns; ``classifier(pdf)`` (pandas or cuDF) does the
same eagerly. Everything that can be wrong with the options, the frame or the model is
checked when the operator is applied, from the model's config files alone (no weights are
loaded on the client). ``classify(ddf, [clf1, clf2, ...])`` runs several in one pass.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import partial
from typing import Any, ClassVar

import numpy as np
import torch

from .. import frames
from ..batching import DEFAULT_MAX_BATCH_ROWS
from ..engine import AUTOCAST_CHOICES, BatchSettings, cpu_has_fast_bf16
from ..errors import InputError
from ..models.loading import ModelInfo, describe_model
from ..uncertainty import PROBABILITY_MEASURES, UNCERTAINTY_MEASURES, uncertainty_scores
from .partition import classify_partition

PADDING_SIDES = ("right", "left")
#: ``long_documents`` choices: cut at the window, or split into windows and aggregate.
LONG_DOCUMENT_MODES = ("truncate", "mean", "max")
#: Model kinds whose outputs the uncertainty measures understand.
_UNCERTAINTY_PROBLEMS = ("single_label_classification", "multi_label_classification", "regression")


class DistributedDataClassifier:
    """Run a sequence classifier over every row of a (dask) DataFrame's text column.

    Parameters
    ----------
    model_identifier
        Hub id (``"nvidia/quality-classifier-deberta"``), a local checkpoint folder, or a
        packaged name (``"debian-topics"``). NVIDIA ``Deberta``-head checkpoints and plain
        transformers ``...ForSequenceClassification`` checkpoints both load.
    text_field
        Column holding the text. Null, non-string, empty or blank values give null outputs
        (row kept).
    label_field
        Output column for the predicted label (a string column; a list of labels for
        multi-label models; the predicted value for regression models).
    score_field
        Optional output column with one float32 probability per label, in id order.
    filter_by
        Keep only rows whose predicted label is one of these (rows with null text drop).
    max_chars
        Cut text to this many characters before tokenizing (None: no cut).
    max_seq_length
        Truncate to this many tokens (None: the model's ``max_len``).
    padding_side
        ``"right"`` (default) or ``"left"``, accepted for NeMo Curator compatibility. Each
        batch is padded only to its own longest row, and the model always sees each row's
        text from position 0 (encoders with absolute positions and ``[CLS]`` pooling need
        that), so outputs do not depend on this setting.
    sort_by_length
        Sort rows by token length before batching (results are put back in order).
    batch_tokens
        Token budget per forward pass, ``rows x padded_length`` (None: 8,192 on CPU, 131,072
        on GPU). A CUDA out-of-memory error halves the batch and retries.
    max_batch_rows
        Upper bound on rows per forward pass.
    autocast
        ``True``: bf16 (or fp16) on GPU; on CPU, bf16 where the CPU has native bf16 matrix
        instructions (AVX512-BF16 or AMX), else fp32 (``NEMO_CLS_DASK_CPU_BF16=0`` in the
        workers' environment keeps CPUs at fp32). ``"bf16"``/``"fp16"`` force a reduced
        precision (also on CPU), ``False`` forces fp32.
    device
        ``"auto"`` (the worker's GPU if it has one, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``.
    cache_dir
        Hugging Face cache folder for hub ids (default: ``HF_HOME``); ``HF_HUB_OFFLINE=1`` is honoured.
    uncertainty
        Measures to add as float32 columns ``f"{label_field}_{name}"``: ``"entropy"``,
        ``"margin"`` (best minus second-best probability: *small* means uncertain),
        ``"least_confidence"`` and ``"mc_variance"`` (see :mod:`nemo_cls_dask.uncertainty`).
        Regression models support only ``"mc_variance"``. Null text gives NaN.
    dropout_samples
        ``k >= 2`` extra forward passes with dropout active, for ``"mc_variance"`` (required
        by it, and only used by it): the mean over outputs of the variance of the
        probabilities (regression: values) across the ``k`` passes. Labels and scores still
        come from the usual deterministic pass. The samples are random: values differ from
        run to run (one thread and ``torch.manual_seed`` make an eager run repeatable).
    embedding_field
        Output column for the pooled backbone embedding the head reads (``list<float32>``),
        computed in the same forward pass as the labels.
    long_documents
        ``"truncate"`` (default): text past the model's window is cut off. ``"mean"`` /
        ``"max"``: longer text is split into overlapping windows of at most the window's
        length (each with the tokenizer's special tokens), every window is classified, and
        the windows' probabilities (sigmoid for multi-label, values for regression) are
        averaged or maxed per row; the label comes from those. Embeddings are the mean of
        the windows'. Text that fits one window gives what ``"truncate"`` gives.
    chunk_overlap
        Tokens shared by consecutive windows with ``long_documents="mean"``/``"max"``.
    """

    #: True where the label column may be switched off (``label_field=None``), as for the
    #: FineWeb-Edu score, whose outputs are score columns.
    label_field_optional: ClassVar[bool] = False

    def __init__(
        self,
        *,
        model_identifier: str | os.PathLike,
        text_field: str = "text",
        label_field: str = "preds",
        score_field: str | None = None,
        filter_by: Sequence[str] | None = None,
        max_chars: int | None = None,
        max_seq_length: int | None = None,
        padding_side: str = "right",
        sort_by_length: bool = True,
        batch_tokens: int | None = None,
        max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS,
        autocast: bool | str = True,
        device: str = "auto",
        cache_dir: str | None = None,
        uncertainty: Sequence[str] | None = None,
        dropout_samples: int | None = None,
        embedding_field: str | None = None,
        long_documents: str = "truncate",
        chunk_overlap: int = 64,
    ) -> None:
        self.model_identifier = os.fspath(model_identifier) if model_identifier is not None else None
        self.text_field = text_field
        self.label_field = label_field
        self.score_field = score_field
        self.filter_by = tuple([filter_by] if isinstance(filter_by, str) else filter_by) if filter_by is not None else None
        self.max_chars = max_chars
        self.max_seq_length = max_seq_length
        self.padding_side = padding_side
        self.sort_by_length = sort_by_length
        self.batch_tokens = batch_tokens
        self.max_batch_rows = max_batch_rows
        self.autocast = autocast
        self.device = device
        self.cache_dir = os.fspath(cache_dir) if cache_dir is not None else None
        self.uncertainty = _names_tuple(uncertainty)
        self.dropout_samples = dropout_samples
        self.embedding_field = embedding_field
        self.long_documents = long_documents
        self.chunk_overlap = chunk_overlap
        self._info: ModelInfo | None = None
        self._check_options()

    # ------------------------------------------------------------------ validation

    def _check_options(self) -> None:
        if not self.model_identifier:
            raise InputError("model_identifier is required: a hub id, a checkpoint folder or 'debian-topics'.")
        for name in ("text_field", "label_field"):
            value = getattr(self, name)
            if value is None and name == "label_field" and self.label_field_optional:
                continue
            if not isinstance(value, str) or not value:
                raise InputError(f"{name} must be a non-empty column name, got {value!r}.")
        if self.score_field is not None and (not isinstance(self.score_field, str) or not self.score_field):
            raise InputError(f"score_field must be a column name or None, got {self.score_field!r}.")
        self._check_extra_options()
        names = self.all_output_names()
        if len(set(names)) != len(names):
            raise InputError(f"Output column names must differ, got {names}.")
        if self.filter_by is not None and (not self.filter_by or not all(isinstance(x, str) for x in self.filter_by)):
            raise InputError(f"filter_by must be a non-empty list of label names, got {self.filter_by!r}.")
        for name in ("max_chars", "max_seq_length", "batch_tokens"):
            _check_positive_or_none(name, getattr(self, name))
        _check_positive_or_none("max_batch_rows", self.max_batch_rows, allow_none=False)
        if self.padding_side not in PADDING_SIDES:
            raise InputError(f"padding_side must be one of {PADDING_SIDES}, got {self.padding_side!r}.")
        if not isinstance(self.sort_by_length, bool):
            raise InputError(f"sort_by_length must be True or False, got {self.sort_by_length!r}.")
        if self.autocast not in AUTOCAST_CHOICES:
            raise InputError(f"autocast must be one of {AUTOCAST_CHOICES}, got {self.autocast!r}.")
        cpu_has_fast_bf16()  # a bad NEMO_CLS_DASK_CPU_BF16 fails here, not in the workers
        if self.device != "auto":
            try:
                torch.device(self.device)
            except (RuntimeError, TypeError) as error:
                raise InputError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}.") from error

    def _check_extra_options(self) -> None:
        """Check the uncertainty, embedding and long-document options (no model needed)."""
        if self.uncertainty is not None:
            given = self.uncertainty
            if not isinstance(given, tuple) or not given or any(name not in UNCERTAINTY_MEASURES for name in given):
                raise InputError(
                    f"uncertainty must be a non-empty list of {list(UNCERTAINTY_MEASURES)}, got {self.uncertainty!r}."
                )
            if len(set(self.uncertainty)) != len(self.uncertainty):
                raise InputError(f"uncertainty lists a measure twice: {list(self.uncertainty)}.")
        wants_mc = "mc_variance" in (self.uncertainty or ())
        if self.dropout_samples is not None:
            value = self.dropout_samples
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
        if self.embedding_field is not None and (not isinstance(self.embedding_field, str) or not self.embedding_field):
            raise InputError(f"embedding_field must be a column name or None, got {self.embedding_field!r}.")
        if self.long_documents not in LONG_DOCUMENT_MODES:
            raise InputError(f"long_documents must be one of {LONG_DOCUMENT_MODES}, got {self.long_documents!r}.")
        overlap = self.chunk_overlap
        if isinstance(overlap, bool) or not isinstance(overlap, (int, np.integer)) or overlap < 0:
            raise InputError(f"chunk_overlap must be an integer >= 0 (tokens), got {overlap!r}.")

    def describe(self) -> ModelInfo:
        """The model's labels, problem type and lengths, read from its config (cached once checked)."""
        if self._info is None:
            info = describe_model(self.model_identifier, self.cache_dir)
            self._check_model(info)
            self._check_extras(info)
            self._info = info
        return self._info

    def _check_extras(self, info: ModelInfo) -> None:
        """Check the uncertainty and long-document options against the model's config."""
        if self.uncertainty:
            if info.problem_type not in _UNCERTAINTY_PROBLEMS:
                raise InputError(
                    f"uncertainty columns need a single-label, multi-label or regression model; {info.path} "
                    f"is a {info.layout!r} checkpoint ({info.problem_type})."
                )
            if info.problem_type == "regression":
                asked = [name for name in self.uncertainty if name in PROBABILITY_MEASURES]
                if asked:
                    raise InputError(
                        f"{asked} need class probabilities, and {info.path} is a regression model; only "
                        f"'mc_variance' (with dropout_samples) measures a regression model's uncertainty."
                    )
            if "mc_variance" in self.uncertainty and config_has_dropout(info, self.cache_dir) is False:
                raise InputError(
                    f"uncertainty 'mc_variance' needs dropout, and every dropout rate in the config of "
                    f"{info.path} is 0 (fc_dropout and the backbone's *dropout* settings); drop 'mc_variance'."
                )
        if self.long_documents != "truncate":
            window = self.max_seq_length or info.max_len
            if self.chunk_overlap >= window:
                raise InputError(
                    f"chunk_overlap={self.chunk_overlap} must be smaller than the model's window of {window} "
                    f"tokens (less its special tokens)."
                )

    def _check_model(self, info: ModelInfo) -> None:
        if info.problem_type not in ("single_label_classification", "multi_label_classification", "regression"):
            raise InputError(
                f"{info.path} is a {info.layout!r} checkpoint ({info.problem_type}) whose outputs "
                f"{type(self).__name__} cannot read; use the classifier made for it (for "
                f"'target_sizes' multi-head checkpoints: PromptTaskComplexityClassifier)."
            )
        if self.filter_by is not None:
            if info.problem_type == "regression":
                raise InputError(f"filter_by needs a classifier; {info.path} is a regression model.")
            unknown = [label for label in self.filter_by if label not in info.labels]
            if unknown:
                raise InputError(f"filter_by labels {unknown} are not labels of the model; choose from {list(info.labels)}.")
        if self.score_field is not None and info.problem_type == "regression":
            raise InputError("score_field is for classifiers; a regression model writes its value to label_field.")

    def validate(self, columns: Sequence[str]) -> ModelInfo:
        """Check this operator against a frame's columns and its model; return the model info."""
        columns = list(columns)
        if self.text_field not in columns:
            raise InputError(f"Text column {self.text_field!r} is not in the DataFrame; its columns are {columns}.")
        clashes = [name for name in self.all_output_names() if name in columns]
        if clashes:
            raise InputError(
                f"Output column(s) {clashes} already exist in the DataFrame; pass other names "
                f"(label_field=..., score_field=...) or drop them first."
            )
        return self.describe()

    # ------------------------------------------------------------------ outputs

    def output_names(self) -> list[str]:
        """Names of the columns this classifier adds (label, score, uncertainty, embedding)."""
        return [self.label_field] + ([self.score_field] if self.score_field else []) + self.extra_output_names()

    def extra_output_names(self) -> list[str]:
        """The uncertainty and embedding columns, which every classifier can add."""
        prefix = self._uncertainty_prefix()
        names = [f"{prefix}_{name}" for name in self.uncertainty or ()]
        return names + ([self.embedding_field] if self.embedding_field else [])

    def all_output_names(self) -> list[str]:
        """Every column this classifier adds: :meth:`output_names` plus the extra columns.

        A subclass that overrides :meth:`output_names` lists its own columns only; the
        uncertainty and embedding columns are appended here (duplicates kept, so name
        clashes are still found).
        """
        if type(self).output_names is DistributedDataClassifier.output_names:
            return self.output_names()
        return self.output_names() + self.extra_output_names()

    def _uncertainty_prefix(self) -> str:
        """Uncertainty columns are named after the label column, else the subclass's first column."""
        if self.label_field or type(self).output_names is DistributedDataClassifier.output_names:
            return self.label_field
        return self.output_names()[0]

    def summary_column(self) -> str:
        """The output column whose value counts summarize a run (the CLI prints them)."""
        return self.label_field

    def output_dtypes(self, info: ModelInfo) -> dict[str, Any]:
        """Column name -> dtype of what :meth:`postprocess` returns (used to build meta)."""
        if info.problem_type == "regression":
            label_dtype = np.dtype("float32") if info.num_outputs == 1 else frames.SCORE_LIST_DTYPE
        elif info.problem_type == "multi_label_classification":
            label_dtype = frames.LABEL_LIST_DTYPE
        else:
            label_dtype = frames.LABEL_DTYPE
        dtypes = {self.label_field: label_dtype}
        if self.score_field:
            dtypes[self.score_field] = frames.SCORE_LIST_DTYPE
        dtypes.update(self.extra_output_dtypes())
        return dtypes

    def extra_output_dtypes(self) -> dict[str, Any]:
        """dtypes of the uncertainty (float32) and embedding (``list<float32>``) columns."""
        dtypes: dict[str, Any] = {name: np.dtype("float32") for name in self.extra_output_names()}
        if self.embedding_field:
            dtypes[self.embedding_field] = frames.SCORE_LIST_DTYPE
        return dtypes

    def all_output_dtypes(self, info: ModelInfo) -> dict[str, Any]:
        """Column name -> dtype of every added column, in the order the partitions have them."""
        dtypes = dict(self.output_dtypes(info))
        dtypes.update(self.extra_output_dtypes())
        return dtypes

    def probabilities(self, outputs: torch.Tensor, info: ModelInfo) -> torch.Tensor:
        """Raw outputs ``(..., num_outputs)`` as what they mean to a reader.

        Softmax for single-label classifiers, sigmoid per label for multi-label ones, the
        values themselves for regression, a softmax per target for multi-head models. Long
        documents are aggregated in this space; :meth:`outputs_from_probabilities` undoes it.
        """
        if info.problem_type == "regression":
            return outputs
        if info.problem_type == "multi_label_classification":
            return torch.sigmoid(outputs)
        if info.problem_type == "multi_head":
            sizes = list(_target_sizes(info))
            return torch.cat([torch.softmax(part, dim=-1) for part in torch.split(outputs, sizes, dim=-1)], dim=-1)
        return torch.softmax(outputs, dim=-1)

    def outputs_from_probabilities(self, probabilities: torch.Tensor, info: ModelInfo) -> torch.Tensor:
        """Raw outputs whose :meth:`probabilities` are ``probabilities`` (softmax: up to a
        renormalization, as ``log p`` is used).

        Lets a subclass's :meth:`postprocess`, written for raw outputs, read aggregated
        window probabilities.
        """
        if info.problem_type == "regression":
            return probabilities
        if info.problem_type == "multi_label_classification":
            return torch.logit(probabilities)
        return torch.log(probabilities)

    def postprocess(self, outputs: torch.Tensor, valid: np.ndarray, info: ModelInfo, like: Any) -> dict[str, Any]:
        """Turn raw model outputs ``(rows, num_outputs)`` into output columns for ``like``.

        Subclasses override this (and :meth:`output_dtypes`) for other column layouts.
        """
        return self._columns_from_probabilities(self.probabilities(outputs, info), valid, info, like)

    def postprocess_aggregated(
        self,
        probabilities: torch.Tensor,
        single_window_outputs: torch.Tensor,
        valid: np.ndarray,
        info: ModelInfo,
        like: Any,
    ) -> dict[str, Any]:
        """Output columns from per-row aggregated window probabilities (long documents).

        This class writes them as they are (with ``"max"`` a softmax row's scores need not
        sum to 1: each is the highest that label got in any window). A subclass that
        overrides :meth:`postprocess` gets raw outputs: a row that fit in one window gets
        that window's own outputs (so it comes out exactly as with truncation; they are
        NaN in ``single_window_outputs`` for other rows), a longer one its aggregate mapped
        back through :meth:`outputs_from_probabilities`.
        """
        if type(self).postprocess is DistributedDataClassifier.postprocess:
            return self._columns_from_probabilities(probabilities, valid, info, like)
        outputs = self.outputs_from_probabilities(probabilities, info)
        single = ~torch.isnan(single_window_outputs).any(dim=-1)
        outputs[single] = single_window_outputs[single]
        return self.postprocess(outputs, valid, info, like)

    def _columns_from_probabilities(
        self, probabilities: torch.Tensor, valid: np.ndarray, info: ModelInfo, like: Any
    ) -> dict[str, Any]:
        if info.problem_type == "regression":
            if info.num_outputs == 1:
                return {self.label_field: frames.float_column(probabilities[:, 0], valid, like)}
            return {self.label_field: frames.float_list_column(probabilities, valid, like)}
        if info.problem_type == "multi_label_classification":
            chosen = probabilities >= _thresholds(info, probabilities.device)
            columns = {self.label_field: frames.label_list_column(info.labels, chosen, valid, like)}
        else:
            codes = torch.nan_to_num(probabilities, nan=0.0).argmax(dim=-1)
            columns = {self.label_field: frames.label_column(info.labels, codes, valid, like)}
        if self.score_field:
            columns[self.score_field] = frames.float_list_column(probabilities, valid, like)
        return columns

    def extra_columns(
        self,
        probabilities: torch.Tensor | None,
        samples: torch.Tensor | None,
        embeddings: torch.Tensor | None,
        valid: np.ndarray,
        info: ModelInfo,
        like: Any,
    ) -> dict[str, Any]:
        """The uncertainty and embedding columns.

        ``probabilities``: per row, as :meth:`probabilities` gives them (aggregated for long
        documents); ``samples``: ``(k, rows, outputs)`` of the same from the dropout passes.
        """
        columns: dict[str, Any] = {}
        if self.uncertainty:
            if probabilities is not None and self.long_documents == "max" and info.problem_type == "single_label_classification":
                # Maxed softmax rows do not sum to 1; the measures are defined on distributions.
                probabilities = probabilities / probabilities.sum(dim=-1, keepdim=True)
            scores = uncertainty_scores(
                self.uncertainty,
                probabilities,
                multi_label=info.problem_type == "multi_label_classification",
                samples=samples,
            )
            prefix = self._uncertainty_prefix()
            for name, values in scores.items():
                columns[f"{prefix}_{name}"] = frames.float_column(values, valid, like, dtype="float32")
        if self.embedding_field:
            columns[self.embedding_field] = frames.float_list_column(embeddings, valid, like)
        return columns

    def _apply_filter(self, frame: Any, info: ModelInfo) -> Any:
        """Keep rows whose label is in ``filter_by`` (multi-label: any of its labels)."""
        if self.filter_by is None:
            return frame
        multi_label = info.problem_type == "multi_label_classification"
        mask = frames.labels_mask(frame[self.label_field], self.filter_by, multi_label)
        return frame[mask]

    # ------------------------------------------------------------------ applying

    def _batch_settings(self) -> BatchSettings:
        return BatchSettings(
            batch_tokens=self.batch_tokens,
            max_batch_rows=self.max_batch_rows,
            sort_by_length=self.sort_by_length,
            padding_side=self.padding_side,
            autocast=self.autocast,
        )

    def _meta_for(self, frame: Any, classifiers: Sequence[DistributedDataClassifier]) -> Any:
        empty = frame.iloc[:0]
        columns: dict[str, Any] = {}
        for classifier in classifiers:
            for name, dtype in classifier.all_output_dtypes(classifier.describe()).items():
                columns[name] = frames.empty_column(dtype, empty)
        return frames.assign_columns(empty, columns)

    def __call__(self, df: Any) -> Any:
        """Classify ``df``: lazy for a dask DataFrame, eager for pandas or cuDF."""
        return classify(df, [self])

    def __repr__(self) -> str:
        defaults = DistributedDataClassifier.__init__.__kwdefaults__ or {}
        shown = [f"model_identifier={self.model_identifier!r}"] + [
            f"{name}={getattr(self, name)!r}"
            for name, default in defaults.items()
            if hasattr(self, name) and getattr(self, name) != default and name != "model_identifier"
        ]
        return f"{type(self).__name__}({', '.join(shown)})"

    def __getstate__(self) -> dict[str, Any]:
        # The cached ModelInfo is cheap to rebuild and may hold client-only paths.
        state = dict(self.__dict__)
        state["_info"] = None
        return state


def classify(df: Any, classifiers: Sequence[DistributedDataClassifier]) -> Any:
    """Apply several classifiers in one pass over ``df`` and add all their columns.

    Each partition is read once; text is tokenized once per distinct (text column,
    tokenizer, ``max_chars``, max length), and each model runs on its batches. The result
    equals applying the classifiers one after another, in the given order.
    """
    classifiers = list(classifiers)
    if not classifiers:
        raise InputError("classify() needs at least one classifier.")
    for classifier in classifiers:
        if not isinstance(classifier, DistributedDataClassifier):
            raise InputError(f"classify() takes DistributedDataClassifier objects, got {type(classifier).__name__}.")
    outputs = [name for classifier in classifiers for name in classifier.all_output_names()]
    duplicated = sorted({name for name in outputs if outputs.count(name) > 1})
    if duplicated:
        raise InputError(f"Several classifiers would write the column(s) {duplicated}; give them distinct names.")
    columns = list(df.columns)
    for classifier in classifiers:
        classifier.validate(columns)
    function = partial(classify_partition, classifiers=tuple(classifiers))
    if frames.is_dask(df):
        meta = classifiers[0]._meta_for(df._meta, classifiers)
        return df.map_partitions(function, meta=meta)
    return function(df)


def _check_positive_or_none(name: str, value: Any, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InputError(f"{name} must be a positive integer{' or None' if allow_none else ''}, got {value!r}.")


def _names_tuple(value: Any) -> Any:
    """A str or a list of names as a tuple; None stays None, anything else is left for the checks."""
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, tuple)):
        return tuple(value)
    return value


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


def _target_sizes(info: ModelInfo) -> list[int]:
    from ..models.multihead import target_sizes

    return list(target_sizes(info.config).values())


def _thresholds(info: ModelInfo, device: torch.device) -> torch.Tensor:
    value = info.config.get("thresholds", 0.5)
    if isinstance(value, dict):
        value = [float(value.get(label, 0.5)) for label in info.labels]
    return torch.as_tensor(value, dtype=torch.float32, device=device)
