"""Composed models: heads trained one by one on a frozen backbone, run as one model."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

import dask.dataframe as dd

from nemo_cls_dask import ComposedClassifier, ComposedModel, DistributedDataClassifier, InputError, ModelLoadError, TextClassifier
from nemo_cls_dask.engine import engine_stats, reset_engine_stats
from nemo_cls_dask.models.composed import compose
from nemo_cls_dask.models.heads import pool
from nemo_cls_dask.models.loading import describe_model, get_model
from nemo_cls_dask.testing import make_backbone_checkpoint, make_hf_sequence_checkpoint

FILLER = "the of and to a in is it you that he was for on are with as".split()


def fruit_frame(n: int = 120, seed: int = 0) -> pd.DataFrame:
    """'apple' vs 'banana' texts, a 'water' tag on some, and a numeric score."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = ("apple", "banana")[i % 2]
        water = bool(rng.random() < 0.5)
        words = list(rng.choice(FILLER, 4 + i % 5)) + [label] + (["water"] if water else [])
        rng.shuffle(words)
        tags = sorted({label} | ({"water"} if water else set()))
        rows.append({"text": " ".join(words), "label": label, "tags": tags, "y": 1.0 + 2.0 * (label == "apple") + water})
    return pd.DataFrame(rows)


def head(backbone: str, **kwargs) -> TextClassifier:
    params = dict(frozen_backbone=True, epochs=4, learning_rate=1e-2, max_len=24, max_batch_rows=32, verbose=False, seed=0)
    params.update(kwargs)
    return TextClassifier(backbone, **params)


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return fruit_frame()


@pytest.fixture(scope="module")
def parts(tmp_path_factory, data):
    """Three heads trained separately on one frozen backbone, saved head-only (one calibrated)."""
    root = tmp_path_factory.mktemp("composed")
    backbone = str(make_backbone_checkpoint(root / "backbone"))
    folders = {
        "topic": head(backbone, calibration="temperature").fit(data).save_pretrained(root / "topic"),
        "tags": head(backbone, problem="multi_label", pooling="cls").fit(data, label_field="tags").save_pretrained(root / "tags"),
        "score": head(backbone, problem="regression").fit(data, label_field="y").save_pretrained(root / "score"),
    }
    return {"root": root, "backbone": backbone, "folders": folders, "composed": compose(folders, root / "composed")}


def _lists(values) -> np.ndarray:
    return np.stack([np.asarray(v, dtype=np.float64) for v in values])


def _alone(folder, frame, problem_regression: bool):
    operator = DistributedDataClassifier(model_identifier=str(folder), label_field="l", score_field=None if problem_regression else "s")
    return operator(frame)


# ---------------------------------------------------------------------------- layout


def test_layout_and_describe(parts):
    composed = parts["composed"]
    config = json.loads((composed / "config.json").read_text())
    assert config["components"] == {"topic": "topic", "tags": "tags", "score": "score"}
    assert config["nemo_cls_dask_layout"] == "composed" and config["max_len"] == 24
    info = describe_model(str(composed))
    assert info.layout == "composed" and info.num_outputs == 2 + 3 + 1
    assert [c.problem_type for c in info.components.values()] == [
        "single_label_classification", "multi_label_classification", "regression"]
    # the calibrated head keeps its temperature; sub-folders are ordinary checkpoints
    topic = json.loads((composed / "topic" / "config.json").read_text())
    assert topic["temperature"] > 0 and topic["temperature"] != 1.0
    assert describe_model(str(composed / "tags")).layout == "head"
    alone = TextClassifier.from_pretrained(composed / "tags")
    assert alone.labels_ == ("apple", "banana", "water") and alone.predict(["an apple"]).shape == (1,)
    assert (composed / "tokenizer_config.json").is_file()


# ---------------------------------------------------------------------------- equality with the parts


@pytest.mark.parametrize("lazy", [False, True], ids=["pandas", "dask"])
def test_composed_equals_each_head_alone(parts, data, lazy):
    frame = data[["text"]].copy()
    frame.index = np.arange(len(frame))[::-1] * 3  # a non-range index comes back untouched
    frame.iloc[5, 0] = None
    source = dd.from_pandas(frame, npartitions=3, sort=False) if lazy else frame
    operator = ComposedClassifier(model_identifier=parts["composed"], scores=True)
    out = operator(source)
    if lazy:
        meta = out._meta
        out = out.compute(scheduler="sync")
        assert dict(meta.dtypes) == dict(out.dtypes)
    assert list(out.columns) == ["text", "topic_label", "topic_score", "tags_label", "tags_score", "score_label"]
    assert list(out.index) == list(frame.index)
    for name, folder in parts["folders"].items():
        regression = name == "score"
        alone = _alone(folder, source, regression)
        alone = alone.compute(scheduler="sync") if lazy else alone
        valid = alone["l"].notna().to_numpy()
        assert not valid[5] and valid.sum() == len(frame) - 1
        assert out[f"{name}_label"].isna().to_list() == (~valid).tolist()
        if regression:
            np.testing.assert_allclose(out["score_label"].to_numpy()[valid], alone["l"].to_numpy()[valid], atol=1e-5)
            continue
        np.testing.assert_allclose(_lists(out[f"{name}_score"][valid]), _lists(alone["s"][valid]), atol=1e-5)
        labels = [list(v) if name == "tags" else v for v in out[f"{name}_label"][valid]]
        assert labels == [list(v) if name == "tags" else v for v in alone["l"][valid]]


