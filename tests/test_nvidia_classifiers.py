"""The NVIDIA NeMo Curator classifier family on fabricated checkpoints (issue 3).

Every class loads a tiny checkpoint written in its real hub repo's layout through the same
code path as the real one (``model_identifier=<folder>``); the hub ids themselves resolve
offline through a fake Hugging Face cache in the CLI test. Tests with the real weights are
in ``test_nvidia_real_models.py`` and skip where the weights are not present.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow.parquet
import pytest
import torch
from safetensors.torch import load_file, save_file

import nemo_cls_dask
from nemo_cls_dask import classifiers as classifiers_module
from nemo_cls_dask.classifiers import (
    CLASSIFIERS,
    ContentTypeClassifier,
    DistributedDataClassifier,
    DomainClassifier,
    FineWebEduClassifier,
    FineWebMixtralEduClassifier,
    FineWebNemotronEduClassifier,
    HubClassifier,
    MultilingualDomainClassifier,
    PromptTaskComplexityClassifier,
    QualityClassifier,
    classify,
    make_classifier,
)
from nemo_cls_dask.classifiers import partition as partition_module
from nemo_cls_dask.classifiers.prompt_complexity import OUTPUT_COLUMNS
from nemo_cls_dask.errors import InputError, ModelLoadError
from nemo_cls_dask.frames import LABEL_DTYPE, SCORE_LIST_DTYPE
from nemo_cls_dask.models.loading import describe_model, get_model
from nemo_cls_dask.testing import (
    PROMPT_COMPLEXITY_CONFIG,
    SAMPLE_TEXTS,
    make_fake_hf_cache,
    make_nvidia_checkpoint,
    make_prompt_complexity_checkpoint,
)

# short name -> (class, hub id, max_chars, max_seq_length, output columns -> dtype)
FLOAT32, FLOAT64, INT64 = np.dtype("float32"), np.dtype("float64"), pd.Int64Dtype()
EXPECTED = {
    "quality": (
        QualityClassifier, "nvidia/quality-classifier-deberta", 6000, 1024,
        {"quality_pred": LABEL_DTYPE, "quality_prob": SCORE_LIST_DTYPE},
    ),
    "domain": (DomainClassifier, "nvidia/domain-classifier", 2000, 512, {"domain_pred": LABEL_DTYPE}),
    "multilingual-domain": (
        MultilingualDomainClassifier, "nvidia/multilingual-domain-classifier", 2000, 512,
        {"multilingual_domain_pred": LABEL_DTYPE},
    ),
    "content-type": (
        ContentTypeClassifier, "nvidia/content-type-classifier-deberta", 5000, 1024, {"content_pred": LABEL_DTYPE},
    ),
    "fineweb-edu": (
        FineWebEduClassifier, "HuggingFaceFW/fineweb-edu-classifier", None, 512,
        {"fineweb-edu-score": FLOAT32, "fineweb-edu-score-int": INT64},
    ),
    "fineweb-mixtral-edu": (
        FineWebMixtralEduClassifier, "nvidia/nemocurator-fineweb-mixtral-edu-classifier", None, 512,
        {
            "fineweb-mixtral-edu-score": FLOAT32,
            "fineweb-mixtral-edu-score-int": INT64,
            "fineweb-mixtral-edu-score-label": LABEL_DTYPE,
        },
    ),
    "fineweb-nemotron-edu": (
        FineWebNemotronEduClassifier, "nvidia/nemocurator-fineweb-nemotron-4-edu-classifier", None, 512,
        {
            "fineweb-nemotron-edu-score": FLOAT32,
            "fineweb-nemotron-edu-score-int": INT64,
            "fineweb-nemotron-edu-score-label": LABEL_DTYPE,
        },
    ),
    "prompt-task-complexity": (
        PromptTaskComplexityClassifier, "nvidia/prompt-task-and-complexity-classifier", 2000, 512,
        {
            "task_type_1": LABEL_DTYPE,
            "task_type_2": LABEL_DTYPE,
            "task_type_prob": FLOAT32,
            "creativity_scope": FLOAT64,
            "reasoning": FLOAT64,
            "contextual_knowledge": FLOAT64,
            "number_of_few_shots": FLOAT64,
            "domain_knowledge": FLOAT64,
            "no_label_reason": FLOAT64,
            "constraint_ct": FLOAT64,
            "prompt_complexity_score": FLOAT64,
        },
    ),
}  # fmt: skip
KINDS = list(EXPECTED)
LAYOUTS = {
    "quality": "head", "domain": "head", "multilingual-domain": "head", "content-type": "head",
    "fineweb-edu": "hf", "fineweb-mixtral-edu": "hf", "fineweb-nemotron-edu": "hf",
    "prompt-task-complexity": "multihead",
}  # fmt: skip

TEXTS = SAMPLE_TEXTS[:14]


@pytest.fixture(scope="session")
def nvidia_checkpoints(tmp_path_factory) -> dict[str, Path]:
    """One fabricated checkpoint per ready-made NVIDIA classifier, in its hub layout."""
    root = tmp_path_factory.mktemp("nvidia")
    return {kind: make_nvidia_checkpoint(kind, root / kind, seed=10 + i) for i, kind in enumerate(KINDS)}


def _frame(texts=TEXTS, index=None) -> pd.DataFrame:
    texts = list(texts)
    frame = pd.DataFrame({"text": texts, "n": np.arange(len(texts))})
    frame.index = index if index is not None else [100 + 3 * i for i in range(len(texts))]
    return frame


def _with_nulls() -> pd.DataFrame:
    texts = list(TEXTS[:6]) + [None, "   ", ""] + list(TEXTS[6:10])
    return _frame(texts)


def _build(kind: str, checkpoints: dict[str, Path], **options) -> DistributedDataClassifier:
    return CLASSIFIERS[kind](model_identifier=checkpoints[kind], device="cpu", **options)


# ------------------------------------------------------------------------------ registry


def test_every_class_is_registered_and_exported():
    for kind, (cls, *_rest) in EXPECTED.items():
        assert CLASSIFIERS[kind] is cls
        assert getattr(nemo_cls_dask, cls.__name__) is cls
        assert getattr(classifiers_module, cls.__name__) is cls


def test_unknown_classifier_name_lists_the_choices():
    with pytest.raises(InputError) as caught:
        make_classifier("qualty")
    message = str(caught.value)
    assert "'qualty'" in message
    for kind in KINDS:
        assert repr(kind) in message


@pytest.mark.parametrize("kind", KINDS)
def test_defaults_are_nemo_curators(kind):
    cls, hub_id, max_chars, max_len, columns = EXPECTED[kind]
    classifier = make_classifier(kind)
    assert classifier.model_identifier == hub_id
    assert classifier.max_chars == max_chars
    assert classifier.max_seq_length == max_len
    assert classifier.output_names() == list(columns)
    assert classifier.text_field == "text"


def test_options_override_defaults_and_constructors_are_keyword_only():
    classifier = QualityClassifier(
        model_identifier="/some/folder", label_field="q", score_field=None, max_chars=None, max_seq_length=256,
        text_field="body", batch_tokens=4096, max_batch_rows=8, autocast=False, device="cpu", cache_dir="/tmp/hf",
    )  # fmt: skip
    assert (classifier.model_identifier, classifier.label_field, classifier.score_field) == ("/some/folder", "q", None)
    assert (classifier.max_chars, classifier.max_seq_length, classifier.text_field) == (None, 256, "body")
    assert (classifier.batch_tokens, classifier.max_batch_rows, classifier.cache_dir) == (4096, 8, "/tmp/hf")
    assert DomainClassifier(score_field="domain_prob").output_names() == ["domain_pred", "domain_prob"]
    assert FineWebEduClassifier(label_field="edu-label").output_names() == [
        "fineweb-edu-score", "fineweb-edu-score-int", "edu-label",
    ]  # fmt: skip
    assert PromptTaskComplexityClassifier(column_prefix="p_").output_names() == ["p_" + c for c in OUTPUT_COLUMNS]
    for cls in (QualityClassifier, FineWebEduClassifier, PromptTaskComplexityClassifier):
        with pytest.raises(TypeError):
            cls("nvidia/anything")


def test_a_new_deberta_classifier_is_a_few_lines(nvidia_checkpoints):
    class ToxicityClassifier(HubClassifier):
        MODEL_ID = str(nvidia_checkpoints["quality"])
        LABEL_FIELD = "toxicity_pred"
        MAX_CHARS = 100
        MAX_SEQ_LENGTH = 64

    classifier = ToxicityClassifier(device="cpu")
    assert (classifier.max_chars, classifier.max_seq_length) == (100, 64)
    out = classifier(_frame())
    assert set(out["toxicity_pred"]) <= {"High", "Medium", "Low"}


# ------------------------------------------------------------------------------ loading


def _weight_names(folder: Path) -> set[str]:
    return set(load_file(folder / "model.safetensors"))


@pytest.mark.parametrize("kind", KINDS)
def test_loads_its_fabricated_hub_layout(kind, nvidia_checkpoints):
    folder = nvidia_checkpoints[kind]
    classifier = _build(kind, nvidia_checkpoints)
    info = classifier.describe()
    assert info.layout == LAYOUTS[kind]
    assert info.path == folder.resolve()
    config = json.loads((folder / "config.json").read_text())
    names = _weight_names(folder)
    if LAYOUTS[kind] == "head":
        # NVIDIA "Deberta" layout: plain-dict config, backbone under model., head fc.
        assert {"base_model", "fc_dropout", "id2label", "label2id", "max_len"} <= set(config)
        assert "model_type" not in config
        assert info.labels == type(classifier).LABELS
        assert {"fc.weight", "fc.bias"} <= names and any(n.startswith("model.encoder.") for n in names)
    elif LAYOUTS[kind] == "hf":
        assert config["architectures"] == ["BertForSequenceClassification"]
        assert (info.problem_type, info.num_outputs, info.labels) == ("regression", 1, None)
        assert {"classifier.weight", "classifier.bias"} <= names
    else:
        assert "model_type" not in config
        for key in ("base_model", "targets", "target_sizes", "task_type_map", "weights_map", "divisor_map"):
            assert config[key] == PROMPT_COMPLEXITY_CONFIG[key] or key == "base_model"
        assert info.num_outputs == sum(PROMPT_COMPLEXITY_CONFIG["target_sizes"].values())
        assert info.labels[4] == "Code Generation" and len(info.labels) == 12
        heads = {f"head_{i}.fc.{p}" for i in range(8) for p in ("weight", "bias")}
        assert heads <= names
        assert all(n.startswith("backbone.") for n in names - heads)
    loaded = get_model(str(folder), None, "cpu")
    assert loaded.info.layout == info.layout
    with torch.inference_mode():
        ids = torch.tensor([[1, 10, 11, 12, 2]])
        out = loaded.module(ids, torch.ones_like(ids))
    assert out.shape == (1, info.num_outputs) and torch.isfinite(out).all()


@pytest.mark.parametrize("kind", KINDS)
def test_output_schema_and_meta(kind, nvidia_checkpoints):
    *_ignored, columns = EXPECTED[kind]
    classifier = _build(kind, nvidia_checkpoints)
    frame = _with_nulls()
    ddf = dd.from_pandas(frame, npartitions=3)
    lazy = classifier(ddf)
    assert list(lazy.columns) == list(ddf.columns) + list(columns)
    with dask.config.set(scheduler="sync"):
        out = lazy.compute()
    assert out.dtypes[list(columns)].to_dict() == columns
    assert lazy._meta.dtypes.to_dict() == out.dtypes.to_dict()
    assert list(out.index) == list(frame.index)
    null_rows = frame["text"].map(lambda text: not isinstance(text, str) or not text.strip())
    assert null_rows.sum() == 3
    for name in columns:
        assert out.loc[null_rows, name].isna().all(), name
        assert out.loc[~null_rows, name].notna().all(), name
    eager = classifier(frame)  # one partition: other batches, so float noise only
    pd.testing.assert_frame_equal(out[list(columns)], eager[list(columns)], rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------ FineWeb


def test_fineweb_scores_are_clipped_rounded_and_labelled(nvidia_checkpoints):
    classifier = _build("fineweb-mixtral-edu", nvidia_checkpoints)
    info = classifier.describe()
    raw = torch.tensor([[-1.0], [0.4], [2.5], [2.49], [3.5], [4.5], [7.0], [float("nan")]])
    valid = np.array([True] * 7 + [False])
    like = pd.DataFrame(index=pd.RangeIndex(8))
    columns = classifier.postprocess(raw, valid, info, like)
    score, integer, label = (columns[name] for name in classifier.output_names())
    np.testing.assert_array_equal(score.to_numpy()[:7], np.float32([0, 0.4, 2.5, 2.49, 3.5, 4.5, 5]))
    assert score.dtype == np.float32 and np.isnan(score.iloc[7])
    # Rounded after clipping, half to even as torch.round and Python's round do.
    assert integer.tolist() == [0, 0, 2, 2, 4, 4, 5, pd.NA]
    assert label.tolist()[:7] == ["low_quality", "low_quality", "high_quality", "low_quality"] + ["high_quality"] * 3
    assert pd.isna(label.iloc[7])


def test_fineweb_filter_by_the_quality_label(nvidia_checkpoints):
    frame = _frame()
    everything = _build("fineweb-nemotron-edu", nvidia_checkpoints)(frame)
    kept = _build("fineweb-nemotron-edu", nvidia_checkpoints, filter_by=["high_quality"])(frame)
    expected = everything[everything["fineweb-nemotron-edu-score-label"] == "high_quality"]
    pd.testing.assert_frame_equal(kept, expected)
    assert 0 < len(kept) < len(frame)
    # FineWebEdu writes no label by default: filter_by needs one, and says so.
    with pytest.raises(InputError, match=r"label_field.*\['low_quality', 'high_quality'\]"):
        FineWebEduClassifier(filter_by=["high_quality"])
    labelled = _build("fineweb-edu", nvidia_checkpoints, label_field="edu-label")(frame)
    low = _build("fineweb-edu", nvidia_checkpoints, label_field="edu-label", filter_by=["low_quality"])(frame)
    pd.testing.assert_frame_equal(low, labelled[labelled["fineweb-edu-score"] < 2.5])
    with pytest.raises(InputError, match=r"choose from \['low_quality', 'high_quality'\]"):
        FineWebMixtralEduClassifier(filter_by=["great"])


# ------------------------------------------------------------------------------ prompt task


def _reference_prompt_scores(logits: np.ndarray, config: dict) -> dict[str, list]:
    """NeMo Curator's post-processing, re-derived from the model card with numpy."""
    sizes = list(config["target_sizes"].items())
    bounds = np.cumsum([0] + [size for _, size in sizes])
    heads = {name: logits[:, bounds[i] : bounds[i + 1]] for i, (name, _) in enumerate(sizes)}

    def softmax(x):
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    task = softmax(heads["task_type"].astype(np.float32))
    order = np.argsort(-task, axis=1, kind="stable")[:, :2]
    probs = np.round(np.take_along_axis(task, order, axis=1).astype(np.float64), 3)
    names = config["task_type_map"]
    out = {
        "task_type_1": [names[str(i)] for i in order[:, 0]],
        "task_type_2": [names[str(i)] if p >= 0.1 else "NA" for i, p in zip(order[:, 1], probs[:, 1])],
        "task_type_prob": list(probs[:, 0]),
    }
    for name in ("creativity_scope", "reasoning", "contextual_knowledge", "number_of_few_shots",
                 "domain_knowledge", "no_label_reason", "constraint_ct"):  # fmt: skip
        value = (softmax(heads[name].astype(np.float32)) * np.array(config["weights_map"][name])).sum(axis=1)
        value = [round(float(v), 4) for v in value / config["divisor_map"][name]]
        if name == "number_of_few_shots":
            value = [v if v >= 0.05 else 0 for v in value]
        out[name] = value
    out["prompt_complexity_score"] = [
        round(0.35 * c + 0.25 * r + 0.15 * k + 0.15 * d + 0.05 * x + 0.05 * f, 5)
        for c, r, k, d, x, f in zip(
            out["creativity_scope"], out["reasoning"], out["constraint_ct"], out["domain_knowledge"],
            out["contextual_knowledge"], out["number_of_few_shots"],
        )
    ]  # fmt: skip
    return out


