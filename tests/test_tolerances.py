"""The label comparison used across batch layouts forgives near-ties only."""

import pytest

from tolerances import FP32_ATOL, assert_labels_agree


def test_equal_labels_and_matching_nulls_pass():
    assert_labels_agree(["a", None, "b"], ["a", float("nan"), "b"], [[0.9, 0.1], None, [0.2, 0.8]])


def test_a_flip_on_a_near_tie_passes():
    assert_labels_agree(["b"], ["a"], [[0.5 + FP32_ATOL / 2, 0.5 - FP32_ATOL / 2]])


def test_a_flip_with_a_clear_margin_fails():
    with pytest.raises(AssertionError, match="no near-tie"):
        assert_labels_agree(["b"], ["a"], [[0.6, 0.4]])


def test_a_null_against_a_label_fails():
    with pytest.raises(AssertionError, match="row 0"):
        assert_labels_agree([None], ["a"], [[0.5, 0.5]])
