"""Inference: DeBERTa's relative-position projections computed once per model, not per batch.

DeBERTa-v2/v3 attention adds content-to-position and position-to-content scores. For them
every layer projects the (layer-normed) relative-position embeddings, ``2 x position_buckets``
rows (512 for DeBERTa-v3), through its query and key projections, on every forward call. The
weights do not change during inference, so these projections are the same for every batch.
They cost ``2 x 512 x hidden^2`` per layer against ``12 x tokens x hidden^2`` for the rest of
the layer's linear work: about 14% of it for one 512-token row per batch, which is what the
CPU attention cap (:mod:`nemo_cls_dask.batching`) gives long documents.

:func:`cache_position_projections` makes each encoder hand out one stored copy of its
relative embeddings, and makes the projections that receive them return the result of their
first call whenever they are given that stored copy again. Any other input (hidden states)
and any call with gradients enabled goes through the plain layer, so the model's outputs are
bit-identical to the uncached model's. A stored result is keyed by the autocast state, the
device and the weights' version counters, so an in-place change to a weight or a different
autocast dtype computes afresh.

Only the registry's inference models (:func:`nemo_cls_dask.models.loading.get_model`) get
this; models being trained never do. The memory cost is two ``512 x hidden`` tensors per
layer and autocast dtype (36 MiB for DeBERTa-v3-base in fp32).
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

__all__ = ["cache_position_projections"]


def _autocast_key(device: torch.device) -> tuple[Any, ...]:
    kind = device.type
    if torch.is_autocast_enabled(kind):
        return (kind, torch.get_autocast_dtype(kind))
    return (kind, None)


def _shares_storage(tensor: torch.Tensor, stored: torch.Tensor) -> bool:
    return tensor.device == stored.device and tensor.untyped_storage().data_ptr() == stored.untyped_storage().data_ptr()


def _stored_rel_embedding(encoder: nn.Module, compute: Callable[[], Any], stored: dict[tuple[Any, ...], torch.Tensor]):
    """A replacement ``get_rel_embedding``: one stored tensor per autocast state, while no
    gradients are taken (its parameters' versions are part of the key)."""

    def get_rel_embedding() -> Any:
        if torch.is_grad_enabled():
            return compute()
        weight = encoder.rel_embeddings.weight
        key = (*_autocast_key(weight.device), weight._version, *(p._version for p in _norm_parameters(encoder)))
        found = stored.get(key)
        if found is None:
            found = compute()
            if found is None:
                return None
            stored.clear()  # one entry: a changed weight or autocast dtype replaces the old one
            stored[key] = found
        return found

    return get_rel_embedding


def _norm_parameters(encoder: nn.Module) -> list[torch.Tensor]:
    norm = getattr(encoder, "LayerNorm", None)
    return list(norm.parameters()) if isinstance(norm, nn.Module) else []


def _cached_projection(linear: nn.Linear, stored: dict[tuple[Any, ...], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """A replacement ``forward`` for a projection that also receives the relative embeddings."""
    plain = linear.forward
    results: dict[tuple[Any, ...], torch.Tensor] = {}

    def forward(hidden: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() or not stored:
            return plain(hidden)
        embedding = next(iter(stored.values()))
        if not _shares_storage(hidden, embedding):
            return plain(hidden)
        key = (_autocast_key(hidden.device), tuple(hidden.shape), hidden.stride(), hidden.storage_offset(),
               embedding.data_ptr(), linear.weight._version, None if linear.bias is None else linear.bias._version)
        found = results.get(key)
        if found is None:
            found = plain(hidden)
            if len(results) > 8:  # stale keys (an old embedding, another dtype): bounded
                results.clear()
            results[key] = found
        return found

    return forward


def cache_position_projections(model: nn.Module) -> int:
    """Cache, in place, the relative-position projections of every DeBERTa-v2/v3 encoder in
    ``model``; returns how many attention layers were changed (0 for other architectures)."""
    try:
        from transformers.models.deberta_v2 import modeling_deberta_v2 as deberta
    except ImportError:  # pragma: no cover - transformers always ships it
        return 0
    changed = 0
    for encoder in model.modules():
        if not isinstance(encoder, deberta.DebertaV2Encoder) or not getattr(encoder, "relative_attention", False):
            continue
        stored: dict[tuple[Any, ...], torch.Tensor] = {}
        encoder.get_rel_embedding = _stored_rel_embedding(encoder, encoder.get_rel_embedding, stored)
        for attention in encoder.modules():
            if not isinstance(attention, deberta.DisentangledSelfAttention):
                continue
            names = ("query_proj", "key_proj") if attention.share_att_key else ("pos_query_proj", "pos_key_proj")
            for name in names:
                linear = getattr(attention, name, None)
                if isinstance(linear, nn.Linear):
                    linear.forward = _cached_projection(linear, stored)  # an instance attribute: state_dict unchanged
            changed += 1
    return changed