def test_prompt_postprocessing_follows_nemo_curator(nvidia_checkpoints):
    classifier = _build("prompt-task-complexity", nvidia_checkpoints)
    info = classifier.describe()
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(40, info.num_outputs, generator=generator) * 3
    logits[0, :12] = torch.tensor([0.0] * 4 + [9.0] + [0.0] * 7)  # one sure task: second is "NA"
    logits[1, 12:15] = torch.tensor([0.0, 0.0, 20.0])  # creativity class 2 (weight 0): score 0
    logits[2, 19:25] = torch.tensor([20.0, 0, 0, 0, 0, 0])  # no few shots: score exactly 0
    valid = np.ones(40, dtype=bool)
    columns = classifier.postprocess(logits, valid, info, pd.DataFrame(index=range(40)))
    assert list(columns) == list(OUTPUT_COLUMNS)
    expected = _reference_prompt_scores(logits.numpy(), info.config)
    assert columns["task_type_1"].tolist() == expected["task_type_1"]
    assert columns["task_type_2"].tolist() == expected["task_type_2"]
    assert columns["task_type_1"][0] == "Code Generation" and columns["task_type_2"][0] == "NA"
    np.testing.assert_allclose(columns["task_type_prob"], expected["task_type_prob"], atol=1e-6)
    for name in OUTPUT_COLUMNS[3:]:
        # Same formula; the last decimal may differ where numpy's and torch's float32
        # softmax straddle a rounding boundary.
        np.testing.assert_allclose(columns[name], expected[name], atol=1.01e-4, err_msg=name)
    assert columns["creativity_scope"][1] == 0.0 and columns["number_of_few_shots"][2] == 0.0
    assert (columns["no_label_reason"] == 0).all()  # its only weight is 0 in the real config
    assert 0.0 <= columns["prompt_complexity_score"].min() and columns["prompt_complexity_score"].max() <= 1.0


