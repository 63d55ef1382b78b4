"""The operator's contract: problem types, hooks, ``with_options``, dask projection,
parquet round trips, NeMo Curator's argument names, named scores and ``deterministic``.

Issue 13 (problem types as objects, the operator contract), issue 14 items 16-17, issue 15
item 11 and issue 16 (dask items 1-2, Hugging Face item 3).
"""

from __future__ import annotations

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
import torch
from dask.dataframe.dask_expr._expr import Expr
from dask.dataframe.dask_expr.io.parquet import ReadParquet

from nemo_cls_dask import DebianTopicClassifier, DistributedDataClassifier, FineWebEduClassifier, QualityClassifier
from nemo_cls_dask.classifiers import partition as partition_module
from nemo_cls_dask.classifiers.hub import HubClassifier
from nemo_cls_dask.engine import CPU_BF16_ENV, autocast_dtype, engine_stats, reset_engine_stats
from nemo_cls_dask.errors import InputError
from nemo_cls_dask.problems import (
    Regression,
    SingleLabel,
    get_problem,
    problem_names,
    register_problem,
)
from nemo_cls_dask.testing import SAMPLE_TEXTS

from conftest import HEAD_LABELS, HF_LABELS


def frame(texts, **extra) -> pd.DataFrame:
    return pd.DataFrame({"text": texts, "package": [f"p{i}" for i in range(len(texts))], **extra})


# --------------------------------------------------------------------------- problem types


@pytest.mark.parametrize(
    "short, config",
    [("single_label", "single_label_classification"), ("multi_label", "multi_label_classification"),
     ("regression", "regression"), ("multi_head", "multi_head")],
)
def test_one_vocabulary_accepts_both_spellings(short, config):
    problem = get_problem(short)
    assert get_problem(config) is problem
    assert get_problem(problem) is problem
    assert (problem.name, problem.config_name) == (short, config)
    assert short in problem_names() and config in problem_names(config=True)


def test_unknown_problem_type_names_the_choices():
    with pytest.raises(InputError, match="single_label.*multi_label"):
        get_problem("singel_label")


def test_problem_types_own_probabilities_decisions_and_their_inverse():
    logits = torch.tensor([[2.0, -1.0, 0.5], [-3.0, 0.0, 3.0]])
    single = get_problem("single_label").probabilities(logits)
    torch.testing.assert_close(single, torch.softmax(logits, dim=-1))
    assert get_problem("single_label").decide(single).tolist() == [0, 2]
    multi = get_problem("multi_label").probabilities(logits)
    torch.testing.assert_close(multi, torch.sigmoid(logits))
    assert get_problem("multi_label").decide(multi).tolist() == [[True, False, True], [False, True, True]]
    assert get_problem("regression").probabilities(logits) is logits
    for name in ("single_label", "multi_label"):
        problem = get_problem(name)
        p = problem.probabilities(logits)
        # softmax is invertible up to a constant per row; rtol: float32 log/exp round-off
        torch.testing.assert_close(problem.probabilities(problem.outputs_from_probabilities(p)), p, rtol=1e-5, atol=1e-6)
    as_numpy = get_problem("multi_label_classification").probabilities(logits.numpy())
    assert isinstance(as_numpy, np.ndarray)
    np.testing.assert_allclose(as_numpy, multi.numpy(), rtol=1e-6)
    assert get_problem("regression").uncertainty_measures == ("mc_variance",)
    assert not get_problem("regression").is_classifier and get_problem("multi_label").multi_label


class Abstaining(SingleLabel):
    """A new problem type in one small class: no label where the model is unsure."""

    name = "abstaining"
    config_name = "abstaining_classification"
    MIN_PROBABILITY = 0.9

    def label_column(self, probabilities, valid, info, like):
        sure = valid & (probabilities.max(dim=-1).values >= self.MIN_PROBABILITY).cpu().numpy()
        return super().label_column(probabilities, sure, info, like)


def test_a_new_problem_type_is_used_by_the_operator_unchanged(hf_checkpoint):
    texts = SAMPLE_TEXTS[:24]
    plain = DistributedDataClassifier(model_identifier=hf_checkpoint, score_field="p")(frame(texts))
    top = np.array([max(row) for row in plain["p"]])
    assert (top < Abstaining.MIN_PROBABILITY).any() and (top >= Abstaining.MIN_PROBABILITY).any()

    register_problem(Abstaining)
    try:
        for problem_type in (Abstaining(), "abstaining", "abstaining_classification"):
            op = DistributedDataClassifier(model_identifier=hf_checkpoint, score_field="p", problem_type=problem_type)
            with dask.config.set(scheduler="sync"):
                out = op(dd.from_pandas(frame(texts), npartitions=3, sort=False)).compute()
            sure = top >= Abstaining.MIN_PROBABILITY
            assert out["preds"][sure].tolist() == plain["preds"][sure].tolist()
            assert out["preds"][~sure].isna().all()
    finally:
        from nemo_cls_dask import problems

        for name in ("abstaining", "abstaining_classification"):
            problems._REGISTRY.pop(name, None)


