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

import types
from typing import Any

import torch
from torch import nn

__all__ = ["cache_position_projections"]


class _Store(dict):
    """Stored tensors of one encoder. A deep copy of the model starts with an empty store: its
    weights are new tensors whose version counters restart, so old keys could match stale
    values."""

    def __deepcopy__(self, memo: dict[int, Any]) -> "_Store":
        return type(self)()


def _autocast_key(device: torch.device) -> tuple[Any, ...]:
    kind = device.type
    if torch.is_autocast_enabled(kind):
        return (kind, torch.get_autocast_dtype(kind))
    return (kind, None)


def _norm_parameters(encoder: nn.Module) -> list[torch.Tensor]:
    norm = getattr(encoder, "LayerNorm", None)
    return list(norm.parameters()) if isinstance(norm, nn.Module) else []


def _stored_rel_embedding(encoder: nn.Module) -> Any:
    """Bound as the encoder's ``get_rel_embedding``: one stored tensor per autocast state and
    weight version, while no gradients are taken."""
    compute = type(encoder).get_rel_embedding
    if torch.is_grad_enabled():
        return compute(encoder)
    weight = encoder.rel_embeddings.weight
    key = (*_autocast_key(weight.device), weight._version, *(p._version for p in _norm_parameters(encoder)))
    store = encoder._position_store
    found = store.get(key)
    if found is None:
        found = compute(encoder)
        if found is None:
            return None
        store.clear()  # one entry: a changed weight or autocast dtype replaces the old one
        store[key] = found
    return found


def _cached_projection(linear: nn.Linear, hidden: torch.Tensor) -> torch.Tensor:
    """Bound as ``forward`` of a projection that also receives the relative embeddings."""
    store, results = linear._position_store, linear._position_results
    if torch.is_grad_enabled() or not store:
        return type(linear).forward(linear, hidden)
    embedding = next(iter(store.values()))
    if hidden.device != embedding.device or hidden.untyped_storage().data_ptr() != embedding.untyped_storage().data_ptr():
        return type(linear).forward(linear, hidden)  # hidden states, not the stored embeddings
    key = (_autocast_key(hidden.device), tuple(hidden.shape), hidden.stride(), hidden.storage_offset(),
           embedding.data_ptr(), linear.weight._version, None if linear.bias is None else linear.bias._version)
    found = results.get(key)
    if found is None:
        found = type(linear).forward(linear, hidden)
        if len(results) > 8:  # stale keys (an old embedding, another dtype): bounded
            results.clear()
        results[key] = found
    return found


def cache_position_projections(model: nn.Module) -> int:
    """Cache, in place, the relative-position projections of every DeBERTa-v2/v3 encoder in
    ``model``; returns how many attention layers were changed (0 for other architectures).

    The replaced methods are bound to their own modules, so a ``copy.deepcopy`` of the model
    is cached on its own weights (with empty stores); ``state_dict`` is unchanged.
    """
    try:
        from transformers.models.deberta_v2 import modeling_deberta_v2 as deberta
    except ImportError:  # pragma: no cover - transformers always ships it
        return 0
    changed = 0
    for encoder in model.modules():
        if not isinstance(encoder, deberta.DebertaV2Encoder) or not getattr(encoder, "relative_attention", False):
            continue
        if "_position_store" in vars(encoder):
            continue  # cached already
        store = _Store()
        encoder._position_store = store
        encoder.get_rel_embedding = types.MethodType(_stored_rel_embedding, encoder)
        for attention in encoder.modules():
            if not isinstance(attention, deberta.DisentangledSelfAttention):
                continue
            names = ("query_proj", "key_proj") if attention.share_att_key else ("pos_query_proj", "pos_key_proj")
            for name in names:
                linear = getattr(attention, name, None)
                if isinstance(linear, nn.Linear):
                    linear._position_store = store
                    linear._position_results = _Store()
                    linear.forward = types.MethodType(_cached_projection, linear)
            changed += 1
    return changed
