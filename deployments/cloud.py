"""What the cloud engines (Google TTS, Azure Speech, IBM Watson) have in common.

A cloud engine is a client of a remote service. `CloudTTSEngine` holds everything that does
not depend on which service it is:

- the voice list, fetched through `_list_voices()` and cached for `voices_refresh_s`
  (sooner after a failure), which drives `capabilities()` and `health()`;
- setup that never stops the replica from starting: a missing credential or an unreachable
  service only makes it unhealthy;
- the text, settings and voice checks done before any call is made;
- synthesis (`_synthesize_wav()` returns the service's WAV file) and streaming, one call
  (and one chunk) a request: the router packs a stream's sentences up to `max_characters`,
  so a text of many short sentences costs a few calls, not one a sentence;
- errors: timeouts become `EngineTimeoutError`, rejected credentials mark the engine
  unhealthy at once, everything else is the service's own `_map_error()`.

A subclass supplies its config model, client construction (`_setup()`), `_list_voices()`,
`_synthesize_wav()`, `_map_error()` and `_where()`.
"""

from __future__ import annotations

import abc
import asyncio
import re
import time
from collections.abc import AsyncIterator
from typing import Any, ClassVar, NamedTuple
from xml.sax.saxutils import escape, quoteattr

from pydantic import BaseModel, ConfigDict, Field

from deployments.base import (
    AudioChunk,
    AudioResult,
    BadInputError,
    Capabilities,
    EngineError,
    EngineFailedError,
    EngineSettings,
    EngineTimeoutError,
    EngineUnavailableError,
    Health,
    Pronunciation,
    Sentence,
    SynthesisRequest,
    TextTooLongError,
    TTSEngine,
    VoiceInfo,
    WordSpan,
    checked_text,
    language_matches,
    lexicon_runs,
    spoken_words,
)

# Every cloud engine asks its service for 24 kHz mono 16-bit WAV.
SAMPLE_RATE = 24_000
# After a failed voice-list fetch (or rejected credentials), look again this soon (capped by
# voices_refresh_s), so a service that comes back is noticed without hammering one that is down.
RETRY_AFTER_FAILURE_S = 10.0
# A health probe must answer quickly even when the service hangs.
PROBE_TIMEOUT_S = 10.0

# Cloud voice names start with their locale: en-US-Neural2-D, en-US-JennyNeural, en-US_MichaelV3Voice.
_VOICE_LOCALE = re.compile(r"^([a-z]{2,3}-[A-Z]{2})(?:[-_]|$)")


class CloudEngineConfig(BaseModel):
    """The config fields every cloud engine has; each engine's model adds its own."""

    model_config = ConfigDict(extra="forbid")

    default_voice: str
    max_characters: int = Field(5000, gt=0, description="input limit per request")
    timeout_s: float = Field(30.0, gt=0, description="per-request timeout")
    voices_refresh_s: float = Field(300.0, gt=0)


