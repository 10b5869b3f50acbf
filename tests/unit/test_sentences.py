from __future__ import annotations

import pytest

from chorus.sentences import pack
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
