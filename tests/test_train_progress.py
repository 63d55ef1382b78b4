"""Training shows progress on a terminal: embedding rows (frozen backbone) and each epoch."""

from __future__ import annotations

import io
import re

import numpy as np
import pandas as pd
import pytest

from nemo_cls_dask import TextClassifier
from nemo_cls_dask.testing import make_backbone_checkpoint

WORDS = "the of and to a in is it you that he was for on are with as".split()


class FakeTerminal(io.StringIO):
    """Stands in for an interactive stderr."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    return str(make_backbone_checkpoint(tmp_path_factory.mktemp("progress") / "backbone"))


@pytest.fixture(scope="module")
def frame():
    rng = np.random.default_rng(3)
    labels = ["apple", "banana"] * 40
    texts = [" ".join(list(rng.choice(WORDS, 6)) + [label]) for label in labels]
    return pd.DataFrame({"text": texts, "label": labels})


def estimator(backbone: str, **kwargs) -> TextClassifier:
    params = dict(epochs=2, learning_rate=1e-3, max_len=16, batch_tokens=256, max_batch_rows=16, seed=0)
    return TextClassifier(backbone, **(params | kwargs))


def test_frozen_backbone_shows_embedding_and_epoch_bars_on_a_terminal(backbone, frame, monkeypatch):
    terminal = FakeTerminal()
    monkeypatch.setattr("sys.stderr", terminal)
    clf = estimator(backbone, frozen_backbone=True).fit(frame)
    shown = terminal.getvalue()
    n_train = clf.n_train_rows_
    assert 0 < n_train < len(frame)  # the default validation split held some rows out
    assert re.search(rf"embedding train rows: 100%.*{n_train}/{n_train}", shown)
    n_valid = len(frame) - n_train
    assert re.search(rf"embedding valid rows: 100%.*{n_valid}/{n_valid}", shown)
    for epoch in (1, 2):
        assert re.search(rf"epoch {epoch}/2: 100%.*{n_train}/{n_train} \[.*row/s", shown)
    assert "val_loss=" in shown  # the epoch's validation metrics end up on its bar


def test_full_fine_tune_shows_a_bar_per_epoch(backbone, frame, monkeypatch):
    terminal = FakeTerminal()
    monkeypatch.setattr("sys.stderr", terminal)
    clf = estimator(backbone, epochs=2, validation_fraction=0.0).fit(frame)
    shown = terminal.getvalue()
    assert clf.n_train_rows_ == len(frame)
    for epoch in (1, 2):
        assert re.search(rf"epoch {epoch}/2: 100%.*{len(frame)}/{len(frame)} \[.*row/s", shown)
    assert "embedding" not in shown  # only the frozen backbone embeds first


def test_no_bars_when_stderr_is_not_a_terminal(backbone, frame, capsys):
    estimator(backbone, frozen_backbone=True, epochs=1).fit(frame)
    captured = capsys.readouterr()
    assert "embedding" not in captured.err and "epoch 1/1" not in captured.err


@pytest.mark.parametrize("verbose, progress, shown", [(True, False, False), (False, None, False), (False, True, True)])
def test_progress_argument_overrides_the_terminal_check(backbone, frame, monkeypatch, verbose, progress, shown):
    terminal = FakeTerminal()
    monkeypatch.setattr("sys.stderr", terminal)
    estimator(backbone, frozen_backbone=True, epochs=1, verbose=verbose).fit(frame, progress=progress)
    assert ("epoch 1/1" in terminal.getvalue()) is shown
