"""StyleTTS2: clones a voice from reference samples through a style vector.

The model is a directory in the layout of the upstream StyleTTS2 repository, which is what
the `styletts2` package (0.1.6) expects and what its download URLs point at:

    model_dir/
      config.yml                    model_params + ASR_config, ASR_path, F0_path, PLBERT_dir
      epochs_2nd_00020.pth          the checkpoint (the only *.pth here, or `checkpoint`)
      Utils/ASR/config.yml          text aligner (built, not used at inference)
      Utils/ASR/epoch_00080.pth
      Utils/JDC/bst.t7              pitch extractor (built, not used at inference)
      Utils/PLBERT/config.yml       phoneme-level BERT (used)
      Utils/PLBERT/step_1000000.t7

Relative paths in config.yml are taken from `model_dir`. Inference is the package's own
`StyleTTS2.inference`, with two offline shims: its `cached_path` (which would download the
auxiliary models) is pointed at the files above and refuses anything else, and nltk's
`word_tokenize` runs without the punkt data the package would download at import. Nothing
is ever downloaded: a missing or unreadable directory leaves the replica up and `health()`
says why; requests then raise EngineUnavailableError.

This module is imported by the ingress and the Serve controller, which have neither torch
nor styletts2: both are imported inside the class only. The replicas run in their own
virtualenv (`scripts/engine-env.sh styletts2`), selected through the runtime_env
`py_executable` below; see docs/engines.md.

The style vector of a sample set (one per sample, averaged) is computed once per sorted set
of sample sha256s and kept in an in-replica LRU. The package phonemizes with gruut's en-us,
so the engine speaks English unless the model's config.yml declares `languages`. What
StyleTTS2 shares with XTTS (config shape, environment, thread offload, the LRU) is in
`deployments.local_model`.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import re
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from deployments import local_model
from deployments.base import (
    NOTHING_SPEAKABLE,
    AudioChunk,
    AudioResult,
    BadInputError,
    Capabilities,
    EngineError,
    EngineFailedError,
    EngineUnavailableError,
    Health,
    SynthesisRequest,
    language_matches,
    split_sentences,
)
from deployments.settings import StyleTTS2Settings

log = logging.getLogger(__name__)

ENGINE = "styletts2"
NO_SAMPLES = "no reference samples to clone from"
# The package's mel front end (n_fft 2048, hop 300) and its output are fixed at 24 kHz.
SAMPLE_RATE = 24_000
CONFIG_FILE = "config.yml"
# Where the upstream config.yml points, relative to the repository root (= model_dir).
AUX_DEFAULTS = {
    "ASR_config": "Utils/ASR/config.yml",
    "ASR_path": "Utils/ASR/epoch_00080.pth",
    "F0_path": "Utils/JDC/bst.t7",
    "PLBERT_dir": "Utils/PLBERT",
}
# The style encoder halves the mel frames (300 samples each) four times, then needs 5 for
# its last 5x5 kernel: under ~1 s of sound (after trimming silence) it cannot run.
MIN_SAMPLE_S = 1.0


# --- where the replicas run -----------------------------------------------------------

ENVIRONMENT = local_model.EngineEnvironment("styletts2", "CHORUS_STYLETTS2_PYTHON")
actor_options = ENVIRONMENT.actor_options


# --- configuration --------------------------------------------------------------------


class StyleTTS2Config(local_model.LocalModelConfig):
    """`model_dir` holds the checkpoint, config.yml and auxiliary models in the upstream
    StyleTTS2 layout; the conditioning cache keeps style vectors."""

    checkpoint: str | None = Field(
        None, description="Checkpoint file name inside model_dir; default: the only *.pth there."
    )
    languages: list[str] | None = Field(
        None,
        description="Override what the model speaks; default: config.yml's `languages`, else the "
        "package phonemizer's language (en-us).",
    )
    seed: int | None = Field(
        None, description="Seed the diffusion noise of every sentence: same text and settings, same audio."
    )
    warmup: bool = Field(
        True, description="Say one word at load, so the first request does not pay for first-call setup."
    )

    @field_validator("languages", mode="after")
    @classmethod
    def _some_language(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and not v:
            raise ValueError("languages: name at least one, or leave it unset")
        return v


class StyleTTS2Audio(AudioResult):
    """AudioResult plus where the style vector came from."""

    conditioning: local_model.Conditioning


# --- the model directory ----------------------------------------------------------------


@dataclass(frozen=True)
class ModelFiles:
    config: Path
    checkpoint: Path
    asr_config: Path
    asr_checkpoint: Path
    f0_checkpoint: Path
    plbert_config: Path
    plbert_checkpoint: Path
    settings: dict[str, Any]  # the parsed config.yml


def model_files(config: StyleTTS2Config) -> ModelFiles:
    """Every file the model needs, resolved and checked (no torch needed)."""
    import yaml

    root = config.model_dir
    if root is None:
        raise local_model.ModelLoadError("no model configured (set model_dir)")
    if not root.is_dir():
        raise local_model.ModelLoadError(f"model directory {root} does not exist")
    cfg_path = root / CONFIG_FILE
    try:
        settings = yaml.safe_load(cfg_path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise local_model.ModelLoadError(f"cannot read {cfg_path}: {type(err).__name__}: {err}") from None
    if not isinstance(settings, dict) or not isinstance(settings.get("model_params"), dict):
        raise local_model.ModelLoadError(f"{cfg_path} has no model_params")
    sr = (settings.get("preprocess_params") or {}).get("sr", SAMPLE_RATE)
    if sr != SAMPLE_RATE:
        raise local_model.ModelLoadError(
            f"{cfg_path} says sr {sr}; the styletts2 package's inference is fixed at {SAMPLE_RATE} Hz"
        )

    if config.checkpoint is not None:
        checkpoint = root / config.checkpoint
    else:
        found = sorted(root.glob("*.pth"))
        if len(found) != 1:
            what = "no *.pth checkpoint" if not found else f"several checkpoints ({', '.join(p.name for p in found)})"
            raise local_model.ModelLoadError(f"model directory {root} has {what}; set checkpoint")
        checkpoint = found[0]

    def aux(key: str) -> Path:
        value = settings.get(key) or AUX_DEFAULTS[key]
        path = Path(str(value)).expanduser()
        return path if path.is_absolute() else root / path

    asr_config, asr_checkpoint, f0, plbert_dir = (aux(k) for k in ("ASR_config", "ASR_path", "F0_path", "PLBERT_dir"))
    for path, what in ((checkpoint, "checkpoint"), (asr_config, "ASR_config"), (asr_checkpoint, "ASR_path"),
                       (f0, "F0_path"), (plbert_dir / "config.yml", "PLBERT_dir config")):
        if not path.is_file():
            raise local_model.ModelLoadError(f"model directory {root} lacks {path} ({what})")
    # As the package's load_plbert does: the highest step_<N>.t7.
    steps = [
        (int(m.group(1)), p) for p in plbert_dir.glob("step_*.t7") if (m := re.fullmatch(r"step_(\d+)\.t7", p.name))
    ]
    if not steps:
        raise local_model.ModelLoadError(
            f"model directory {root} lacks {plbert_dir}/step_<N>.t7 (PLBERT checkpoint)"
        )
    return ModelFiles(
        config=cfg_path,
        checkpoint=checkpoint,
        asr_config=asr_config,
        asr_checkpoint=asr_checkpoint,
        f0_checkpoint=f0,
        plbert_config=plbert_dir / "config.yml",
        plbert_checkpoint=max(steps)[1],
        settings=settings,
    )


def _language_tags(code: str) -> list[str]:
    """`en-us` -> [en-US, en]."""
    parts = code.replace("_", "-").split("-")
    tag = "-".join([parts[0].lower(), *(p.upper() if len(p) == 2 else p for p in parts[1:])])
    return [tag] if tag == parts[0].lower() else [tag, parts[0].lower()]


# --- helpers ------------------------------------------------------------------------------


class _PrintsToLog(io.TextIOBase):
    """The package print()s progress (and every phoneme string): send it to debug logs."""

    def write(self, s: str) -> int:
        if s.strip():
            log.debug("styletts2: %s", s.rstrip())
        return len(s)


def _speakable(sentence: str) -> bool:
    return any(c.isalnum() for c in sentence)


_PACKAGE_LOCK = threading.Lock()  # the shims below are module globals of styletts2.tts


def _import_styletts2() -> Any:
    """`styletts2.tts` imported without its network side effect (nltk.download at import)."""
    import importlib.util

    if importlib.util.find_spec("styletts2") is None:  # say so before paying for torch
        raise ImportError("No module named 'styletts2'")
    with _PACKAGE_LOCK:
        if "styletts2.tts" not in sys.modules:
            import nltk

            download = nltk.download
            nltk.download = lambda *args, **kwargs: True  # punkt is not needed: see below
            try:
                import styletts2.tts  # noqa: F401
            finally:
                nltk.download = download
        from functools import partial

        import styletts2.tts as package
        from nltk.tokenize import word_tokenize

        # nltk's word_tokenize first splits sentences with punkt (downloaded data); with
        # preserve_line it only runs the Treebank word tokenizer, which needs no data. We
        # hand the package one sentence at a time, so that is the same tokenization.
        package.word_tokenize = partial(word_tokenize, preserve_line=True)
        return package


# --- engine ---------------------------------------------------------------------------


class StyleTTS2(local_model.LocalModelEngine):
    engine_id = "styletts2"
    display_name = "StyleTTS2"
    library = "styletts2"
    runs_in = ENVIRONMENT
    config_model = StyleTTS2Config
    settings_model = StyleTTS2Settings
    sample_rate = SAMPLE_RATE

    config: StyleTTS2Config

    def __init__(self, config: StyleTTS2Config | dict | None = None) -> None:
        super().__init__(config)
        self.load_error: str | None = None
        self.languages: list[str] = []
        self.import_s = 0.0  # torch + styletts2 (+ transformers, nltk, librosa...) imports
        self.load_s = 0.0  # imports + model build and checkpoint load
        self.warmup_s = 0.0
        self._tts: Any = None
        self._package: Any = None
        self._files: ModelFiles | None = None
        self._lock = asyncio.Lock()  # one model call at a time (and the global torch RNG)
        try:
            self._load()
        except local_model.ModelLoadError as err:
            self.load_error = str(err)
        except Exception as err:  # a broken checkpoint must not take the replica down
            self.load_error = f"cannot load the model: {type(err).__name__}: {err}"
            log.exception("styletts2 model not loaded")
        if self.load_error:
            log.warning("styletts2 not loaded: %s", self.load_error)

    # --- loading ----------------------------------------------------------------------

    def _load(self) -> None:
        files = model_files(self.config)
        started = time.perf_counter()
        package = self._import_library(_import_styletts2)
        self.import_s = time.perf_counter() - started
        import yaml

        # The package looks up ASR_config/ASR_path relative to the working directory and
        # always fetches F0 and PLBERT by URL (its PLBERT_dir branch joins str / str): hand
        # it a config with absolute paths, and serve every URL it may ask for from model_dir.
        local = {
            package.ASR_CONFIG_URL: files.asr_config,
            package.ASR_CHECKPOINT_URL: files.asr_checkpoint,
            package.F0_CHECKPOINT_URL: files.f0_checkpoint,
            package.BERT_CONFIG_URL: files.plbert_config,
            package.BERT_CHECKPOINT_URL: files.plbert_checkpoint,
        }

        def offline(url: Any) -> str:
            if str(url) not in local:
                raise FileNotFoundError(f"styletts2 asked to download {url}; nothing is downloaded here")
            return str(local[str(url)])

        resolved = {k: v for k, v in files.settings.items() if k != "PLBERT_dir"}
        resolved.update(
            ASR_config=str(files.asr_config), ASR_path=str(files.asr_checkpoint), F0_path=str(files.f0_checkpoint)
        )
        with _PACKAGE_LOCK, tempfile.TemporaryDirectory(prefix="styletts2-") as tmp:
            config_path = Path(tmp) / CONFIG_FILE
            config_path.write_text(yaml.safe_dump(resolved))
            package.cached_path = offline
            with contextlib.redirect_stdout(_PrintsToLog()):
                tts = package.StyleTTS2(model_checkpoint_path=str(files.checkpoint), config_path=str(config_path))
        if tts.device != self.device:  # the package picks CUDA whenever it sees one
            for module in tts.model.values():
                module.to(self.device)
            tts.device = self.device
        self._package, self._files = package, files
        self.languages = self._model_languages(files, tts)
        self._tts = tts
        self.load_s = time.perf_counter() - started
        if self.config.warmup:
            started = time.perf_counter()
            try:
                self._warm_up()
            except Exception as err:  # loads, but cannot speak: not healthy
                self._tts = None
                raise local_model.ModelLoadError(f"the model loaded but cannot speak (warm-up): {err}") from err
            self.warmup_s = time.perf_counter() - started
        log.info("styletts2 loaded %s in %.1f s (+%.1f s warm-up) on %s",
                 files.checkpoint, self.load_s, self.warmup_s, self.device)

    def _model_languages(self, files: ModelFiles, tts: Any) -> list[str]:
        """The config override; else what the model's config.yml declares; else the language
        the package's phonemizer is fixed to (GruutPhonemizer.phonemize(lang='en-us'))."""
        declared = self.config.languages or files.settings.get("languages")
        if isinstance(declared, str):
            declared = [declared]
        if declared:
            return list(dict.fromkeys(str(lang) for lang in declared))
        return _language_tags(self._phonemizer_language(tts))

    @staticmethod
    def _phonemizer_language(tts: Any) -> str:
        import inspect

        lang = inspect.signature(tts.phoneme_converter.phonemize).parameters.get("lang")
        return lang.default if lang is not None and isinstance(lang.default, str) else "en-us"

    # --- contract ---------------------------------------------------------------------

    async def capabilities(self) -> Capabilities:
        return self._capabilities(list(self.languages))

    async def health(self) -> Health:
        if self._tts is None:
            return Health(healthy=False, reason=f"StyleTTS2 model not loaded: {self.load_error}")
        return Health(healthy=True)

    async def synthesize(self, request: SynthesisRequest) -> StyleTTS2Audio:
        sentences, kwargs = self._prepare(request)
        async with self._lock:
            style, how = await self._style(request)
            pcm = b""
            for sentence in sentences:
                pcm += await local_model.in_thread(self._speak, sentence, style, kwargs)
        if not pcm:
            raise EngineFailedError("the model produced no audio", self.engine_id)
        return StyleTTS2Audio(pcm=pcm, sample_rate=SAMPLE_RATE, conditioning=how)

    async def stream(self, request: SynthesisRequest) -> AsyncIterator[AudioChunk]:
        sentences, kwargs = self._prepare(request)
        async with self._lock:
            style, _ = await self._style(request)
            for index, sentence in enumerate(sentences):
                # One sentence per hop off the event loop: the first leaves before the rest
                # of the utterance is done.
                pcm = await local_model.in_thread(self._speak, sentence, style, kwargs)
                yield AudioChunk(pcm=pcm, sample_rate=SAMPLE_RATE, index=index)

    def _environment(self) -> dict[str, Any]:
        return {
            "checkpoint": str(self._files.checkpoint) if self._files else None,
            "languages": list(self.languages),
            "phonemizer": self._phonemizer_language(self._tts) if self._tts is not None else None,
            "import_s": round(self.import_s, 3),
            "load_s": round(self.load_s, 3),
            "warmup_s": round(self.warmup_s, 3),
            "load_error": self.load_error,
        }

    # --- internals --------------------------------------------------------------------

    def _prepare(self, request: SynthesisRequest) -> tuple[list[str], dict[str, Any]]:
        text = self._checked_text(request)
        if self._tts is None:
            raise EngineUnavailableError(f"StyleTTS2 model not loaded: {self.load_error}", self.engine_id)
        if not language_matches(request.language, self.languages):
            raise EngineUnavailableError(
                f"StyleTTS2 does not speak {request.language!r} (its languages: {', '.join(self.languages)})",
                self.engine_id,
            )
        if not request.samples:  # StyleTTS2 has no built-in voice: the router falls back
            raise EngineUnavailableError(NO_SAMPLES, self.engine_id, public=NO_SAMPLES)
        sentences = [s for s in split_sentences(text) if _speakable(s)]
        if not sentences:
            raise BadInputError(NOTHING_SPEAKABLE, self.engine_id, public=NOTHING_SPEAKABLE)
        return sentences, _inference_kwargs(request.settings_as(StyleTTS2Settings))

    async def _style(self, request: SynthesisRequest) -> tuple[Any, local_model.Conditioning]:
        """The sample set's style vector; called with the model lock held."""
        key = tuple(sorted({s.sha256 for s in request.samples}))
        unique = list({s.sha256: s for s in request.samples}.values())
        return await self._conditionings.get(key, self._compute_style, unique)

    def _compute_style(self, samples: list[Any]) -> Any:
        """Each sample decoded with libsndfile, its style vector taken, the vectors averaged."""
        import torch

        styles = []
        for ref in samples:
            mono, rate = local_model.read_sample(ref, self.engine_id)
            styles.append(self._style_of(mono, rate, ref.id))
        style = torch.stack(styles).mean(dim=0)
        if not bool(torch.isfinite(style).all()):
            raise EngineFailedError(
                "the style encoder returned non-finite values (broken checkpoint?)", self.engine_id
            )
        return style

    def _style_of(self, mono: Any, rate: int, sample_id: str) -> Any:
        """The package's compute_style on decoded audio: trim silence at 30 dB, its mel front
        end, then the style encoder (timbre) and the prosody encoder, concatenated."""
        import librosa
        import torch

        if rate != SAMPLE_RATE:
            mono = librosa.resample(mono, orig_sr=rate, target_sr=SAMPLE_RATE)
        trimmed, _ = librosa.effects.trim(mono, top_db=30)
        if len(trimmed) < MIN_SAMPLE_S * SAMPLE_RATE:
            raise EngineUnavailableError(
                f"reference sample {sample_id!r} has {len(trimmed) / SAMPLE_RATE:.2f} s of sound; "
                f"StyleTTS2 needs at least {MIN_SAMPLE_S:g} s",
                self.engine_id,
            )
        mel = self._package.preprocess(trimmed).to(self.device)
        with torch.no_grad():
            ref_s = self._tts.model.style_encoder(mel.unsqueeze(1))
            ref_p = self._tts.model.predictor_encoder(mel.unsqueeze(1))
        return torch.cat([ref_s, ref_p], dim=1)

    def _warm_up(self) -> None:
        """One style and one word through the whole path, so the first request does not pay
        for lazy imports and first-call setup (librosa's trim alone takes seconds)."""
        import numpy as np

        t = np.arange(int(1.5 * SAMPLE_RATE), dtype=np.float32) / SAMPLE_RATE
        sweep = 0.3 * np.sin(2 * np.pi * (150 + 100 * t) * t, dtype=np.float32)
        style = self._style_of(sweep, SAMPLE_RATE, "warm-up")
        self._speak("Hello.", style, _inference_kwargs(StyleTTS2Settings()))

    def _speak(self, sentence: str, style: Any, kwargs: dict[str, Any]) -> bytes:
        import numpy as np
        import torch

        try:
            if self.config.seed is not None:
                torch.manual_seed(self.config.seed)
            with contextlib.redirect_stdout(_PrintsToLog()):
                wav = self._tts.inference(sentence, ref_s=style, **kwargs)
        except EngineError:
            raise
        except Exception as err:
            raise EngineFailedError(f"synthesis failed: {type(err).__name__}: {err}", self.engine_id) from None
        if not np.isfinite(wav).all():
            raise EngineFailedError("the model produced non-finite audio (broken checkpoint?)", self.engine_id)
        return local_model.pcm16(wav)


def _inference_kwargs(settings: StyleTTS2Settings) -> dict[str, Any]:
    """The personality's settings as `StyleTTS2.inference()` keyword arguments."""
    return {
        "alpha": settings.alpha,
        "beta": settings.beta,
        "diffusion_steps": settings.diffusion_steps,
        "embedding_scale": settings.embedding_scale,
    }


StyleTTS2Engine = local_model.deployment(StyleTTS2)