def test_prompt_filter_by_task_type_and_prefix(nvidia_checkpoints):
    frame = _frame()
    everything = _build("prompt-task-complexity", nvidia_checkpoints, column_prefix="p_")(frame)
    assert list(everything.columns) == ["text", "n"] + ["p_" + c for c in OUTPUT_COLUMNS]
    top = everything["p_task_type_1"].value_counts().index[0]
    kept = _build("prompt-task-complexity", nvidia_checkpoints, column_prefix="p_", filter_by=[top])(frame)
    pd.testing.assert_frame_equal(kept, everything[everything["p_task_type_1"] == top])
    classifier = _build("prompt-task-complexity", nvidia_checkpoints, filter_by=["Coding"])
    with pytest.raises(InputError, match=r"\['Coding'\].*choose from \['Brainstorming', 'Chatbot'"):
        classifier(frame)
    with pytest.raises(InputError, match="column_prefix"):
        PromptTaskComplexityClassifier(label_field="task")


# ------------------------------------------------------------------------------ bad input


def test_filter_by_label_not_in_the_model_lists_the_labels(nvidia_checkpoints):
    classifier = _build("domain", nvidia_checkpoints, filter_by=["Finance", "Cooking"])
    with pytest.raises(InputError, match=r"\['Cooking'\] are not labels of the model; choose from \['Adult', "):
        classifier(dd.from_pandas(_frame(), npartitions=2))
    kept = _build("domain", nvidia_checkpoints, filter_by=["Finance", "Health"])(_frame())
    assert set(kept["domain_pred"]) <= {"Finance", "Health"}


