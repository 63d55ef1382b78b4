"""``DistributedDataClassifier``: a transformer classifier as a DataFrame operator.

``classifier(ddf)`` returns a lazy dask DataFrame with the same partitions, index and
columns plus the classifier's output columns; ``classifier(pdf)`` (pandas or cuDF) does the
same eagerly. Everything that can be wrong with the options, the frame or the model is
checked when the operator is applied, from the model's config files alone (no weights are
loaded on the client). ``classify(ddf, [clf1, clf2, ...])`` runs several in one pass.

The contract with the partition function (:mod:`~nemo_cls_dask.classifiers.partition`)
and the hooks a subclass may override are listed in ``docs/architecture.md`` ("Operator
layer"); what a model's outputs mean belongs to its :mod:`~nemo_cls_dask.problems` type.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from .. import frames
from ..batching import DEFAULT_MAX_BATCH_ROWS
from ..engine import AUTOCAST_CHOICES, BatchSettings, cpu_has_fast_bf16
from ..errors import InputError
from ..models.loading import ModelInfo, describe_model
from ..problems import ProblemType, get_problem, problem_of
from .graph import classify_dask
from .options import (
    LONG_DOCUMENT_MODES,
    PADDING_SIDES,
    SCORE_FORMATS,
    adopt_nemo_curator_names,
    check_filter_labels,
    check_extra_options,
    check_positive_or_none,
    config_has_dropout,
    names_tuple,
)
from .partition import classify_partition

__all__ = ["LONG_DOCUMENT_MODES", "PADDING_SIDES", "SCORE_FORMATS", "DistributedDataClassifier", "classify", "config_has_dropout"]

_NOT_GIVEN: Any = object()


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
        Optional output column with one float32 probability per label, in id order: a
        ``list<float32>`` column whose ``i``-th value belongs to ``describe().labels[i]``
        (e.g. ``dict(zip(clf.describe().labels, row))``), unless ``score_format``.
    score_format
        ``"list"`` (default): one list column as above. ``"columns"``: one float32 column
        per label instead, named ``f"{score_field}_{label}"`` (pandas- and parquet-friendly,
        selectable by name).
    filter_by
        Keep only rows whose predicted label is one of these (rows with null text drop).
    max_chars
        Cut text to this many characters before tokenizing (None: 32 characters per token
        of the max length, 64 times that with long-document windows; see
        :func:`~nemo_cls_dask.tokenization.default_max_chars`).
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
    model_inference_batch_size
        NeMo Curator's setting (``batch_size`` in its Dask era): rows per forward pass, as
        many as this whatever their length (sorted rows, each batch padded to its own
        longest). Sets ``max_batch_rows`` and, unless ``batch_tokens`` is given, a token
        budget of this many full windows. None (default): the token budget decides, which
        keeps memory per batch steady when text lengths vary.
    autocast
        ``True``: bf16 (or fp16) on GPU; on CPU, bf16 where the CPU has native bf16 matrix
        instructions (AVX512-BF16 or AMX), else fp32 (``NEMO_CLS_DASK_CPU_BF16=0`` in the
        workers' environment keeps CPUs at fp32). ``"bf16"``/``"fp16"`` force a reduced
        precision (also on CPU), ``False`` forces fp32.
    deterministic
        True: every row's outputs are the same whatever the partitioning, the other rows
        and the machine's bf16 support: fp32 (no autocast) and each row in a forward pass
        of its own (no padding, nothing shared with other rows). Slower (see
        BENCHMARKS.md); by default results can move in the last float bits with batching
        (and by up to about 1e-2 where ``autocast`` picks bf16).
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
    problem_type
        How to read the model's outputs: None (default) for the checkpoint's own
        ``problem_type``, else a name (``"multi_label"`` or
        ``"multi_label_classification"``, ...) or a :class:`~nemo_cls_dask.problems.ProblemType`,
        e.g. for a transformers checkpoint trained multi-label whose config does not say so.
    **nemo_curator_names
        NeMo Curator's names for the options above are accepted, so its code runs
        unchanged: ``pred_column`` (``label_field``), ``prob_column`` (``score_field``),
        ``model_inference_batch_size`` / ``batch_size``, ``has_seq_order``
        (``sort_by_length``), ``device_type`` (``device``).
    """

    #: True where the label column may be switched off (``label_field=None``), as for the
    #: FineWeb-Edu score, whose outputs are score columns.
    label_field_optional: ClassVar[bool] = False
    #: True for a subclass that writes its own set of columns: it overrides
    #: :meth:`output_names`, :meth:`output_dtypes` and :meth:`postprocess` (which then gets
    #: raw outputs, also for long documents), and the uncertainty and embedding columns are
    #: added after its own ones. False: the label/score columns of the problem type.
    own_columns: ClassVar[bool] = False

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
        model_inference_batch_size: int | None = None,
        autocast: bool | str = True,
        deterministic: bool = False,
        device: str = "auto",
        cache_dir: str | None = None,
        uncertainty: Sequence[str] | None = None,
        dropout_samples: int | None = None,
        embedding_field: str | None = None,
        long_documents: str = "truncate",
        chunk_overlap: int = 64,
        score_format: str = "list",
        problem_type: str | ProblemType | None = None,
        **nemo_curator_names: Any,
    ) -> None:
        chosen = {"label_field": label_field, "score_field": score_field, "sort_by_length": sort_by_length,
                  "device": device, "model_inference_batch_size": model_inference_batch_size}
        defaults = DistributedDataClassifier.__init__.__kwdefaults__
        given = {name: (value if value != defaults[name] else _NOT_GIVEN) for name, value in chosen.items()}
        adopt_nemo_curator_names(given, nemo_curator_names, _NOT_GIVEN)
        if nemo_curator_names:
            raise InputError(
                f"{type(self).__name__} got unknown option(s) {sorted(nemo_curator_names)}; see "
                f"help({type(self).__name__}) for its options (NeMo Curator's names are accepted too)."
            )
        chosen = {name: (chosen[name] if value is _NOT_GIVEN else value) for name, value in given.items()}
        self.model_identifier = os.fspath(model_identifier) if model_identifier is not None else None
        self.text_field = text_field
        self.label_field = chosen["label_field"]
        self.score_field = chosen["score_field"]
        self.filter_by = filter_by
        self.max_chars = max_chars
        self.max_seq_length = max_seq_length
        self.padding_side = padding_side
        self.sort_by_length = chosen["sort_by_length"]
        self.batch_tokens = batch_tokens
        self.max_batch_rows = max_batch_rows
        self.model_inference_batch_size = chosen["model_inference_batch_size"]
        self.autocast = autocast
        self.deterministic = deterministic
        self.device = chosen["device"]
        self.cache_dir = cache_dir
        self.uncertainty = uncertainty
        self.dropout_samples = dropout_samples
        self.embedding_field = embedding_field
        self.long_documents = long_documents
        self.chunk_overlap = chunk_overlap
        self.score_format = score_format
        self.problem_type = problem_type
        self._info: ModelInfo | None = None
        self._normalize_options()
        self._check_options()

    def _normalize_options(self) -> None:
        """Bring list-like and path-like options to one form (also after :meth:`with_options`)."""
        filter_by = self.filter_by
        self.filter_by = tuple([filter_by] if isinstance(filter_by, str) else filter_by) if filter_by is not None else None
        self.cache_dir = os.fspath(self.cache_dir) if self.cache_dir is not None else None
        self.uncertainty = names_tuple(self.uncertainty)
        if self.problem_type is not None:
            self.problem_type = get_problem(self.problem_type)

    def with_options(self, **changes: Any) -> DistributedDataClassifier:
        """A checked copy of this operator with some options changed; this one is untouched.

        ``clf.with_options(uncertainty=["margin"], filter_by=None)``. Unknown names are an
        error; the copy's options are checked as the constructor checks them.
        """
        options = {name for name in vars(self) if not name.startswith("_")}
        unknown = sorted(set(changes) - options)
        if unknown:
            raise InputError(f"with_options got unknown option(s) {unknown}; {type(self).__name__} has {sorted(options)}.")
        clone = copy.copy(self)
        vars(clone).update(changes)
        clone._reset_model_state()
        clone._normalize_options()
        clone._check_options()
        return clone

    def _reset_model_state(self) -> None:
        """Forget what was derived from the model and the options (a copy re-derives it)."""
        self._info = None

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
        check_extra_options(self)
        names = self.all_output_names()
        if len(set(names)) != len(names):
            raise InputError(f"Output column names must differ, got {names}.")
        if self.filter_by is not None and (not self.filter_by or not all(isinstance(x, str) for x in self.filter_by)):
            raise InputError(f"filter_by must be a non-empty list of label names, got {self.filter_by!r}.")
        for name in ("max_chars", "max_seq_length", "batch_tokens"):
            check_positive_or_none(name, getattr(self, name))
        check_positive_or_none("max_batch_rows", self.max_batch_rows, allow_none=False)
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
        if self.score_format != "list" and (self.own_columns or self.score_field is None):
            raise InputError(
                f"score_format={self.score_format!r} shapes the score_field column; "
                + ("set score_field too." if not self.own_columns else f"{type(self).__name__} writes its own columns.")
            )

    def describe(self) -> ModelInfo:
        """The model's labels, problem type and lengths, read from its config (cached once checked)."""
        if self._info is None:
            info = describe_model(self.model_identifier, self.cache_dir)
            self.check_model(info)
            self._check_extras(info)
            self._info = info
        return self._info

    def problem(self, info: ModelInfo) -> ProblemType:
        """How this operator reads ``info``'s outputs: ``problem_type=``, else the checkpoint's own."""
        return self.problem_type if self.problem_type is not None else problem_of(info)

    def _check_extras(self, info: ModelInfo) -> None:
        """Check the uncertainty and long-document options against the model's config."""
        if self.uncertainty:
            problem = self.problem(info)
            unsupported = [name for name in self.uncertainty if name not in problem.uncertainty_measures]
            if unsupported and not problem.uncertainty_measures:
                raise InputError(
                    f"uncertainty columns need a single-label, multi-label or regression model; {info.path} "
                    f"is a {info.layout!r} checkpoint ({problem.name})."
                )
            if unsupported:
                raise InputError(
                    f"{unsupported} cannot be measured on {info.path}, a {problem.name} model (they need class "
                    f"probabilities); it supports {list(problem.uncertainty_measures)}"
                    + (" ('mc_variance' with dropout_samples)." if "mc_variance" in problem.uncertainty_measures else ".")
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

    def check_model(self, info: ModelInfo) -> None:
        """Hook: raise :class:`InputError` if this operator cannot read ``info``'s model.

        Called once, on the client, when the operator is applied. The base checks the
        problem type (and ``problem_type=`` against the layout), ``filter_by`` and
        ``score_field``; subclasses with other outputs replace or extend it.
        """
        if self.problem_type is not None and info.layout in ("multihead", "composed"):
            raise InputError(f"problem_type= cannot re-read a {info.layout!r} checkpoint ({info.path}); drop it.")
        problem = self.problem(info)
        if not problem.operator_columns:
            raise InputError(
                f"{info.path} is a {info.layout!r} checkpoint ({info.problem_type}) whose outputs "
                f"{type(self).__name__} cannot read; use the classifier made for it (for "
                f"'target_sizes' multi-head checkpoints: PromptTaskComplexityClassifier)."
            )
        problem.check_model(info)
        if self.filter_by is not None:
            if not problem.is_classifier:
                raise InputError(f"filter_by needs a classifier; {info.path} is a {problem.name} model.")
            check_filter_labels(self.filter_by, info.labels, info.path)
        if self.score_field is not None and not problem.is_classifier:
            raise InputError(f"score_field is for classifiers; a {problem.name} model writes its value to label_field.")

    def validate(self, columns: Sequence[str]) -> ModelInfo:
        """Check this operator against a frame's columns and its model; return the model info."""
        columns = list(columns)
        if self.text_field not in columns:
            raise InputError(f"Text column {self.text_field!r} is not in the DataFrame; its columns are {columns}.")
        if columns.count(self.text_field) > 1:
            raise InputError(
                f"The DataFrame has {columns.count(self.text_field)} columns named {self.text_field!r}; "
                f"the text column must be one column: rename or drop the others first."
            )
        info = self.describe()
        clashes = [name for name in self.all_output_names() if name in columns]
        if clashes:
            raise InputError(
                f"Output column(s) {clashes} already exist in the DataFrame; pass other names "
                f"(label_field=..., score_field=...) or drop them first."
            )
        return info

    # ------------------------------------------------------------------ outputs

    def output_names(self) -> list[str]:
        """Hook: names of the columns this classifier adds (label, scores, uncertainty, embedding).

        A subclass with ``own_columns`` lists its own columns only; :meth:`all_output_names`
        adds the uncertainty and embedding columns after them.
        """
        return [self.label_field] + self.score_names() + self.extra_output_names()

    def score_names(self) -> list[str]:
        """The score columns: ``[score_field]``, or one per label with ``score_format="columns"``
        (known once the model is described; before that, ``[score_field]``)."""
        if not self.score_field:
            return []
        if self.score_format == "columns" and self._info is not None and self._info.labels:
            return [f"{self.score_field}_{label}" for label in self._info.labels]
        return [self.score_field]

    def extra_output_names(self) -> list[str]:
        """The uncertainty and embedding columns, which every classifier can add."""
        prefix = self._uncertainty_prefix()
        names = [f"{prefix}_{name}" for name in self.uncertainty or ()]
        return names + ([self.embedding_field] if self.embedding_field else [])

    def all_output_names(self) -> list[str]:
        """Every column this classifier adds (duplicates kept, so that clashes are found)."""
        if not self.own_columns:
            return self.output_names()
        return self.output_names() + self.extra_output_names()

    def _uncertainty_prefix(self) -> str:
        """Uncertainty columns are named after the label column, else the subclass's first column."""
        if self.label_field or not self.own_columns:
            return self.label_field
        return self.output_names()[0]

    def summary_column(self) -> str:
        """Hook: the output column whose value counts summarize a run (the CLI prints them)."""
        return self.label_field

    def output_dtypes(self, info: ModelInfo) -> dict[str, Any]:
        """Hook: column name -> dtype of what :meth:`postprocess` returns (used to build meta)."""
        dtypes = {self.label_field: self.problem(info).label_dtype(info)}
        for name in self.score_names():
            dtypes[name] = frames.SCORE_LIST_DTYPE if self.score_format == "list" else np.dtype("float32")
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
        """Raw outputs ``(..., num_outputs)`` as what they mean to a reader (the problem type's).

        Long documents are aggregated in this space; :meth:`outputs_from_probabilities` undoes it.
        """
        return self.problem(info).probabilities(outputs, info)

    def outputs_from_probabilities(self, probabilities: torch.Tensor, info: ModelInfo) -> torch.Tensor:
        """Raw outputs whose :meth:`probabilities` are ``probabilities`` (softmax: up to a
        renormalization), so that a subclass's :meth:`postprocess` can read aggregated windows."""
        return self.problem(info).outputs_from_probabilities(probabilities, info)

    def postprocess(self, outputs: torch.Tensor, valid: np.ndarray, info: ModelInfo, like: Any) -> dict[str, Any]:
        """Hook: raw model outputs ``(rows, num_outputs)`` -> output columns for ``like``.

        Subclasses with ``own_columns = True`` override this (and :meth:`output_dtypes`).
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
        sum to 1: each is the highest that label got in any window). A subclass with
        ``own_columns`` gets raw outputs in :meth:`postprocess`: a row that fit in one window
        gets that window's own outputs (so it comes out exactly as with truncation; they
        are NaN in ``single_window_outputs`` for other rows), a longer one its aggregate
        mapped back through :meth:`outputs_from_probabilities`.
        """
        if not self.own_columns:
            return self._columns_from_probabilities(probabilities, valid, info, like)
        outputs = self.outputs_from_probabilities(probabilities, info)
        single = ~torch.isnan(single_window_outputs).any(dim=-1)
        outputs[single] = single_window_outputs[single]
        return self.postprocess(outputs, valid, info, like)

    def _columns_from_probabilities(
        self, probabilities: torch.Tensor, valid: np.ndarray, info: ModelInfo, like: Any
    ) -> dict[str, Any]:
        columns = {self.label_field: self.problem(info).label_column(probabilities, valid, info, like)}
        if self.score_field and self.score_format == "list":
            columns[self.score_field] = frames.float_list_column(probabilities, valid, like)
        elif self.score_field:
            for index, name in enumerate(self.score_names()):
                columns[name] = frames.float_column(probabilities[:, index], valid, like, dtype="float32")
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
            problem = self.problem(info)
            if probabilities is not None and self.long_documents == "max":
                # Maxed softmax rows do not sum to 1; the measures are defined on distributions.
                probabilities = problem.as_distribution(probabilities)
            prefix = self._uncertainty_prefix()
            for name, values in problem.uncertainty(self.uncertainty, probabilities, samples).items():
                columns[f"{prefix}_{name}"] = frames.float_column(values, valid, like, dtype="float32")
        if self.embedding_field:
            columns[self.embedding_field] = frames.float_list_column(embeddings, valid, like)
        return columns

    def apply_filter(self, frame: Any, problem: ProblemType) -> Any:
        """Keep rows whose label is in ``filter_by`` (multi-label: any of its labels), in order."""
        if self.filter_by is None:
            return frame
        mask = problem.keep_mask(frame[self.label_field], self.filter_by)
        if frames.is_cudf(frame):
            return frame[mask]
        return frame[np.asarray(mask, dtype=bool)]

    # ------------------------------------------------------------------ applying

    def batch_settings(self, info: ModelInfo | None = None) -> BatchSettings:
        """How the engine groups this operator's rows into forward passes (``info``: the
        model, for the window length ``model_inference_batch_size`` budgets with)."""
        if self.deterministic:
            # One row per pass: no padding and nothing shared with other rows, so a row's
            # outputs depend on nothing but the row; fp32, as bf16 rounding moves with shapes.
            return BatchSettings(batch_tokens=self.batch_tokens, max_batch_rows=1, sort_by_length=self.sort_by_length,
                                 padding_side=self.padding_side, autocast=False)
        rows, budget = self.max_batch_rows, self.batch_tokens
        if self.model_inference_batch_size is not None:
            rows = self.model_inference_batch_size
            if budget is None:
                window = self.max_seq_length or (info.max_len if info is not None else 512)
                budget = rows * window
        return BatchSettings(batch_tokens=budget, max_batch_rows=rows, sort_by_length=self.sort_by_length,
                             padding_side=self.padding_side, autocast=self.autocast)

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
    equals applying the classifiers one after another, in the given order. On dask the
    models read only the text columns, and selecting other columns (or ``len``) does not
    run them (see :func:`~nemo_cls_dask.classifiers.graph.classify_dask`).
    """
    classifiers = list(classifiers)
    if not classifiers:
        raise InputError("classify() needs at least one classifier.")
    for classifier in classifiers:
        if not isinstance(classifier, DistributedDataClassifier):
            raise InputError(f"classify() takes DistributedDataClassifier objects, got {type(classifier).__name__}.")
    columns = list(df.columns)
    for classifier in classifiers:
        classifier.validate(columns)
    outputs = [name for classifier in classifiers for name in classifier.all_output_names()]
    duplicated = sorted({name for name in outputs if outputs.count(name) > 1})
    if duplicated:
        raise InputError(f"Several classifiers would write the column(s) {duplicated}; give them distinct names.")
    if frames.is_dask(df):
        return classify_dask(df, classifiers)
    return classify_partition(df, classifiers)

