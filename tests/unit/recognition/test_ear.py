"""The ear (chorus.recognition.ear): real pocketsphinx hearing real Piper speech. What it
should say is heard with few errors; noise, a tone and another sentence's audio are heard as
far from the text; a word its dictionary cannot know is never counted against the speech."""

from __future__ import annotations

import numpy as np
import pytest

from chorus.recognition.ear import Ear, tokens, word_errors
from chorus.recognition.models import RATE, HearRequest, speaks
from chorus.speech.encoding import resample
from tests.support.recordings import PIPER_RATE, recordings
from tests.support.speech import CLEAR_SENTENCES


@pytest.fixture(scope="module")
def ear() -> Ear:
    return Ear()


def piper(text: str) -> bytes:
    return resample((recordings().sentence(text) * 32767).astype("<i2").tobytes(), PIPER_RATE, RATE)


def heard(ear: Ear, pcm: bytes, text: str) -> float:
    return ear.hear(HearRequest(pcm=pcm, language="en-US", text=text)).word_error_rate


@pytest.mark.parametrize("text", CLEAR_SENTENCES[:4])
def test_clear_speech_is_heard_as_its_text(ear: Ear, text: str) -> None:
    assert heard(ear, piper(text), text) <= 0.15


# Ordinary sentences the recognizer mishears ("we'll meet again tomorrow at night", "promote that
# the second traffic light"): a plain word error rate put them at 0.43-0.71.
MISHEARD = ["The train leaves at half past seven.", "We will meet again tomorrow at nine.",
            "Turn left at the second traffic light.", "He forgot his umbrella at the office."]


@pytest.mark.parametrize("text", MISHEARD)
def test_good_speech_the_ear_mishears_still_passes_and_the_wrong_words_do_not(ear: Ear, text: str) -> None:
    assert heard(ear, piper(text), text) <= 0.4
    other = MISHEARD[(MISHEARD.index(text) + 1) % len(MISHEARD)]
    assert heard(ear, piper(other), text) >= 0.6


def test_noise_a_tone_silence_and_another_sentence_are_far_from_the_text(ear: Ear) -> None:
    text = CLEAR_SENTENCES[2]  # "The store opens at nine in the morning."
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 3000, RATE * 3).clip(-32768, 32767).astype("<i2").tobytes()
    tone = (8000 * np.sin(2 * np.pi * 440 * np.arange(RATE * 3) / RATE)).astype("<i2").tobytes()
    for pcm in (noise, tone, bytes(RATE * 2), piper(CLEAR_SENTENCES[1])):
        assert heard(ear, pcm, text) >= 0.75


# Phones as CMUdict spells them (pocketsphinx's dictionary), for the words below.
SOUNDS = {"the": ["DH", "AH"], "store": ["S", "T", "AO", "R"], "stove": ["S", "T", "OW", "V"],
          "opens": ["OW", "P", "AH", "N", "Z"], "stores": ["S", "T", "AO", "R", "Z"], "nine": ["N", "AY", "N"], "night": ["N", "AY", "T"],
          "their": ["DH", "EH", "R"], "there": ["DH", "EH", "R"], "call": ["K", "AO", "L"], "at": ["AE", "T"],
          "now": ["N", "AW"], "big": ["B", "IH", "G"], "x": ["EH", "K", "S"], "y": ["W", "AY"],
          "three": ["TH", "R", "IY"], "stella": ["S", "T", "EH", "L", "AH"], "train": ["T", "R", "EY", "N"],
          "rain": ["R", "EY", "N"]}


def errors(reference: str, heard: str) -> float:
    return word_errors(reference.split(), heard.split(), SOUNDS.get)


def test_word_errors_weigh_a_misheard_word_by_how_different_it_sounds() -> None:
    # Worked by hand: a deletion or an insertion is one error...
    assert errors("the store opens", "the opens") == 1
    assert errors("the store", "the big store") == 1
    assert errors("the store", "") == 2
    assert errors("", "the") == 1
    # ...a word heard as another, the share of its phones that differ.
    assert errors("the store opens", "the stove opens") == pytest.approx(2 / 4)  # AO R -> OW V
    assert errors("at nine", "at night") == pytest.approx(1 / 3)  # N -> T
    assert errors("their", "there") == 0  # the same sounds
    assert errors("stores", "store") == pytest.approx(1 / 5)  # a phone unheard
    assert errors("store", "stores") == pytest.approx(1 / 4)  # a phone heard that was not said
    assert errors("train", "rain") == pytest.approx(1 / 4)  # the first phone unheard
    assert errors("the store opens", "store opens") == 1  # the first word unheard
    assert errors("now", "stove") == 1  # nothing alike: no more than a plain error


def test_a_word_the_dictionary_lacks_matches_whatever_is_heard_in_its_place() -> None:
    # "zorblax" and "3" have no phones: heard as anything, or not at all, they cost nothing...
    assert errors("call zorblax at 3", "call stella at three") == 0
    assert errors("call zorblax now", "call now") == 0
    # ...but take one word's place only: a second word there is an insertion.
    assert errors("call zorblax now", "call x y now") == 1


def test_digits_and_words_outside_the_dictionary_become_wildcards(ear: Ear) -> None:
    assert tokens("Call Stella at 3, don't!") == ["call", "stella", "at", "3", "don't"]
    door = piper("Please open the door.")
    # "Zorblax" and "3" cannot be known: "door" heard in their place costs nothing...
    hearing = ear.hear(HearRequest(pcm=door, language="en", text="Please open the Zorblax 3."))
    assert (hearing.words, hearing.errors) == (5, 0)
    # ...where a word the dictionary has is one error.
    hearing = ear.hear(HearRequest(pcm=door, language="en", text="Please open the window."))
    assert (hearing.words, hearing.errors) == (4, 1)


def test_only_languages_with_a_model_are_heard(ear: Ear) -> None:
    assert speaks("en") and speaks("en-GB") and speaks("en_US")
    assert not speaks("de") and not speaks("fr-FR")
    with pytest.raises(ValueError, match="no recognizer for language 'de'"):
        ear.hear(HearRequest(pcm=piper("Please open the door."), language="de", text="Bitte"))