def test_problem_type_option_reads_a_config_without_one_as_multi_label(hf_checkpoint):
    """A transformers checkpoint trained multi-label whose config does not say so."""
    texts = SAMPLE_TEXTS[:10]
    out = DistributedDataClassifier(model_identifier=hf_checkpoint, score_field="p", problem_type="multi_label")(frame(texts))
    plain = DistributedDataClassifier(model_identifier=hf_checkpoint, score_field="p")(frame(texts))
    assert all(isinstance(labels, np.ndarray | list) for labels in out["preds"])
    softmax = np.stack(plain["p"].to_list())
    sigmoid = np.stack(out["p"].to_list())
    logits = np.log(softmax)  # log-softmax: logits up to a per-row constant
    assert not np.allclose(sigmoid, softmax)
    assert (np.argsort(sigmoid, axis=1) == np.argsort(logits, axis=1)).all()
    expected = [[HF_LABELS[j] for j in np.flatnonzero(row >= 0.5)] for row in sigmoid]
    assert [list(labels) for labels in out["preds"]] == expected
    with pytest.raises(InputError, match="Unknown problem type"):
        DistributedDataClassifier(model_identifier=hf_checkpoint, problem_type="ranking")


def test_regression_model_refuses_label_reading_problem_types(regression_checkpoint):
    with pytest.raises(InputError, match="one name per output"):
        DistributedDataClassifier(model_identifier=regression_checkpoint, problem_type="single_label").describe()
    assert isinstance(
        DistributedDataClassifier(model_identifier=regression_checkpoint).problem(
            DistributedDataClassifier(model_identifier=regression_checkpoint).describe()
        ),
        Regression,
    )


# --------------------------------------------------------------------------- the contract


def test_hooks_are_declared_by_class_attributes():
    assert DistributedDataClassifier.own_columns is False
    assert FineWebEduClassifier.own_columns is True
    from nemo_cls_dask import ComposedClassifier, PromptTaskComplexityClassifier

    assert ComposedClassifier.own_columns and PromptTaskComplexityClassifier.own_columns
    for hook in ("check_model", "output_dtypes", "postprocess", "batch_settings", "apply_filter", "with_options"):
        assert callable(getattr(DistributedDataClassifier, hook))


def test_with_options_returns_a_checked_copy(head_checkpoint):
    original = DistributedDataClassifier(model_identifier=head_checkpoint, score_field="p", filter_by=["High"])
    original.describe()
    copy = original.with_options(filter_by=None, uncertainty="margin", label_field="q")
    assert (copy.filter_by, copy.uncertainty, copy.label_field) == (None, ("margin",), "q")
    assert (original.filter_by, original.uncertainty, original.label_field) == (("High",), None, "preds")
    assert copy.all_output_names() == ["q", "p", "q_margin"]
    out = copy(frame(SAMPLE_TEXTS[:6]))
    assert out["q_margin"].notna().all()
    with pytest.raises(InputError, match="unknown option"):
        original.with_options(labelfield="x")
    with pytest.raises(InputError, match="dropout_samples"):
        original.with_options(uncertainty=["mc_variance"])
    with pytest.raises(InputError, match="not labels of the model"):
        original.with_options(filter_by=["Nope"]).describe()


def test_hub_classifier_is_generic_and_old_imports_work():
    from nemo_cls_dask.classifiers import nvidia

    assert nvidia.HubClassifier is HubClassifier
    assert nvidia.DEFAULT is HubClassifier.__init__.__kwdefaults__["label_field"]
    assert callable(nvidia.check_filter_labels)
    assert issubclass(DebianTopicClassifier, HubClassifier)
    classifier = DebianTopicClassifier()
    assert (classifier.model_identifier, classifier.label_field, classifier.score_field) == ("debian-topics", "topic_pred", None)


def test_a_text_column_named_twice_is_refused_when_applied(head_checkpoint):
    doubled = pd.concat([frame(SAMPLE_TEXTS[:4]), pd.DataFrame({"text": ["x"] * 4})], axis=1)
    assert list(doubled.columns).count("text") == 2
    classifier = DistributedDataClassifier(model_identifier=head_checkpoint)
    with pytest.raises(InputError, match="2 columns named 'text'"):
        classifier(doubled)
    with pytest.raises(InputError, match="2 columns named 'text'"):
        classifier(dd.from_pandas(doubled, npartitions=2, sort=False))


