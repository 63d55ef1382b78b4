"""Problem types: what a model's raw outputs mean, in one vocabulary.

A problem type is a small stateless object. It owns everything that differs between
single-label classification, multi-label classification, regression and multi-head
models: turning raw outputs (logits) into probabilities (and back), the decision taken
from them (argmax, per-label thresholds, the values themselves), the label column's dtype
and values, which rows ``filter_by`` keeps, and which uncertainty measures apply.

Names: every problem type has a short name (``"single_label"``, as the estimators and the
``train`` command say it) and a config name (``"single_label_classification"``, as
transformers and saved ``config.json`` files say it). :func:`get_problem` accepts both,
and a :class:`ProblemType` instance, so saved configs and user arguments keep working::

    >>> get_problem("multi_label") is get_problem("multi_label_classification")
    True

A new problem type is one subclass decorated with :func:`register_problem`; the operator
(:class:`~nemo_cls_dask.DistributedDataClassifier`) reads it through the methods below
without any change (``problem_type=`` on the operator, or the checkpoint's own
``problem_type``). Tensors may be torch tensors or numpy arrays; what goes in comes out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from . import frames
from .errors import InputError
from .uncertainty import PROBABILITY_MEASURES, uncertainty_scores

if TYPE_CHECKING:
    from .models.loading import ModelInfo


def _torch_in_out(function):
    """Let a method written for torch tensors take and give back numpy arrays too."""

    def wrapper(self, values, *args, **kwargs):
        if isinstance(values, torch.Tensor):
            return function(self, values, *args, **kwargs)
        return function(self, torch.as_tensor(np.asarray(values)), *args, **kwargs).numpy()

    wrapper.__name__ = function.__name__
    wrapper.__qualname__ = function.__qualname__
    wrapper.__doc__ = function.__doc__
    return wrapper


class ProblemType:
    """Base of the problem types: a classifier with one label per row, unless overridden.

    Class attributes (read by the operator and the estimators):

    ``name`` / ``config_name`` / ``aliases``
        The short name, the config name and other accepted spellings.
    ``is_classifier``
        Outputs are labels with probabilities: ``filter_by`` and score columns apply.
    ``multi_label``
        Probabilities are independent yes/no decisions (sigmoid), not one distribution.
    ``uncertainty_measures``
        The ``uncertainty=`` measures that make sense for its outputs.
    ``operator_columns``
        The generic operator can write its columns (False: a dedicated classifier must,
        e.g. :class:`~nemo_cls_dask.PromptTaskComplexityClassifier` for multi-head models).
    """

    name: ClassVar[str] = ""
    config_name: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    is_classifier: ClassVar[bool] = True
    multi_label: ClassVar[bool] = False
    uncertainty_measures: ClassVar[tuple[str, ...]] = (*PROBABILITY_MEASURES, "mc_variance")
    operator_columns: ClassVar[bool] = True

    # ------------------------------------------------------------------ probabilities

    @_torch_in_out
    def probabilities(self, outputs: torch.Tensor, info: ModelInfo | None = None) -> torch.Tensor:
        """Raw outputs ``(..., outputs)`` as what they mean to a reader (here: softmax)."""
        return torch.softmax(outputs, dim=-1)

    @_torch_in_out
    def outputs_from_probabilities(self, probabilities: torch.Tensor, info: ModelInfo | None = None) -> torch.Tensor:
        """Raw outputs whose :meth:`probabilities` are ``probabilities`` (softmax: up to a
        constant per row, as ``log p`` is used)."""
        return torch.log(probabilities)

    @_torch_in_out
    def as_distribution(self, probabilities: torch.Tensor) -> torch.Tensor:
        """Probabilities the uncertainty measures can read: rows that no longer sum to 1
        (windows aggregated by ``max``) are renormalized."""
        return probabilities / probabilities.sum(dim=-1, keepdim=True)

    # ------------------------------------------------------------------ decisions and columns

    def decide(self, probabilities: torch.Tensor, info: ModelInfo | None = None) -> torch.Tensor:
        """The decision per row: here the label id of the highest probability (NaN rows: 0)."""
        return torch.nan_to_num(probabilities, nan=0.0).argmax(dim=-1)

    def label_dtype(self, info: ModelInfo) -> Any:
        """dtype of the operator's label column."""
        return frames.LABEL_DTYPE

    def label_column(self, probabilities: torch.Tensor, valid: np.ndarray, info: ModelInfo, like: Any) -> Any:
        """The label column for ``like``'s rows (null where ``valid`` is False)."""
        return frames.label_column(info.labels, self.decide(probabilities, info), valid, like)

    def keep_mask(self, labels: Any, keep: Sequence[str]) -> Any:
        """Rows of a label column that ``filter_by=keep`` keeps (null rows never; on the device for cuDF)."""
        return frames.labels_mask(labels, keep, multi_label=self.multi_label)

    def uncertainty(
        self, names: Sequence[str], probabilities: torch.Tensor | None, samples: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """The ``uncertainty=`` measures ``{name: (rows,) float32}`` of these probabilities."""
        return uncertainty_scores(names, probabilities, multi_label=self.multi_label, samples=samples)

    # ------------------------------------------------------------------ checks

    def check_model(self, info: ModelInfo) -> None:
        """Raise :class:`InputError` if ``info``'s outputs cannot be read as this problem type."""
        if self.is_classifier and (not info.labels or len(info.labels) != info.num_outputs):
            raise InputError(
                f"{info.path} has {info.num_outputs} outputs and {len(info.labels or ())} label names; "
                f"a {self.name} classifier needs one name per output (config id2label)."
            )

    def __repr__(self) -> str:
        return f"get_problem({self.name!r})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other)

    def __hash__(self) -> int:
        return hash(type(self))

    def __reduce__(self) -> tuple:
        # Instances are stateless: rebuild from the class (which workers import by name).
        return (type(self), ())


_REGISTRY: dict[str, ProblemType] = {}


def register_problem(cls: type[ProblemType]) -> type[ProblemType]:
    """Class decorator: make ``cls`` known to :func:`get_problem` under all its names."""
    problem = cls()
    names = [cls.name, cls.config_name, *cls.aliases]
    if not cls.name or not cls.config_name:
        raise TypeError(f"{cls.__name__} needs a name and a config_name.")
    taken = [name for name in names if name in _REGISTRY and type(_REGISTRY[name]) is not cls]
    if taken:
        raise TypeError(f"Problem type name(s) {taken} are already registered.")
    for name in names:
        _REGISTRY[name] = problem
    return cls


def get_problem(problem: str | ProblemType) -> ProblemType:
    """The problem type named ``problem`` (short or config name), or ``problem`` itself."""
    if isinstance(problem, ProblemType):
        return problem
    try:
        return _REGISTRY[problem]
    except (KeyError, TypeError):
        raise InputError(f"Unknown problem type {problem!r}; choose from {problem_names()}.") from None


def problem_names(config: bool = False) -> list[str]:
    """The registered short names (``config=True``: config names), in registration order."""
    problems = list(dict.fromkeys(_REGISTRY.values()))
    return [p.config_name if config else p.name for p in problems]


# --------------------------------------------------------------------------- the four types


@register_problem
class SingleLabel(ProblemType):
    """One label per row: softmax over the outputs, the label with the highest probability."""

    name = "single_label"
    config_name = "single_label_classification"


@register_problem
class MultiLabel(ProblemType):
    """Any number of labels per row: a sigmoid per output, labels at or above their threshold.

    Thresholds come from the checkpoint's config (``thresholds``: one number, a list in id
    order, or a dict label -> number; missing ones are 0.5).
    """

    name = "multi_label"
    config_name = "multi_label_classification"
    multi_label = True

    @_torch_in_out
    def probabilities(self, outputs: torch.Tensor, info: ModelInfo | None = None) -> torch.Tensor:
        return torch.sigmoid(outputs)

    @_torch_in_out
    def outputs_from_probabilities(self, probabilities: torch.Tensor, info: ModelInfo | None = None) -> torch.Tensor:
        return torch.logit(probabilities)

    @_torch_in_out
    def as_distribution(self, probabilities: torch.Tensor) -> torch.Tensor:
        return probabilities

    def thresholds(self, info: ModelInfo | None, device: torch.device | str = "cpu") -> torch.Tensor:
        """Per-label thresholds from ``info.config["thresholds"]`` (default 0.5)."""
        value = (info.config if info is not None else {}).get("thresholds", 0.5)
        if isinstance(value, dict):
            value = [float(value.get(label, 0.5)) for label in info.labels]
        return torch.as_tensor(value, dtype=torch.float32, device=device)

    def decide(self, probabilities: torch.Tensor, info: ModelInfo | None = None) -> torch.Tensor:
        """A yes/no matrix ``(rows, labels)``: probability at or above the label's threshold."""
        return probabilities >= self.thresholds(info, probabilities.device)

    def label_dtype(self, info: ModelInfo) -> Any:
        return frames.LABEL_LIST_DTYPE

    def label_column(self, probabilities: torch.Tensor, valid: np.ndarray, info: ModelInfo, like: Any) -> Any:
        return frames.label_list_column(info.labels, self.decide(probabilities, info), valid, like)


@register_problem
class Regression(ProblemType):
    """Real values: the outputs themselves (one float32 column, or a list for several targets)."""

    name = "regression"
    config_name = "regression"
    is_classifier = False
    uncertainty_measures = ("mc_variance",)

    @_torch_in_out
    def probabilities(self, outputs: torch.Tensor, info: ModelInfo | None = None) -> torch.Tensor:
        return outputs

    @_torch_in_out
    def outputs_from_probabilities(self, probabilities: torch.Tensor, info: ModelInfo | None = None) -> torch.Tensor:
        return probabilities

    @_torch_in_out
    def as_distribution(self, probabilities: torch.Tensor) -> torch.Tensor:
        return probabilities

    def decide(self, probabilities: torch.Tensor, info: ModelInfo | None = None) -> torch.Tensor:
        return probabilities

    def label_dtype(self, info: ModelInfo) -> Any:
        return np.dtype("float32") if info.num_outputs == 1 else frames.SCORE_LIST_DTYPE

    def label_column(self, probabilities: torch.Tensor, valid: np.ndarray, info: ModelInfo, like: Any) -> Any:
        if info.num_outputs == 1:
            return frames.float_column(probabilities[:, 0], valid, like)
        return frames.float_list_column(probabilities, valid, like)

    def check_model(self, info: ModelInfo) -> None:
        return None


@register_problem
class MultiHead(ProblemType):
    """One softmax per target (``target_sizes`` in the config), e.g. prompt task and complexity.

    The generic operator cannot name its columns; a dedicated classifier does.
    """

    name = "multi_head"
    config_name = "multi_head"
    aliases = ("multihead",)
    uncertainty_measures = ()
    operator_columns = False

    @staticmethod
    def target_sizes(info: ModelInfo) -> list[int]:
        from .models.multihead import target_sizes

        return list(target_sizes(info.config).values())

    @_torch_in_out
    def probabilities(self, outputs: torch.Tensor, info: ModelInfo | None = None) -> torch.Tensor:
        if info is None:
            raise ValueError("multi-head probabilities need the model info (its target sizes)")
        parts = torch.split(outputs, self.target_sizes(info), dim=-1)
        return torch.cat([torch.softmax(part, dim=-1) for part in parts], dim=-1)

    def check_model(self, info: ModelInfo) -> None:
        return None


@register_problem
class Composed(ProblemType):
    """Several named heads side by side (the ``"composed"`` layout), each with its own problem type.

    Each head's slice of the outputs is read by that head's problem type; the generic
    operator cannot name the columns (:class:`~nemo_cls_dask.ComposedClassifier` does).
    """

    name = "composed"
    config_name = "composed"
    uncertainty_measures = ()
    operator_columns = False

    @staticmethod
    def parts(values: torch.Tensor, info: ModelInfo) -> list[tuple[ModelInfo, torch.Tensor]]:
        """``(head info, that head's slice of the last dimension)`` for every head, in order."""
        widths = [component.num_outputs for component in info.components.values()]
        return list(zip(info.components.values(), torch.split(values, widths, dim=-1)))

    @_torch_in_out
    def probabilities(self, outputs: torch.Tensor, info: ModelInfo | None = None) -> torch.Tensor:
        if info is None or not info.components:
            raise ValueError("composed probabilities need the model info (its components)")
        return torch.cat([problem_of(head).probabilities(part, head) for head, part in self.parts(outputs, info)], dim=-1)

    @_torch_in_out
    def outputs_from_probabilities(self, probabilities: torch.Tensor, info: ModelInfo | None = None) -> torch.Tensor:
        if info is None or not info.components:
            raise ValueError("composed outputs need the model info (its components)")
        parts = self.parts(probabilities, info)
        return torch.cat([problem_of(head).outputs_from_probabilities(part, head) for head, part in parts], dim=-1)

    def check_model(self, info: ModelInfo) -> None:
        return None


def problem_of(info: ModelInfo) -> ProblemType:
    """The problem type a checkpoint declares (``info.problem_type``), with a clear error."""
    try:
        return get_problem(info.problem_type)
    except InputError:
        raise InputError(
            f"{info.path} is a {info.layout!r} checkpoint with problem type {info.problem_type!r}, "
            f"which is none of {problem_names(config=True)}."
        ) from None


__all__ = [
    "Composed",
    "MultiHead",
    "MultiLabel",
    "ProblemType",
    "Regression",
    "SingleLabel",
    "get_problem",
    "problem_names",
    "problem_of",
    "register_problem",
]
