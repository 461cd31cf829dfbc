"""``jobqueue.queues``: Resque's queue-list semantics.

Order is priority; ``*`` is every known queue A to Z; globs (``?``, ``[..]``, ``{a,b}``) match
known names alphabetically; ``!pattern`` removes what it matches from the whole list; a plain
name is always served, known or not (Resque ``Worker#queues``/``glob_match``).
"""

from __future__ import annotations

import pytest

from jobqueue.queues import expand, from_environment, is_dynamic, parse

KNOWN = ["mail_low", "default", "critical", "reports", "mail_high", "mail", "b1", "b2", "bx"]


# --------------------------------------------------------------------------- expand
def test_plain_list_keeps_its_order():
    assert expand(["low", "critical", "default"], KNOWN) == ["low", "critical", "default"]


def test_plain_names_are_served_even_if_unknown():
    assert expand(["critical", "not_yet"], []) == ["critical", "not_yet"]


def test_star_is_every_known_queue_alphabetically():
    assert expand(["*"], KNOWN) == sorted(KNOWN)


def test_star_with_no_known_queues_is_empty():
    assert expand(["*"], []) == []


def test_critical_then_star_puts_critical_first_without_repeating_it():
    result = expand(["critical", "*"], KNOWN)
    assert result[0] == "critical"
    assert result == ["critical", *sorted(set(KNOWN) - {"critical"})]


def test_a_name_already_taken_by_an_earlier_glob_is_not_repeated():
    assert expand(["*", "critical"], ["critical", "a"]) == ["a", "critical"]


def test_star_then_unknown_literal_appends_it():
    assert expand(["*", "later"], ["a"]) == ["a", "later"]


def test_duplicate_known_names_are_listed_once():
    assert expand(["*"], ["b", "a", "b"]) == ["a", "b"]


def test_known_names_may_come_from_any_iterable():
    assert expand(["*"], iter(["b", "a"])) == ["a", "b"]


def test_prefix_glob_matches_alphabetically():
    assert expand(["mail_*"], KNOWN) == ["mail_high", "mail_low"]


def test_question_mark_matches_one_character():
    assert expand(["b?"], KNOWN) == ["b1", "b2", "bx"]
    assert expand(["mai?"], KNOWN) == ["mail"]


def test_bracket_class_matches_listed_characters():
    assert expand(["b[12]"], KNOWN) == ["b1", "b2"]
    assert expand(["b[0-9]"], KNOWN) == ["b1", "b2"]


def test_bracket_negation_matches_other_characters():
    assert expand(["b[!1]"], KNOWN) == ["b2", "bx"]


def test_braces_are_alternatives():
    assert expand(["mail_{high,low}"], KNOWN) == ["mail_high", "mail_low"]
    assert expand(["{reports,critical}"], KNOWN) == ["critical", "reports"]


def test_braces_combine_with_other_globs_and_match_alphabetically():
    # One pattern's matches are sorted, whatever the order of its alternatives (glob_match).
    assert expand(["{mail,b}*"], KNOWN) == ["b1", "b2", "bx", "mail", "mail_high", "mail_low"]


def test_two_brace_groups_in_one_pattern():
    known = ["a_x", "a_y", "b_x", "b_y", "c_x"]
    assert expand(["{a,b}_{x,y}"], known) == ["a_x", "a_y", "b_x", "b_y"]


def test_globs_are_case_sensitive():
    assert expand(["Mail*"], KNOWN) == []


def test_glob_matching_nothing_contributes_nothing():
    assert expand(["critical", "zz*", "default"], KNOWN) == ["critical", "default"]


def test_negation_removes_a_name_from_star():
    assert expand(["*", "!reports"], KNOWN) == sorted(set(KNOWN) - {"reports"})


def test_negation_applies_whatever_its_position_in_the_list():
    assert expand(["!reports", "*"], KNOWN) == expand(["*", "!reports"], KNOWN)


def test_negated_glob_removes_everything_it_matches():
    assert expand(["*", "!mail_*"], KNOWN) == sorted(set(KNOWN) - {"mail_high", "mail_low"})
    assert expand(["*", "!b?", "!{mail,reports}"], KNOWN) == [
        "critical", "default", "mail_high", "mail_low"]


def test_negation_also_removes_plain_names():
    assert expand(["critical", "reports", "!reports"], KNOWN) == ["critical"]


def test_negation_alone_serves_nothing():
    assert expand(["!reports"], KNOWN) == []


def test_several_globs_keep_their_order_between_them():
    assert expand(["mail_*", "b*"], KNOWN) == ["mail_high", "mail_low", "b1", "b2", "bx"]


def test_empty_list_is_empty():
    assert expand([], KNOWN) == []


# --------------------------------------------------------------------------- is_dynamic
@pytest.mark.parametrize("patterns", [
    ["*"], ["critical", "*"], ["b?"], ["b[12]"], ["{a,b}"], ["a}"], ["!reports"],
    ["critical", "!reports"],
])
def test_globs_and_negations_need_the_known_queues(patterns: list[str]):
    assert is_dynamic(patterns)


@pytest.mark.parametrize("patterns", [[], ["critical"], ["critical", "default", "mail:high"]])
def test_plain_lists_do_not_need_the_known_queues(patterns: list[str]):
    assert not is_dynamic(patterns)


def test_plain_list_expands_to_itself_without_known_queues():
    patterns = ["critical", "default", "mail:high"]
    assert not is_dynamic(patterns)
    assert expand(patterns, []) == patterns


# --------------------------------------------------------------------------- parse
def test_parse_splits_commas_and_strips_blanks():
    assert parse("critical, high,low") == ["critical", "high", "low"]


def test_parse_drops_empty_items():
    assert parse(" critical,, ,low, ") == ["critical", "low"]
    assert parse("") == []
    assert parse(" , ") == []


def test_parse_of_none_is_empty():
    assert parse(None) == []


def test_parse_of_a_list_splits_each_item_in_order():
    assert parse(["critical,high", " low ", "", "*,!reports"]) == [
        "critical", "high", "low", "*", "!reports"]


def test_parse_keeps_globs_and_colons():
    assert parse("mail_{high},!b?,mail:high") == ["mail_{high}", "!b?", "mail:high"]


def test_parse_keeps_commas_inside_braces_in_their_pattern():
    assert parse("{low,high}_mail,default") == ["{low,high}_mail", "default"]
    assert parse("a_{x,y}_{1,2},b") == ["a_{x,y}_{1,2}", "b"]
    assert parse("odd}name,{unclosed,x") == ["odd}name", "{unclosed,x"]


# --------------------------------------------------------------------------- environment
def test_from_environment_reads_queues(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("QUEUES", "critical, *")
    monkeypatch.setenv("QUEUE", "ignored")
    assert from_environment() == ["critical", "*"]


def test_from_environment_falls_back_to_queue(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("QUEUES", raising=False)
    monkeypatch.setenv("QUEUE", "mail_*,default")
    assert from_environment() == ["mail_*", "default"]


def test_from_environment_treats_an_empty_queues_as_unset(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("QUEUES", "")
    monkeypatch.setenv("QUEUE", "default")
    assert from_environment() == ["default"]


def test_from_environment_is_empty_without_either(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("QUEUES", raising=False)
    monkeypatch.delenv("QUEUE", raising=False)
    assert from_environment() == []
