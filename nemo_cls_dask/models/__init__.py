"""Checkpoint resolution, the hub-layout head model, and the per-process model registry."""

from .heads import BackboneHeadModel
from .loading import ModelInfo, describe_model, get_model, load_counts

__all__ = ["BackboneHeadModel", "ModelInfo", "describe_model", "get_model", "load_counts"]
