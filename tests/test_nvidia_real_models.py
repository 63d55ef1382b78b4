"""The NVIDIA classifiers with their real weights: NeMo Curator's own expected outputs.

These run only where the real checkpoints are on disk, and skip elsewhere. Enable them with

    NEMO_CLS_DASK_REAL_MODELS=/models python -m pytest tests/test_nvidia_real_models.py

where ``/models`` holds the repos as downloaded by
``huggingface-cli download nvidia/domain-classifier --local-dir /models/nvidia/domain-classifier``
(``/models/<hub id>``), or is a Hugging Face hub cache holding them. Without the variable the
default Hugging Face cache (``HF_HOME``) is searched. ``microsoft/deberta-v3-base`` itself is
not needed: the NVIDIA checkpoints carry the backbone weights, and its config is bundled.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from nemo_cls_dask.classifiers import (
    ContentTypeClassifier,
    DomainClassifier,
    FineWebEduClassifier,
    FineWebMixtralEduClassifier,
    FineWebNemotronEduClassifier,
    MultilingualDomainClassifier,
    PromptTaskComplexityClassifier,
    QualityClassifier,
)

ENV = "NEMO_CLS_DASK_REAL_MODELS"

#: The five sentences of NeMo Curator's classifier tests.
SENTENCES = [
    "Quantum computing is set to revolutionize the field of cryptography.",
    "Investing in index funds is a popular strategy for long-term financial growth.",
    "Recent advancements in gene therapy offer new hope for treating genetic disorders.",
    "Online learning platforms have transformed the way students access educational resources.",
    "Traveling to Europe during the off-season can be a more budget-friendly option.",
]
MULTILINGUAL_SENTENCES = [
    "量子计算将彻底改变密码学领域。",
    "Invertir en fondos indexados es una estrategia popular para el crecimiento financiero a largo plazo.",
    "Recent advancements in gene therapy offer new hope for treating genetic disorders.",
    "ऑनलाइन शिक्षण प्लेटफार्मों ने छात्रों के शैक्षिक संसाधनों तक पहुंचने के तरीके को बदल दिया है।",
    "অফ-সিজনে ইউরোপ ভ্রমণ করা আরও বাজেট-বান্ধব বিকল্প হতে পারে।",
]


def real_checkpoint(hub_id: str) -> str:
    """A local folder with the real ``hub_id`` checkpoint, or skip saying how to get one."""
    from huggingface_hub import snapshot_download

    root = os.environ.get(ENV)
    caches: list[str | None] = []
    if root:
        folder = Path(root).expanduser() / hub_id
        if (folder / "config.json").is_file():
            return str(folder)
        caches.append(str(Path(root).expanduser()))
    else:
        caches.append(None)  # the default Hugging Face cache
    for cache in caches:
        try:
            return snapshot_download(hub_id, cache_dir=cache, local_files_only=True)
        except Exception:
            continue
    pytest.skip(
        f"real weights of {hub_id} not found ({'in ' + root if root else 'in the default HF cache; ' + ENV + ' unset'}). "
        f"To run this test: huggingface-cli download {hub_id} --local-dir /models/{hub_id} and set {ENV}=/models "
        f"(or point {ENV} at a hub cache that has it)."
    )


def _run(classifier, texts) -> pd.DataFrame:
    return classifier(pd.DataFrame({"text": texts}))


def test_domain_classifier_real():
    classifier = DomainClassifier(model_identifier=real_checkpoint("nvidia/domain-classifier"))
    assert _run(classifier, SENTENCES)["domain_pred"].tolist() == [
        "Computers_and_Electronics", "Finance", "Health", "Jobs_and_Education", "Travel_and_Transportation",
    ]  # fmt: skip


def test_multilingual_domain_classifier_real():
    # Expected labels from NeMo Curator's own GPU test of this model.
    model = real_checkpoint("nvidia/multilingual-domain-classifier")
    out = _run(MultilingualDomainClassifier(model_identifier=model), MULTILINGUAL_SENTENCES)
    assert out["multilingual_domain_pred"].tolist() == [
        "Science", "Finance", "Health", "Jobs_and_Education", "Travel_and_Transportation",
    ]  # fmt: skip


def test_quality_classifier_real():
    classifier = QualityClassifier(model_identifier=real_checkpoint("nvidia/quality-classifier-deberta"))
    assert _run(classifier, SENTENCES[4:])["quality_pred"].tolist() == ["Medium"]


def test_content_type_classifier_real():
    classifier = ContentTypeClassifier(model_identifier=real_checkpoint("nvidia/content-type-classifier-deberta"))
    out = _run(classifier, ["Hi, great video! I am now a subscriber."])
    assert out["content_pred"].tolist() == ["Online Comments"]


@pytest.mark.parametrize(
    ("cls", "expected"),
    [
        (FineWebEduClassifier, [1, 0, 1, 1, 0]),
        (FineWebMixtralEduClassifier, [1, 1, 1, 2, 0]),
        (FineWebNemotronEduClassifier, [1, 1, 1, 2, 0]),
    ],
)
def test_fineweb_classifiers_real(cls, expected):
    classifier = cls(model_identifier=real_checkpoint(cls.MODEL_ID))
    out = _run(classifier, SENTENCES)
    assert out[classifier.int_score_field].tolist() == expected
    if classifier.label_field:
        scores = out[classifier.score_field].tolist()
        assert out[classifier.label_field].tolist() == ["high_quality" if s >= 2.5 else "low_quality" for s in scores]


def test_prompt_task_complexity_classifier_real():
    model = real_checkpoint("nvidia/prompt-task-and-complexity-classifier")
    out = _run(PromptTaskComplexityClassifier(model_identifier=model), ["Prompt: Write a Python script that uses a for loop."])
    row = out.iloc[0]
    assert row["task_type_1"] == "Code Generation"
    assert row["prompt_complexity_score"] == pytest.approx(0.2783, abs=1e-3)
    # The other values of NeMo Curator's test, at the precision it compares them.
    assert row["task_type_2"] == "Text Generation"
    assert row["task_type_prob"] == pytest.approx(0.767, abs=0.01)
    assert row["constraint_ct"] == pytest.approx(0.5586, abs=0.01)
    assert row["contextual_knowledge"] == pytest.approx(0.0559, abs=1e-3)
    assert row["creativity_scope"] == pytest.approx(0.0825, abs=0.01)
    assert row["domain_knowledge"] == pytest.approx(0.9803, abs=0.01)
    assert row["reasoning"] == pytest.approx(0.0632, abs=0.01)
    assert row["number_of_few_shots"] == 0 and row["no_label_reason"] == 0
