"""What the local-model engines (XTTS v2, StyleTTS2) share.

Both load a checkpoint into torch inside the replica, whose interpreter is the engine's own
virtualenv (`EngineEnvironment`); both do blocking model work in a worker thread and
condition on reference samples through an in-replica LRU (XTTS: GPT latents and a speaker
embedding per variant and sample set; StyleTTS2: a style vector per sample set).

The ingress and the Serve controller import the engine modules to validate their configs
and bind the deployments without torch or the model libraries, so those are imported inside
functions only, here as in the engines.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import io
import os
import sys
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, ClassVar, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator
from ray import serve
from ray.serve import Deployment

from deployments import spans
from deployments.base import (
    Capabilities,
    EngineSettings,
    EngineUnavailableError,
    SynthesisRequest,
    TTSEngine,
    VoiceSampleRef,
    checked_text,
    files_digest,
    respelled,
)
from deployments.tracing import note, traced_engine

T = TypeVar("T")
# The checkout (or site-packages) this package runs from: where scripts/engine-env.sh puts
# the engine venvs of a checkout.
CHECKOUT = Path(__file__).resolve().parents[1]
KeyT = TypeVar("KeyT", bound=Hashable)
ValueT = TypeVar("ValueT")
Conditioning = Literal["computed", "cached"]


class LocalModelConfig(BaseModel):
    """The config fields every local-model engine has; each engine's model adds its own."""

    model_config = ConfigDict(extra="forbid")

    model_dir: Path | None = Field(
        None, description="The model directory, in the layout the engine documents (docs/engines.md)."
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto: CUDA when the replica sees a GPU, else CPU; cuda: a GPU or unhealthy."
    )
    max_characters: int = Field(
        2_000, ge=1, description="Characters per request (more is refused); the router packs text to it."
    )
    conditioning_cache_size: int = Field(
        64, ge=1, description="Speaker conditionings (one per sample set, and variant) kept per replica."
    )
    torch_threads: int | None = Field(None, ge=1, description="torch.set_num_threads in the replica.")

    @field_validator("model_dir", mode="after")
    @classmethod
    def _expand_dir(cls, v: Path | None) -> Path | None:
        return v.expanduser() if v is not None else None


class ModelLoadError(Exception):
    """The model cannot be used in this replica; the message says why."""


async def in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """Run blocking model work off the event loop; if the caller is cancelled, wait for the
    thread to finish before giving up the model's lock."""
    future = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        with contextlib.suppress(BaseException):
            await future
        raise


