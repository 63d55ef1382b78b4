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