# --------------------------------------------------------------------------- dask projection


@pytest.fixture
def model_calls(monkeypatch):
    """Counts the rows each classifier's model runs on (in this process: sync scheduler)."""
    calls: list[int] = []
    real = partition_module.classifier_columns

    def counting(classifier, loaded, tokens, valid, like):
        calls.append(len(like))
        return real(classifier, loaded, tokens, valid, like)

    monkeypatch.setattr(partition_module, "classifier_columns", counting)
    with dask.config.set(scheduler="sync"):
        yield calls


def read_columns(collection) -> list[list[str]]:
    """The columns every parquet read of the optimized graph asks for."""
    found, stack = [], [collection.optimize(fuse=False).expr]
    while stack:
        expr = stack.pop()
        if isinstance(expr, ReadParquet):
            found.append(sorted(expr.columns))
        stack.extend(operand for operand in expr.operands if isinstance(operand, Expr))
    return found


def test_selecting_other_columns_or_counting_rows_runs_no_model(head_checkpoint, tmp_path, model_calls):
    texts = SAMPLE_TEXTS[:30]
    dd.from_pandas(frame(texts, n=np.arange(30)), npartitions=3, sort=False).to_parquet(tmp_path / "in")
    out = DistributedDataClassifier(model_identifier=head_checkpoint, score_field="p")(dd.read_parquet(tmp_path / "in"))

    assert out[["package"]].compute()["package"].tolist() == [f"p{i}" for i in range(30)]
    assert len(out) == 30
    assert model_calls == []
    assert read_columns(out[["package"]]) == [["package"]]

    preds = out[["preds"]].compute()
    assert sum(model_calls) == 30
    model_branch = [columns for columns in read_columns(out[["preds"]]) if columns]
    assert model_branch == [["text"]]  # the model reads the text column only
    model_calls.clear()
    full = out.compute()
    assert sum(model_calls) == 30  # one model pass for the whole frame
    assert full["preds"].tolist() == preds["preds"].tolist()
    assert list(full.columns) == ["text", "package", "n", "preds", "p"]


def test_filter_by_still_runs_the_model_for_every_selection(head_checkpoint, model_calls):
    ddf = dd.from_pandas(frame(SAMPLE_TEXTS[:30]), npartitions=3, sort=False)
    out = DistributedDataClassifier(model_identifier=head_checkpoint, filter_by=["Low"])(ddf)
    eager = DistributedDataClassifier(model_identifier=head_checkpoint, filter_by=["Low"])(frame(SAMPLE_TEXTS[:30]))
    model_calls.clear()
    assert out[["package"]].compute()["package"].tolist() == eager["package"].tolist()
    assert sum(model_calls) == 30


def test_readme_to_parquet_recipe_reads_back_with_pandas_and_dask(multilabel_checkpoint, tmp_path):
    texts = SAMPLE_TEXTS[:12] + [None]
    classifier = DistributedDataClassifier(
        model_identifier=multilabel_checkpoint, score_field="p", embedding_field="emb", uncertainty=["entropy"]
    )
    out = classifier(dd.from_pandas(frame(texts), npartitions=2, sort=False))
    out.to_parquet(tmp_path / "out")
    expected = out.compute()
    for reader in (lambda: pd.read_parquet(tmp_path / "out"), lambda: dd.read_parquet(tmp_path / "out").compute()):
        back = reader()
        assert back.dtypes.to_dict() == expected.dtypes.to_dict()
        for column in ("p", "emb", "preds"):
            assert back[column].isna().tolist() == expected[column].isna().tolist()
            kept = expected[column].notna()
            assert [list(v) for v in back[column][kept]] == [list(v) for v in expected[column][kept]]


# --------------------------------------------------------------------------- named scores


def test_score_columns_one_per_label(head_checkpoint, tmp_path):
    texts = SAMPLE_TEXTS[:9] + [""]
    listed = DistributedDataClassifier(model_identifier=head_checkpoint, score_field="p")(frame(texts))
    named = DistributedDataClassifier(model_identifier=head_checkpoint, score_field="p", score_format="columns")
    lazy = named(dd.from_pandas(frame(texts), npartitions=2, sort=False))
    out = lazy.compute()
    columns = [f"p_{label}" for label in HEAD_LABELS]
    assert list(out.columns) == ["text", "package", "preds", *columns]
    assert out.dtypes.to_dict() == lazy._meta.dtypes.to_dict()
    valid = listed["p"].notna()
    np.testing.assert_array_equal(out[columns][valid].to_numpy(np.float32), np.stack(listed["p"][valid].to_list()))
    assert out[columns][~valid].isna().all().all()
    # The recipe to name a list column's scores: labels are in id order.
    labels = named.describe().labels
    first = dict(zip(labels, listed["p"].iloc[0]))
    assert first == {label: out[f"p_{label}"].iloc[0] for label in labels}
    with pytest.raises(InputError, match="score_format"):
        DistributedDataClassifier(model_identifier=head_checkpoint, score_format="dict", score_field="p")
    with pytest.raises(InputError, match="set score_field"):
        DistributedDataClassifier(model_identifier=head_checkpoint, score_format="columns")
    clash = frame(texts).assign(**{"p_Low": 1.0})
    with pytest.raises(InputError, match="p_Low"):
        named(clash)


