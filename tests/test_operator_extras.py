"""Operator extras: uncertainty columns, MC dropout, embeddings and long documents.

References are computed here, apart from the package's engine: uncertainty from the
written score column with numpy; embeddings and per-window outputs by calling the
checkpoint's backbone (and ``fc``) directly on one row or one window at a time, unbatched,
in fp32; windows are cut by hand from the tokenizer's ids.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
import torch

from nemo_cls_dask import (
    DistributedDataClassifier,
    FineWebEduClassifier,
    InputError,
    classify,
    engine_stats,
    reset_engine_stats,
)
from nemo_cls_dask import uncertainty as U
from nemo_cls_dask.engine import BatchSettings, infer, mc_dropout_twin
from nemo_cls_dask.models.loading import LoadedModel, get_model
from nemo_cls_dask.testing import SAMPLE_TEXTS, make_deberta_head_checkpoint, make_tokenizer, tiny_backbone_config
from nemo_cls_dask.tokenization import encode, encode_windows, window_starts

from conftest import HEAD_LABELS, MULTI_LABELS

ATOL = 1e-5
#: A window small enough that ordinary sample texts need several of them.
WINDOW = 24
OVERLAP = 6


def frame(texts: list, index: list | None = None) -> pd.DataFrame:
    return pd.DataFrame({"text": texts, "n": range(len(texts))}, index=index)


def scores(column: pd.Series) -> np.ndarray:
    """A list<float32> column as a 2-D array (rows must all be valid)."""
    return np.stack([np.asarray(value, dtype=np.float64) for value in column])


@pytest.fixture(scope="module")
def texts() -> list:
    """Short and long texts (7 to ~70 tokens) and a null, in no length order."""
    return [SAMPLE_TEXTS[31], "Hi there.", None, SAMPLE_TEXTS[5], SAMPLE_TEXTS[33], "ok"]


# --------------------------------------------------------------------------- reference model


class ReferenceHead:
    """The NVIDIA head layout loaded by hand: backbone from ``base_model`` + ``fc``, fp32."""

    def __init__(self, checkpoint: Path) -> None:
        from safetensors.torch import load_file
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        config = json.loads((checkpoint / "config.json").read_text())
        state = load_file(str(checkpoint / "model.safetensors"))
        self.backbone = AutoModel.from_config(AutoConfig.from_pretrained(config["base_model"]))
        self.backbone.load_state_dict({k[len("model."):]: v for k, v in state.items() if k.startswith("model.")})
        self.backbone = self.backbone.float().eval()
        self.fc = torch.nn.Linear(state["fc.weight"].shape[1], state["fc.weight"].shape[0])
        self.fc.load_state_dict({"weight": state["fc.weight"], "bias": state["fc.bias"]})
        self.tokenizer = AutoTokenizer.from_pretrained(checkpoint)

    def run(self, ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """Logits and ``[CLS]`` state of one unpadded id sequence."""
        with torch.inference_mode():
            tensor = torch.tensor([ids])
            cls = self.backbone(input_ids=tensor, attention_mask=torch.ones_like(tensor)).last_hidden_state[:, 0]
            return self.fc(cls)[0].numpy().astype(np.float64), cls[0].numpy().astype(np.float64)

    def windows(self, text: str, window: int, overlap: int) -> list[list[int]]:
        """Cut by hand: [CLS] + up to ``window - 2`` text ids + [SEP], stepping ``window - 2 - overlap``."""
        cls, sep = self.tokenizer.cls_token_id, self.tokenizer.sep_token_id
        body = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(body) + 2 <= window:
            return [[cls, *body, sep]]
        room = window - 2
        pieces, start = [], 0
        while True:
            pieces.append([cls, *body[start : start + room], sep])
            if start + room >= len(body):
                return pieces
            start += room - overlap


@pytest.fixture(scope="module")
def reference_head(head_checkpoint) -> ReferenceHead:
    return ReferenceHead(head_checkpoint)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


# --------------------------------------------------------------------------- uncertainty


def test_uncertainty_functions_on_known_distributions():
    uniform = np.full((1, 4), 0.25)
    certain = np.array([[0.0, 1.0, 0.0, 0.0]])
    both = np.concatenate([uniform, certain])
    assert U.entropy(both) == pytest.approx([math.log(4), 0.0])
    assert U.least_confidence(both) == pytest.approx([0.75, 0.0])
    assert U.margin(both) == pytest.approx([0.0, 1.0])  # small margin = uncertain
    halves = np.array([[0.5, 0.5], [1.0, 0.0]])
    assert U.entropy(halves, multi_label=True) == pytest.approx([math.log(2), 0.0])
    assert U.least_confidence(halves, multi_label=True) == pytest.approx([0.5, 0.0])
    assert U.margin(halves, multi_label=True) == pytest.approx([0.0, 1.0])
    samples = np.array([[[0.2, 0.8]], [[0.4, 0.6]]])  # k=2 samples of one row
    assert U.mc_variance(samples) == pytest.approx([0.01])
    assert isinstance(U.entropy(torch.tensor(both)), torch.Tensor)  # same kind out as in
    with pytest.raises(ValueError, match="k >= 2"):
        U.mc_variance(samples[:1])


@pytest.mark.parametrize("fixture", ["head_checkpoint", "hf_checkpoint"])
def test_uncertainty_columns_equal_a_reference_from_the_scores(fixture, request, texts):
    checkpoint = request.getfixturevalue(fixture)
    classifier = DistributedDataClassifier(
        model_identifier=checkpoint, score_field="probs", uncertainty=["entropy", "margin", "least_confidence"]
    )
    out = classifier(frame(texts))
    valid = out["text"].notna().to_numpy()
    p = scores(out["probs"][valid])
    top = np.sort(p, axis=1)[:, ::-1]
    expected = {
        "preds_entropy": -(p * np.log(p)).sum(axis=1),
        "preds_margin": top[:, 0] - top[:, 1],
        "preds_least_confidence": 1.0 - top[:, 0],
    }
    for name, values in expected.items():
        assert out[name].dtype == np.float32
        np.testing.assert_allclose(out[name].to_numpy()[valid], values, atol=ATOL)
        assert out[name][~valid].isna().all()
    assert classifier.output_names() == ["preds", "probs", *expected]


def test_multilabel_uncertainty_is_the_mean_of_binary_measures(multilabel_checkpoint, texts):
    classifier = DistributedDataClassifier(
        model_identifier=multilabel_checkpoint,
        label_field="tags",
        score_field="probs",
        uncertainty=["entropy", "margin", "least_confidence"],
    )
    out = classifier(frame(texts))
    valid = out["text"].notna().to_numpy()
    p = scores(out["probs"][valid])
    assert p.shape[1] == len(MULTI_LABELS)
    entropy = -(p * np.log(p) + (1 - p) * np.log(1 - p)).mean(axis=1)
    np.testing.assert_allclose(out["tags_entropy"][valid], entropy, atol=ATOL)
    np.testing.assert_allclose(out["tags_margin"][valid], np.abs(2 * p - 1).mean(axis=1), atol=ATOL)
    np.testing.assert_allclose(out["tags_least_confidence"][valid], (1 - np.maximum(p, 1 - p)).mean(axis=1), atol=ATOL)


def test_mc_variance_samples_dropout_and_keeps_the_deterministic_labels(head_checkpoint, texts):
    """MC dropout is random: values differ between runs, so this checks what must hold.

    Repeatable only with one thread and the same torch seed (an eager pandas call): dropout
    draws from torch's global generator in batch order.
    """
    plain = DistributedDataClassifier(model_identifier=head_checkpoint, score_field="probs")(frame(texts))
    sampled = DistributedDataClassifier(
        model_identifier=head_checkpoint,
        score_field="probs",
        uncertainty=["mc_variance", "entropy"],
        dropout_samples=4,
    )
    torch.manual_seed(0)
    out = sampled(frame(texts))
    pd.testing.assert_frame_equal(out[plain.columns], plain)  # labels and scores from the eval pass
    valid = out["text"].notna().to_numpy()
    variance = out["preds_mc_variance"]
    assert variance.dtype == np.float32
    assert (variance[valid] > 0).all() and (variance[valid] <= 0.25).all()
    assert variance[~valid].isna().all()
    torch.manual_seed(0)
    np.testing.assert_array_equal(sampled(frame(texts))["preds_mc_variance"], variance)
    # The shared module never left eval mode; its train-mode twin shares every weight.
    loaded = get_model(str(head_checkpoint))
    assert not any(module.training for module in loaded.module.modules())
    twin = mc_dropout_twin(loaded)
    assert twin is not loaded.module and twin.training
    assert all(a is b for a, b in zip(twin.parameters(), loaded.module.parameters()))
    assert mc_dropout_twin(loaded) is twin  # made once per process


def test_mc_variance_of_a_regression_model(regression_checkpoint, texts):
    classifier = DistributedDataClassifier(
        model_identifier=regression_checkpoint, label_field="edu", uncertainty="mc_variance", dropout_samples=3
    )
    out = classifier(frame(texts))
    valid = out["text"].notna().to_numpy()
    assert (out["edu_mc_variance"][valid] > 0).all()
    with pytest.raises(InputError, match="regression"):
        DistributedDataClassifier(model_identifier=regression_checkpoint, uncertainty=["entropy"])(frame(texts))


@pytest.fixture(scope="module")
def no_dropout_checkpoint(tmp_path_factory) -> Path:
    """A head checkpoint whose every dropout rate is 0 (fc_dropout and the backbone's)."""
    backbone = tiny_backbone_config(
        "deberta", vocab_size=len(make_tokenizer("deberta")), hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0
    ).to_dict()
    return make_deberta_head_checkpoint(
        tmp_path_factory.mktemp("nodrop") / "model",
        list(HEAD_LABELS),
        fc_dropout=0.0,
        seed=5,
        extra_config={"backbone_config": backbone},
    )


def test_mc_variance_without_dropout_fails_on_apply_and_on_the_worker(no_dropout_checkpoint, texts):
    classifier = DistributedDataClassifier(
        model_identifier=no_dropout_checkpoint, uncertainty=["mc_variance"], dropout_samples=2
    )
    with pytest.raises(InputError, match="dropout rate in the config"):
        classifier(frame(texts))
    # The module-level check, for layouts whose config cannot tell.
    loaded = get_model(str(no_dropout_checkpoint))
    encoded = encode(loaded.tokenizer, ["some text"], np.ones(1, dtype=bool), 32)
    with pytest.raises(InputError, match="no dropout layer"):
        infer(loaded, encoded, BatchSettings(), dropout_samples=2)


# --------------------------------------------------------------------------- embeddings


def test_head_embeddings_equal_the_backbone_run_on_one_row(head_checkpoint, reference_head, texts):
    classifier = DistributedDataClassifier(model_identifier=head_checkpoint, score_field="probs", embedding_field="emb")
    out = classifier(frame(texts))
    assert out["emb"].dtype == frame_dtype("emb", classifier, texts)
    assert out["emb"].isna().tolist() == out["text"].isna().tolist()
    for position, text in enumerate(texts):
        if text is None:
            continue
        ids = reference_head.tokenizer(text)["input_ids"]
        logits, cls = reference_head.run(ids)
        np.testing.assert_allclose(np.asarray(out["emb"].iloc[position]), cls, atol=ATOL)
        # the same vector the head reads: fc(embedding) gives the scores
        np.testing.assert_allclose(np.asarray(out["probs"].iloc[position]), softmax(logits), atol=ATOL)


def frame_dtype(column: str, classifier: DistributedDataClassifier, texts: list):
    """The dtype the lazy operator declares for ``column``."""
    return classifier(dd.from_pandas(frame(texts), npartitions=1))._meta[column].dtype


def test_hf_embeddings_are_the_first_tokens_last_hidden_state(hf_checkpoint):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    text = SAMPLE_TEXTS[2]
    out = DistributedDataClassifier(model_identifier=hf_checkpoint, embedding_field="emb")(frame([text]))
    model = AutoModelForSequenceClassification.from_pretrained(hf_checkpoint).eval()
    encoded = AutoTokenizer.from_pretrained(hf_checkpoint)(text, return_tensors="pt")
    with torch.inference_mode():
        expected = model.bert(**encoded).last_hidden_state[0, 0].numpy()
    np.testing.assert_allclose(np.asarray(out["emb"].iloc[0]), expected, atol=ATOL)


def test_multihead_embedding_is_the_mean_pooled_vector(tmp_path):
    from nemo_cls_dask.models.heads import pool
    from nemo_cls_dask.testing import make_prompt_complexity_checkpoint

    loaded = get_model(str(make_prompt_complexity_checkpoint(tmp_path / "prompt", seed=3)))
    ids = torch.tensor([[1, 40, 41, 42, 2], [1, 43, 2, 0, 0]])
    mask = (ids != 0).long()
    with torch.inference_mode():
        outputs, pooled = loaded.module.forward_with_embedding(ids, mask)
        hidden = loaded.module.backbone(input_ids=ids, attention_mask=mask).last_hidden_state
        torch.testing.assert_close(outputs, loaded.module(ids, mask))
    torch.testing.assert_close(pooled, pool(hidden, mask, "mean"))


def test_a_module_without_forward_with_embedding_is_refused(head_checkpoint):
    loaded = get_model(str(head_checkpoint))
    plain = LoadedModel(loaded.info, torch.nn.Linear(2, 3), loaded.tokenizer, loaded.device)
    encoded = encode(loaded.tokenizer, ["text"], np.ones(1, dtype=bool), 16)
    with pytest.raises(InputError, match="'head' model .* no forward_with_embedding"):
        infer(plain, encoded, BatchSettings(), embeddings=True)


# --------------------------------------------------------------------------- long documents


def test_windows_carry_special_tokens_and_overlap(head_checkpoint):
    tokenizer = ReferenceHead(head_checkpoint).tokenizer
    long_text, short_text = SAMPLE_TEXTS[35], "Hi there."
    windowed = encode_windows(tokenizer, [long_text, short_text], np.array([True, False, True]), WINDOW, OVERLAP)
    body = tokenizer(long_text, add_special_tokens=False)["input_ids"]
    room = WINDOW - 2
    expected_count = 1 + math.ceil((len(body) - room) / (room - OVERLAP))
    assert windowed.windows_per_row().tolist() == [expected_count, 0, 1]
    pieces = [
        windowed.windows.ids[start : start + length].tolist()
        for start, length in zip(windowed.windows.offsets, windowed.windows.lengths)
    ]
    assert all(len(piece) <= WINDOW for piece in pieces)
    assert all(p[0] == tokenizer.cls_token_id and p[-1] == tokenizer.sep_token_id for p in pieces)
    for first, second in zip(pieces[: expected_count - 1], pieces[1:expected_count]):
        assert first[-1 - OVERLAP : -1] == second[1 : 1 + OVERLAP]
    rebuilt = pieces[0][1:-1] + [t for p in pieces[1:expected_count] for t in p[1 + OVERLAP : -1]]
    assert rebuilt == body
    assert pieces[-1] == tokenizer(short_text)["input_ids"]  # a text that fits: as encode() makes it
    assert window_starts(10, 4, 1) == [0, 3, 6]


@pytest.mark.parametrize("how", ["mean", "max"])
def test_long_documents_aggregate_per_window_references(how, head_checkpoint, reference_head, texts):
    classifier = DistributedDataClassifier(
        model_identifier=head_checkpoint,
        score_field="probs",
        embedding_field="emb",
        uncertainty=["entropy"],
        max_seq_length=WINDOW,
        long_documents=how,
        chunk_overlap=OVERLAP,
    )
    reset_engine_stats()
    out = classifier(frame(texts, index=[7, 7, 3, 0, 1, 2]))
    windows_run = 0
    for position, text in enumerate(texts):
        if text is None:
            assert out.iloc[position][["preds", "probs", "emb", "preds_entropy"]].isna().all()
            continue
        pieces = reference_head.windows(text, WINDOW, OVERLAP)
        windows_run += len(pieces)
        runs = [reference_head.run(piece) for piece in pieces]
        probs = np.stack([softmax(logits) for logits, _ in runs])
        expected = probs.mean(axis=0) if how == "mean" else probs.max(axis=0)
        got = np.asarray(out["probs"].iloc[position])
        np.testing.assert_allclose(got, expected, atol=ATOL)
        assert out["preds"].iloc[position] == HEAD_LABELS[int(expected.argmax())]
        np.testing.assert_allclose(np.asarray(out["emb"].iloc[position]), np.mean([c for _, c in runs], axis=0), atol=ATOL)
        normalized = expected / expected.sum()
        assert out["preds_entropy"].iloc[position] == pytest.approx(-(normalized * np.log(normalized)).sum(), abs=ATOL)
    assert engine_stats()["rows"] == windows_run > len(texts)  # every window ran, batched like rows
    assert out.index.tolist() == [7, 7, 3, 0, 1, 2] and out["n"].tolist() == list(range(len(texts)))


def test_short_texts_are_exactly_what_truncate_gives(head_checkpoint, texts):
    options = dict(model_identifier=head_checkpoint, score_field="probs", embedding_field="emb", max_seq_length=WINDOW)
    truncated = DistributedDataClassifier(**options)(frame(texts))
    tokenizer = make_tokenizer("deberta")
    fits = pd.Series([isinstance(t, str) and len(tokenizer(t)["input_ids"]) <= WINDOW for t in texts])
    assert 2 <= fits.sum() < len(texts) - 1
    for how in ("mean", "max"):
        chunked = DistributedDataClassifier(**options, long_documents=how, chunk_overlap=OVERLAP)(frame(texts))
        pd.testing.assert_frame_equal(chunked[fits], truncated[fits])
    # max_chars cuts first: cut short enough, every text fits and nothing differs.
    cut = dict(options, max_chars=20)
    pd.testing.assert_frame_equal(
        DistributedDataClassifier(**cut, long_documents="max", chunk_overlap=OVERLAP)(frame(texts)),
        DistributedDataClassifier(**cut)(frame(texts)),
    )


def test_long_multilabel_max_and_regression_mean(multilabel_checkpoint, regression_checkpoint, texts):
    long = [texts[0], texts[4]]
    base = dict(max_seq_length=WINDOW, chunk_overlap=OVERLAP)
    multi = DistributedDataClassifier(model_identifier=multilabel_checkpoint, score_field="p", long_documents="max", **base)
    out = multi(frame(long))
    loaded = get_model(str(multilabel_checkpoint))
    windowed = encode_windows(loaded.tokenizer, long, np.ones(2, dtype=bool), WINDOW, OVERLAP)
    per_window = torch.sigmoid(infer(loaded, windowed.windows, BatchSettings(sort_by_length=False)).outputs).numpy()
    for row in range(2):
        expected = per_window[windowed.owner == row].max(axis=0)
        np.testing.assert_allclose(np.asarray(out["p"].iloc[row]), expected, atol=ATOL)
        assert list(out["preds"].iloc[row]) == [label for label, p in zip(MULTI_LABELS, expected) if p >= 0.5]
    regression = DistributedDataClassifier(model_identifier=regression_checkpoint, long_documents="mean", **base)
    loaded = get_model(str(regression_checkpoint))
    windowed = encode_windows(loaded.tokenizer, long, np.ones(2, dtype=bool), WINDOW, OVERLAP)
    values = infer(loaded, windowed.windows, BatchSettings()).outputs[:, 0].numpy()
    expected = [values[windowed.owner == row].mean() for row in range(2)]
    np.testing.assert_allclose(regression(frame(long))["preds"], expected, atol=ATOL)


def test_a_subclass_with_its_own_columns_gets_the_extras(regression_checkpoint, texts):
    """FineWeb's postprocess reads aggregated values; extras follow its own columns."""
    classifier = FineWebEduClassifier(
        model_identifier=regression_checkpoint,
        uncertainty=["mc_variance"],
        dropout_samples=2,
        embedding_field="emb",
        long_documents="mean",
        max_seq_length=WINDOW,
        chunk_overlap=OVERLAP,
    )
    score, integer = classifier.score_field, classifier.int_score_field
    added = [score, integer, f"{score}_mc_variance", "emb"]
    assert classifier.all_output_names() == added
    lazy = classifier(dd.from_pandas(frame(texts), npartitions=2, sort=False))
    out = lazy.compute()
    assert list(out.columns) == ["text", "n", *added]
    assert out[added].dtypes.to_dict() == lazy._meta[added].dtypes.to_dict()
    valid = out["text"].notna().to_numpy()
    assert (out[f"{score}_mc_variance"][valid] > 0).all() and out["emb"][valid].notna().all()
    with pytest.raises(InputError, match="differ"):
        FineWebEduClassifier(model_identifier=regression_checkpoint, embedding_field=score)


def test_multihead_subclass_windows_and_embeddings(tmp_path, texts):
    """Prompt task/complexity (a postprocess of its own, per-target softmax) on windows."""
    from nemo_cls_dask import PromptTaskComplexityClassifier
    from nemo_cls_dask.testing import make_prompt_complexity_checkpoint

    checkpoint = make_prompt_complexity_checkpoint(tmp_path / "prompt", seed=3)
    pdf = frame(texts)
    options = dict(model_identifier=checkpoint, max_seq_length=WINDOW)
    windowed = PromptTaskComplexityClassifier(**options, long_documents="mean", chunk_overlap=OVERLAP, embedding_field="emb")
    out = windowed(pdf)
    truncated = PromptTaskComplexityClassifier(**options)(pdf)
    tokenizer = make_tokenizer("deberta")
    fits = [isinstance(t, str) and len(tokenizer(t)["input_ids"]) <= WINDOW for t in texts]
    pd.testing.assert_frame_equal(out[fits][truncated.columns], truncated[fits])  # exactly, not up to log/softmax
    loaded = get_model(str(checkpoint))
    long = texts[0]
    pieces = encode_windows(loaded.tokenizer, [long], np.ones(1, dtype=bool), WINDOW, OVERLAP)
    assert len(pieces.owner) > 1
    result = infer(loaded, pieces.windows, BatchSettings(), embeddings=True)
    task_classes = next(iter(json.loads((checkpoint / "config.json").read_text())["target_sizes"].values()))
    task_probs = torch.softmax(result.outputs[:, :task_classes], dim=-1).mean(dim=0)
    assert out["task_type_prob"].iloc[0] == pytest.approx(round(float(task_probs.max()), 3), abs=1e-6)
    np.testing.assert_allclose(np.asarray(out["emb"].iloc[0]), result.embeddings.mean(dim=0).numpy(), atol=ATOL)
    with pytest.raises(InputError, match="single-label, multi-label or regression"):
        PromptTaskComplexityClassifier(**options, uncertainty=["entropy"])(pdf)


# --------------------------------------------------------------------------- dask and one pass


def test_dask_keeps_order_index_and_meta(head_checkpoint, texts):
    pdf = frame(texts * 2, index=[5, 3, 3, 9, 1, 0, 8, 8, 2, 4, 6, 7])
    classifier = DistributedDataClassifier(
        model_identifier=head_checkpoint,
        score_field="probs",
        uncertainty=["margin", "least_confidence"],
        embedding_field="emb",
        long_documents="max",
        max_seq_length=WINDOW,
        chunk_overlap=OVERLAP,
    )
    lazy = classifier(dd.from_pandas(pdf, npartitions=3, sort=False))
    computed = lazy.compute()
    eager = classifier(pdf)
    assert computed.index.tolist() == pdf.index.tolist()
    assert computed["n"].tolist() == pdf["n"].tolist()
    new = classifier.output_names()
    assert computed[new].dtypes.to_dict() == lazy._meta[new].dtypes.to_dict() == eager[new].dtypes.to_dict()
    pd.testing.assert_frame_equal(computed[new], eager[new])


def test_mc_dropout_in_threads_leaves_other_runs_of_the_shared_model_deterministic(head_checkpoint, texts):
    """Threads share one loaded module; MC passes run on its twin, so plain runs never see dropout."""
    pdf = frame(texts * 4)
    plain = DistributedDataClassifier(model_identifier=head_checkpoint, score_field="probs")
    sampled = DistributedDataClassifier(
        model_identifier=head_checkpoint, label_field="mc", uncertainty=["mc_variance"], dropout_samples=3
    )
    expected = plain(pdf)
    lazy = classify(dd.from_pandas(pdf, npartitions=6, sort=False), [sampled, plain])
    out = lazy.compute(scheduler="threads", num_workers=3)
    pd.testing.assert_frame_equal(out[["preds", "probs"]], expected[["preds", "probs"]])
    assert out["mc"].equals(out["preds"])


def test_one_pass_keeps_truncated_and_windowed_tokens_apart(head_checkpoint, texts):
    options = dict(model_identifier=head_checkpoint, max_seq_length=WINDOW, chunk_overlap=OVERLAP)
    truncate = DistributedDataClassifier(**{**options, "score_field": "cut_p"}, label_field="cut")
    mean = DistributedDataClassifier(**{**options, "score_field": "mean_p"}, label_field="mean", long_documents="mean")
    other_overlap = DistributedDataClassifier(
        **{**options, "score_field": "o_p", "chunk_overlap": 2}, label_field="o", long_documents="mean"
    )
    together = classify(frame(texts), [truncate, mean, other_overlap])
    for classifier in (truncate, mean, other_overlap):
        alone = classifier(frame(texts))
        pd.testing.assert_frame_equal(together[alone.columns], alone)


# --------------------------------------------------------------------------- bad options


@pytest.mark.parametrize(
    "options, match",
    [
        ({"uncertainty": ["entropy", "variance"]}, "uncertainty must be"),
        ({"uncertainty": []}, "uncertainty must be"),
        ({"uncertainty": ["margin", "margin"]}, "twice"),
        ({"uncertainty": 3}, "uncertainty must be"),
        ({"uncertainty": ["mc_variance"]}, "needs dropout_samples"),
        ({"uncertainty": ["mc_variance"], "dropout_samples": 1}, "dropout_samples must be"),
        ({"uncertainty": ["mc_variance"], "dropout_samples": True}, "dropout_samples must be"),
        ({"dropout_samples": 4}, "only feeds"),
        ({"embedding_field": ""}, "embedding_field must be"),
        ({"embedding_field": "preds"}, "must differ"),
        ({"uncertainty": ["entropy"], "embedding_field": "preds_entropy"}, "must differ"),
        ({"long_documents": "first"}, "long_documents must be"),
        ({"chunk_overlap": -1}, "chunk_overlap must be"),
        ({"chunk_overlap": 2.5}, "chunk_overlap must be"),
    ],
)
def test_bad_options(options, match, head_checkpoint):
    with pytest.raises(InputError, match=match):
        DistributedDataClassifier(model_identifier=head_checkpoint, **options)


def test_errors_that_need_the_model_or_frame(head_checkpoint, texts):
    pdf = frame(texts)
    with pytest.raises(InputError, match="already exist"):
        DistributedDataClassifier(model_identifier=head_checkpoint, embedding_field="n")(pdf)
    with pytest.raises(InputError, match="already exist"):
        DistributedDataClassifier(model_identifier=head_checkpoint, uncertainty="margin")(pdf.assign(preds_margin=1.0))
    long = dict(model_identifier=head_checkpoint, max_seq_length=WINDOW, long_documents="mean")
    with pytest.raises(InputError, match="smaller than the model's window"):
        DistributedDataClassifier(**long, chunk_overlap=WINDOW)(pdf)  # on apply, before any compute
    lazy = DistributedDataClassifier(**long, chunk_overlap=WINDOW - 2)(dd.from_pandas(pdf, npartitions=1))
    with pytest.raises(InputError, match="minus 2 special tokens"):  # the exact room, on the worker
        lazy.compute()