def pcm16(wav: Any) -> bytes:
    """A model's float waveform (numpy array or torch tensor, -1..1) as s16le PCM."""
    import numpy as np

    if hasattr(wav, "detach"):
        wav = wav.detach().float().cpu().numpy()
    samples = np.nan_to_num(np.asarray(wav, dtype=np.float32).reshape(-1))
    return (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


class EngineEnvironment:
    """An engine whose libraries cannot share the main environment (XTTS, StyleTTS2) runs
    its replicas under its own interpreter: Ray's runtime_env `py_executable`
    (docs/engines.md). Decided where the application is built:

    `$<env_var>` if set (empty or `default`: the node's own Python, as in a cluster image
    made for the engine); else the checkout's `.venv-<name>` (`scripts/engine-env.sh
    <name>`; the checkout this code runs from, so its replicas import the same code) if it
    exists; else none: the replica starts in the main environment and reports itself
    unhealthy for lack of its libraries. A path that does not exist is never used: Ray would
    retry the worker start forever."""

    def __init__(self, name: str, env_var: str) -> None:
        self.name = name
        self.env_var = env_var

    def python(self) -> str | None:
        value = os.environ.get(self.env_var)
        if value is not None:
            return None if value.strip() in ("", "default") else value.strip()
        path = CHECKOUT / f".venv-{self.name}" / "bin" / "python"
        return str(path) if path.exists() else None

    def runtime_env(self) -> dict[str, Any]:
        python = self.python()
        return {"py_executable": python} if python else {}

    def actor_options(self, num_cpus: float = 1.0, **extra: Any) -> dict[str, Any]:
        """`ray_actor_options` that keep the environment. A Serve config file that sets
        `ray_actor_options` replaces the whole dict, so it must repeat the runtime_env."""
        options: dict[str, Any] = {"num_cpus": num_cpus, **extra}
        env = self.runtime_env()
        if env:
            options["runtime_env"] = {**env, **options.get("runtime_env", {})}
        return options


def sample_bytes(ref: VoiceSampleRef) -> bytes:
    """A reference sample's WAV bytes: inline, from the shared volume, or from the sample
    store's S3-compatible bucket (its endpoint and expected owner come with the ref; boto3's
    usual credential chain)."""
    if ref.audio is not None:
        return ref.audio
    assert ref.path is not None
    if ref.path.startswith("s3://"):
        import boto3

        bucket, _, key = ref.path.removeprefix("s3://").partition("/")
        owner = {"ExpectedBucketOwner": ref.expected_owner} if ref.expected_owner else {}
        client = boto3.client("s3", endpoint_url=ref.endpoint_url)
        return client.get_object(Bucket=bucket, Key=key, **owner)["Body"].read()
    with open(ref.path, "rb") as f:
        return f.read()


def read_sample(ref: VoiceSampleRef, engine: str) -> tuple[Any, int]:
    """A reference sample as (float32 mono numpy array, rate), decoded with libsndfile (no
    torchaudio file IO). One that cannot be read makes the engine unavailable for it."""
    import soundfile as sf

    try:
        audio, rate = sf.read(io.BytesIO(sample_bytes(ref)), dtype="float32", always_2d=True)
    except Exception as err:
        raise EngineUnavailableError(
            f"reference sample {ref.id!r} unreadable: {type(err).__name__}: {err}", engine
        ) from None
    return audio.mean(axis=1), int(rate)


class ConditioningCache(Generic[KeyT, ValueT]):
    """Conditionings computed from sample sets, the least recently used dropped first, with
    the counters `stats()` reports. Not locked: callers hold their model's lock, so one
    sample set is never computed twice at once."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[KeyT, ValueT] = OrderedDict()
        self._hits = 0
        self._misses = 0

    async def get(self, key: KeyT, compute: Callable[..., ValueT], *args: Any) -> tuple[ValueT, Conditioning]:
        """The cached value, or `compute(*args)` run in a worker thread and kept."""
        if key in self._entries:
            self._entries.move_to_end(key)
            self._hits += 1
            note(spans.CONDITIONING_CACHE, "hit")
            return self._entries[key], "cached"
        self._misses += 1
        note(spans.CONDITIONING_CACHE, "miss")
        value = await in_thread(compute, *args)
        self._entries[key] = value
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)
        return value, "computed"

    def stats(self) -> dict[str, int]:
        return {"hits": self._hits, "misses": self._misses,
                "entries": len(self._entries), "capacity": self.capacity}


class LocalModelEngine(TTSEngine):
    """A `TTSEngine` whose model runs in the replica under torch; see the module docstring."""

    # What a subclass declares.
    display_name: ClassVar[str]  # in messages: "XTTS"
    library: ClassVar[str]  # the distribution its replicas import: "coqui-tts"
    runs_in: ClassVar[EngineEnvironment]
    config_model: ClassVar[type[LocalModelConfig]]
    settings_model: ClassVar[type[EngineSettings]]  # its cloning window is the engine's
    sample_rate: ClassVar[int]  # what the model outputs

    config: LocalModelConfig

    def __init__(self, config: LocalModelConfig | dict[str, Any] | None = None) -> None:
        self.config = self.config_model.model_validate(config or {})
        self.device = "cpu"
        self._versions: dict[str, str] = {}
        self._threads = 0
        self._conditionings: ConditioningCache[Any, Any] = ConditioningCache(
            self.config.conditioning_cache_size
        )
        self._identity = self._model_identity()

    def _model_identity(self) -> str:
        """A digest of every file of the model directory (weights, config, vocabulary), read
        once as the replica starts: new weights under the same path are a new identity."""
        directory = self.config.model_dir
        if directory is None or not directory.is_dir():
            return f"{self.engine_id}:no-model"
        return files_digest(sorted(p for p in directory.rglob("*") if p.is_file()))

    def _import_library(self, load: Callable[[], T]) -> T:
        """`load()` imports the model library (torch comes with it); then torch is set up:
        thread count, device, versions. Any failure is a `ModelLoadError` saying why."""
        try:
            library = load()
            self._set_up_torch()
        except ModelLoadError:
            raise
        except Exception as err:  # ImportError, or a broken torch/CUDA install
            raise ModelLoadError(
                f"{self.library} is not importable in this replica's environment ({sys.executable}): "
                f"{type(err).__name__}: {err}; create it with scripts/engine-env.sh {self.runs_in.name}"
            ) from None
        return library

    def _set_up_torch(self) -> None:
        import importlib.metadata

        import torch

        if self.config.torch_threads:
            torch.set_num_threads(self.config.torch_threads)
        cuda = torch.cuda.is_available()
        if self.config.device == "cuda" and not cuda:
            raise ModelLoadError("device is 'cuda' but this replica sees no GPU")
        self.device = "cuda" if cuda and self.config.device != "cpu" else "cpu"
        self._versions = {self.library: importlib.metadata.version(self.library), "torch": torch.__version__}
        self._threads = torch.get_num_threads()

    def _capabilities(self, languages: list[str], **more: Any) -> Capabilities:
        """What the loaded model offers: it clones from samples (in its settings model's
        window) and streams, at its native rate."""
        return Capabilities(
            engine=self.engine_id,
            languages=languages,
            cloning_window=self.settings_model.cloning_window,
            streaming=True,
            max_characters=self.config.max_characters,
            sample_rate=self.sample_rate,
            model_identity=self._identity,
            **more,
        )

    def _checked_text(self, request: SynthesisRequest) -> str:
        """The request's text, checked, as the model reads it: the lexicon's aliases in place of
        their phrases (these models read text, not phonemes)."""
        checked = checked_text(request.text, self.config.max_characters, self.engine_id, self.display_name)
        return respelled(checked, request.lexicon)

    # --- extras (Serve handle methods) --------------------------------------------------

    async def stats(self) -> dict[str, int]:
        """The conditioning cache's counters (also in `GET /v1/providers`)."""
        return self._conditionings.stats()

    async def environment(self) -> dict[str, Any]:
        """Where this replica runs: interpreter, library versions, device, and what the
        engine adds about its model (`_environment()`)."""
        return {
            "python": sys.executable,
            "versions": dict(self._versions),
            "device": self.device,
            "torch_threads": self._threads,
            **self._environment(),
        }

    @abc.abstractmethod
    def _environment(self) -> dict[str, Any]:
        """The engine's own part of `environment()`: its model files, load times, errors."""


def deployment(engine: type[LocalModelEngine]) -> Deployment:
    """The engine's Serve deployment: half a CPU and its environment by default (the CPU
    profile keeps these; config files and `.options()` that set `ray_actor_options` replace
    them whole), a few requests queued while one runs."""
    return serve.deployment(
        traced_engine(engine),
        name=engine.engine_id,
        ray_actor_options=engine.runs_in.actor_options(num_cpus=0.5),
        max_ongoing_requests=4,
    )
