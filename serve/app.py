"""The application builder: validated args in, a Ray Serve application out.

Every Serve config (the CPU profile, the cluster profile, a RayService's serveConfigV2)
points `import_path: chorus.app:build_app` at it with `args`, the pattern of Ray Serve
LLM's `build_openai_app`. Resources and autoscaling stay in those files, per deployment.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from ray.serve import Application

from chorus.auth import exposure
from chorus.auth.config import AuthConfig
from chorus.deploy import serving_host
from chorus.ingress.config import REDIS_URL_ENV, IngressArgs, IngressConfig
from chorus.ingress.deployment import Ingress
from chorus.recognition.deployment import Recognizer, RecognizerConfig
from deployments.base import EngineId

# engine id -> (deployment, its config model), imported only when the engine is enabled
# so an application never needs the dependencies of engines it does not run.
ENGINE_DEPLOYMENTS: dict[EngineId, tuple[str, str]] = {
    "piper": ("deployments.piper:PiperEngine", "deployments.piper:PiperEngineConfig"),
    "xtts_v2": ("deployments.xtts:XTTSEngine", "deployments.xtts:XTTSConfig"),
    "styletts2": ("deployments.styletts2:StyleTTS2Engine", "deployments.styletts2:StyleTTS2Config"),
    "google_tts": ("deployments.google_tts:GoogleTTSEngine", "deployments.google_tts:GoogleTTSConfig"),
    "azure_tts": ("deployments.azure_tts:AzureTTSEngine", "deployments.azure_tts:AzureTTSConfig"),
    "ibm_watson": ("deployments.ibm_watson:IBMWatsonEngine", "deployments.ibm_watson:IBMWatsonConfig"),
}


class EngineArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    timeout_s: float = Field(30.0, gt=0, description="Router gives up on this engine after this long.")
    config: dict[str, Any] = Field(default_factory=dict, description="The engine's own config model.")


class RecognizerArgs(BaseModel):
    """The recognizer deployment that verifies speech (`PersonalitySpec.verify`)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Off: personalities that verify are answered unverified, and say so.")
    timeout_s: float = Field(30.0, gt=0, description="A piece not heard within this long goes out unverified.")
    config: RecognizerConfig = Field(default_factory=RecognizerConfig)


class AppArgs(IngressArgs):
    """A Serve config's `args`: what the ingress takes as it is, the engines, and the recognizer."""

    engines: dict[EngineId, EngineArgs] = Field(default_factory=lambda: {"piper": EngineArgs()})
    recognizer: RecognizerArgs = Field(default_factory=RecognizerArgs)

    def with_environment(self, environ: Mapping[str, str]) -> AppArgs:
        """These args with what the environment of the process building the app (the Serve
        controller) adds, so a plain Serve config honours it too: `CHORUS_API_KEYS_FILE` as
        `auth.keysFile`, `CHORUS_REDIS_URL` as `redis_url`. Args given explicitly win.
        Read here, once, so every replica gets them in its validated config wherever it lands."""
        update: dict[str, Any] = {}
        if self.auth is None:
            update["auth"] = AuthConfig.from_environment(environ)
        if self.redis_url is None and environ.get(REDIS_URL_ENV):
            update["redis_url"] = environ[REDIS_URL_ENV]
        # Validated again: a value from the environment is checked like one from the args.
        return self.model_validate(self.model_dump() | update) if update else self

    def ingress_config(self, default_voices: dict[EngineId, str] | None = None) -> IngressConfig:
        return IngressConfig(
            **{name: getattr(self, name) for name in IngressArgs.model_fields},
            timeouts={e: a.timeout_s for e, a in self.engines.items() if a.enabled},
            recognizer_timeout_s=self.recognizer.timeout_s,
            default_voices=default_voices or {},
        )


def _load(path: str) -> Any:
    module, attr = path.split(":")
    return getattr(importlib.import_module(module), attr)


def build_app(args: dict[str, Any] | AppArgs) -> Application:
    app_args = AppArgs.model_validate(args).with_environment(os.environ)
    # Under a Serve controller the proxies' address is known: keys off there only on loopback.
    exposure.check(keys=app_args.auth is not None, insecure_no_auth=app_args.insecure_no_auth,
                   host=serving_host())
    handles = {}
    default_voices: dict[EngineId, str] = {}
    for engine, engine_args in app_args.engines.items():
        if not engine_args.enabled:
            continue
        if engine not in ENGINE_DEPLOYMENTS:
            raise ValueError(f"engines.{engine}: no deployment for this engine in this version")
        deployment_path, config_path = ENGINE_DEPLOYMENTS[engine]
        try:
            config = _load(config_path).model_validate(engine_args.config)
        except ValidationError as err:
            raise ValueError(f"engines.{engine}.config: {err}") from None
        handles[engine] = _load(deployment_path).bind(config)
        if engine in app_args.cloud_quotas.engines():  # metered: the voice a personality naming none speaks
            default_voices[engine] = config.default_voice
    recognizer = Recognizer.bind(app_args.recognizer.config) if app_args.recognizer.enabled else None
    return Ingress.bind(handles, app_args.ingress_config(default_voices), recognizer)
