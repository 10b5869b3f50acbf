"""A weak but honest ear: pocketsphinx's bundled English model transcribes what we
synthesize, and the word error rate says whether the words came back."""

from __future__ import annotations

import io
import re

import av
import numpy as np

from chorus.speech.encoding import resample

# Sentences the bundled Piper voice says and pocketsphinx hears reliably (WER 0 with
# pinned noise in this environment); others ("sea shells", "weather's") trip the ear.
CLEAR_SENTENCES = [
    "Please open the door.",
    "I would like a cup of coffee.",
    "The store opens at nine in the morning.",
    "Thank you for your help.",
    "Can you hear me now?",
    "It is a beautiful day.",
]


def words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def word_error_rate(reference: str, hypothesis: str) -> float:
    ref, hyp = words(reference), words(hypothesis)
    d = list(range(len(hyp) + 1))
    for i in range(1, len(ref) + 1):
        prev, d[0] = d[0], i
        for j in range(1, len(hyp) + 1):
            cur = min(d[j] + 1, d[j - 1] + 1, prev + (ref[i - 1] != hyp[j - 1]))
            prev, d[j] = d[j], cur
    return d[len(hyp)] / max(len(ref), 1)


def decode(data: bytes) -> tuple[np.ndarray, int]:
    """Any container/codec we serve -> mono int16 samples and rate (FFmpeg decodes)."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="s16", layout="mono", rate=stream.rate)
        frames = []
        for frame in container.decode(stream):
            frames += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
        frames += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
        return np.concatenate(frames), stream.rate


class Ear:
    def __init__(self) -> None:
        from pocketsphinx import Decoder

        self.decoder = Decoder(samprate=16000, logfn="/dev/null")

    def hear_pcm(self, pcm: bytes, sample_rate: int) -> str:
        self.decoder.start_utt()
        self.decoder.process_raw(resample(pcm, sample_rate, 16000), full_utt=True)
        self.decoder.end_utt()
        hyp = self.decoder.hyp()
        return hyp.hypstr if hyp else ""

    def hear(self, data: bytes) -> str:
        samples, rate = decode(data)
        return self.hear_pcm(samples.astype(np.int16).tobytes(), rate)
