"""NVIDIA NeMo Curator's text classifiers, with NeMo Curator's defaults.

Each class is a :class:`~nemo_cls_dask.classifiers.base.DistributedDataClassifier` whose
defaults (hub id, output columns, ``max_chars``, ``max_seq_length``) are NeMo Curator's;
every option can still be passed, and ``model_identifier=`` points a class at a local
checkpoint folder (or another hub id) instead of its hub repo.

============================  ==============================================  =========  =======  ==========================================
class                         hub id                                          max_chars  max_len  output columns
============================  ==============================================  =========  =======  ==========================================
QualityClassifier             nvidia/quality-classifier-deberta               6000       1024     ``quality_pred``, ``quality_prob``
DomainClassifier              nvidia/domain-classifier                        2000       512      ``domain_pred``
MultilingualDomainClassifier  nvidia/multilingual-domain-classifier           2000       512      ``multilingual_domain_pred``
ContentTypeClassifier         nvidia/content-type-classifier-deberta          5000       1024     ``content_pred``
FineWebEduClassifier          HuggingFaceFW/fineweb-edu-classifier            none       512      ``fineweb-edu-score``, ``-int``
FineWebMixtralEduClassifier   nvidia/nemocurator-fineweb-mixtral-edu-...      none       512      ``fineweb-mixtral-edu-score``, ``-int``, ``-label``
FineWebNemotronEduClassifier  nvidia/nemocurator-fineweb-nemotron-4-edu-...   none       512      ``fineweb-nemotron-edu-score``, ``-int``, ``-label``
============================  ==============================================  =========  =======  ==========================================

(:class:`~nemo_cls_dask.classifiers.prompt_complexity.PromptTaskComplexityClassifier`
lives in its own module.) Differences from NeMo Curator, on purpose: constructors are
keyword-only; nothing is loaded or profiled at construction (options are checked then,
the model's config when the operator is applied); null or blank text gives null outputs;
``classify(ddf, [QualityClassifier(), DomainClassifier()])`` runs several in one pass.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch

from .. import frames
from ..errors import InputError
from ..models.loading import ModelInfo
from .hub import DEFAULT, HubClassifier, pick
from .options import FINEWEB_NEMO_CURATOR_NAMES, adopt_nemo_curator_names, check_filter_labels


# --------------------------------------------------------------------------- DeBERTa heads

DOMAIN_LABELS = (
    "Adult", "Arts_and_Entertainment", "Autos_and_Vehicles", "Beauty_and_Fitness",
    "Books_and_Literature", "Business_and_Industrial", "Computers_and_Electronics", "Finance",
    "Food_and_Drink", "Games", "Health", "Hobbies_and_Leisure", "Home_and_Garden",
    "Internet_and_Telecom", "Jobs_and_Education", "Law_and_Government", "News",
    "Online_Communities", "People_and_Society", "Pets_and_Animals", "Real_Estate", "Science",
    "Sensitive_Subjects", "Shopping", "Sports", "Travel_and_Transportation",
)  # fmt: skip

CONTENT_TYPE_LABELS = (
    "Product/Company/Organization/Personal Websites", "Explanatory Articles", "News", "Blogs",
    "MISC", "Boilerplate Content", "Analytical Exposition", "Online Comments", "Reviews",
    "Books and Literature", "Conversational",
)  # fmt: skip


class QualityClassifier(HubClassifier):
    """Document quality: ``High``, ``Medium`` or ``Low`` (nvidia/quality-classifier-deberta).

    DeBERTa-v3-base with a linear head on the first token. Writes ``quality_pred`` and the
    three probabilities (High, Medium, Low order) to ``quality_prob``; text is cut to 6,000
    characters and 1,024 tokens.
    """

    MODEL_ID = "nvidia/quality-classifier-deberta"
    LABEL_FIELD = "quality_pred"
    SCORE_FIELD = "quality_prob"
    MAX_CHARS = 6000
    MAX_SEQ_LENGTH = 1024
    LABELS = ("High", "Medium", "Low")


class DomainClassifier(HubClassifier):
    """English domain, one of 26 (``Finance``, ``Health``, ...) (nvidia/domain-classifier).

    Writes ``domain_pred`` (and, with ``score_field=``, the 26 probabilities); text is cut
    to 2,000 characters and 512 tokens.
    """

    MODEL_ID = "nvidia/domain-classifier"
    LABEL_FIELD = "domain_pred"
    MAX_CHARS = 2000
    MAX_SEQ_LENGTH = 512
    LABELS = DOMAIN_LABELS


class MultilingualDomainClassifier(HubClassifier):
    """The 26 domains of :class:`DomainClassifier` in 52 languages (mDeBERTa-v3-base).

    Writes ``multilingual_domain_pred`` (NeMo Curator writes ``domain_pred``; pass
    ``label_field="domain_pred"`` for that), so it can run beside :class:`DomainClassifier`
    in one pass.
    """

    MODEL_ID = "nvidia/multilingual-domain-classifier"
    LABEL_FIELD = "multilingual_domain_pred"
    MAX_CHARS = 2000
    MAX_SEQ_LENGTH = 512
    LABELS = DOMAIN_LABELS


class ContentTypeClassifier(HubClassifier):
    """Speech or content type, one of 11 (``News``, ``Online Comments``, ...).

    nvidia/content-type-classifier-deberta; writes ``content_pred``; text is cut to 5,000
    characters (NeMo Curator's Dask-era default; 1.x uses 6,000) and 1,024 tokens.
    """

    MODEL_ID = "nvidia/content-type-classifier-deberta"
    LABEL_FIELD = "content_pred"
    MAX_CHARS = 5000
    MAX_SEQ_LENGTH = 1024
    LABELS = CONTENT_TYPE_LABELS


# --------------------------------------------------------------------------- FineWeb-Edu

QUALITY_LABELS = ("low_quality", "high_quality")
#: Score at and above which the ``-label`` column says ``high_quality``.
HIGH_QUALITY_THRESHOLD = 2.5
#: Scores are clipped to this range (the annotation scale of FineWeb-Edu).
SCORE_RANGE = (0.0, 5.0)


class FineWebEduClassifierBase(HubClassifier):
    """Educational value from 0 to 5: a one-output regression model (BERT-style encoder).

    Columns: ``score_field`` (float32, the model's output clipped to [0, 5]),
    ``int_score_field`` (nullable ``Int64``, the clipped score rounded half to even) and,
    if ``label_field`` is set, ``"high_quality"`` where the score is >= 2.5, else
    ``"low_quality"``. Rows with null or blank text get nulls in all of them.

    ``filter_by`` keeps rows by that label (``["high_quality"]``), so it needs
    ``label_field``; to keep rows by score, filter the score column yourself.
    """

    label_field_optional = True
    own_columns = True
    SCORE_FIELD: ClassVar[str] = "score"
    INT_SCORE_FIELD: ClassVar[str] = "score-int"
    LABEL_FIELD: ClassVar[str | None] = None
    MAX_SEQ_LENGTH = 512

    def __init__(
        self,
        *,
        score_field: str = DEFAULT,
        int_score_field: str = DEFAULT,
        label_field: str | None = DEFAULT,
        **options: Any,
    ) -> None:
        chosen = {"score_field": score_field, "int_score_field": int_score_field, "label_field": label_field}
        adopt_nemo_curator_names(chosen, options, DEFAULT, FINEWEB_NEMO_CURATOR_NAMES)
        self.int_score_field = pick(chosen["int_score_field"], self.INT_SCORE_FIELD)
        super().__init__(score_field=chosen["score_field"], label_field=chosen["label_field"], **options)

    def _check_options(self) -> None:
        for name in ("score_field", "int_score_field"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise InputError(f"{name} must be a non-empty column name, got {value!r}.")
        super()._check_options()
        if self.filter_by is not None:
            if self.label_field is None:
                raise InputError(
                    f"filter_by keeps rows by the quality label, and {type(self).__name__} writes no "
                    f"label column here: pass label_field='<column>' too (labels "
                    f"{list(QUALITY_LABELS)}), or filter the score column '{self.score_field}' yourself."
                )
            unknown = [label for label in self.filter_by if label not in QUALITY_LABELS]
            if unknown:
                raise InputError(f"filter_by labels {unknown} are not quality labels; choose from {list(QUALITY_LABELS)}.")

    def check_model(self, info: ModelInfo) -> None:
        if info.num_outputs != 1 or info.layout == "multihead":
            raise InputError(
                f"{type(self).__name__} needs a one-output regression checkpoint "
                f"(BertForSequenceClassification with num_labels=1); {info.path} has "
                f"{info.num_outputs} outputs ({info.problem_type})."
            )

    def output_names(self) -> list[str]:
        return [self.score_field, self.int_score_field] + ([self.label_field] if self.label_field else [])

    def summary_column(self) -> str:
        return self.int_score_field

    def output_dtypes(self, info: ModelInfo) -> dict[str, Any]:
        dtypes: dict[str, Any] = {self.score_field: np.dtype("float32"), self.int_score_field: pd.Int64Dtype()}
        if self.label_field:
            dtypes[self.label_field] = frames.LABEL_DTYPE
        return dtypes

    def postprocess(self, outputs: torch.Tensor, valid: np.ndarray, info: ModelInfo, like: Any) -> dict[str, Any]:
        low, high = SCORE_RANGE
        # Invalid rows are NaN; fill them so the integer cast is defined (they come out null).
        score = torch.nan_to_num(outputs[:, 0].float().clamp(low, high), nan=0.0)
        columns = {
            self.score_field: frames.float_column(score, valid, like),
            self.int_score_field: frames.int_column(torch.round(score).to(torch.int64), valid, like),
        }
        if self.label_field:
            codes = (score >= HIGH_QUALITY_THRESHOLD).to(torch.int64)
            columns[self.label_field] = frames.label_column(QUALITY_LABELS, codes, valid, like)
        return columns

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f", int_score_field={self.int_score_field!r})"


class FineWebEduClassifier(FineWebEduClassifierBase):
    """Hugging Face's FineWeb-Edu classifier (HuggingFaceFW/fineweb-edu-classifier).

    Writes ``fineweb-edu-score`` and ``fineweb-edu-score-int``; pass
    ``label_field="fineweb-edu-score-label"`` for the high/low quality label as well.
    """

    MODEL_ID = "HuggingFaceFW/fineweb-edu-classifier"
    SCORE_FIELD = "fineweb-edu-score"
    INT_SCORE_FIELD = "fineweb-edu-score-int"


class FineWebMixtralEduClassifier(FineWebEduClassifierBase):
    """FineWeb-Edu trained on Mixtral 8x22B annotations (nvidia/nemocurator-fineweb-mixtral-edu-classifier).

    Writes ``fineweb-mixtral-edu-score``, ``-int`` and ``-label``.
    """

    MODEL_ID = "nvidia/nemocurator-fineweb-mixtral-edu-classifier"
    SCORE_FIELD = "fineweb-mixtral-edu-score"
    INT_SCORE_FIELD = "fineweb-mixtral-edu-score-int"
    LABEL_FIELD = "fineweb-mixtral-edu-score-label"


class FineWebNemotronEduClassifier(FineWebEduClassifierBase):
    """FineWeb-Edu trained on Nemotron-4-340B annotations (nvidia/nemocurator-fineweb-nemotron-4-edu-classifier).

    Writes ``fineweb-nemotron-edu-score``, ``-int`` and ``-label``.
    """

    MODEL_ID = "nvidia/nemocurator-fineweb-nemotron-4-edu-classifier"
    SCORE_FIELD = "fineweb-nemotron-edu-score"
    INT_SCORE_FIELD = "fineweb-nemotron-edu-score-int"
    LABEL_FIELD = "fineweb-nemotron-edu-score-label"


__all__ = ["DEFAULT", "HubClassifier", "check_filter_labels"]  # kept here for old imports