def test_filter_by_on_a_plain_regression_checkpoint_is_refused(nvidia_checkpoints):
    generic = DistributedDataClassifier(model_identifier=nvidia_checkpoints["fineweb-edu"], filter_by=["x"])
    with pytest.raises(InputError, match="regression"):
        generic(_frame())


def test_classes_refuse_checkpoints_of_another_kind(nvidia_checkpoints):
    with pytest.raises(InputError, match="one-output regression"):
        FineWebEduClassifier(model_identifier=nvidia_checkpoints["quality"])(_frame())
    with pytest.raises(InputError, match="no 'target_sizes'"):
        PromptTaskComplexityClassifier(model_identifier=nvidia_checkpoints["domain"])(_frame())
    with pytest.raises(InputError, match="PromptTaskComplexityClassifier"):
        DistributedDataClassifier(model_identifier=nvidia_checkpoints["prompt-task-complexity"])(_frame())


@pytest.mark.parametrize("key", ["weights_map", "divisor_map", "task_type_map", "base_model"])
def test_prompt_checkpoint_missing_a_config_key_names_file_and_key(key, tmp_path):
    folder = make_prompt_complexity_checkpoint(tmp_path / "prompt", drop_config_keys=[key])
    with pytest.raises(ModelLoadError) as caught:
        PromptTaskComplexityClassifier(model_identifier=folder)(_frame())
    assert str(folder / "config.json") in str(caught.value) and repr(key) in str(caught.value)


