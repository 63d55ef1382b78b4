"""DeBERTa's relative-position projections, cached for inference (models/deberta_positions.py).

Exactness: the cached model must give the same logits, bit for bit, as the plain model. That
holds on every CPU because a cached projection is the stored output of the very call the plain
model makes (same input, same weights, same kernel in the same process); nothing is
recomputed in another order. The tests pin fp32.
"""

from __future__ import annotations

import copy

import pytest
import torch

from nemo_cls_dask.models.deberta_positions import cache_position_projections
from nemo_cls_dask.testing.vocab import tiny_backbone_config

# DeBERTa-v3's own settings (shared query/key projections, layer-normed relative embeddings)
# and DeBERTa-v2's older ones (separate position projections, no norm).
VARIANTS = {
    "v3-shared-keys": dict(share_att_key=True, norm_rel_ebd="layer_norm"),
    "v2-position-projections": dict(share_att_key=False, norm_rel_ebd="none"),
}


def _model(**overrides) -> torch.nn.Module:
    from transformers import DebertaV2ForSequenceClassification

    torch.manual_seed(0)
    config = tiny_backbone_config("deberta", num_labels=3, **overrides)
    return DebertaV2ForSequenceClassification(config).eval()


def _batches() -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    batches = []
    for rows, length in [(1, 40), (3, 17), (1, 40)]:
        ids = torch.randint(5, 90, (rows, length), generator=generator)
        mask = torch.ones_like(ids)
        mask[-1, length // 2:] = 0  # a padded row
        batches.append({"input_ids": ids, "attention_mask": mask})
    return batches


def _plain_and_warm_cached(batch: dict[str, torch.Tensor], **overrides) -> tuple[torch.nn.Module, torch.nn.Module]:
    """A plain model and a cached copy of it whose stores one inference pass on ``batch`` filled."""
    plain = _model(**overrides)
    cached = copy.deepcopy(plain)
    cache_position_projections(cached)
    with torch.inference_mode():
        cached(**batch)
    return plain, cached


@pytest.mark.parametrize("overrides", list(VARIANTS.values()), ids=list(VARIANTS))
def test_cached_model_gives_the_plain_models_logits_exactly(overrides):
    plain = _model(**overrides)
    cached = copy.deepcopy(plain)
    assert cache_position_projections(cached) == plain.config.num_hidden_layers
    with torch.inference_mode():
        for batch in _batches():
            assert torch.equal(cached(**batch).logits, plain(**batch).logits)


@pytest.mark.parametrize("overrides", list(VARIANTS.values()), ids=list(VARIANTS))
def test_projections_are_computed_once_and_reused(overrides):
    model = _model(**overrides)
    cache_position_projections(model)
    encoder = model.deberta.encoder
    attention = encoder.layer[0].attention.self
    projection = attention.query_proj if overrides["share_att_key"] else attention.pos_query_proj
    calls = []
    projection.register_forward_hook(lambda module, args, output: calls.append(output))
    with torch.inference_mode():
        for batch in _batches():
            model(**batch)
        assert encoder.get_rel_embedding() is encoder.get_rel_embedding()
    position_outputs = [out for out in calls if out.shape[-2] == 2 * attention.pos_ebd_size]
    assert len(position_outputs) == 3  # one per forward call...
    assert all(out is position_outputs[0] for out in position_outputs)  # ...all the same stored tensor


def test_an_in_place_weight_change_is_not_served_stale():
    batch = _batches()[0]
    plain, cached = _plain_and_warm_cached(batch, **VARIANTS["v3-shared-keys"])
    with torch.no_grad():
        for model in (plain, cached):
            model.deberta.encoder.layer[0].attention.self.key_proj.weight.mul_(1.5)
            model.deberta.encoder.LayerNorm.bias.add_(0.25)
    with torch.inference_mode():
        assert torch.equal(cached(**batch).logits, plain(**batch).logits)


def test_a_deep_copy_is_cached_on_its_own_weights():
    batch = _batches()[0]
    reference, cached = _plain_and_warm_cached(batch, **VARIANTS["v3-shared-keys"])
    clone = copy.deepcopy(cached)
    changed = copy.deepcopy(reference)
    with torch.no_grad():
        for model in (clone, changed):
            model.deberta.encoder.rel_embeddings.weight.mul_(-1.0)
    with torch.inference_mode():
        assert torch.equal(clone(**batch).logits, changed(**batch).logits)  # the copy's own weights
        assert torch.equal(cached(**batch).logits, reference(**batch).logits)  # the original untouched
    assert clone.deberta.encoder.get_rel_embedding.__self__ is clone.deberta.encoder


def test_training_with_gradients_bypasses_the_cache():
    batch = _batches()[1]
    # An inference pass first: its stored tensors must not leak into training.
    plain, cached = _plain_and_warm_cached(batch, **VARIANTS["v3-shared-keys"])
    for model in (plain, cached):
        model.train()
        torch.manual_seed(3)  # same dropout masks in both
        model(**batch).logits.sum().backward()
    for (name, a), (_, b) in zip(plain.named_parameters(), cached.named_parameters()):
        assert (a.grad is None) == (b.grad is None), name
        if a.grad is not None:
            assert torch.equal(a.grad, b.grad), name
    assert cached.deberta.encoder.rel_embeddings.weight.grad.abs().sum() > 0  # it was trained through


def test_other_architectures_are_left_alone():
    from transformers import BertForSequenceClassification

    model = BertForSequenceClassification(tiny_backbone_config("bert", num_labels=2))
    assert cache_position_projections(model) == 0


def test_loaded_deberta_checkpoints_get_the_cache(tmp_path):
    from nemo_cls_dask.models.loading import clear_models, get_model
    from nemo_cls_dask.testing import make_nvidia_checkpoint

    folder = make_nvidia_checkpoint("quality", tmp_path / "quality")
    clear_models()
    try:
        module = get_model(str(folder), device="cpu").module
        encoders = [m for m in module.modules() if type(m).__name__ == "DebertaV2Encoder"]
        assert encoders and all("get_rel_embedding" in vars(encoder) for encoder in encoders)
    finally:
        clear_models()
