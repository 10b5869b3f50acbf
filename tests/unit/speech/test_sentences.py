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


# --- the bounds themselves, at their edges (the numbers are the module's documented rule:
# at least 4 words on each side of the cut, the rest at most 3 times the clause's words) ---


@pytest.mark.parametrize("text,cut", [
    # 4 words, then 4: the smallest cut there is.
    ("One two three four, five six seven eight.", ("One two three four,", "five six seven eight.")),
    # 3 words before the comma: too short to stand alone; the next boundary is taken.
    ("One two three, four five six seven, eight nine ten eleven twelve.",
     ("One two three, four five six seven,", "eight nine ten eleven twelve.")),
    # The rest exactly 3 times the clause's 4 words: still ready before the clause ends.
    ("One two three four, a b c d e f g h i j k l.", ("One two three four,", "a b c d e f g h i j k l.")),
])
def test_the_cut_at_the_edges_of_its_bounds(text: str, cut: tuple[str, str]) -> None:
    assert pack(text, 20_000, first_clause=True) == list(cut)


@pytest.mark.parametrize("text", [
    "One two three four, five six seven.",  # 3 words after the cut: too short a tail
    "One two three, four five six seven.",  # 3 words before it, and no later boundary
    "One two three four, a b c d e f g h i j k l m.",  # 13 words after 4: more than 3 times
])
def test_no_cut_just_outside_the_bounds(text: str) -> None:
    assert pack(text, 20_000, first_clause=True) == [text]


def test_a_text_of_exactly_the_limit_is_one_piece_as_written() -> None:
    text = "One.\nTwo."  # 9 characters; packing would rejoin it as "One. Two."
    assert pack(text, 9) == [text]
    assert pack(text, 100) == [text]


def test_a_sentence_or_a_piece_of_exactly_the_limit_fits() -> None:
    # "Abc def." is 8 characters: a sentence of exactly the limit is not refused, and two
    # sentences that fill a piece exactly stay together.
    assert pack("Abc def. Ghi.", 8) == ["Abc def.", "Ghi."]
    assert pack("Ab. Cd. Efghij.", 7) == ["Ab. Cd.", "Efghij."]
