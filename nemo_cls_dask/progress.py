"""Progress you can see on a terminal, and silence everywhere else.

One small reporter for long runs (classifying partitions, embedding and training epochs):
rows done, docs/s and an ETA when the total is known. It is shown when the stream is a
terminal, or when the caller forces it with ``progress=True``; ``progress=False`` or a
stream that is not a terminal (a log file, a pipe, CI, a notebook cell) keeps it silent.

In a Jupyter kernel a forced bar is tqdm's widget bar only when ``ipywidgets`` is
installed; otherwise it is the plain text bar. Without ipywidgets, importing this module
also silences tqdm's ``TqdmWarning: IProgress not found``, which ``tqdm.auto`` prints when
a dependency (huggingface_hub, transformers) imports it in a kernel: the text bar it falls
back to is the one intended here.

:class:`RowProgress` also keeps a timeline of ``(seconds, rows_done, padding)`` rows (padding
efficiency: real / computed tokens), the
input of the throughput and padding plots of :func:`nemo_cls_dask.report.write_report`.
"""

from __future__ import annotations

import importlib.util
import sys
import time
import warnings
from typing import Any, TextIO

from tqdm.std import TqdmWarning
from tqdm.std import tqdm as text_tqdm

__all__ = ["RowProgress", "TimelineRow", "progress_bar", "progress_enabled"]

TimelineRow = tuple[float, int, "float | None"]
"""``(seconds since start, rows done, padding efficiency)``.

Padding efficiency is real tokens / computed (padded) tokens so far, as the CLI prints it:
1.0 means no padding at all; None where no token counts were given.
"""


def _is_terminal(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if callable(isatty) else False
    except (ValueError, OSError):  # a closed or detached stream
        return False


def progress_enabled(progress: bool | None, stream: TextIO | None = None) -> bool:
    """Whether to show progress: ``progress`` when it is a bool, else "is ``stream`` a terminal".

    ``stream`` defaults to ``sys.stderr``, where the bars are drawn.
    """
    if progress is None:
        return _is_terminal(sys.stderr if stream is None else stream)
    if not isinstance(progress, bool):
        raise TypeError(f"progress must be True, False or None (show on a terminal), not {progress!r}")
    return progress


def _in_notebook_kernel() -> bool:
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    try:
        ipython = shell.get_ipython()
    except AttributeError:
        return False
    return ipython is not None and type(ipython).__name__ == "ZMQInteractiveShell"


def silence_missing_widgets_warning() -> None:
    """Ignore tqdm.auto's "IProgress not found" warning when ipywidgets is not installed.

    Only that message, only then: with ipywidgets there is no warning to silence.
    """
    if importlib.util.find_spec("ipywidgets") is None:
        warnings.filterwarnings("ignore", message=r"IProgress not found", category=TqdmWarning)


silence_missing_widgets_warning()


def _bar_class(stream: TextIO | None) -> type:
    """The widget bar in a notebook kernel with ipywidgets installed; the text bar otherwise."""
    if stream is None and _in_notebook_kernel() and importlib.util.find_spec("ipywidgets") is not None:
        from tqdm.notebook import tqdm as notebook_tqdm

        return notebook_tqdm
    return text_tqdm


def progress_bar(
    total: int | None,
    *,
    desc: str,
    unit: str = "doc",
    progress: bool | None = None,
    stream: TextIO | None = None,
    leave: bool = True,
) -> Any:
    """A tqdm bar counting ``unit`` s up to ``total`` (None: count and rate, no ETA).

    Disabled (every method a no-op) unless :func:`progress_enabled` says otherwise, so the
    caller can update it unconditionally.
    """
    enabled = progress_enabled(progress, stream)
    cls = _bar_class(stream) if enabled else text_tqdm
    kwargs: dict[str, Any] = {"total": total, "desc": desc, "unit": unit, "disable": not enabled, "leave": leave,
                              "dynamic_ncols": True, "mininterval": 0.2}
    if cls is text_tqdm:
        kwargs["file"] = sys.stderr if stream is None else stream
    return cls(**kwargs)


class RowProgress:
    """Rows done over a run: a bar (when shown) and a timeline for the report.

    Call :meth:`advance` as each partition or batch finishes. Use as a context manager, or
    call :meth:`close`. ``timeline`` starts with ``(0.0, 0, None)``.
    """

    def __init__(
        self,
        total: int | None = None,
        *,
        desc: str = "classify",
        unit: str = "doc",
        progress: bool | None = None,
        stream: TextIO | None = None,
        clock: Any = time.perf_counter,
    ) -> None:
        self.enabled = progress_enabled(progress, stream)
        self._bar = progress_bar(total, desc=desc, unit=unit, progress=self.enabled, stream=stream)
        self._stream = stream
        self._clock = clock
        self._start = clock()
        self.rows_done = 0
        self.real_tokens = 0
        self.padded_tokens = 0
        self.timeline: list[TimelineRow] = [(0.0, 0, None)]

    def advance(self, rows: int, *, real_tokens: int | None = None, padded_tokens: int | None = None) -> None:
        """Count ``rows`` more rows done; their token counts update the padding efficiency."""
        if rows < 0:
            raise ValueError(f"rows must be >= 0, got {rows}")
        self.rows_done += int(rows)
        padding = None
        if real_tokens is not None and padded_tokens is not None:
            self.real_tokens += int(real_tokens)
            self.padded_tokens += int(padded_tokens)
            if self.padded_tokens:
                padding = self.real_tokens / self.padded_tokens
                self._bar.set_postfix(pad_eff=f"{padding:.3f}", refresh=False)
        self.timeline.append((self._clock() - self._start, self.rows_done, padding))
        self._bar.update(int(rows))

    @property
    def seconds(self) -> float:
        """Seconds since the reporter was created."""
        return self._clock() - self._start

    def write(self, message: str, file: TextIO | None = None) -> None:
        """Print a line (to stdout by default) without tearing a bar drawn on the terminal."""
        text_tqdm.write(message, file=sys.stdout if file is None else file)

    def close(self) -> None:
        self._bar.close()

    def __enter__(self) -> RowProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
