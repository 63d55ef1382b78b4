"""glibc's mmap threshold: raised only where the environment froze it and did not choose it."""

from __future__ import annotations

import pytest

from nemo_cls_dask import allocator

MALLOC_VARIABLES = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_MMAP_MAX_", "GLIBC_TUNABLES")


@pytest.fixture
def calls(monkeypatch):
    recorded: list[tuple[int, int]] = []

    def fake_mallopt(parameter: int, value: int) -> int:
        recorded.append((parameter, value))
        return 1

    for name in MALLOC_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(allocator, "_mallopt", lambda: fake_mallopt)
    monkeypatch.setattr(allocator, "_STATE", {"tuned": None})
    return recorded


@pytest.mark.parametrize(
    ("environment", "raised"),
    [
        ({}, False),
        ({"MALLOC_TRIM_THRESHOLD_": "65536"}, True),  # what dask's nanny sets
        ({"MALLOC_TOP_PAD_": "0"}, True),
        ({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=65536"}, True),
        ({"MALLOC_TRIM_THRESHOLD_": "65536", "MALLOC_MMAP_THRESHOLD_": "1048576"}, False),  # the user chose
        ({"MALLOC_TRIM_THRESHOLD_": "65536", "MALLOC_MMAP_MAX_": "0"}, False),
        ({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=65536:glibc.malloc.mmap_threshold=131072"}, False),
    ],
)
def test_raises_the_threshold_only_where_it_was_frozen(monkeypatch, calls, environment, raised):
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert allocator.tune_for_tensors() is raised
    assert calls == ([(allocator.M_MMAP_THRESHOLD, allocator.MMAP_THRESHOLD)] if raised else [])
    assert allocator.tune_for_tensors() is raised  # once per process
    assert len(calls) == (1 if raised else 0)


def test_without_glibc_nothing_happens(monkeypatch, calls):
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")
    monkeypatch.setattr(allocator, "_mallopt", lambda: None)
    assert allocator.tune_for_tensors() is False


def test_real_mallopt_accepts_the_value():
    mallopt = allocator._mallopt()
    if mallopt is None:
        pytest.skip("not glibc")
    assert mallopt(allocator.M_MMAP_THRESHOLD, allocator.MMAP_THRESHOLD) == 1


def _rss_mib() -> float:
    import psutil

    return psutil.Process().memory_info().rss / (1 << 20)


@pytest.mark.skipif(allocator._malloc_trim() is None, reason="needs glibc's malloc_trim")
def test_release_free_heap_gives_freed_heap_pages_back():
    # 1,600 blocks of 64 KiB, written so their pages are resident, then every other one
    # freed: 50 MiB of free chunks between live ones, which glibc keeps in its heap (only the
    # top of a heap is trimmed on free). Blocks of 64 KiB sit below any mmap threshold.
    blocks = [bytearray(b"x" * (64 << 10)) for _ in range(1600)]
    del blocks[::2]
    before = _rss_mib()
    assert allocator.release_free_heap() is True
    # At least half of the 50 MiB freed comes back (the rest may be reused or still mapped by
    # other allocations of this process); RSS never grows from a trim.
    assert before - _rss_mib() > 25
    assert len(blocks) == 800 and all(block[-1] == ord("x") for block in blocks)  # live data intact


def test_release_free_heap_without_glibc_does_nothing(monkeypatch):
    monkeypatch.setattr(allocator, "_malloc_trim", lambda: None)
    assert allocator.release_free_heap() is False


def test_cpu_inference_releases_the_heap_once_per_call(monkeypatch, tmp_path):
    import pandas as pd

    from nemo_cls_dask import DistributedDataClassifier, engine
    from nemo_cls_dask.testing import make_hf_sequence_checkpoint

    folder = make_hf_sequence_checkpoint(tmp_path / "m", ["a", "b"], arch="bert")
    calls = []
    monkeypatch.setattr(engine, "release_free_heap", lambda: calls.append(1) or True)
    out = DistributedDataClassifier(model_identifier=str(folder), label_field="y", device="cpu")(
        pd.DataFrame({"text": ["one text", "another text", "a third"]}))
    assert out["y"].notna().all() and len(calls) == 1
