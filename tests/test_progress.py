"""The progress reporter: drawn on a terminal (or when forced), silent otherwise."""

from __future__ import annotations

import io
import sys
import warnings

import pytest

from nemo_cls_dask.progress import RowProgress, progress_bar, progress_enabled


class FakeTerminal(io.StringIO):
    """A text stream that says it is a terminal, to stand in for an interactive stderr."""

    def isatty(self) -> bool:
        if self.closed:
            raise ValueError("I/O operation on closed file")  # what a real closed stream does
        return True


class Clock:
    """A clock the test advances by hand, so rates and timelines are exact."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_enabled_follows_the_stream_unless_forced():
    assert progress_enabled(None, FakeTerminal()) is True
    assert progress_enabled(None, io.StringIO()) is False
    assert progress_enabled(False, FakeTerminal()) is False
    assert progress_enabled(True, io.StringIO()) is True


def test_a_closed_stream_counts_as_not_a_terminal():
    stream = FakeTerminal()
    stream.close()
    assert progress_enabled(None, stream) is False


def test_progress_must_be_a_bool_or_none():
    with pytest.raises(TypeError, match="progress must be True, False or None"):
        progress_enabled("yes", FakeTerminal())


def test_bar_on_a_terminal_shows_rows_rate_and_total():
    terminal = FakeTerminal()
    bar = progress_bar(1000, desc="classify", progress=None, stream=terminal)
    bar.update(400)
    bar.refresh()
    bar.close()
    shown = terminal.getvalue()
    assert "classify" in shown
    assert "400/1000" in shown
    assert "doc" in shown  # the unit: "doc/s" or "s/doc" depending on speed
    assert "1000/1000" not in shown  # it never claims more than was done


def test_bar_is_silent_when_the_stream_is_not_a_terminal():
    log = io.StringIO()
    bar = progress_bar(10, desc="classify", stream=log)
    bar.update(10)
    bar.close()
    assert log.getvalue() == ""


def test_bar_is_silent_on_a_terminal_when_switched_off():
    terminal = FakeTerminal()
    bar = progress_bar(10, desc="classify", progress=False, stream=terminal)
    bar.update(10)
    bar.close()
    assert terminal.getvalue() == ""


def test_forced_bar_draws_even_into_a_file():
    log = io.StringIO()
    bar = progress_bar(10, desc="embed", progress=True, stream=log)
    bar.update(10)
    bar.close()
    assert "10/10" in log.getvalue()


def test_row_progress_counts_rows_and_records_a_timeline():
    clock = Clock()
    terminal = FakeTerminal()
    with RowProgress(100, desc="classify", stream=terminal, clock=clock) as reporter:
        clock.now += 2.0
        reporter.advance(30, real_tokens=300, padded_tokens=330)
        clock.now += 3.0
        reporter.advance(70, real_tokens=700, padded_tokens=720)
    assert reporter.rows_done == 100
    assert reporter.timeline[0] == (0.0, 0, None)
    assert [row[:2] for row in reporter.timeline] == [(0.0, 0), (2.0, 30), (5.0, 100)]
    assert reporter.timeline[1][2] == pytest.approx(300 / 330)  # real / computed tokens
    assert reporter.timeline[2][2] == pytest.approx(1000 / 1050)  # cumulative over the run
    shown = terminal.getvalue()
    assert "100/100" in shown
    assert "pad_eff=0.952" in shown


def test_row_progress_without_token_counts_has_no_padding():
    with RowProgress(None, stream=io.StringIO(), clock=Clock()) as reporter:
        reporter.advance(5)
    assert reporter.timeline[-1][1:] == (5, None)


def test_row_progress_rejects_negative_rows():
    with RowProgress(10, stream=io.StringIO()) as reporter, pytest.raises(ValueError, match="rows must be >= 0"):
        reporter.advance(-1)


def test_write_prints_messages_whether_or_not_a_bar_is_shown():
    out = io.StringIO()
    with RowProgress(10, progress=False) as reporter:
        reporter.write("wrote a.parquet", file=out)
    assert out.getvalue() == "wrote a.parquet\n"


def test_a_forced_bar_in_a_notebook_without_ipywidgets_is_plain_text(monkeypatch):
    """In a kernel without ipywidgets, tqdm.auto would warn "IProgress not found"; ours must not."""

    class ZMQInteractiveShell:  # the class name IPython's kernel shell has
        pass

    class FakeIPython:
        @staticmethod
        def get_ipython():
            return ZMQInteractiveShell()

    monkeypatch.setitem(sys.modules, "IPython", FakeIPython)
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # import fails, find_spec says absent
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ipywidgets" else real_find_spec(name, *a))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a TqdmWarning would fail the test
        bar = progress_bar(3, desc="train", progress=True)
        bar.update(3)
        bar.close()
    from tqdm.std import tqdm as text_tqdm

    assert type(bar) is text_tqdm
