from __future__ import annotations

import pytest

from chorus.speech.sentences import pack
from deployments.base import TextTooLongError, split_sentences


def test_sentences_split_on_terminal_punctuation() -> None:
    assert split_sentences('Hi there. "Really?" she asked! Yes… ok') == ['Hi there.', '"Really?"', "she asked!", "Yes…", "ok"]


def test_pack_groups_whole_sentences_under_the_limit() -> None:
    text = "One two three. Four five six. Seven eight nine. Ten."
    pieces = pack(text, 30)
    assert all(len(p) <= 30 for p in pieces)
    assert " ".join(pieces) == text
    assert pack(text, 1000) == [text]


def test_pack_refuses_a_sentence_over_the_limit() -> None:
    with pytest.raises(TextTooLongError) as err:
        pack("Short. " + "word " * 50 + "end.", 40, "piper")
    assert err.value.limit == 40 and "40-character limit of piper" in err.value.reason


LONG_FIRST = "When the store opens at nine in the morning, I would like a cup of coffee by the window. Thank you."


def test_a_stream_cuts_a_long_first_sentence_at_its_first_clause() -> None:
    assert pack(LONG_FIRST, 20_000, first_clause=True) == [
        "When the store opens at nine in the morning,", "I would like a cup of coffee by the window. Thank you.",
    ]
    assert pack(LONG_FIRST, 20_000) == [LONG_FIRST]  # not a stream: one piece


def test_the_cut_is_the_first_boundary_that_leaves_enough_on_both_sides() -> None:
    # "Well," is too short to go alone, and after "Well, when ... nine," eleven words remain:
    # at most three times the clause's five; the rest stays whole.
    text = "Well, when the store opens at nine, I would like a cup of coffee by the window; thanks."
    assert pack(text, 20_000, first_clause=True) == [
        "Well, when the store opens at nine,", "I would like a cup of coffee by the window; thanks.",
    ]
    # A rest over three times the clause's words would still be synthesizing when the clause
    # has played: that sentence is not cut.
    rambling = "Open the door now, and " + "then walk " * 7 + "to the table by the window."
    assert pack(rambling, 20_000, first_clause=True) == [rambling]


@pytest.mark.parametrize("text", [
    "Open the door, please. And then a long second sentence follows, with its own clauses here.",  # short first
    "We sold 1,000 cups of coffee by 10:30 in the morning and then we closed the store.",  # numbers and times
    "Remember the ratio 3:2 of coffee to milk when you make a cup for the whole table.",
    "I would like a cup of coffee by the window, too.",  # a tail under four words
    "コーヒーを一杯ください、窓のそばの席で。",  # no spaces: no word count, never cut
])
def test_no_cut_where_it_would_not_sound_whole(text: str) -> None:
    assert pack(text, 20_000, first_clause=True) == [text]


def test_the_cut_keeps_every_word_and_the_packing_after_it() -> None:
    text = LONG_FIRST + " Second sentence here. Third sentence here."
    packed = pack(text, 100)
    assert packed == [LONG_FIRST, "Second sentence here. Third sentence here."]
    pieces = pack(text, 100, first_clause=True)
    assert pieces[0] == "When the store opens at nine in the morning,"
    assert " ".join(pieces[:2]) == packed[0] and pieces[2:] == packed[1:]  # only the first piece is cut
