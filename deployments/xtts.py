"""XTTS v2 (coqui-tts): clones a voice from reference samples; named accent variants.

Models are directories in the XTTS fine-tune layout (`model.pth`, `config.json`,
`vocab.json`, optional `speakers_xtts.pth`), loaded the way coqui's own server does:
`XttsConfig().load_json(...)`, `Xtts(config)` (= the deprecated `Xtts.init_from_config`),
`load_checkpoint(..., use_deepspeed=False)`. The base model (`model_dir`) is the variant
`base`; `variants` adds fine-tuned checkpoints by name (`british`, `american`, ...). A
request's `variant` (or `default_variant`) picks one. Nothing is ever downloaded: a missing
or unreadable directory leaves the replica up and `health()` says why, per variant.

This module is imported by the ingress and the Serve controller, which do not have torch or
coqui-tts: both are imported inside the class only. The replicas run in their own virtualenv
(`scripts/engine-env.sh xtts`), selected through the runtime_env `py_executable` below; see
docs/engines.md.

Speaker conditioning (GPT latents + speaker embedding) is computed once per (variant,
sample set) and kept in an in-replica LRU; a personality with no samples may name a built-in
speaker from `speakers_xtts.pth` instead. What XTTS shares with StyleTTS2 (config shape,
environment, thread offload, the LRU) is in `deployments.local_model`.
"""

from __future__ import annotations

import asyncio
import logging
import textwrap
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from deployments import local_model
from deployments.base import (
    AudioChunk,
    AudioResult,
    Capabilities,
    EngineFailedError,
    EngineUnavailableError,
    Health,
    SynthesisRequest,
    VoiceInfo,
    split_sentences,
)
from deployments.settings import XTTSSettings

log = logging.getLogger(__name__)

ENGINE = "xtts_v2"
SAMPLE_RATE = 24_000  # XTTS v2's HiFi-GAN decoder always outputs 24 kHz
BASE_VARIANT = "base"
REQUIRED_FILES = ("config.json", "model.pth")


# --- where the replicas run -----------------------------------------------------------

ENVIRONMENT = local_model.EngineEnvironment("xtts", "CHORUS_XTTS_PYTHON")
actor_options = ENVIRONMENT.actor_options


# --- configuration --------------------------------------------------------------------


class XTTSConfig(local_model.LocalModelConfig):
    """`model_dir` is the base checkpoint (fine-tune layout), served as variant 'base'."""

    variants: dict[str, Path] = Field(
        default_factory=dict,
        description="Named fine-tuned checkpoints (e.g. british, american), each a model directory.",
    )
    default_variant: str | None = Field(
        None, description="Variant for requests that name none: 'base' if model_dir is set, else the first variant."
    )
    stream_chunk_size: int = Field(
        20, ge=1, le=1000, description="GPT audio tokens per streamed chunk (coqui's default 20 ~ 0.9 s)."
    )
    stream_overlap_samples: int = Field(1024, ge=0, description="Cross-fade between streamed chunks.")

    @field_validator("variants", mode="after")
    @classmethod
    def _expand_variants(cls, v: dict[str, Path]) -> dict[str, Path]:
        for name in v:
            if not name or not all(c.isalnum() or c in "_.:-" for c in name):
                raise ValueError(f"variant name {name!r}: use letters, digits, '_', '.', ':', '-'")
        return {name: path.expanduser() for name, path in v.items()}

    @model_validator(mode="after")
    def _default_exists(self) -> XTTSConfig:
        if self.model_dir is not None and BASE_VARIANT in self.variants:
            raise ValueError(f"variants.{BASE_VARIANT}: the name is taken by model_dir")
        names = list(self.model_dirs())
        if self.default_variant is not None and names and self.default_variant not in names:
            raise ValueError(f"default_variant {self.default_variant!r} is not one of {names}")
        return self

    def model_dirs(self) -> dict[str, Path]:
        dirs = {BASE_VARIANT: self.model_dir} if self.model_dir is not None else {}
        return {**dirs, **self.variants}

    def default(self) -> str | None:
        if self.default_variant is not None:
            return self.default_variant
        return next(iter(self.model_dirs()), None)


class XTTSAudio(AudioResult):
    """AudioResult plus which variant spoke and where the voice came from."""

    variant: str
    voice: str  # "samples" or the built-in speaker's name
    conditioning: Literal["computed", "cached", "builtin"]
    pieces: int = 1  # model calls the text was split into


class XTTSChunk(AudioChunk):
    variant: str


