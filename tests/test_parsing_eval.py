"""Grouping and parsing accuracy on small cases worked out by hand."""

from __future__ import annotations

import pytest

from fusionlog.evaluate.parsing import grouping_accuracy, parsing_accuracy

A, B, C = "open <*>", "close <*>", "fail"


def test_perfect_grouping_with_arbitrary_ids() -> None:
    assert grouping_accuracy([A, A, B, C], [7, 7, "x", 3]) == 1.0


def test_split_group_loses_all_its_lines() -> None:
    # A's three lines are split 2 + 1: neither predicted group holds all of A; B is right -> 1/4
    assert grouping_accuracy([A, A, A, B], [1, 1, 2, 3]) == 0.25


def test_merged_groups_lose_all_their_lines() -> None:
    # group 1 mixes A and B (both wrong, 3 lines); group 2 is exactly C -> 1/4
    assert grouping_accuracy([A, A, B, C], [1, 1, 1, 2]) == 0.25


def test_split_and_merge_together() -> None:
    # group 1 = {A, A} is all of A (right, 2 lines); group 2 = {B, C} merges (wrong, 2 lines);
    # group 3 = {B} is only part of B (wrong, 1 line) -> 2/5
    assert grouping_accuracy([A, A, B, C, B], [1, 1, 2, 2, 3]) == 0.4


def test_unparsed_lines_are_wrong_and_break_their_group() -> None:
    # the unparsed line is wrong even though its ground-truth group is a singleton;
    # B's parsed line alone is not all of B -> only A's line is right
    assert grouping_accuracy([A, C, B, B], [1, None, None, 2]) == 0.25
    assert grouping_accuracy([A, B], [None, None]) == 0.0


def test_ground_truth_whitespace_is_collapsed() -> None:
    assert grouping_accuracy(["a  <*>", "a <*>", "b"], [1, 1, 2]) == 1.0


def test_parsing_accuracy() -> None:
    gt = ["a <*>", "b  c", "d", "e"]
    pred = ["a <*>", " b c ", "d <*>", None]
    assert parsing_accuracy(gt, pred) == 0.5


def test_length_mismatch_and_empty() -> None:
    with pytest.raises(ValueError, match="2 ground-truth lines but 1 predictions"):
        grouping_accuracy([A, B], [1])
    with pytest.raises(ValueError):
        parsing_accuracy([A], [A, A])
    assert grouping_accuracy([], []) == 0.0 and parsing_accuracy([], []) == 0.0
