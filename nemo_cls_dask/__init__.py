"""Transformer text classifiers as Dask DataFrame operators, on CPU and GPU.

>>> from nemo_cls_dask import DistributedDataClassifier, get_client
>>> client = get_client()
>>> out = DistributedDataClassifier(model_identifier="debian-topics", label_field="topic")(ddf)

Public names are imported on first use, so ``import nemo_cls_dask`` stays light.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from . import progress  # noqa: F401  (first: quiets tqdm.auto's widget warning before dependencies import it)

__version__ = "0.1.0"

#: Public name -> the module that defines it. Imported on first use (PEP 562), so that
#: ``import nemo_cls_dask`` and ``nemo-cls-dask --help`` do not load torch, dask or transformers.
_EXPORTS: dict[str, str] = {
    "ActiveLearner": ".active",
    "query": ".active",
    "ComposedClassifier": ".classifiers",
    "ContentTypeClassifier": ".classifiers",
    "DebianTopicClassifier": ".classifiers",
    "DistributedDataClassifier": ".classifiers",
    "DomainClassifier": ".classifiers",
    "FineWebEduClassifier": ".classifiers",
    "FineWebMixtralEduClassifier": ".classifiers",
    "FineWebNemotronEduClassifier": ".classifiers",
    "HubClassifier": ".classifiers",
    "MultilingualDomainClassifier": ".classifiers",
    "PromptTaskComplexityClassifier": ".classifiers",
    "QualityClassifier": ".classifiers",
    "classify": ".classifiers",
    "get_client": ".cluster",
    "engine_stats": ".engine",
    "reset_engine_stats": ".engine",
    "ClassifyFilesResult": ".files",
    "FileOutcome": ".files",
    "classify_files": ".files",
    "InputError": ".errors",
    "ModelLoadError": ".errors",
    "ModelNotFoundError": ".errors",
    "NemoClsDaskError": ".errors",
    "KimCNNClassifier": ".lightweight",
    "SklearnOperator": ".lightweight",
    "SklearnTextClassifier": ".lightweight",
    "TextVocab": ".lightweight",
    "BackboneHeadModel": ".models",
    "describe_model": ".models",
    "load_counts": ".models",
    "ComposedModel": ".models.composed",
    "compose": ".models.composed",
    "TextClassifier": ".train",
    "TrainingError": ".train",
    "DistillResult": ".distillation",
    "distill": ".distillation",
    "write_report": ".report",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        if importlib.util.find_spec(f"{__name__}.{name}") is not None:  # a submodule, as ``nemo_cls_dask.io``
            return importlib.import_module(f"{__name__}.{name}")
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))

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