def test_prompt_checkpoint_with_inconsistent_maps(tmp_path):
    sizes = dict(PROMPT_COMPLEXITY_CONFIG["target_sizes"])
    del sizes["constraint_ct"]
    folder = make_prompt_complexity_checkpoint(tmp_path / "a", config_overrides={"target_sizes": sizes})
    with pytest.raises(ModelLoadError, match=r"target_sizes lacks the target\(s\) \['constraint_ct'\]"):
        PromptTaskComplexityClassifier(model_identifier=folder)(_frame())
    weights = dict(PROMPT_COMPLEXITY_CONFIG["weights_map"], reasoning=[0, 1, 2])
    folder = make_prompt_complexity_checkpoint(tmp_path / "b", config_overrides={"weights_map": weights})
    with pytest.raises(ModelLoadError, match=r"weights_map\['reasoning'\] must list 2 weights"):
        PromptTaskComplexityClassifier(model_identifier=folder)(_frame())


def _drop_weight(folder: Path, name: str) -> None:
    state = load_file(folder / "model.safetensors")
    del state[name]
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})


@pytest.mark.parametrize(
    ("kind", "weight"),
    [("prompt-task-complexity", "head_3.fc.weight"), ("quality", "fc.bias"), ("fineweb-edu", "classifier.weight")],
)
def test_checkpoint_missing_a_weight_names_file_and_weight(kind, weight, nvidia_checkpoints, tmp_path):
    folder = tmp_path / kind
    shutil.copytree(nvidia_checkpoints[kind], folder)
    _drop_weight(folder, weight)
    describe_model(str(folder))  # configs alone are fine: the weights fail where they load
    with pytest.raises(ModelLoadError) as caught:
        get_model(str(folder), None, "cpu")
    assert str(folder / "model.safetensors") in str(caught.value) and weight in str(caught.value)


