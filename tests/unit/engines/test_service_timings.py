"""A cloud service's own word timings (IBM's `{"words": [[word, start, end]]}`) matched to the
text's words, and the streamed WAV header IBM sends before it knows the audio's length.
The engine against the service's wire protocol is tested in
tests/integration/test_cloud_engines.py."""

from __future__ import annotations

import io
import struct

import numpy as np
import soundfile as sf

from deployments.base import AudioResult, WordSpan
from deployments.cloud import TimedWord, timed_by_words
from deployments.ibm_watson import _sized_wav

RATE = 1000  # one sample a millisecond: times and lengths read alike


def audio(seconds: float) -> AudioResult:
    return AudioResult(pcm=b"\0\0" * int(seconds * RATE), sample_rate=RATE)


def spans(result: AudioResult) -> list[tuple[str, float, float]]:
    (sentence,) = result.sentences
    assert sentence.words is not None
    return [(w.text, w.start, w.end) for w in sentence.words]


def test_words_keep_the_texts_punctuation_and_the_services_times() -> None:
    timed = [TimedWord("Well", 0.1, 0.4), TimedWord("open", 0.5, 0.8), TimedWord("the", 0.8, 0.9),
             TimedWord("door", 0.9, 1.3)]
    result = timed_by_words(audio(1.5), "Well, open — the door!", timed)
    assert spans(result) == [("Well,", 0.1, 0.4), ("open", 0.5, 0.8), ("the", 0.8, 0.9), ("door!", 0.9, 1.3)]
    (sentence,) = result.sentences
    assert sentence.text == "Well, open — the door!" and sentence.samples == 1500


def test_a_word_the_service_times_in_parts_is_one_word() -> None:
    timed = [TimedWord("a", 0.0, 0.1), TimedWord("well", 0.1, 0.3), TimedWord("known", 0.3, 0.6),
             TimedWord("fact", 0.6, 0.9)]
    assert spans(timed_by_words(audio(1.0), "A well-known fact.", timed)) == [
        ("A", 0.0, 0.1), ("well-known", 0.1, 0.6), ("fact.", 0.6, 0.9)]


def test_strings_without_letters_are_not_words() -> None:
    timed = [TimedWord("fish", 0.0, 0.3), TimedWord("&", 0.3, 0.4), TimedWord("chips", 0.4, 0.8)]
    assert spans(timed_by_words(audio(1.0), "Fish & chips", timed)) == [("Fish", 0.0, 0.3), ("chips", 0.4, 0.8)]


def test_rounding_at_the_edges_is_kept_inside_the_audio_and_in_order() -> None:
    """Milliseconds rounded by the service: a start 5 ms before the last end, an end 5 ms after
    the audio's; both are moved to the edge, not refused."""
    timed = [TimedWord("one", 0.0, 0.505), TimedWord("two", 0.5, 1.005)]
    assert spans(timed_by_words(audio(1.0), "one two", timed)) == [("one", 0.0, 0.505), ("two", 0.505, 1.0)]


def test_timings_that_do_not_fit_leave_the_audio_to_be_aligned() -> None:
    """Untouched (no sentences: the ingress aligns the words instead) when the service's words
    are not the text's, leave some out or add some, go backwards, or run past the audio."""
    text = "open the door"
    cases = {
        "other words": [TimedWord("open", 0, 0.2), TimedWord("a", 0.2, 0.3), TimedWord("door", 0.3, 0.5)],
        "a word missing": [TimedWord("open", 0, 0.2), TimedWord("door", 0.3, 0.5)],
        "a word more": [TimedWord("open", 0, 0.2), TimedWord("the", 0.2, 0.3), TimedWord("door", 0.3, 0.5),
                        TimedWord("now", 0.5, 0.6)],
        "backwards": [TimedWord("open", 0.3, 0.5), TimedWord("the", 0.0, 0.1), TimedWord("door", 0.5, 0.7)],
        "ends before it starts": [TimedWord("open", 0, 0.2), TimedWord("the", 0.3, 0.25), TimedWord("door", 0.3, 0.5)],
        "past the audio": [TimedWord("open", 0, 0.2), TimedWord("the", 0.2, 0.3), TimedWord("door", 0.3, 1.1)],
        "longer than a word": [TimedWord("open", 0, 0.2), TimedWord("thedoor", 0.2, 0.5)],
    }
    for case, timed in cases.items():
        assert timed_by_words(audio(1.0), text, timed).sentences == [], case
    assert spans(timed_by_words(audio(1.0), text, [TimedWord("open", 0, 0.2), TimedWord("the", 0.2, 0.3),
                                                   TimedWord("door", 0.3, 0.5)])) == [
        ("open", 0, 0.2), ("the", 0.2, 0.3), ("door", 0.3, 0.5)]


def test_word_spans_are_what_the_contract_carries() -> None:
    result = timed_by_words(audio(1.0), "Hi", [TimedWord("hi", 0.25, 0.5)])
    assert result.sentences[0].words == [WordSpan(text="Hi", start=0.25, end=0.5)]


def streamed(pcm: np.ndarray, rate: int, *, riff: int, data: int, extra: bytes = b"") -> bytes:
    """A 16-bit mono WAV file as a streaming service sends it: sizes as given (placeholders),
    an optional chunk between fmt and data."""
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    return (b"RIFF" + struct.pack("<I", riff) + b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + extra
            + b"data" + struct.pack("<I", data) + pcm.astype("<i2").tobytes())


def test_a_streamed_wav_header_gets_its_sizes() -> None:
    pcm = np.arange(-500, 500, dtype=np.int16)
    info = b"LIST" + struct.pack("<I", 16) + b"INFO" + b"ISFT" + struct.pack("<I", 4) + b"ibm\0"
    odd = b"junk" + struct.pack("<I", 3) + b"abc" + b"\0"  # an odd size is followed by a pad byte
    for riff, data, extra in [(0, 0, b""), (0xFFFFFFFF, 0xFFFFFFFF, b""), (0, 0, info), (0, 0, odd + info)]:
        fixed = _sized_wav(streamed(pcm, 22050, riff=riff, data=data, extra=extra))
        read, rate = sf.read(io.BytesIO(fixed), dtype="int16")
        assert rate == 22050 and np.array_equal(read, pcm)
        assert struct.unpack_from("<I", fixed, 4)[0] == len(fixed) - 8
    # An odd trailing byte (a frame cut mid-sample) is dropped, not read as half a sample.
    fixed = _sized_wav(streamed(pcm, 22050, riff=0, data=0) + b"\x01")
    assert np.array_equal(sf.read(io.BytesIO(fixed), dtype="int16")[0], pcm)


def test_what_is_not_a_wav_file_is_left_for_the_decoder_to_refuse() -> None:
    assert _sized_wav(b"RIFF\0\0\0\0WAVEjunk") == b"RIFF\0\0\0\0WAVEjunk"
    assert _sized_wav(b"") == b""
