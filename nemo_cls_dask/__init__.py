"""Transformer text classifiers as Dask DataFrame operators, on CPU and GPU.

>>> from nemo_cls_dask import DistributedDataClassifier, get_client
>>> client = get_client()
>>> out = DistributedDataClassifier(model_identifier="debian-topics", label_field="topic")(ddf)
"""

from . import progress  # noqa: F401  (first: quiets tqdm.auto's widget warning before dependencies import it)
from .active import ActiveLearner, query
from .classifiers import (
    ComposedClassifier,
    ContentTypeClassifier,
    DebianTopicClassifier,
    DistributedDataClassifier,
    DomainClassifier,
    FineWebEduClassifier,
    FineWebMixtralEduClassifier,
    FineWebNemotronEduClassifier,
    HubClassifier,
    MultilingualDomainClassifier,
    PromptTaskComplexityClassifier,
    QualityClassifier,
    classify,
)
from .cluster import get_client
from .distill import DistillResult, distill
from .engine import engine_stats, reset_engine_stats
from .files import ClassifyFilesResult, FileOutcome, classify_files
from .errors import InputError, ModelLoadError, ModelNotFoundError, NemoClsDaskError
from .lightweight import KimCNNClassifier, SklearnOperator, SklearnTextClassifier, TextVocab
from .models import BackboneHeadModel, describe_model, load_counts
from .models.composed import ComposedModel, compose
from .report import write_report
from .train import TextClassifier, TrainingError

__version__ = "0.1.0"

__all__ = [
    "ActiveLearner",
    "ClassifyFilesResult",
    "FileOutcome",
    "BackboneHeadModel",
    "ComposedClassifier",
    "ComposedModel",
    "ContentTypeClassifier",
    "DebianTopicClassifier",
    "DistillResult",
    "DistributedDataClassifier",
    "DomainClassifier",
    "FineWebEduClassifier",
    "FineWebMixtralEduClassifier",
    "FineWebNemotronEduClassifier",
    "HubClassifier",
    "MultilingualDomainClassifier",
    "PromptTaskComplexityClassifier",
    "QualityClassifier",
    "SklearnOperator",
    "SklearnTextClassifier",
    "TextClassifier",
    "TextVocab",
    "TrainingError",
    "InputError",
    "KimCNNClassifier",
    "ModelLoadError",
    "ModelNotFoundError",
    "NemoClsDaskError",
    "classify",
    "classify_files",
    "compose",
    "describe_model",
    "distill",
    "engine_stats",
    "get_client",
    "load_counts",
    "query",
    "reset_engine_stats",
    "write_report",
]