# --------------------------------------------------------------------------- NeMo Curator names


def test_nemo_curator_argument_names_run_unchanged(head_checkpoint, regression_checkpoint):
    classifier = QualityClassifier(
        model_identifier=head_checkpoint, pred_column="q", prob_column="qp", model_inference_batch_size=4,
        has_seq_order=False, text_field="text",
    )
    assert (classifier.label_field, classifier.score_field, classifier.sort_by_length) == ("q", "qp", False)
    settings = classifier.batch_settings(classifier.describe())
    assert settings.max_batch_rows == 4 and settings.batch_tokens == 4 * 1024  # rows x the 1,024-token window
    reset_engine_stats()
    out = classifier(frame(SAMPLE_TEXTS[:10]))
    assert engine_stats()["batches"] == 3  # 4 + 4 + 2 rows, whatever their lengths
    assert out["q"].notna().all()
    dask_era = DistributedDataClassifier(model_identifier=head_checkpoint, pred_column="d", batch_size=8, device_type="cpu")
    assert (dask_era.label_field, dask_era.model_inference_batch_size, dask_era.device) == ("d", 8, "cpu")
    fineweb = FineWebEduClassifier(
        model_identifier=regression_checkpoint, pred_column="lab", float_score_column="f", int_score_column="i"
    )
    assert fineweb.output_names() == ["f", "i", "lab"]
    with pytest.raises(InputError, match="pred_column is NeMo Curator's name for label_field"):
        QualityClassifier(model_identifier=head_checkpoint, pred_column="a", label_field="b")
    with pytest.raises(InputError, match="unknown option"):
        DistributedDataClassifier(model_identifier=head_checkpoint, pred_colum="a")


# --------------------------------------------------------------------------- deterministic


def test_deterministic_forces_fp32_and_one_row_per_pass(head_checkpoint, monkeypatch):
    monkeypatch.setenv(CPU_BF16_ENV, "1")  # as on a CPU with bf16 matrix units
    cpu = torch.device("cpu")
    default = DistributedDataClassifier(model_identifier=head_checkpoint)
    deterministic = DistributedDataClassifier(model_identifier=head_checkpoint, deterministic=True, batch_tokens=4096)
    assert autocast_dtype(cpu, default.batch_settings().autocast) == torch.bfloat16
    settings = deterministic.batch_settings()
    assert autocast_dtype(cpu, settings.autocast) is None
    assert settings.max_batch_rows == 1
    with pytest.raises(InputError, match="deterministic=True runs in fp32"):
        DistributedDataClassifier(model_identifier=head_checkpoint, deterministic=True, autocast="bf16")


def test_deterministic_results_do_not_depend_on_partitions_or_batches(head_checkpoint, varied_texts):
    texts = varied_texts + varied_texts[:7]  # rows repeated in other partitions and batches
    outputs = []
    for npartitions, batch_tokens, sort in ((1, None, True), (4, 512, False), (7, 64, True)):
        classifier = DistributedDataClassifier(
            model_identifier=head_checkpoint, score_field="p", deterministic=True,
            batch_tokens=batch_tokens, sort_by_length=sort,
        )
        with dask.config.set(scheduler="sync"):
            outputs.append(classifier(dd.from_pandas(frame(texts), npartitions=npartitions, sort=False)).compute())
    first = np.stack(outputs[0]["p"].to_list())
    for other in outputs[1:]:
        # Exact: fp32 on one CPU, and every row ran alone, so the same kernels saw the same row.
        np.testing.assert_array_equal(np.stack(other["p"].to_list()), first)
    np.testing.assert_array_equal(first[len(varied_texts):], first[:7])  # a repeated row, another partition
    batched = DistributedDataClassifier(model_identifier=head_checkpoint, score_field="p")(frame(texts))
    # The batched default differs only by fp32 round-off from padding and batch shapes.
    np.testing.assert_allclose(np.stack(batched["p"].to_list()), first, atol=1e-5)