# --- engine ---------------------------------------------------------------------------


class _Variant:
    """One loaded checkpoint, its speakers and a lock (coqui's GPT keeps per-call state)."""

    def __init__(self, name: str, directory: Path, device: str) -> None:
        from TTS.tts.configs.xtts_config import XttsConfig
        from TTS.tts.models.xtts import Xtts

        started = time.perf_counter()
        config = XttsConfig()
        config.load_json(str(directory / "config.json"))
        model = Xtts(config)
        model.load_checkpoint(config, checkpoint_dir=str(directory), eval=True, use_deepspeed=False)
        if device == "cuda":
            model.cuda()
        self.name = name
        self.directory = directory
        self.device = device
        self.config = config
        self.model = model
        self.languages: list[str] = list(config.languages)
        manager = getattr(model, "speaker_manager", None)
        self.speakers: dict[str, dict[str, Any]] = dict(manager.speakers) if manager is not None else {}
        self.char_limits: dict[str, int] = dict(getattr(model.tokenizer, "char_limits", {}))
        self.max_text_tokens: int = int(config.model_args.gpt_max_text_tokens)
        self.lock = asyncio.Lock()
        self.load_s = time.perf_counter() - started

    def language(self, requested: str) -> str | None:
        """The config's code for a requested language: en-US -> en, zh-CN / zh -> zh-cn."""
        req = requested.replace("_", "-").lower()
        have = {lang.lower(): lang for lang in self.languages}
        for candidate in (req, req.split("-")[0]):
            if candidate in have:
                return have[candidate]
        base = req.split("-")[0]
        for lang_lower, lang in have.items():
            if lang_lower.split("-")[0] == base:
                return lang
        return None

    def pieces(self, text: str, language: str) -> list[str]:
        """Text cut into pieces the model can say in one go: sentences packed up to the
        tokenizer's per-language character limit, each under gpt_max_text_tokens."""
        base = language.split("-")[0]
        limit = self.char_limits.get(base, 250)
        pieces: list[str] = []
        current = ""
        for sentence in split_sentences(text) or [text.strip()]:
            parts = [sentence] if len(sentence) <= limit else _wrap(sentence, limit)
            for part in parts:
                if current and len(current) + 1 + len(part) <= limit:
                    current = f"{current} {part}"
                else:
                    if current:
                        pieces.append(current)
                    current = part
        if current:
            pieces.append(current)
        return [p for piece in pieces for p in self._fit_tokens(piece, base)]

    def _fit_tokens(self, piece: str, language: str) -> list[str]:
        tokens = len(self.model.tokenizer.encode(piece.lower(), lang=language))
        if tokens < self.max_text_tokens - 1 or len(piece) < 2:
            return [piece]
        width = max(1, len(piece) * (self.max_text_tokens - 2) // tokens)
        return [p for part in _wrap(piece, width) for p in self._fit_tokens(part, language)]


def _import_coqui() -> None:
    import TTS  # noqa: F401  (its own import checks: torchaudio, torchcodec)
    from TTS.tts.models.xtts import Xtts  # noqa: F401


def _wrap(text: str, width: int) -> list[str]:
    return textwrap.wrap(text, width=width, break_on_hyphens=False, break_long_words=True) or [text]


class XTTS(local_model.LocalModelEngine):
    engine_id = "xtts_v2"
    display_name = "XTTS"
    library = "coqui-tts"
    runs_in = ENVIRONMENT
    config_model = XTTSConfig
    settings_model = XTTSSettings
    sample_rate = SAMPLE_RATE

    config: XTTSConfig

    def __init__(self, config: XTTSConfig | dict | None = None) -> None:
        super().__init__(config)
        self.variants: dict[str, _Variant] = {}
        self.load_errors: dict[str, str] = {}
        self._load_all()

    # --- loading ----------------------------------------------------------------------

    def _load_all(self) -> None:
        dirs = self.config.model_dirs()
        if not dirs:
            self.load_errors["*"] = "no model configured (set model_dir or variants)"
            return
        present: dict[str, Path] = {}
        for name, directory in dirs.items():
            missing = [f for f in REQUIRED_FILES if not (directory / f).is_file()]
            if not directory.is_dir():
                self.load_errors[name] = f"model directory {directory} does not exist"
            elif missing:
                self.load_errors[name] = f"model directory {directory} lacks {', '.join(missing)}"
            else:
                present[name] = directory
        if not present:
            return
        try:
            self._import_library(_import_coqui)
        except local_model.ModelLoadError as err:
            for name in present:
                self.load_errors[name] = str(err)
            return
        for name, directory in present.items():
            try:
                variant = _Variant(name, directory, self.device)
            except Exception as err:  # one bad checkpoint must not take the engine down
                self.load_errors[name] = f"cannot load {directory}: {type(err).__name__}: {err}"
                log.warning("xtts variant %s not loaded: %s", name, err)
                continue
            self.variants[name] = variant
            log.info("xtts variant %s loaded from %s in %.1f s on %s", name, directory, variant.load_s, self.device)

    # --- contract ---------------------------------------------------------------------

    async def capabilities(self) -> Capabilities:
        languages: list[str] = []
        voices: dict[str, VoiceInfo] = {}
        for variant in self.variants.values():
            languages += [lang for lang in variant.languages if lang not in languages]
            for speaker in variant.speakers:
                info = voices.setdefault(speaker, VoiceInfo(id=speaker, languages=[], sample_rate=SAMPLE_RATE))
                info.languages += [lang for lang in variant.languages if lang not in info.languages]
        return self._capabilities(languages, voices=list(voices.values()), variants=list(self.variants))

    async def health(self) -> Health:
        default = self.config.default()
        by_reason: dict[str, list[str]] = {}
        for name, why in self.load_errors.items():
            by_reason.setdefault(why, []).append(name)
        failed = "; ".join(f"{', '.join(names)}: {why}" for why, names in by_reason.items())
        if default is None or default not in self.variants:
            return Health(
                healthy=False,
                reason=f"default variant {default!r} not loaded ({failed or 'no model configured'})",
            )
        if failed:
            return Health(healthy=True, reason=f"some variants not loaded ({failed})")
        return Health(healthy=True)

    async def synthesize(self, request: SynthesisRequest) -> XTTSAudio:
        variant, language, kwargs = self._prepare(request)
        async with variant.lock:
            (latent, embedding), voice, how = await self._conditioning(variant, request)
            pcm = b""
            pieces = self._pieces(variant, self._checked_text(request), language)
            for piece in pieces:
                wav = await local_model.in_thread(
                    self._infer, variant, piece, language, latent, embedding, kwargs
                )
                pcm += local_model.pcm16(wav)
        if not pcm:
            raise EngineFailedError("the model produced no audio", self.engine_id)
        return XTTSAudio(pcm=pcm, sample_rate=SAMPLE_RATE, variant=variant.name, voice=voice, conditioning=how,
                         pieces=len(pieces))

    async def stream(self, request: SynthesisRequest) -> AsyncIterator[XTTSChunk]:
        variant, language, kwargs = self._prepare(request)
        index = 0
        async with variant.lock:
            (latent, embedding), _, _ = await self._conditioning(variant, request)
            for piece in self._pieces(variant, self._checked_text(request), language):
                chunks = self._infer_stream(variant, piece, language, latent, embedding, kwargs)
                while True:
                    # One model step per hop off the event loop: the first chunk leaves
                    # before the utterance is finished.
                    chunk = await local_model.in_thread(next, chunks, None)
                    if chunk is None:
                        break
                    pcm = local_model.pcm16(chunk)
                    if pcm:
                        yield XTTSChunk(pcm=pcm, sample_rate=SAMPLE_RATE, index=index, variant=variant.name)
                        index += 1
        if index == 0:
            raise EngineFailedError("the model produced no audio", self.engine_id)

    def _environment(self) -> dict[str, Any]:
        return {
            "variants": {name: str(v.directory) for name, v in self.variants.items()},
            "load_s": {name: round(v.load_s, 3) for name, v in self.variants.items()},
            "load_errors": dict(self.load_errors),
        }

    # --- internals --------------------------------------------------------------------

    def _prepare(self, request: SynthesisRequest) -> tuple[_Variant, str, dict[str, Any]]:
        self._checked_text(request)
        name = request.variant or self.config.default()
        variant = self.variants.get(name) if name else None
        if variant is None:
            if name is None:
                why = "no model configured"
            elif name in self.load_errors:
                why = self.load_errors[name]
            elif name not in self.config.model_dirs():
                why = f"not configured; loaded variants: {', '.join(self.variants) or 'none'}"
            else:
                why = "not loaded"
            # `why` may name model directories; the variant's name is a validated VoiceId.
            raise EngineUnavailableError(f"XTTS variant {name!r} is not loaded ({why})", self.engine_id,
                                         public=f"XTTS variant {name!r} is not loaded")
        language = variant.language(request.language)
        if language is None:
            raise EngineUnavailableError(
                f"XTTS variant {variant.name!r} does not speak {request.language!r} "
                f"(its languages: {', '.join(variant.languages)})",
                self.engine_id,
            )
        settings = request.settings_as(XTTSSettings)
        kwargs: dict[str, Any] = {
            "temperature": settings.temperature,
            "length_penalty": settings.length_penalty,
            "repetition_penalty": settings.repetition_penalty,
            "top_k": settings.top_k,
            "top_p": settings.top_p,
            "speed": settings.speed,
        }
        return variant, language, kwargs

    async def _conditioning(
        self, variant: _Variant, request: SynthesisRequest
    ) -> tuple[tuple[Any, Any], str, Literal["computed", "cached", "builtin"]]:
        if not request.samples:
            speaker = variant.speakers.get(request.voice) if request.voice else None
            if speaker is None:
                named = f" {request.voice!r}" if request.voice else ""
                raise EngineUnavailableError(
                    f"no reference samples to clone from and no built-in speaker{named} in XTTS "
                    f"variant {variant.name!r} (speakers: {', '.join(variant.speakers) or 'none'})",
                    self.engine_id,
                    # Validated names only: the caller's own voice id and our variant's name.
                    public=f"no reference samples to clone from and no built-in speaker{named}",
                )
            return (speaker["gpt_cond_latent"], speaker["speaker_embedding"]), str(request.voice), "builtin"
        # Callers hold the variant's lock, so one sample set is never computed twice at once.
        key = (variant.name, tuple(sorted(s.sha256 for s in request.samples)))
        samples = list(request.samples)
        value, how = await self._conditionings.get(key, self._compute_conditioning, variant, samples)
        return value, "samples", how

    def _compute_conditioning(self, variant: _Variant, samples: list[Any]) -> tuple[Any, Any]:
        """coqui's get_conditioning_latents, fed with audio we decoded ourselves."""
        import torch

        cfg, model = variant.config, variant.model
        audios, embeddings = [], []
        for ref in samples:
            mono, rate = local_model.read_sample(ref, self.engine_id)
            audio = torch.from_numpy(mono).unsqueeze(0)[:, : int(rate * cfg.max_ref_len)]
            if rate != 22050:  # one rate for the concatenated GPT reference, as coqui loads it
                import torchaudio

                audio = torchaudio.functional.resample(audio, rate, 22050)
            if cfg.sound_norm_refs:
                audio = (audio / audio.abs().max().clamp(min=1e-6)) * 0.75
            embeddings.append(model.get_speaker_embedding(audio, 22050))
            audios.append(audio)
        try:
            latent = model.get_gpt_cond_latents(
                torch.cat(audios, dim=-1), 22050, length=cfg.gpt_cond_len, chunk_length=cfg.gpt_cond_chunk_len
            )
        except RuntimeError as err:  # "reference audio too short"
            raise EngineUnavailableError(f"reference samples unusable: {err}", self.engine_id) from None
        embedding = torch.stack(embeddings).mean(dim=0)
        return latent, embedding

    def _pieces(self, variant: _Variant, text: str, language: str) -> list[str]:
        try:
            return variant.pieces(text, language)
        except Exception as err:  # the tokenizer's text cleaners (numbers, scripts) failed
            raise EngineFailedError(f"cannot tokenize the text: {type(err).__name__}: {err}", self.engine_id) from None

    def _infer(
        self, variant: _Variant, text: str, language: str, latent: Any, embedding: Any, kwargs: dict[str, Any]
    ) -> Any:
        try:
            return variant.model.inference(text, language, latent, embedding, enable_text_splitting=False, **kwargs)[
                "wav"
            ]
        except Exception as err:
            raise EngineFailedError(f"synthesis failed: {type(err).__name__}: {err}", self.engine_id) from None

    def _infer_stream(
        self, variant: _Variant, text: str, language: str, latent: Any, embedding: Any, kwargs: dict[str, Any]
    ) -> Iterator[Any]:
        try:
            yield from variant.model.inference_stream(
                text,
                language,
                latent,
                embedding,
                stream_chunk_size=self.config.stream_chunk_size,
                overlap_wav_len=self.config.stream_overlap_samples,
                enable_text_splitting=False,
                **kwargs,
            )
        except Exception as err:
            raise EngineFailedError(f"streaming failed: {type(err).__name__}: {err}", self.engine_id) from None


XTTSEngine = local_model.deployment(XTTS)