def test_backbone_runs_once_per_batch(parts, data):
    loaded = get_model(str(parts["composed"]), device="cpu")
    calls = []
    hook = loaded.module.backbone.register_forward_hook(lambda *args: calls.append(1))
    try:
        reset_engine_stats()
        ComposedClassifier(model_identifier=parts["composed"], batch_tokens=200, device="cpu")(data[["text"]])
        batches = engine_stats()["batches"]
    finally:
        hook.remove()
    assert batches > 1 and len(calls) == batches


def test_in_memory_round_trip_and_embedding(parts, data, tmp_path):
    model = ComposedModel.from_components(parts["folders"])
    assert model.names == ["topic", "tags", "score"] and model.poolings == ("mean", "cls")
    tokenizer = get_model(str(parts["composed"]), device="cpu").tokenizer
    batch = tokenizer(list(data["text"][:6]), padding=True, return_tensors="pt")
    with torch.inference_mode():
        outputs = model(batch["input_ids"], batch["attention_mask"])
        again, pooled = model.forward_with_embedding(batch["input_ids"], batch["attention_mask"])
        hidden = model.backbone(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    assert outputs.shape == (6, 6) and torch.equal(outputs, again)
    torch.testing.assert_close(pooled, pool(hidden, batch["attention_mask"], "mean"))  # the first head's pooling
    assert {k: v.shape[1] for k, v in model.split(outputs).items()} == {"topic": 2, "tags": 3, "score": 1}

    saved = model.save_pretrained(tmp_path / "saved")
    reloaded = ComposedModel.from_pretrained(saved)
    with torch.inference_mode():
        torch.testing.assert_close(reloaded(batch["input_ids"], batch["attention_mask"]), outputs)
    assert reloaded.heads["topic"].temperature == model.heads["topic"].temperature != 1.0


def test_components_mix_and_reuse(parts, data, tmp_path):
    composed = parts["composed"]
    # take two heads out of one composition, add a copy of another, in a new order
    mixed = compose([("score", composed / "score"), ("topic", composed / "topic"), ("fruit", parts["folders"]["topic"])], tmp_path / "mixed")
    out = ComposedClassifier(model_identifier=mixed, heads=["fruit", "score"], columns={"fruit": "kind"}, column_prefix="m_")(data[["text"]].head(10))
    assert list(out.columns) == ["text", "m_kind_label", "m_score_label"]
    base = ComposedClassifier(model_identifier=composed)(data[["text"]].head(10))
    assert out["m_kind_label"].to_list() == base["topic_label"].to_list()
    np.testing.assert_allclose(out["m_score_label"], base["score_label"], atol=1e-6)
    # saving over itself keeps it loadable
    compose({"topic": mixed / "topic"}, mixed)
    assert list(describe_model(str(mixed)).components) == ["topic"]


# ---------------------------------------------------------------------------- errors


def test_incompatible_components(parts, data, tmp_path, copy_checkpoint):
    folders = parts["folders"]
    other_backbone = str(make_backbone_checkpoint(tmp_path / "other-backbone", seed=5))
    foreign = head(other_backbone, epochs=1).fit(data).save_pretrained(tmp_path / "foreign")
    with pytest.raises(ModelLoadError, match="different backbones"):
        compose({"topic": folders["topic"], "foreign": foreign}, tmp_path / "x")
    longer = head(parts["backbone"], epochs=1, max_len=32).fit(data).save_pretrained(tmp_path / "longer")
    with pytest.raises(ModelLoadError, match="different max_len"):
        compose({"topic": folders["topic"], "longer": longer}, tmp_path / "x")
    other_tokens = copy_checkpoint(folders["tags"], "tokens")
    with open(other_tokens / "vocab.txt", "a", encoding="utf-8") as handle:
        handle.write("zzzextra\n")
    with pytest.raises(ModelLoadError, match="different tokenizers"):
        compose({"topic": folders["topic"], "tags": other_tokens}, tmp_path / "x")
    full = head(parts["backbone"], epochs=1).fit(data).save_pretrained(tmp_path / "full", head_only=False)
    with pytest.raises(ModelLoadError, match="own backbone weights"):
        compose({"full": full}, tmp_path / "x")
    hf = make_hf_sequence_checkpoint(tmp_path / "hf", ["a", "b"], arch="bert")
    with pytest.raises(ModelLoadError, match="'hf' checkpoint"):
        compose({"hf": hf}, tmp_path / "x")
    with pytest.raises(InputError, match="Duplicate component name"):
        compose([("topic", folders["topic"]), ("Topic", folders["topic"])], tmp_path / "x")
    with pytest.raises(InputError, match="component name"):
        compose({"a/b": folders["topic"]}, tmp_path / "x")
    with pytest.raises(InputError, match="at least one"):
        compose({}, tmp_path / "x")
    with pytest.raises(ModelLoadError, match="Component 'gone'"):
        compose({"gone": tmp_path / "missing"}, tmp_path / "x")


def test_damaged_composed_folder(parts, copy_checkpoint):
    broken = copy_checkpoint(parts["composed"], "broken")
    config = json.loads((broken / "config.json").read_text())
    config["components"]["escape"] = "../topic"
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="points outside"):
        ComposedClassifier(model_identifier=broken)(pd.DataFrame({"text": ["x"]}))
    config["components"] = {"topic": "topic"}
    config["max_len"] = 99
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="max_len 99 differs"):
        describe_model(str(broken))
    shutil.rmtree(broken / "tags")
    config["components"] = {"tags": "tags"}
    config.pop("max_len")
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="does not exist"):
        describe_model(str(broken))


