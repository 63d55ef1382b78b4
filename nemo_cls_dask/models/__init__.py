"""Checkpoint layouts, their loading, and the per-process model registry.

Importing this package registers the built-in layouts (NVIDIA head, transformers
sequence classification, multi-head, composed); other layouts register themselves
from their own modules (:mod:`nemo_cls_dask.lightweight.checkpoint` for KimCNN).
"""

from . import composed, heads, multihead, sequence_classification  # noqa: F401  (register their layouts)
from .heads import BackboneHeadModel
from .layouts import CheckpointLayout, MarkerLayout, register_layout, registered_layouts
from .loading import ModelInfo, describe_model, get_model, load_counts

__all__ = [
    "BackboneHeadModel",
    "CheckpointLayout",
    "MarkerLayout",
    "ModelInfo",
    "describe_model",
    "get_model",
    "load_counts",
    "register_layout",
    "registered_layouts",
]