# ------------------------------------------------------------------------------ one pass


ONE_PASS_KINDS = ("quality", "domain", "content-type")


def _one_pass_classifiers(checkpoints, **options):
    return [_build(kind, checkpoints, **options) for kind in ONE_PASS_KINDS]


def test_the_real_deberta_repos_tokenizers_count_as_one(nvidia_checkpoints):
    keys = {_build(kind, nvidia_checkpoints).describe().tokenizer_key for kind in ONE_PASS_KINDS}
    assert len(keys) == 1  # each folder has its own copy, with a different model_max_length
    assert _build("fineweb-edu", nvidia_checkpoints).describe().tokenizer_key not in keys


@pytest.mark.parametrize("same_lengths", [False, True], ids=["nemo-defaults", "same-lengths"])
def test_one_pass_equals_one_after_another(same_lengths, nvidia_checkpoints):
    options = {"max_chars": 2000, "max_seq_length": 512} if same_lengths else {}
    frame = _with_nulls()
    ddf = dd.from_pandas(frame, npartitions=3)
    quality, domain, content = _one_pass_classifiers(nvidia_checkpoints, **options)
    with dask.config.set(scheduler="sync"):
        together = classify(ddf, [quality, domain, content]).compute()
        chained = content(domain(quality(ddf))).compute()
        separate = [c(ddf).compute() for c in (quality, domain, content)]
    pd.testing.assert_frame_equal(together, chained)
    for classifier, alone in zip((quality, domain, content), separate):
        names = classifier.output_names()
        pd.testing.assert_frame_equal(together[names], alone[names])
    assert list(together.columns) == ["text", "n", "quality_pred", "quality_prob", "domain_pred", "content_pred"]