def test_operator_options_checked_when_applied(parts, head_checkpoint):
    frame = pd.DataFrame({"text": ["an apple", "a banana"]})
    composed = parts["composed"]
    for given in ({"label_field": "x"}, {"score_field": "x"}, {"filter_by": ["apple"]}):
        with pytest.raises(InputError, match="cannot be set"):
            ComposedClassifier(model_identifier=composed, **given)
    with pytest.raises(InputError, match="must differ"):
        ComposedClassifier(model_identifier=composed, label_suffix="_x", score_suffix="_x")
    lazy = ComposedClassifier(model_identifier=composed, heads=["nope"])  # built without reading the model
    with pytest.raises(InputError, match=r"unknown head\(s\) \['nope'\]"):
        lazy(frame)
    with pytest.raises(InputError, match="regression head"):
        ComposedClassifier(model_identifier=composed, scores=["score"])(frame)
    with pytest.raises(InputError, match="leaves out"):
        ComposedClassifier(model_identifier=composed, heads=["tags"], scores=["topic"])(frame)
    with pytest.raises(InputError, match="Several heads would write"):
        ComposedClassifier(model_identifier=composed, columns={"tags": "topic"})(frame)
    with pytest.raises(InputError, match="already exist"):
        ComposedClassifier(model_identifier=composed)(frame.assign(topic_label="x"))
    with pytest.raises(InputError, match="not a composed model"):
        ComposedClassifier(model_identifier=head_checkpoint)(frame)
    with pytest.raises(InputError, match="'composed' checkpoint"):
        DistributedDataClassifier(model_identifier=str(composed))(frame)


def test_embedding_and_long_documents_match_heads_alone(parts, data):
    frame = pd.DataFrame({"text": [" ".join(data["text"][i:i + 4]) for i in range(0, 24, 4)]})
    options = dict(long_documents="max", max_seq_length=8, chunk_overlap=2)
    out = ComposedClassifier(model_identifier=parts["composed"], scores=True, embedding_field="emb", **options)(frame)
    topic = DistributedDataClassifier(model_identifier=str(parts["folders"]["topic"]), label_field="l", score_field="s",
                                      embedding_field="emb", **options)(frame)
    tags = DistributedDataClassifier(model_identifier=str(parts["folders"]["tags"]), label_field="l", score_field="s", **options)(frame)
    score = DistributedDataClassifier(model_identifier=str(parts["folders"]["score"]), label_field="l", **options)(frame)
    np.testing.assert_allclose(_lists(out["emb"]), _lists(topic["emb"]), atol=1e-5)  # the first head's embedding
    np.testing.assert_allclose(_lists(out["topic_score"]), _lists(topic["s"]), atol=1e-5)
    assert out["topic_label"].to_list() == topic["l"].to_list()
    np.testing.assert_allclose(_lists(out["tags_score"]), _lists(tags["s"]), atol=1e-5)
    assert [list(v) for v in out["tags_label"]] == [list(v) for v in tags["l"]]
    np.testing.assert_allclose(out["score_label"], score["l"], atol=1e-5)
    with pytest.raises(InputError, match="uncertainty"):
        ComposedClassifier(model_identifier=parts["composed"], uncertainty=["entropy"])(frame)
