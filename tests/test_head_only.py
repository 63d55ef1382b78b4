"""``BackboneHeadModel.from_pretrained`` on head-only checkpoints loads the real backbone or raises (issue 16, HF item 1)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from nemo_cls_dask import BackboneHeadModel, DistributedDataClassifier, ModelLoadError
from nemo_cls_dask.models.hub import PACKAGED_MODELS, resolve_backbone_dir
from nemo_cls_dask.testing import SAMPLE_TEXTS


def _probabilities(model: BackboneHeadModel, folder: Path, texts: list[str]) -> torch.Tensor:
    """The model's softmax, one text per forward pass (fp32)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder if (folder / "tokenizer_config.json").is_file() else model.config["base_model"])
    rows = []
    with torch.no_grad():
        for text in texts:
            encoded = tokenizer(text, truncation=True, max_length=int(model.config.get("max_len", 512)), return_tensors="pt")
            rows.append(model(encoded["input_ids"], encoded["attention_mask"]).softmax(-1)[0])
    return torch.stack(rows)


def test_head_only_checkpoint_gets_its_pretrained_backbone(head_only_checkpoint):
    model = BackboneHeadModel.from_pretrained(str(head_only_checkpoint)).eval()
    backbone = Path(json.loads((head_only_checkpoint / "config.json").read_text())["base_model"])
    saved = load_file(backbone / "model.safetensors")
    for name, tensor in model.model.state_dict().items():
        if name in saved:
            assert torch.equal(tensor, saved[name]), name
    assert torch.equal(model.fc.weight, load_file(head_only_checkpoint / "model.safetensors")["fc.weight"])
    # And it computes what the operator computes from the same folder.
    texts = SAMPLE_TEXTS[:8]
    out = DistributedDataClassifier(model_identifier=str(head_only_checkpoint), score_field="p", device="cpu")(pd.DataFrame({"text": texts}))
    expected = _probabilities(model, head_only_checkpoint, texts)
    # One row per pass here, sorted batches there: fp32 round-off only.
    torch.testing.assert_close(torch.tensor(out["p"].tolist()), expected, rtol=1e-4, atol=1e-5)


def test_packaged_debian_topics_loads_the_packaged_minilm_backbone():
    by_name = BackboneHeadModel.from_pretrained("debian-topics").eval()
    by_folder = BackboneHeadModel.from_pretrained(str(PACKAGED_MODELS["debian-topics"])).eval()
    minilm = resolve_backbone_dir(by_name.config["base_model"])
    saved = load_file(minilm / "model.safetensors")
    weights = by_name.model.state_dict()
    compared = [name for name in weights if name in saved]
    assert len(compared) > 50
    assert all(torch.equal(weights[name], saved[name]) for name in compared)
    assert all(torch.equal(a, b) for a, b in zip(by_name.state_dict().values(), by_folder.state_dict().values()))


def test_head_only_checkpoint_without_its_backbone_raises(head_only_checkpoint, tmp_path):
    folder = tmp_path / "orphan"
    shutil.copytree(head_only_checkpoint, folder)
    config = json.loads((folder / "config.json").read_text())
    config["base_model"] = str(tmp_path / "no-such-backbone")
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="holds only the head"):
        BackboneHeadModel.from_pretrained(str(folder))


def test_resume_record_covers_the_backbone_folder_of_a_head_only_checkpoint(head_only_checkpoint, head_checkpoint, tmp_path):
    """A re-saved backbone changes every output of a head-only checkpoint whose own folder did
    not change, so the run record's model fingerprint must change with it (resume refuses)."""
    from nemo_cls_dask.manifest import differences, model_fingerprint, run_record
    from nemo_cls_dask.testing import make_backbone_checkpoint

    backbone = shutil.copytree(json.loads((head_only_checkpoint / "config.json").read_text())["base_model"],
                               tmp_path / "backbone")
    head = shutil.copytree(head_only_checkpoint, tmp_path / "head")
    config = json.loads((head / "config.json").read_text())
    (head / "config.json").write_text(json.dumps({**config, "base_model": str(backbone)}))

    def record() -> dict:
        return run_record([DistributedDataClassifier(model_identifier=str(head))], "parquet")

    before = record()
    assert before["classifiers"][0]["model_fingerprint"] != model_fingerprint(head)  # the backbone is in it
    make_backbone_checkpoint(backbone, arch="deberta", seed=99)  # re-saved in place: new weights
    after = record()
    assert any(line.startswith("classifier model files:") for line in differences(before, after))
    # A self-contained folder keeps the fingerprint earlier versions wrote (their outputs still resume).
    full = run_record([DistributedDataClassifier(model_identifier=str(head_checkpoint))], None)
    assert full["classifiers"][0]["model_fingerprint"] == model_fingerprint(head_checkpoint)
