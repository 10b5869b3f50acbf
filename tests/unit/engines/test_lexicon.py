"""A personality's pronunciation lexicon: where its phrases are found in a text, and the form
each engine family gets them in (Piper: inline phonemes; the cloud engines: SSML; XTTS and
StyleTTS2: the alias), what the spec accepts, and that the audio cache keys on it. Whether the
engines really say them is tested against real Piper and the services' wire protocols
(tests/integration/test_speech.py, test_cloud_engines.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from chorus.personalities import PersonalityError, parse_spec
from chorus.speech.cache.key import cache_key
from deployments.base import Pronunciation, SynthesisRequest, lexicon_runs, respelled
from deployments.cloud import ssml_fragment
from deployments.piper import with_phonemes

LEXICON = [
    Pronunciation(text="Chorus", alias="Core us"),
    Pronunciation(text="Zyxwv", ipa="dˈɔːɹ"),
    Pronunciation(text="New York", ipa="nuː jˈɔːɹk", alias="Noo Yawk"),
]
TEXT = "Welcome to chorus, ZYXWV! New York, not New Yorker & <choruses>."


def test_phrases_are_found_as_whole_words_in_any_case() -> None:
    runs = [(run, p.text if p else None) for run, p in lexicon_runs(TEXT, LEXICON)]
    assert runs == [("Welcome to ", None), ("chorus", "Chorus"), (", ", None), ("ZYXWV", "Zyxwv"), ("! ", None),
                    ("New York", "New York"), (", not New Yorker & <choruses>.", None)]
    assert lexicon_runs(TEXT, []) == [(TEXT, None)]


def test_the_longest_phrase_wins_where_two_overlap() -> None:
    lexicon = [Pronunciation(text="New", alias="Gnu"), Pronunciation(text="New York", alias="Noo Yawk")]
    assert respelled("New York is new.", lexicon) == "Noo Yawk is Gnu."


def test_piper_gets_phonemes_inline_or_the_alias() -> None:
    assert with_phonemes(TEXT, LEXICON) == (
        "Welcome to Core us, [[ dˈɔːɹ ]]! [[ nuː jˈɔːɹk ]], not New Yorker & <choruses>.")


def test_the_cloud_engines_get_escaped_ssml_with_phoneme_and_sub() -> None:
    assert ssml_fragment(TEXT, LEXICON) == (
        'Welcome to <sub alias="Core us">chorus</sub>, <phoneme alphabet="ipa" ph="dˈɔːɹ">ZYXWV</phoneme>! '
        '<phoneme alphabet="ipa" ph="nuː jˈɔːɹk">New York</phoneme>, not New Yorker &amp; &lt;choruses&gt;.')


def test_text_only_engines_get_the_alias_and_keep_what_has_none() -> None:
    assert respelled(TEXT, LEXICON) == "Welcome to Core us, ZYXWV! Noo Yawk, not New Yorker & <choruses>."


@pytest.mark.parametrize(("entry", "message"), [
    ({"text": "Zyxwv"}, "give ipa, alias or both"),
    ({"text": "a<b", "alias": "x"}, "String should match pattern"),
    ({"text": "ok", "ipa": 'x" onload="y'}, "String should match pattern"),
    ({"text": "ok", "alias": "]] [[ evil"}, "String should match pattern"),
    ({"text": "x" * 65, "alias": "x"}, "at most 64 characters"),
    ({"text": "", "alias": "x"}, "at least 1 character"),
])
def test_an_entry_that_could_break_out_of_its_markup_is_refused(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Pronunciation(**entry)


SPEC = {"activeProvider": "piper", "providers": {"piper": {}}}


def test_the_spec_takes_a_bounded_lexicon_of_distinct_phrases() -> None:
    spec = parse_spec(SPEC | {"lexicon": [{"text": "Chorus", "alias": "Core us"}]})
    assert spec.lexicon == [Pronunciation(text="Chorus", alias="Core us")]
    with pytest.raises(PersonalityError, match="lexicon texts must be unique"):
        parse_spec(SPEC | {"lexicon": [{"text": "Chorus", "alias": "a"}, {"text": "chorus", "alias": "b"}]})
    with pytest.raises(PersonalityError, match="lexicon: List should have at most 256 items"):
        parse_spec(SPEC | {"lexicon": [{"text": f"w{i}", "alias": "x"} for i in range(257)]})
    with pytest.raises(PersonalityError, match=r"lexicon\[0\]: Value error, lexicon entry 'w' |lexicon\[0\]: lexicon entry"):
        parse_spec(SPEC | {"lexicon": [{"text": "w"}]})


def test_the_crd_carries_the_lexicon_schema() -> None:
    crd = yaml.safe_load(Path("manifests/crds/voicepersonalities.voice.chorus.dev.yaml").read_text())
    lexicon = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["lexicon"]
    assert lexicon["maxItems"] == 256
    assert set(lexicon["items"]["properties"]) == {"text", "ipa", "alias"}


def test_the_audio_cache_keys_on_the_lexicon() -> None:
    def key(lexicon: list[Pronunciation]) -> str:
        return cache_key(SynthesisRequest(text="Hi.", language="en", lexicon=lexicon), "piper", "m", 22050, "p")
    assert key([]) != key(LEXICON[:1]) != key([Pronunciation(text="Chorus", alias="Chorous")])
    assert key(LEXICON[:1]) == key([Pronunciation(text="Chorus", alias="Core us")])