class CloudTTSEngine(TTSEngine):
    """A TTS engine backed by a cloud service; see the module docstring."""

    # What a subclass declares.
    service: ClassVar[str]  # the service's name in messages: "Google TTS"
    # The service API version it speaks: with the endpoint and default voice, its model identity.
    protocol: ClassVar[str]
    config_model: ClassVar[type[CloudEngineConfig]]
    settings_model: ClassVar[type[EngineSettings]]  # from deployments.settings
    timeout_errors: ClassVar[tuple[type[BaseException], ...]]  # the client's "no answer in time"
    text_unit: ClassVar[str] = "characters"  # what max_characters counts: characters or bytes...
    # The service says when each word is heard: such an engine times the words of a request
    # asking for timestamps itself. `word_marks`: when each SSML `<mark>` before a word is
    # reached (`_synthesize_marked`); `word_timings`: each word's start and end
    # (`_synthesize_timed`).
    word_marks: ClassVar[bool] = False
    word_timings: ClassVar[bool] = False

    config: CloudEngineConfig

    def __init__(self, config: CloudEngineConfig | dict[str, Any] | None = None) -> None:
        self.config = self.config_model.model_validate(config or {})
        self._voices: list[VoiceInfo] | None = None
        self._problem: str | None = None  # why the last call to the service failed, if it did
        self._next_refresh = 0.0
        self._refresh_lock = asyncio.Lock()
        try:
            self._setup_problem = self._setup()
        except Exception as err:  # noqa: BLE001 - any setup failure must leave the replica up
            self._setup_problem = f"cannot set up the {self.service} client: {self._describe_setup_error(err)}"

    # --- what each service supplies ----------------------------------------------------

    @abc.abstractmethod
    def _setup(self) -> str | None:
        """Build the client from `self.config`; return why the engine cannot work (no key,
        no region), or None. An exception becomes the reason too."""

    @abc.abstractmethod
    async def _list_voices(self, timeout: float) -> list[VoiceInfo]:
        """The service's voices; raise whatever the client raises."""

    @abc.abstractmethod
    async def _synthesize_wav(self, text: str, voice: str, language: str, settings: Any, *, ssml: bool) -> bytes:
        """One call to the service (checked `text`, a voice and its language, validated
        `settings_model`), no retries: the service's WAV file; raise what the client raises."""

    async def _synthesize_marked(self, ssml: str, voice: str, language: str, settings: Any,
                                 ) -> tuple[bytes, dict[str, float]]:
        """As `_synthesize_wav` for an SSML fragment with `<mark name>`s: the WAV file and when
        each mark is reached, in seconds from its start (only with `word_marks`)."""
        raise NotImplementedError

    async def _synthesize_timed(self, text: str, voice: str, language: str, settings: Any,
                                ) -> tuple[bytes, list[TimedWord]]:
        """As `_synthesize_wav`, and the service's own timing of each word it spoke, in
        order (only with `word_timings`)."""
        raise NotImplementedError

    @abc.abstractmethod
    def _map_error(self, err: Exception, doing: str, voice: str | None) -> EngineError | None:
        """The contract's error for a client failure (neither a timeout nor already an
        `EngineError`), or None for the generic "call failed". An error meaning the
        credentials were rejected must say "credentials" in its reason."""

    @abc.abstractmethod
    def _where(self) -> str:
        """Where the service is, for messages: an endpoint or URL."""

    def _describe_setup_error(self, err: Exception) -> str:
        return f"{type(err).__name__}: {err}"

    def _after_failure(self, err: Exception) -> None:
        """Called with every failed call to the service before it is mapped."""

    def _prepare_text(self, text: str, lexicon: list[Pronunciation]) -> tuple[str, bool]:
        """The stripped request text as the service should get it, and whether that is SSML
        (a fragment, without `<speak>`): plain text, unless a lexicon phrase is in it."""
        if any(p is not None for _, p in lexicon_runs(text, lexicon)):
            return ssml_fragment(text, lexicon), True
        return text, False

    # --- voice list, health, capabilities ---------------------------------------------

    async def _refresh_voices(self) -> None:
        if self._setup_problem or time.monotonic() < self._next_refresh:
            return
        async with self._refresh_lock:
            if time.monotonic() < self._next_refresh:
                return  # another caller refreshed while we waited
            timeout = min(self.config.timeout_s, PROBE_TIMEOUT_S)
            try:
                voices = await self._list_voices(timeout)
            except Exception as err:  # noqa: BLE001 - every failure becomes a health reason
                self._problem = self._engine_error(err, "listing voices", timeout).reason
                self._next_refresh = time.monotonic() + min(self.config.voices_refresh_s, RETRY_AFTER_FAILURE_S)
                return
            self._voices = voices
            self._problem = None
            self._next_refresh = time.monotonic() + self.config.voices_refresh_s

    async def health(self) -> Health:
        if self._setup_problem:
            return Health(healthy=False, reason=self._setup_problem)
        await self._refresh_voices()
        if self._problem:
            return Health(healthy=False, reason=self._problem)
        return Health(healthy=True)

    async def capabilities(self) -> Capabilities:
        await self._refresh_voices()
        if self._voices is not None:
            voices = self._voices
            languages = sorted({lang for v in voices for lang in v.languages})
        else:
            # Nothing listed yet: all we know is the default voice, named after its locale.
            voices = []
            match = _VOICE_LOCALE.match(self.config.default_voice)
            languages = [match.group(1)] if match else []
        return Capabilities(
            engine=self.engine_id,
            languages=languages,
            voices=voices,
            streaming=True,
            one_chunk_per_call=True,
            max_characters=self.config.max_characters,
            sample_rate=SAMPLE_RATE,
            # The provider's models are not ours to hash: what we ask it and where is all we know.
            model_identity=f"{self.protocol}@{self._where()}/{self.config.default_voice}",
        )

    # --- synthesis ----------------------------------------------------------------------

    async def synthesize(self, request: SynthesisRequest) -> AudioResult:
        text, ssml = self._checked_text(request.text, request.lexicon)
        settings = request.settings_as(self.settings_model)
        if self._setup_problem:
            raise EngineUnavailableError(self._setup_problem, self.engine_id)
        voice = request.voice or self.config.default_voice
        self._check_voice(voice)
        language = self._language_for(voice, request.language)
        # A lexicon entry's markup would split or rename the words the service times: such a
        # text's words are aligned instead.
        timed = request.timestamps and not any(p is not None for _, p in lexicon_runs(request.text, request.lexicon))
        marked = self._word_marked(text) if timed and self.word_marks else None
        try:
            # No retries here: the router falls back to the next engine, which is faster
            # for the caller than backing off against a struggling service.
            if marked is not None:
                data, marks = await self._synthesize_marked(marked, voice, language, settings)
                return _timed_by_marks(AudioResult.from_wav(data, self.engine_id), text, marks)
            if timed and self.word_timings:
                data, words = await self._synthesize_timed(text, voice, language, settings)
                return timed_by_words(AudioResult.from_wav(data, self.engine_id), request.text.strip(), words)
            data = await self._synthesize_wav(text, voice, language, settings, ssml=ssml)
        except Exception as err:  # noqa: BLE001 - mapped to the contract's errors
            mapped = self._engine_error(err, "synthesizing", self.config.timeout_s, voice)
            if isinstance(mapped, EngineUnavailableError) and "credentials" in mapped.reason:
                # Tell the router now rather than at the next voice-list refresh.
                self._problem = mapped.reason
                self._next_refresh = time.monotonic() + RETRY_AFTER_FAILURE_S
            raise mapped from None
        return AudioResult.from_wav(data, self.engine_id)

    async def stream(self, request: SynthesisRequest) -> AsyncIterator[AudioChunk]:
        # One call for the whole piece: a call a sentence would turn "a. a. a. ..." into
        # thousands of billed round trips (each with its own latency and rate limit).
        # The chunk says what it says (its words, if the service timed them), so a stream's
        # word timestamps can be found for it like for a whole answer.
        audio = await self.synthesize(request)
        said = audio.sentences or [Sentence(text=request.text.strip(), samples=len(audio.pcm) // 2)]
        yield AudioChunk(pcm=audio.pcm, sample_rate=audio.sample_rate, sentences=said, index=0)

    # --- helpers ------------------------------------------------------------------------

    def _checked_text(self, raw: str, lexicon: list[Pronunciation]) -> tuple[str, bool]:
        text, ssml = self._prepare_text(raw.strip(), lexicon)
        return checked_text(text, self.config.max_characters, self.engine_id, self.service, unit=self.text_unit), ssml

    def _word_marked(self, text: str) -> str | None:
        """`text` as SSML with a `<mark name="i"/>` before each spoken word (the i-th
        whitespace-separated token), or None when the marks would take it over the limit
        (then forced alignment times its words)."""
        fragment = " ".join(f'<mark name="{i}"/>{escape(t)}' if spoken_words(t) else escape(t)
                            for i, t in enumerate(text.split()))
        size = len(f"<speak>{fragment}</speak>".encode()) if self.text_unit == "bytes" else len(fragment)
        return fragment if size <= self.config.max_characters else None

    def _check_voice(self, voice: str) -> None:
        """Refuse a voice the last voice list lacks, so the router falls back instead of
        the service answering with an error that reads like bad input."""
        if self._voices is not None and voice not in {v.id for v in self._voices}:
            raise EngineUnavailableError(
                f"voice {voice!r} is not among the {len(self._voices)} voices {self.service} lists",
                self.engine_id,
            )

    def _language_for(self, voice: str, requested: str) -> str:
        """The voice's own locale when it is known and compatible: services want the full
        code ("en-US") and callers often say just "en"."""
        for info in self._voices or []:
            if info.id == voice:
                for lang in info.languages:
                    if language_matches(requested, [lang]):
                        return lang
        return requested

    def _engine_error(self, err: Exception, doing: str, timeout: float, voice: str | None = None) -> EngineError:
        self._after_failure(err)
        if isinstance(err, EngineError):
            return err
        if isinstance(err, self.timeout_errors):
            return EngineTimeoutError(
                f"{self.service} at {self._where()} did not answer within {timeout:g}s while {doing}",
                self.engine_id,
            )
        return self._map_error(err, doing, voice) or EngineFailedError(
            f"{self.service} call failed while {doing}: {type(err).__name__}: {err}", self.engine_id
        )

    def _status_error(
        self, code: int, message: str, doing: str, *, credentials: str, not_found: str, bad_request: str = ""
    ) -> EngineError:
        """What an HTTP error status of the service means for the router: the caller's fault
        (400, 413), an engine that cannot serve until someone acts (401/403, 404), or a
        failure the next engine can take over (429, 5xx). The hints say where to look."""
        said = f"{code}: {message}" if message else str(code)
        if code == 400:
            return BadInputError(f"{self.service} rejected the request ({said}){bad_request}", self.engine_id)
        if code in (401, 403):
            return EngineUnavailableError(f"credentials rejected by {self.service} ({said}); {credentials}",
                                          self.engine_id)
        if code == 404:
            return EngineUnavailableError(f"{self.service} answered 404 while {doing} ({said}): {not_found}",
                                          self.engine_id)
        if code == 413:
            return TextTooLongError(f"{self.service}: text too long ({said})", self.engine_id,
                                    self.config.max_characters)
        if code == 429:
            return EngineFailedError(f"{self.service} rate limit or quota exceeded ({said})", self.engine_id)
        return EngineFailedError(f"{self.service} failed while {doing} ({said})", self.engine_id)


def _timed_by_marks(audio: AudioResult, text: str, marks: dict[str, float]) -> AudioResult:
    """`audio` timed as `timed_by_words` times it, each word starting where its mark is (see
    `_word_marked`) and ending where the next begins (the last at the end); untouched, so
    aligned instead, if a mark is missing or out of order."""
    tokens = text.split()
    spoken = [i for i, t in enumerate(tokens) if spoken_words(t)]
    if any(str(i) not in marks for i in spoken):
        return audio
    starts = [marks[str(i)] for i in spoken]
    ends = [*starts[1:], len(audio.pcm) // 2 / audio.sample_rate]
    return timed_by_words(audio, text, [TimedWord(tokens[i], start, end)
                                        for i, start, end in zip(spoken, starts, ends, strict=True)])


class TimedWord(NamedTuple):
    """A word as a service timed it: the string it read and when, in seconds from the start."""

    text: str
    start: float
    end: float


def timed_by_words(audio: AudioResult, text: str, timed: list[TimedWord]) -> AudioResult:
    """`audio` as one sentence whose words (`spoken_words(text)`) are timed by the service's
    own word timings, matched to them in order by their letters and digits (a service may
    drop punctuation or split "well-known" in two); untouched, so aligned instead, if they do
    not spell the text's words, run backwards or past the end of the audio."""
    samples = len(audio.pcm) // 2
    seconds = samples / audio.sample_rate
    heard = [(_letters(w.text), w) for w in timed if _letters(w.text)]
    words: list[WordSpan] = []
    at = 0
    for token in spoken_words(text):
        want, got, first = _letters(token), "", at
        while at < len(heard) and len(got) < len(want):
            got += heard[at][0]
            at += 1
        if got != want:
            return audio
        previous = words[-1].end if words else 0.0
        start, end = heard[first][1].start, heard[at - 1][1].end
        if start < previous - _TIMING_SLACK_S or end > seconds + _TIMING_SLACK_S:
            return audio
        start, end = max(start, previous), min(end, seconds)
        if end < start:
            return audio
        words.append(WordSpan(text=token, start=start, end=end))
    if at != len(heard):
        return audio
    return audio.model_copy(update={"sentences": [Sentence(text=text, samples=samples, words=words)]})


# Services give times in milliseconds, rounded: a word may start a hair before the last one
# ends, or end a hair after the audio does.
_TIMING_SLACK_S = 0.01


def _letters(word: str) -> str:
    return "".join(c for c in word.casefold() if c.isalnum())


def ssml_fragment(text: str, lexicon: list[Pronunciation]) -> str:
    """`text` as SSML (no `<speak>`): escaped, each lexicon phrase in `<phoneme alphabet="ipa">`
    (when it has IPA) or `<sub alias>`, as the SSML 1.1 specification and all three services read."""
    out = []
    for run, p in lexicon_runs(text, lexicon):
        if p is None:
            out.append(escape(run))
        elif p.ipa:
            out.append(f'<phoneme alphabet="ipa" ph={quoteattr(p.ipa)}>{escape(run)}</phoneme>')
        else:
            out.append(f"<sub alias={quoteattr(p.alias or run)}>{escape(run)}</sub>")
    return "".join(out)


def short_reason(err: Exception) -> str:
    """requests' connection errors nest the useful part ("[Errno 111] Connection refused")."""
    match = re.search(r"\[Errno -?\d+\][^'\")]*", str(err))
    return match.group(0).strip() if match else str(err)[:200]
