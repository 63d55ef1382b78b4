"""Resource caps on untrusted checkpoints and text (issue 14, items 9-13).

Each test is a reproduction that exhausted memory or failed late before: the caps must
turn it into a bounded amount of work or a clear :class:`ModelLoadError` before anything
large is allocated.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from nemo_cls_dask import DistributedDataClassifier, ModelLoadError, describe_model
from nemo_cls_dask.models import loading
from nemo_cls_dask.models.files import MAX_SAFETENSORS_HEADER_BYTES
from nemo_cls_dask.testing import SAMPLE_TEXTS
from nemo_cls_dask.tokenization import PIECE_CHARS, default_max_chars, encode_windows


class TokenizerSpy:
    """Wraps a tokenizer and records the longest text any call gave it."""

    def __init__(self, tokenizer):
        self._tokenizer = tokenizer
        self.longest = 0

    def __call__(self, texts, *args, **kwargs):
        batch = [texts] if isinstance(texts, str) else texts
        self.longest = max([self.longest, *(len(text) for text in batch)])
        return self._tokenizer(texts, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._tokenizer, name)

    def __len__(self):
        return len(self._tokenizer)


@pytest.fixture
def spied(head_checkpoint):
    """The head checkpoint loaded in this process, its tokenizer replaced by a spy."""
    loaded = loading.get_model(str(head_checkpoint), None, "cpu")
    original = loaded.tokenizer
    spy = TokenizerSpy(original)
    loaded.tokenizer = spy
    yield loaded, spy
    loaded.tokenizer = original


# ---------------------------------------------------------------------------- item 9: characters


def test_default_character_cap_keeps_huge_punctuation_text_away_from_the_tokenizer(head_checkpoint, spied):
    loaded, spy = spied
    cap = default_max_chars(loaded.info.max_len)
    assert cap == loaded.info.max_len * 32
    # 100x the cap: unbounded, the tokenizer would hold ~500 bytes per "!" (about 0.8 GB here).
    frame = pd.DataFrame({"text": ["!" * (100 * cap), "!" * cap, "a short sentence about apt"]})
    out = DistributedDataClassifier(model_identifier=str(head_checkpoint), device="cpu", score_field="p")(frame)
    assert spy.longest == cap
    assert out["preds"].notna().all()
    # What the model saw of the huge row is exactly its first `cap` characters.
    assert out["preds"][0] == out["preds"][1]
    # Same ids in one batch; a kernel may still block the two rows differently (AVX2/AVX512/AMX).
    np.testing.assert_allclose(out["p"][0], out["p"][1], rtol=1e-5)


def test_max_chars_overrides_the_default_cap(head_checkpoint, spied):
    _, spy = spied
    frame = pd.DataFrame({"text": ["word " * 20_000]})
    DistributedDataClassifier(model_identifier=str(head_checkpoint), device="cpu", max_chars=60_000)(frame)
    assert spy.longest == 60_000


def test_windowed_documents_reach_the_tokenizer_in_bounded_pieces_with_the_same_ids(head_checkpoint, monkeypatch):
    """Long documents are tokenized piece by piece; at whitespace cuts the ids are those of the whole text."""
    from nemo_cls_dask import tokenization

    tokenizer = loading.get_model(str(head_checkpoint), None, "cpu").tokenizer
    text = " ".join(SAMPLE_TEXTS)  # about 8,000 characters
    texts, valid = [text, "short one"], np.array([True, True])
    whole = encode_windows(tokenizer, texts, valid, 64, 8)
    monkeypatch.setattr(tokenization, "PIECE_CHARS", 1000)
    spy = TokenizerSpy(tokenizer)
    pieces = encode_windows(spy, texts, valid, 64, 8)
    assert spy.longest <= 1000
    assert np.array_equal(pieces.windows.ids, whole.windows.ids)
    assert np.array_equal(pieces.owner, whole.owner)
    assert whole.windows_per_row()[0] > 10  # windowing still covers the whole long text


def test_windowed_default_cap_is_larger_and_overridable(head_checkpoint):
    tokenizer = TokenizerSpy(loading.get_model(str(head_checkpoint), None, "cpu").tokenizer)
    texts, valid = ["x " * 40_000], np.array([True])
    encode_windows(tokenizer, texts, valid, 64, 0)
    assert tokenizer.longest == min(80_000, PIECE_CHARS) and default_max_chars(64, windowed=True) > 80_000
    capped = encode_windows(tokenizer, texts, valid, 64, 0, max_chars=1_000)
    assert capped.windows.num_tokens < 600  # 500 "x" tokens plus each window's special tokens


# ---------------------------------------------------------------------------- item 10: header


def test_huge_safetensors_header_length_is_refused_without_reading_it(head_checkpoint, copy_checkpoint):
    folder = copy_checkpoint(head_checkpoint)
    weights = folder / "model.safetensors"
    weights.unlink()
    length = 3 * 2**30  # a sparse 3 GB file: 4 KB on disk
    with weights.open("wb") as handle:
        handle.write(length.to_bytes(8, "little"))
    os.truncate(weights, length + 8)
    assert length > MAX_SAFETENSORS_HEADER_BYTES
    with pytest.raises(ModelLoadError, match="over the 100000000 byte limit"):
        describe_model(str(folder))
    with pytest.raises(ModelLoadError, match="over the 100000000 byte limit"):
        DistributedDataClassifier(model_identifier=str(folder)).describe()


# ---------------------------------------------------------------------------- item 11: shapes


def _edit_config(folder: Path, **changes) -> None:
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    for key, value in list(config.items()):
        if value is None:
            del config[key]
    (folder / "config.json").write_text(json.dumps(config))


def test_ten_million_labels_in_a_transformers_config_fail_when_described(hf_checkpoint, copy_checkpoint):
    folder = copy_checkpoint(hf_checkpoint)
    _edit_config(folder, num_labels=10**7, id2label=None, label2id=None, problem_type="regression")
    with pytest.raises(ModelLoadError, match="num_labels"):
        describe_model(str(folder))


def test_a_transformers_hidden_size_the_weights_lack_fails_when_described(hf_checkpoint, copy_checkpoint):
    folder = copy_checkpoint(hf_checkpoint)
    _edit_config(folder, hidden_size=20_000)
    with pytest.raises(ModelLoadError, match="hidden_size"):
        describe_model(str(folder))


def test_config_shapes_are_compared_with_the_weights_before_building(hf_checkpoint, copy_checkpoint):
    folder = copy_checkpoint(hf_checkpoint)
    # 32 x 10^6 floats per layer's two feed-forward matrices: 256 MB each if they were built.
    _edit_config(folder, intermediate_size=10**6)
    describe_model(str(folder))  # the cheap describe-time check cannot see this one
    with pytest.raises(ModelLoadError, match=r"intermediate.*config \(1000000, 32\), weights"):
        loading.get_model(str(folder), None, "cpu")


def _with_backbone_config(head_checkpoint: Path, folder: Path, **changes) -> None:
    from transformers import AutoConfig

    config = json.loads((head_checkpoint / "config.json").read_text())
    backbone = AutoConfig.from_pretrained(config["base_model"]).to_dict()
    backbone.update(changes)
    _edit_config(folder, backbone_config=backbone)


def test_ten_thousand_layers_are_refused_from_the_weight_names(head_checkpoint, copy_checkpoint):
    folder = copy_checkpoint(head_checkpoint)
    _with_backbone_config(head_checkpoint, folder, num_hidden_layers=10_000)
    with pytest.raises(ModelLoadError, match="asks for 10000 layers, the weights hold 2"):
        loading.get_model(str(folder), None, "cpu")


def test_a_head_checkpoint_hidden_size_the_weights_lack_is_refused_when_the_operator_is_applied(head_checkpoint, copy_checkpoint):
    folder = copy_checkpoint(head_checkpoint)
    _with_backbone_config(head_checkpoint, folder, hidden_size=20_000, num_attention_heads=4)
    frame = pd.DataFrame({"text": ["some text"]})
    with pytest.raises(ModelLoadError, match="'hidden_size': 20000"):
        DistributedDataClassifier(model_identifier=str(folder)).validate(frame.columns)


def test_a_head_checkpoint_shape_only_the_meta_build_sees_is_refused_before_building(head_checkpoint, copy_checkpoint):
    folder = copy_checkpoint(head_checkpoint)
    _with_backbone_config(head_checkpoint, folder, intermediate_size=10**6)
    describe_model(str(folder))
    with pytest.raises(ModelLoadError, match=r"intermediate.*config \(1000000, 32\), weights \(\d+, 32\)"):
        loading.get_model(str(folder), None, "cpu")


# ---------------------------------------------------------------------------- item 12: vocabulary


def test_a_tokenizer_larger_than_the_embedding_is_refused_at_load(hf_checkpoint, copy_checkpoint):
    from transformers import AutoTokenizer

    folder = copy_checkpoint(hf_checkpoint)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    rows = len(tokenizer)
    tokenizer.add_tokens([f"zzqx{i}" for i in range(5)])
    tokenizer.save_pretrained(folder)
    frame = pd.DataFrame({"text": ["zzqx3 is a new word", "plain text"]})
    with pytest.raises(ModelLoadError, match=f"has {rows + 5} tokens, but the model .* embeds only {rows}"):
        DistributedDataClassifier(model_identifier=str(folder), device="cpu")(frame)


# ---------------------------------------------------------------------------- item 13: pickles


def test_a_base_model_folder_with_only_pickle_weights_is_refused(head_only_checkpoint, tmp_path):
    head = head_only_checkpoint
    backbone = Path(json.loads((head / "config.json").read_text())["base_model"])
    pickled = tmp_path / "pickled-backbone"
    shutil.copytree(backbone, pickled)
    torch.save(load_file(pickled / "model.safetensors"), pickled / "pytorch_model.bin")
    (pickled / "model.safetensors").unlink()
    folder = tmp_path / "head"
    shutil.copytree(head, folder)
    _edit_config(folder, base_model=str(pickled))
    with pytest.raises(ModelLoadError, match=r"pickle-based weights \['pytorch_model.bin'\]"):
        describe_model(str(folder))
