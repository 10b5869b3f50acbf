"""What a fetched sample may claim before it is decoded.

The operator runs in a small pod (the chart's memory limit), and decoding a sample
holds it in memory several times over (the integer frames, float32, the resampled
mono copy). The upload checks cap a recording at 60 s and 192 kHz, which a few KB of
silent FLAC reach; decoded that is hundreds of MB. A voice reference needs nothing
above 48 kHz, so the operator refuses higher rates from the header alone, before
decoding, as a permanent refusal: refetching the same file would fail the same way.

Worst case then: 60 s x 48 kHz x 2 channels = 5.8 M frames, about 23 MB as int32,
23 MB as float32 and a few MB more resampled and mixed down; with torch and the models
loaded, well inside the chart's 1 GiB operator limit (docs/kubernetes.md).
"""

from __future__ import annotations

import io

import soundfile as sf

from chorus.samples.audio import MAX_CHANNELS, MAX_DURATION_S
from voice_operator.safe_fetch import SampleRefused


def check_declared_audio(data: bytes, max_sample_rate: int) -> None:
    """Refuse (SampleRefused) audio whose header promises more than the operator decodes.
    Headers libsndfile cannot read are left to the upload checks, which say why."""
    try:
        info = sf.info(io.BytesIO(data))
    except (sf.LibsndfileError, RuntimeError):
        return
    if info.samplerate > max_sample_rate:
        raise SampleRefused(
            f"recorded at {info.samplerate} Hz; the operator takes samples of at most {max_sample_rate} Hz"
        )
    if info.channels > MAX_CHANNELS:
        raise SampleRefused(f"{info.channels} channels; a voice sample is mono or stereo")
    if 0 < info.samplerate and MAX_DURATION_S < info.frames / info.samplerate and info.frames < 2**62:
        raise SampleRefused(
            f"the header claims {info.frames / info.samplerate:.0f} s; a voice sample is at most {MAX_DURATION_S:.0f} s"
        )