def test_one_pass_tokenizes_once_per_distinct_setting(nvidia_checkpoints, monkeypatch):
    calls = []
    real_encode = partition_module.encode

    def counting_encode(tokenizer, texts, valid, max_length, **limits):
        calls.append((len(texts), max_length))
        return real_encode(tokenizer, texts, valid, max_length, **limits)

    monkeypatch.setattr(partition_module, "encode", counting_encode)
    frame = _frame()
    same = _one_pass_classifiers(nvidia_checkpoints, max_chars=2000, max_seq_length=512)
    classify(frame, same)
    assert calls == [(len(frame), 512)]  # one tokenizer (by content), one setting: once

    calls.clear()
    classify(frame, _one_pass_classifiers(nvidia_checkpoints))  # NeMo's lengths: 3 settings
    assert sorted(calls) == [(len(frame), 512), (len(frame), 1024), (len(frame), 1024)]

    calls.clear()
    mixed = same[:2] + [_build("fineweb-edu", nvidia_checkpoints, max_chars=2000)]  # another tokenizer
    classify(frame, mixed)
    assert len(calls) == 2

    calls.clear()
    with dask.config.set(scheduler="sync"):
        classify(dd.from_pandas(frame, npartitions=3), same).compute()
    assert len(calls) == 3  # once per partition


# ------------------------------------------------------------------------------ CLI


def test_cli_runs_ready_made_classifiers_from_a_hub_cache(nvidia_checkpoints, tmp_path, monkeypatch):
    from nemo_cls_dask.cli import main

    hub = make_fake_hf_cache(
        tmp_path / "hub",
        {
            "nvidia/quality-classifier-deberta": nvidia_checkpoints["quality"],
            "nvidia/domain-classifier": nvidia_checkpoints["domain"],
        },
    )
    # Workers are new processes: they read the cache from the environment as well.
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    source = tmp_path / "in.parquet"
    _frame(SAMPLE_TEXTS[:20], index=pd.RangeIndex(20)).to_parquet(source)
    out = tmp_path / "out"
    argv = ["classify", str(source), str(out), "--classifier", "quality,domain", "--n-workers", "1"]
    assert main(argv + ["--cache-dir", str(hub)]) == 0
    # pandas 3.1 cannot rebuild the list<float32> dtype from the files' pandas metadata
    # ("data type 'list<item: float>[pyarrow]' not understood"): read with pyarrow alone.
    table = pyarrow.parquet.read_table(out, columns=["n", "quality_pred", "domain_pred"])
    result = table.to_pandas(ignore_metadata=True).sort_values("n")
    expected = classify(_frame(SAMPLE_TEXTS[:20]), _one_pass_classifiers(nvidia_checkpoints)[:2])
    assert result["quality_pred"].tolist() == expected["quality_pred"].tolist()
    assert result["domain_pred"].tolist() == expected["domain_pred"].tolist()
    assert main(["classify", str(source), str(tmp_path / "x"), "--classifier", "quality,nope"]) == 2


def test_hub_ids_resolve_from_a_fake_cache(nvidia_checkpoints, tmp_path):
    repo = "nvidia/nemocurator-fineweb-mixtral-edu-classifier"
    hub = make_fake_hf_cache(tmp_path / "hub", {repo: nvidia_checkpoints["fineweb-mixtral-edu"]})
    classifier = FineWebMixtralEduClassifier(cache_dir=str(hub), device="cpu")
    info = classifier.describe()
    assert info.path.parent.parent.name == "models--nvidia--nemocurator-fineweb-mixtral-edu-classifier"
    out = classifier(_frame())
    direct = _build("fineweb-mixtral-edu", nvidia_checkpoints)(_frame())
    pd.testing.assert_frame_equal(out, direct)
