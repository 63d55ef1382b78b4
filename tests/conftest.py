"""Shared fixtures: tiny offline checkpoints, fabricated once per test session.

Every checkpoint is written in the on-disk layout of a real hub repo by
:mod:`nemo_cls_dask.testing`, so the suite exercises the same loading code as real
checkpoints, with no network (``HF_HUB_OFFLINE=1`` is set before anything imports
``huggingface_hub``).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One intra-op thread: the fabricated models are tiny, and on a small or busy machine
# OpenMP threads spinning against each other make each matmul ~100x slower. (Dask
# workers get OMP_NUM_THREADS=1 from their nanny anyway.)
os.environ.setdefault("OMP_NUM_THREADS", "1")
# fp32 under autocast=True on every CPU, so results do not depend on whether the machine
# has bf16 matrix instructions (worker processes inherit it). Tests of the bf16 default set
# it themselves.
os.environ["NEMO_CLS_DASK_CPU_BF16"] = "0"

import shutil  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

from nemo_cls_dask.testing import (  # noqa: E402
    SAMPLE_TEXTS,
    make_deberta_head_checkpoint,
    make_hf_sequence_checkpoint,
)

HEAD_LABELS = ["High", "Medium", "Low"]
HF_LABELS = ["negative", "neutral", "positive"]
MULTI_LABELS = ["news", "recipe", "science", "spam"]


def _varied_texts() -> list[str]:
    """Texts from one word to more tokens than ``max_len`` (512), in no length order."""
    longest = max(SAMPLE_TEXTS, key=len)
    very_long = " ".join([longest] * 3)  # about 1,300 tokens: truncated to max_len
    medium = " ".join(SAMPLE_TEXTS[20:26])
    short = ["Hi.", "ok", "Read.", "Yes!", "a b c"]
    texts = list(SAMPLE_TEXTS)
    texts.insert(3, very_long)
    texts.insert(10, short[0])
    texts.insert(17, medium)
    texts.insert(18, short[1])
    texts.insert(25, short[2])
    texts.insert(31, "word " * 150)
    texts.insert(32, short[3])
    texts.append(short[4])
    return texts


VARIED_TEXTS = _varied_texts()


@pytest.fixture(scope="session")
def varied_texts() -> list[str]:
    """About 50 texts of very different lengths (1 to ~1,300 tokens), not sorted."""
    return list(VARIED_TEXTS)


@pytest.fixture(scope="session")
def checkpoints_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("checkpoints")


@pytest.fixture(scope="session")
def head_checkpoint(checkpoints_root) -> Path:
    """NVIDIA NeMo Curator layout (quality-classifier-deberta): backbone under ``model.`` + ``fc``."""
    return make_deberta_head_checkpoint(checkpoints_root / "quality", HEAD_LABELS, seed=1)


@pytest.fixture(scope="session")
def hf_checkpoint(checkpoints_root) -> Path:
    """A ``BertForSequenceClassification`` ``save_pretrained`` folder with 3 labels."""
    return make_hf_sequence_checkpoint(checkpoints_root / "sentiment", HF_LABELS, arch="bert", seed=2)


@pytest.fixture(scope="session")
def regression_checkpoint(checkpoints_root) -> Path:
    """A one-output regression head (the shape of fineweb-edu-classifier)."""
    return make_hf_sequence_checkpoint(
        checkpoints_root / "edu", None, num_labels=1, problem_type="regression", arch="bert", seed=3
    )


@pytest.fixture(scope="session")
def multilabel_checkpoint(checkpoints_root) -> Path:
    """NVIDIA head layout with ``problem_type: multi_label_classification`` (sigmoid outputs)."""
    return make_deberta_head_checkpoint(
        checkpoints_root / "multi",
        MULTI_LABELS,
        seed=4,
        extra_config={"problem_type": "multi_label_classification"},
    )


@pytest.fixture
def copy_checkpoint(tmp_path):
    """Copy a checkpoint folder into this test's tmp dir (to damage it safely)."""

    def copy(source: Path, name: str = "copy") -> Path:
        target = tmp_path / name
        shutil.copytree(source, target)
        return target

    return copy


@pytest.fixture(scope="session")
def head_only_checkpoint(checkpoints_root) -> Path:
    """A head-only NVIDIA-layout checkpoint (``fc.*`` only) whose ``base_model`` is a saved backbone folder."""
    from safetensors.torch import load_file, save_file

    from nemo_cls_dask.testing import make_backbone_checkpoint, make_deberta_head_checkpoint

    backbone = make_backbone_checkpoint(checkpoints_root / "head_only_backbone", arch="deberta", seed=5)
    head = make_deberta_head_checkpoint(checkpoints_root / "head_only", ["a", "b", "c"], base_model=str(backbone), seed=6)
    state = load_file(head / "model.safetensors")
    save_file({name: t for name, t in state.items() if name.startswith("fc.")}, str(head / "model.safetensors"))
    return head
