"""The fabricated checkpoints of ``nemo_cls_dask.testing`` load with plain transformers/safetensors.

These tests pin the on-disk layouts (so the rest of the suite really exercises
the code path real hub checkpoints take) and the determinism the suite relies
on.  They only use transformers, safetensors, huggingface_hub and torch --
nothing from the library under test except the fabricators.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from nemo_cls_dask.testing import (
    SAMPLE_TEXTS,
    TINY_HIDDEN_SIZE,
    make_backbone_checkpoint,
    make_deberta_head_checkpoint,
    make_hf_sequence_checkpoint,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from transformers import (  # noqa: E402  (after HF_HUB_OFFLINE)
    AutoConfig,
    AutoModel,
    AutoModelForSequenceClassification,
    AutoTokenizer,
)

LABELS = ["Low", "Medium", "High"]
HUB_FILES = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"}


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _backbone_from(ckpt: Path) -> torch.nn.Module:
    """Build the backbone the NVIDIA way and load the ``model.``-stripped weights strictly."""
    config = _read_json(ckpt / "config.json")
    backbone = AutoModel.from_config(AutoConfig.from_pretrained(config["base_model"]))
    state = load_file(str(ckpt / "model.safetensors"))
    stripped = {k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")}
    result = backbone.load_state_dict(stripped, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    return backbone.eval()


@pytest.fixture(scope="module")
def deberta_head(tmp_path_factory) -> Path:
    return make_deberta_head_checkpoint(tmp_path_factory.mktemp("nv") / "quality", LABELS, max_len=1024)


# ---------------------------------------------------------------------------
# NVIDIA "Deberta" head layout
# ---------------------------------------------------------------------------


def test_deberta_head_config(deberta_head: Path):
    config = _read_json(deberta_head / "config.json")
    assert set(config) == {"base_model", "fc_dropout", "id2label", "label2id", "max_len"}
    assert config["fc_dropout"] == 0.2
    assert config["max_len"] == 1024
    assert config["id2label"] == {"0": "Low", "1": "Medium", "2": "High"}
    assert all(isinstance(k, str) for k in config["id2label"])
    assert config["label2id"] == {"Low": 0, "Medium": 1, "High": 2}
    assert all(isinstance(v, int) for v in config["label2id"].values())

    base = Path(config["base_model"])
    assert base.is_absolute()
    assert base == deberta_head.parent / f"{deberta_head.name}-backbone"
    assert _read_json(base / "config.json")["model_type"] == "deberta-v2"
    # The checkpoint folder holds exactly the hub files.
    assert {p.name for p in deberta_head.iterdir()} == HUB_FILES


def test_deberta_head_safetensors_keys(deberta_head: Path):
    with safe_open(str(deberta_head / "model.safetensors"), framework="pt") as f:
        keys = set(f.keys())
        assert f.metadata() == {"format": "pt"}
        fc_weight = f.get_tensor("fc.weight")
        fc_bias = f.get_tensor("fc.bias")
    assert "model.embeddings.word_embeddings.weight" in keys
    assert any(k.startswith("model.encoder.layer.0.") for k in keys)
    assert "model.encoder.rel_embeddings.weight" in keys
    assert all(k.startswith("model.") or k in ("fc.weight", "fc.bias") for k in keys)
    assert fc_weight.shape == (len(LABELS), TINY_HIDDEN_SIZE)
    assert fc_bias.shape == (len(LABELS),)
    assert fc_weight.dtype == torch.float32


def test_deberta_head_backbone_loads_strictly(deberta_head: Path):
    backbone = _backbone_from(deberta_head)
    assert type(backbone).__name__ == "DebertaV2Model"
    assert backbone.config.hidden_size == TINY_HIDDEN_SIZE


def test_deberta_head_loads_through_hub_mixin(deberta_head: Path):
    """The way NeMo Curator loads these repos: PyTorchModelHubMixin with a dict config."""
    from huggingface_hub import PyTorchModelHubMixin

    class Head(torch.nn.Module, PyTorchModelHubMixin):
        def __init__(self, config: dict):
            super().__init__()
            self.model = AutoModel.from_config(AutoConfig.from_pretrained(config["base_model"]))
            self.dropout = torch.nn.Dropout(config["fc_dropout"])
            self.fc = torch.nn.Linear(self.model.config.hidden_size, len(config["id2label"]))

    model = Head.from_pretrained(str(deberta_head))
    state = load_file(str(deberta_head / "model.safetensors"))
    loaded = model.state_dict()
    assert set(loaded) == set(state)
    assert all(torch.equal(loaded[k], state[k]) for k in state)


def test_deberta_head_predictions_are_spread(deberta_head: Path):
    """CLS state -> fc -> softmax (the NVIDIA forward) gives varied, confident labels."""
    backbone = _backbone_from(deberta_head)
    state = load_file(str(deberta_head / "model.safetensors"))
    tokenizer = AutoTokenizer.from_pretrained(deberta_head)
    # Truncated: DeBERTa's relative attention over long padded batches is slow on CPU.
    enc = tokenizer(SAMPLE_TEXTS, padding=True, truncation=True, max_length=64, return_tensors="pt")
    with torch.no_grad():
        cls = backbone(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state[:, 0]
    probs = torch.softmax(cls @ state["fc.weight"].T + state["fc.bias"], dim=1)
    counts = torch.bincount(probs.argmax(1), minlength=len(LABELS))
    assert (counts > 0).sum() >= 2, counts
    assert probs.max(1).values.mean() > 0.6


def test_deberta_head_extra_config_and_explicit_base_model(tmp_path: Path):
    ckpt = make_deberta_head_checkpoint(
        tmp_path / "dom",
        ["a", "b"],
        max_len=512,
        fc_dropout=0.1,
        base_model="microsoft/deberta-v3-base",
        extra_config={"pooling": "mean", "problem_type": "multi_label_classification"},
    )
    config = _read_json(ckpt / "config.json")
    assert config["base_model"] == "microsoft/deberta-v3-base"
    assert config["pooling"] == "mean"
    assert config["problem_type"] == "multi_label_classification"
    assert config["fc_dropout"] == 0.1 and config["max_len"] == 512
    assert not (tmp_path / "dom-backbone").exists()
    assert load_file(str(ckpt / "model.safetensors"))["fc.weight"].shape == (2, TINY_HIDDEN_SIZE)


def test_deberta_head_base_model_from_local_config(tmp_path: Path):
    first = make_deberta_head_checkpoint(tmp_path / "one", ["a", "b"])
    base = _read_json(first / "config.json")["base_model"]
    second = make_deberta_head_checkpoint(tmp_path / "two", ["a", "b", "c"], base_model=base)
    assert _read_json(second / "config.json")["base_model"] == base
    _backbone_from(second)


# ---------------------------------------------------------------------------
# Tokenizers
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["deberta", "bert"])
def test_tokenizer_round_trip(tmp_path: Path, arch: str):
    if arch == "deberta":
        ckpt = make_deberta_head_checkpoint(tmp_path / "ckpt", LABELS, max_len=1024)
        max_len = 1024
    else:
        ckpt = make_hf_sequence_checkpoint(tmp_path / "ckpt", LABELS, arch="bert", max_len=256)
        max_len = 256
    tok = AutoTokenizer.from_pretrained(ckpt)
    assert tok.is_fast
    assert type(tok).__name__ == ("DebertaV2Tokenizer" if arch == "deberta" else "BertTokenizer")
    assert tok.pad_token_id == 0
    assert tok.model_max_length == max_len
    assert tok.unk_token_id is not None and tok.mask_token_id is not None

    ids = tok("The quick brown fox jumps over the lazy dog.")["input_ids"]
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
    assert tok.unk_token_id not in ids
    text = tok.decode(ids, skip_special_tokens=True)
    assert "quick brown fox" in text and "lazy" in text

    # Known English never hits [UNK]; characters outside the fixed set do.
    enc = tok(SAMPLE_TEXTS)["input_ids"]
    assert all(tok.unk_token_id not in seq for seq in enc)
    assert tok.unk_token_id in tok("snow \u2603 man")["input_ids"]

    # Lengths differ, so sorting by length is meaningful.
    lengths = [len(seq) for seq in enc]
    assert len(set(lengths)) > len(SAMPLE_TEXTS) // 2
    assert max(lengths) <= 512
    assert len(tok("Good morning")["input_ids"]) < len(tok(SAMPLE_TEXTS[-5])["input_ids"])

    batch = tok(SAMPLE_TEXTS[:4], padding=True, return_tensors="pt")
    assert (batch["input_ids"][batch["attention_mask"] == 0] == tok.pad_token_id).all()


# ---------------------------------------------------------------------------
# Plain transformers checkpoints
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["bert", "deberta"])
@pytest.mark.parametrize(
    "labels,kwargs,expected_id2label",
    [
        (LABELS, {}, {0: "Low", 1: "Medium", 2: "High"}),
        (None, {"num_labels": 1, "problem_type": "regression"}, {0: "LABEL_0"}),
        (["x", "y"], {"problem_type": "multi_label_classification"}, {0: "x", 1: "y"}),
    ],
)
def test_hf_sequence_checkpoint_loads(tmp_path: Path, arch, labels, kwargs, expected_id2label):
    ckpt = make_hf_sequence_checkpoint(tmp_path / "ckpt", labels, arch=arch, **kwargs)
    assert {p.name for p in ckpt.iterdir()} == HUB_FILES
    raw = _read_json(ckpt / "config.json")
    assert raw["model_type"] == ("bert" if arch == "bert" else "deberta-v2")
    assert raw["architectures"] == [
        "BertForSequenceClassification" if arch == "bert" else "DebertaV2ForSequenceClassification"
    ]
    assert raw["problem_type"] == kwargs.get("problem_type", "single_label_classification")
    assert set(raw["id2label"]) == {str(i) for i in expected_id2label}

    model, info = AutoModelForSequenceClassification.from_pretrained(ckpt, output_loading_info=True)
    assert not any(info.values()), info
    assert model.config.id2label == expected_id2label
    assert model.config.num_labels == len(expected_id2label)

    tok = AutoTokenizer.from_pretrained(ckpt)
    texts = SAMPLE_TEXTS[:30]  # the short ones; keeps the CPU forward pass cheap
    with torch.no_grad():
        logits = model.eval()(**tok(texts, padding=True, return_tensors="pt")).logits
    assert logits.shape == (len(texts), len(expected_id2label))
    assert logits.std(0).min() > 0.1  # outputs actually depend on the text


def test_hf_sequence_checkpoint_rejects_mismatched_labels(tmp_path: Path):
    with pytest.raises(ValueError):
        make_hf_sequence_checkpoint(tmp_path / "bad", ["a", "b"], num_labels=3)
    with pytest.raises(ValueError):
        make_hf_sequence_checkpoint(tmp_path / "bad2", None)


@pytest.mark.parametrize("arch", ["bert", "deberta"])
def test_backbone_checkpoint_loads(tmp_path: Path, arch: str):
    ckpt = make_backbone_checkpoint(tmp_path / "bb", arch=arch)
    model, info = AutoModel.from_pretrained(ckpt, output_loading_info=True)
    assert not any(info.values()), info
    assert type(model).__name__ == ("BertModel" if arch == "bert" else "DebertaV2Model")
    tok = AutoTokenizer.from_pretrained(ckpt)
    with torch.no_grad():
        out = model.eval()(**tok(SAMPLE_TEXTS[:3], padding=True, return_tensors="pt")).last_hidden_state
    assert out.shape[-1] == TINY_HIDDEN_SIZE


# ---------------------------------------------------------------------------
# Determinism
# ---------------------------------------------------------------------------


def _same_bytes(a: Path, b: Path) -> bool:
    return a.read_bytes() == b.read_bytes()


def test_deberta_head_is_deterministic(tmp_path: Path):
    a = make_deberta_head_checkpoint(tmp_path / "a" / "ckpt", LABELS, seed=7)
    b = make_deberta_head_checkpoint(tmp_path / "b" / "ckpt", LABELS, seed=7)
    c = make_deberta_head_checkpoint(tmp_path / "c" / "ckpt", LABELS, seed=8)
    assert _same_bytes(a / "model.safetensors", b / "model.safetensors")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        assert _same_bytes(a / name, b / name)
        assert _same_bytes(a / name, c / name)
    assert not _same_bytes(a / "model.safetensors", c / "model.safetensors")


@pytest.mark.parametrize("arch", ["bert", "deberta"])
def test_hf_checkpoints_are_deterministic(tmp_path: Path, arch: str):
    a = make_hf_sequence_checkpoint(tmp_path / "a" / "ckpt", LABELS, arch=arch, seed=1)
    b = make_hf_sequence_checkpoint(tmp_path / "b" / "ckpt", LABELS, arch=arch, seed=1)
    for name in sorted(HUB_FILES):
        assert _same_bytes(a / name, b / name), name
    c = make_backbone_checkpoint(tmp_path / "c" / "ckpt", arch=arch, seed=1)
    d = make_backbone_checkpoint(tmp_path / "d" / "ckpt", arch=arch, seed=1)
    for name in sorted(HUB_FILES):
        assert _same_bytes(c / name, d / name), name


def test_fabricators_leave_global_rng_alone(tmp_path: Path):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    make_deberta_head_checkpoint(tmp_path / "ckpt", LABELS)
    assert torch.equal(torch.rand(3), expected)


# ---------------------------------------------------------------------------
# Sample texts
# ---------------------------------------------------------------------------


def test_sample_texts():
    assert 35 <= len(SAMPLE_TEXTS) <= 45
    assert all(isinstance(t, str) and t.strip() for t in SAMPLE_TEXTS)
    words = [len(t.split()) for t in SAMPLE_TEXTS]
    assert min(words) >= 3
    assert max(words) >= 120
    assert len(set(SAMPLE_TEXTS)) == len(SAMPLE_TEXTS)
