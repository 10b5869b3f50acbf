"""The personality router: active engine (or the requested one), then the fallback chain.

Engines that are disabled for the personality, not deployed, unhealthy, unable to speak
the language or out of their enforced cloud quota (`chorus.quotas.providers`) are skipped; an engine that fails, is unavailable or times out hands over
to the next one; a bad-input error is the caller's and is raised at once, never retried
elsewhere. Every outcome is recorded as an `Attempt` so callers can say what happened,
and as a `chorus.engine.attempt` span (skipped engines too) under the caller's current span;
the attempt's trace context travels in each `SynthesisRequest` to the engine.

Each request has a deadline over all its pieces and fallbacks (`chorus.speech.deadline`); once it
passes, the engines not yet tried are skipped. A stream whose engine sends no chunk within
the chunk timeout ends early. A call the router gives up on is cancelled, so the engine
stops working on it. Each engine has a circuit breaker (`chorus.speech.breaker`): repeated
failures skip it (`circuit open`) until one request has probed it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, NamedTuple, TypeVar

from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.trace import NoOpTracer, Span, Tracer

from chorus.quotas.callers import Charge
from chorus.quotas.providers import QUOTA_EXHAUSTED, QUOTA_UNKNOWN, CloudMeter, QuotaSnapshot
from chorus.speech.attempts import (
    UNHEALTHY,
    AllEnginesFailed,
    Attempt,
    AudioTooLong,
    EngineBusy,
    RoutedAudio,
    RoutedStream,
    Skip,
    StreamEnd,
    Switch,
    attempt_after,
    unwrap,
)
from chorus.speech.board import EngineBoard, EngineHandle, as_coroutine
from chorus.speech.breaker import CIRCUIT_OPEN, Breakers, CircuitState
from chorus.speech.cache.lookup import Lookup, resolve, uncached
from chorus.speech.cache.replay import Replay
from chorus.speech.cache.store import AudioCache
from chorus.speech.deadline import DEADLINE_PASSED, Deadline, DeadlinePassed, Deadlines
from chorus.speech.encoding import resample
from chorus.speech.sentences import pack, rest_of
from chorus.speech.utterance import Utterance
from chorus.speech.verification import Verdict, VerificationFailed, Verifier, mark
from deployments import spans
from deployments.base import (
    AudioChunk,
    AudioResult,
    BadInputError,
    EngineId,
    EngineStatus,
    SynthesisRequest,
    VoiceSampleRef,
)
from deployments.tracing import carrier

log = logging.getLogger(__name__)
T = TypeVar("T")


SampleRefs = Callable[[str, EngineId], list[VoiceSampleRef]]
Statuses = Mapping[EngineId, EngineStatus]


class Candidate(NamedTuple):
    """An engine the plan tries: its place in the plan, its requests resolved against the
    audio cache (the parts it must still synthesize), and its attempt span (open until it
    is done)."""

    position: int
    engine: EngineId
    lookup: Lookup
    span: Span


class Leg(NamedTuple):
    """One engine's part of a stream, from its first chunk on."""

    candidate: Candidate
    handle: EngineHandle
    first: AudioChunk
    gen: Any  # the engine's stream of the first part (its first chunk taken)
    began: float
    heard: Verdict | None = None  # the first chunk's verification, when it was heard before the stream began

    @property
    def engine(self) -> EngineId:
        return self.candidate.engine


class Router:
    def __init__(
        self, board: EngineBoard, timeouts: Mapping[EngineId, float], sample_refs: SampleRefs | None = None,
        meter: CloudMeter | None = None,
        tracer: Tracer | None = None,
        deadlines: Deadlines | None = None,
        breakers: Breakers | None = None,
        cache: AudioCache | None = None,
        max_audio_s: float = float("inf"),
        verifier: Verifier | None = None,
    ) -> None:
        self.board = board
        # Hears pieces for personalities that verify (`chorus.speech.verification`).
        self.verifier = verifier or Verifier(None)
        # The most audio one request may hold (`IngressArgs.max_audio_seconds`), checked as
        # parts arrive: speed 0.25 and a fast cloud engine would otherwise join hundreds of MB.
        self.max_audio_s = max_audio_s
        self.timeouts = dict(timeouts)
        self.deadlines = deadlines or Deadlines()
        # This replica's view of each engine's recent failures.
        self.breakers = breakers or Breakers()
        # personality name, engine -> the stored samples that engine clones from
        self.sample_refs = sample_refs
        # cloud engines' monthly characters: consulted by the plan, told of each piece spoken
        self.meter = meter
        # The replica's own (`chorus.ingress.replica.Replica.tracing`); none: no spans.
        self.tracer = tracer or NoOpTracer()
        # Audio already made (`chorus.speech.cache`); none: every piece goes to an engine.
        self.cache = cache

    def plan(
        self, utterance: Utterance, statuses: Statuses, quota: QuotaSnapshot | None = None
    ) -> list[tuple[EngineId, Skip | None]]:
        """The engines in the order to try them, each with why it is skipped (or None)."""
        spec = utterance.personality.spec
        order = spec.chain()
        if utterance.provider is not None:
            order = [utterance.provider, *(e for e in order if e != utterance.provider)]
        plan: list[tuple[EngineId, Skip | None]] = []
        for engine in order:
            cfg = spec.providers.get(engine)
            status = statuses.get(engine)
            if cfg is None:
                skip: Skip | None = Skip.plain("not configured for this personality")
            elif not cfg.enabled:
                skip = Skip.plain("disabled for this personality")
            elif engine not in self.board.handles:
                skip = Skip.plain("not deployed in this application")
            elif status is None:
                skip = Skip.plain("status unknown (engine not answering)")
            elif not status.health.healthy:
                skip = Skip(UNHEALTHY, f"{UNHEALTHY}: {status.health.reason}")
            elif not status.capabilities.speaks(utterance.language, cfg.voice):
                # Both validated identifiers (VoiceId, LanguageCode): safe to show.
                who = f"voice {cfg.voice!r}" if cfg.voice else "no loaded voice"
                skip = Skip.plain(f"{who} does not speak {utterance.language!r}")
            elif quota is not None and self.meter is not None and self.meter.refuses(quota, engine, cfg.voice):
                skip = Skip.plain(QUOTA_UNKNOWN if quota.unreadable else QUOTA_EXHAUSTED)
            else:
                skip = None
            plan.append((engine, skip))
        return plan

    async def _samples_for(self, utterance: Utterance, engine: EngineId, status: EngineStatus) -> list[VoiceSampleRef]:
        if not status.capabilities.cloning:
            return []
        if utterance.samples is not None:
            return utterance.samples
        if self.sample_refs is None:
            return []
        return await asyncio.to_thread(self.sample_refs, utterance.personality.name, engine)

    async def _requests(
        self, utterance: Utterance, engine: EngineId, status: EngineStatus, span: Span
    ) -> list[SynthesisRequest]:
        """The utterance for `engine`: its text packed to the engine's limit, one request a
        piece, each carrying the attempt span's trace context."""
        cfg = utterance.personality.spec.providers.get(engine)
        assert cfg is not None
        caps = status.capabilities
        pieces = pack(utterance.text, caps.max_characters, engine,
                      first_clause=utterance.stream and not caps.one_chunk_per_call)
        samples = await self._samples_for(utterance, engine, status)
        settings = cfg.settings.with_speed(utterance.speed)
        return [
            SynthesisRequest(
                text=piece,
                language=utterance.language,
                voice=cfg.voice,
                variant=cfg.variant,
                settings=settings,
                samples=samples,
                timestamps=utterance.timestamps,
                lexicon=utterance.personality.spec.lexicon,
                trace_context=carrier(span),
            )
            for piece in pieces
        ]

    async def _looked_up(self, utterance: Utterance, requests: list[SynthesisRequest], status: EngineStatus) -> Lookup:
        """The requests resolved against the cache in the utterance's scope, unless it has none."""
        scope = utterance.cache_scope()
        if scope is None:
            return uncached(requests)
        return await resolve(self.cache, requests, status.capabilities, utterance.personality.name, scope)

    async def _candidates(
        self, utterance: Utterance, attempts: list[Attempt], deadline: Deadline, after: int = -1,
        context: Context | None = None,
    ) -> AsyncIterator[Candidate]:
        """Each engine to try, in order, from the plan's position `after + 1` on (a stream
        carried on past the engine at `after`), with its requests and its open attempt
        span (a child of `context`'s span, else of the current one); skipped engines are
        recorded in `attempts` and as ended spans. One status
        snapshot serves the whole request, so the plan and the requests agree about every
        engine. The deadline and the circuit are looked at only when an engine's turn comes:
        an engine tried after a slow one may find the deadline passed, and only an engine
        really called may take an open circuit's one probe."""
        statuses = await self.board.statuses()
        quota = await self.meter.for_plan() if self.meter is not None else None
        providers = utterance.personality.spec.providers
        for position, (engine, skip) in enumerate(self.plan(utterance, statuses, quota)):
            if position <= after:
                continue
            cfg = providers.get(engine)
            breaker = self.breakers[engine]
            span = self.tracer.start_span(spans.ATTEMPT, context=context, attributes={
                spans.ENGINE: engine, spans.FALLBACK_POSITION: position, spans.CIRCUIT: breaker.state.value,
                **({spans.VARIANT: cfg.variant} if cfg is not None and cfg.variant else {}),
            })
            if skip is None and deadline.passed:
                skip = Skip.plain(DEADLINE_PASSED)
            elif skip is None and not breaker.admit():
                skip = Skip.plain(CIRCUIT_OPEN)
            if skip is not None:
                attempts.append(Attempt(engine=engine, outcome="skipped", reason=skip.reason, detail=skip.detail))
                span.set_attribute(spans.REASON, skip.reason)
                _end(span, "skipped")
                continue
            # Admitted: from here every way out tells the breaker (`_verdict`).
            try:
                requests = await self._requests(utterance, engine, statuses[engine], span)
                lookup = await self._looked_up(utterance, requests, statuses[engine])
            except BaseException as err:
                breaker.abandoned()
                _end(span, "failed", err)
                raise
            span.set_attribute(spans.CHARACTERS, sum(len(r.text) for r in requests))
            if lookup.outcome != "bypass":
                span.set_attribute(spans.CACHE, lookup.outcome)
            yield Candidate(position, engine, lookup, span)

    async def synthesize(self, utterance: Utterance, charge: Charge | None = None) -> RoutedAudio:
        """The utterance's audio from the first engine of the plan that speaks it;
        `charge` is told of every piece sent to an engine."""
        attempts: list[Attempt] = []
        deadline = Deadline(self.deadlines.request_s)
        verify = utterance.personality.spec.verify
        # Enforced verification's last resort: the refused answer heard closest to the text,
        # sent (its verdict "failed") when no engine's words pass.
        closest: RoutedAudio | None = None
        async for _, engine, lookup, span in self._candidates(utterance, attempts, deadline):
            handle = self.board.handles[engine]
            began = time.perf_counter()
            seconds = 0.0
            # Each piece is heard while the next one is made; none is kept in the cache unheard.
            hearing: list[asyncio.Task[Verdict]] = []
            verdict: Verdict | None = None
            try:
                parts = []
                for index, part in enumerate(lookup.parts):
                    if part.cached is not None:  # neither made nor billed again
                        made = part.cached
                    else:
                        made = await self._charged(charge, engine, part.request, self._call(
                            engine, handle.synthesize.remote(part.request), deadline))
                        await self._billed(engine, part.request)
                        if verify is None:
                            await lookup.made(index, made)
                    parts.append(made)
                    seconds += made.duration_s
                    if seconds > self.max_audio_s:
                        raise AudioTooLong(self.max_audio_s)
                    if verify is not None:
                        hearing.append(asyncio.ensure_future(
                            self.verifier.check(verify, made, part.request.text, utterance.language)))
                if verify is not None:
                    verdict = await self._judged(engine, verify.mode, await asyncio.gather(*hearing), span)
                    for index, part in enumerate(lookup.parts):
                        if part.cached is None:
                            await lookup.made(index, parts[index])
            except AudioTooLong as err:  # the request's size, not the engine's doing
                self.breakers[engine].abandoned()
                _end(span, "failed", err)
                raise
            except VerificationFailed as err:
                self._give_up(engine, err, span, attempts)
                if closest is None or _farther(closest, err.verdict):
                    audio = AudioResult.joined(parts)
                    closest = RoutedAudio(engine=engine, attempts=[], audio=audio, variant=audio.variant,
                                          cache=lookup.outcome, verdict=err.verdict)
                continue
            except Exception as err:
                self._give_up(engine, err, span, attempts)
                continue
            except BaseException as err:  # cancelled: the caller went away
                self._verdict(engine, err)
                _end(span, "failed", err)
                raise
            finally:
                for task in hearing:
                    task.cancel()
            if lookup.outcome == "hit":  # the engine was not asked: nothing learned about it
                self.breakers[engine].abandoned()
            else:
                self._verdict(engine, None)
            audio = AudioResult.joined(parts)
            _end(span, "ok", audio_seconds=audio.duration_s, began=began, variant=audio.variant)
            return RoutedAudio(engine=engine, attempts=attempts, audio=audio, variant=audio.variant,
                               cache=lookup.outcome, verdict=verdict)
        if closest is not None:
            return closest.model_copy(update={"attempts": attempts})
        raise AllEnginesFailed(attempts)

    @staticmethod
    async def _judged(engine: EngineId, mode: str, verdicts: list[Verdict], span: Span) -> Verdict:
        """An attempt's pieces' verdicts as one, on its span; `VerificationFailed` for the
        first failed piece in enforce mode."""
        verdict = Verdict.of(verdicts)
        mark(span, verdict)
        failed = next((v for v in verdicts if v.outcome == "failed"), None)
        if failed is not None and mode == "enforce":
            raise VerificationFailed(engine, failed, verdict)
        return verdict

    async def _enforced(self, utterance: Utterance, leg: Leg, verdicts: list[Verdict],
                        hearing: Awaitable[Verdict]) -> None:
        """A piece's hearing, kept in `verdicts`; `VerificationFailed` when it failed and an
        engine after this one may say it instead (else it is sent: the last resort)."""
        heard = await hearing
        verdicts.append(heard)
        if heard.outcome == "failed" and await self._others_after(utterance, leg.candidate.position):
            raise VerificationFailed(leg.engine, heard)

    async def _others_after(self, utterance: Utterance, position: int) -> bool:
        """Whether an engine after `position` in the plan may speak: not skipped, its circuit
        not open (what is decided only on its turn, the deadline and a probe, is not asked)."""
        statuses = await self.board.statuses()
        return any(skip is None and self.breakers[engine].state is not CircuitState.open
                   for engine, skip in self.plan(utterance, statuses)[position + 1:])

    def _verdict(self, engine: EngineId, err: BaseException | None) -> None:
        """Tell the engine's breaker how a call went: success (a piece whose words failed
        verification too: the engine answered, and a text hard to hear fails on every engine
        alike), a failure of the engine's (unavailable, failed, its own timeout), or nothing
        about the engine (bad input, the caller gone, the request's deadline cutting the
        engine's time short, its queue full: a burst would otherwise open the circuit and
        refuse every request for the whole cool-down)."""
        breaker = self.breakers[engine]
        if err is None or isinstance(err, VerificationFailed):
            breaker.succeeded()
        elif isinstance(err, Exception) and not isinstance(err, BadInputError | DeadlinePassed | EngineBusy):
            breaker.failed()
        else:
            breaker.abandoned()

    async def stream(self, utterance: Utterance, charge: Charge | None = None) -> RoutedStream:
        """Fall back until an engine yields its first chunk. After that, an engine that fails
        or stalls hands what is left of the text to the next engine of the chain, when its
        chunks said which sentences they spoke (`_spoken`); otherwise the stream ends there.
        What was sent is never sent again."""
        attempts: list[Attempt] = []
        deadline = Deadline(self.deadlines.request_s)
        leg = await self._first_leg(utterance, charge, attempts, deadline)
        if leg is None:
            raise AllEnginesFailed(attempts)
        end = StreamEnd()
        return RoutedStream(
            engine=leg.engine,
            attempts=attempts,
            variant=leg.first.variant,
            sample_rate=leg.first.sample_rate,
            # Later engines' attempts are children of the span current now (the request's),
            # not of whatever is current when the body is sent.
            chunks=self._spoken(utterance, leg, charge, deadline, end, otel_context.get_current()),
            cache=leg.candidate.lookup.outcome,
            end=end,
        )

    async def _first_leg(self, utterance: Utterance, charge: Charge | None, attempts: list[Attempt],
                         deadline: Deadline, after: int = -1, context: Context | None = None) -> Leg | None:
        """The first engine of the plan (after position `after`) that yields a first chunk."""
        async with contextlib.aclosing(self._candidates(utterance, attempts, deadline, after, context)) as candidates:
            async for candidate in candidates:
                if (leg := await self._opened(utterance, candidate, charge, attempts, deadline)) is not None:
                    return leg
        return None

    async def _opened(self, utterance: Utterance, candidate: Candidate, charge: Charge | None, attempts: list[Attempt],
                      deadline: Deadline) -> Leg | None:
        """The candidate's stream with its first chunk; None (and the attempt recorded) if
        the engine failed before it."""
        engine, lookup, span = candidate.engine, candidate.lookup, candidate.span
        handle = self.board.handles[engine].options(stream=True)
        began = time.perf_counter()
        opening = lookup.parts[0]
        if opening.cached is not None:  # from the cache: nothing can fail before the first chunk
            gen: Any = Replay(opening.cached)
            return Leg(candidate, handle, await gen.__anext__(), gen, began)
        gen = handle.stream.remote(opening.request)
        try:
            first = await self._charged(charge, engine, opening.request, self._call(
                engine, gen.__anext__(), deadline, cancel=gen.cancel))
        except Exception as err:
            gen.cancel()
            self._give_up(engine, err, span, attempts)
            return None
        except BaseException as err:  # cancelled: the caller went away
            gen.cancel()
            self._verdict(engine, err)
            _end(span, "failed", err)
            raise
        # The first chunk is the engine's answer; what goes wrong later is told too.
        self._verdict(engine, None)
        await self._billed(engine, opening.request)
        heard = None
        if (verify := utterance.personality.spec.verify) is not None and first.sentences:
            # Heard before the stream begins: a first sentence that fails falls back like an
            # engine that failed, before the caller has been told who speaks.
            heard = await self.verifier.check(verify, first, _said(first), utterance.language)
            if heard.outcome == "failed" and verify.mode == "enforce" and await self._others_after(
                    utterance, candidate.position):
                gen.cancel()
                mark(span, heard)
                self._give_up(engine, VerificationFailed(engine, heard), span, attempts)
                return None
        return Leg(candidate, handle, first, gen, began, heard)

    async def _spoken(self, utterance: Utterance, leg: Leg, charge: Charge | None, deadline: Deadline,
                      end: StreamEnd, context: Context) -> AsyncIterator[AudioChunk]:
        """The stream, engine after engine. Each engine's chunks (`_rest`) go out at the
        stream's sample rate; when one fails or stalls after the stream began, and its chunks
        said their sentences, the rest of the text goes to the next engines of the chain
        (each attempt in `end.attempts`, `end.switches` told) and the stream carries on where it
        stopped. An engine whose chunks did not say their sentences (XTTS's, StyleTTS2's
        model steps) cannot be carried on without repeating: its stream ends there, as an
        engine's error (raised) or a stall (`end.cut`). A stream cut at the request's audio
        limit, or whose caller left, ends."""
        rate, text, seconds = leg.first.sample_rate, utterance.text, 0.0
        while True:
            said: list[str] | None = []
            pieces: list[str] = []  # the pieces whose every chunk went out
            failure: Exception | None = None
            try:
                # Closed with this generator (a caller leaving): the engine's call is let go at once.
                async with contextlib.aclosing(self._rest(utterance, leg, deadline, end, seconds, pieces)) as spoken:
                    async for chunk in spoken:
                        if not chunk.sentences:
                            said = None
                        elif said is not None:
                            said.extend(s.text for s in chunk.sentences)
                        seconds += chunk.duration_s
                        yield chunk if chunk.sample_rate == rate else _resampled(chunk, rate)
            except Exception as err:
                failure = err
            if failure is None and (end.cut is None or end.cut.outcome != "timeout"):
                return  # said whole, or cut at the request's audio limit
            if said is None and isinstance(failure, VerificationFailed):
                said = pieces  # model steps held until their piece was heard: none of the failed one went out
            rest = rest_of(text, said) if said is not None else None
            if rest == "":  # it failed after its last sentence: nothing is missing
                end.cut = None
                return
            stopped = end.cut if failure is None else attempt_after(leg.engine, failure, self.timeouts.get(leg.engine))
            assert stopped is not None
            nxt = None
            if rest is not None:
                end.attempts.append(stopped)
                onward = utterance.model_copy(update={"text": rest})
                nxt = await self._first_leg(onward, charge, end.attempts, deadline, leg.candidate.position, context)
            if nxt is None:
                if failure is not None:
                    raise failure
                return  # end.cut says why
            log.warning("stream from %s carried on by %s after %.1f s of audio: %s", leg.engine, nxt.engine,
                        seconds, stopped.reason)
            end.cut = None
            end.switches.append(Switch(engine=nxt.engine, after=leg.engine, reason=stopped.reason, at_s=seconds))
            text, leg = rest, nxt

    async def _rest(self, utterance: Utterance, leg: Leg, deadline: Deadline, end: StreamEnd,
                    already_s: float = 0.0, pieces: list[str] | None = None) -> AsyncIterator[AudioChunk]:
        """One engine's stream from its first chunk on, part by part (`chorus.speech.cache.lookup`): cached
        parts replayed, the others streamed by the engine, each next chunk within the chunk
        timeout and the request's deadline, and each engine part kept in the cache once its
        stream has ended complete. An engine that stalls ends its stream where it is (`end`
        says why: `_spoken` may carry on with another engine, an audio body ends early, an
        SSE stream tells) and its call is cancelled; `already_s`: seconds the stream had
        before this engine, counted against the request's audio limit; `pieces`: told the text
        of each piece once all its chunks went out.

        Verified (`PersonalitySpec.verify`), sentence by sentence where the chunks say their
        sentences, else (model steps) piece by piece. Enforced, each is held until it is
        heard: the engine's stream runs on meanwhile, so the listener waits for the first
        sentence's hearing only; one that fails ends this engine's part like an engine's
        error (`_spoken` carries the rest of the text on). Reported, each goes out at once
        and is heard beside the stream, its verdict on the span when the stream ends."""
        engine, lookup, span, first, gen = leg.engine, leg.candidate.lookup, leg.candidate.span, leg.first, leg.gen
        handle, began = leg.handle, leg.began
        seconds = 0.0
        error: BaseException | None = None
        outcome: spans.AttemptOutcome = "ok"
        told = lookup.parts[0].cached is None  # `_opened` told the breaker of the first chunk
        verify, language = utterance.personality.spec.verify, utterance.language
        verdicts: list[Verdict] = [leg.heard] if leg.heard is not None else []
        reported: list[asyncio.Task[Verdict]] = []
        try:
            for index, part in enumerate(lookup.parts):
                if index:
                    gen = Replay(part.cached) if part.cached is not None else handle.stream.remote(part.request)
                chunks = _after(first, self._in_time(gen, deadline)) if index == 0 else self._in_time(gen, deadline)
                made: list[AudioChunk] = []
                held: list[AudioChunk] = []  # an enforced piece's model steps, until the piece is heard
                heard_before = len(verdicts)
                async for chunk in chunks:
                    if part.cached is None and not made and index:
                        # A piece counts once its first chunk came (chorus.quotas.providers).
                        await self._billed(engine, part.request)
                    if part.cached is None and not told:
                        self._verdict(engine, None)
                        told = True
                    if already_s + seconds + chunk.duration_s > self.max_audio_s:  # the request's size: the body ends
                        too_long = AudioTooLong(self.max_audio_s)
                        end.cut = Attempt(engine=engine, outcome="failed", reason=str(too_long), detail=str(too_long))
                        span.set_attribute(spans.REASON, str(too_long))
                        log.warning("stream from %s ended at the audio limit: %s", engine, too_long)
                        return
                    made.append(chunk)
                    seconds += chunk.duration_s
                    if verify is None or (chunk is first and leg.heard is not None):
                        yield chunk
                    elif not chunk.sentences and verify.mode == "enforce":
                        held.append(chunk)
                    elif not chunk.sentences:
                        yield chunk
                    elif verify.mode == "enforce":
                        await self._enforced(utterance, leg, verdicts,
                                             self.verifier.check(verify, chunk, _said(chunk), language))
                        yield chunk
                    else:
                        reported.append(asyncio.ensure_future(self.verifier.check(verify, chunk, _said(chunk), language)))
                        yield chunk
                if verify is not None and (steps := [c for c in made if not c.sentences
                                                     and not (c is first and leg.heard is not None)]):
                    hearing = self.verifier.check(verify, AudioResult.joined(steps), part.request.text, language)
                    if verify.mode == "enforce":
                        await self._enforced(utterance, leg, verdicts, hearing)
                        for chunk in held:
                            yield chunk
                    else:
                        reported.append(asyncio.ensure_future(hearing))
                if pieces is not None:
                    pieces.append(part.request.text)
                # A piece sent although it failed (no engine after this one) is never kept.
                if part.cached is None and made and all(v.outcome != "failed" for v in verdicts[heard_before:]):
                    await lookup.made(index, AudioResult.joined(made))
        except TimeoutError as err:
            error, outcome = err, "timeout"
            end.cut = attempt_after(engine, err, self.deadlines.stream_chunk_s)
            self._verdict(engine, err)
            told = True
            span.set_attribute(spans.REASON, str(err))
            log.warning("stream from %s stalled: %s, after %.1f s of audio", engine, err, seconds)
        except BaseException as err:
            error = unwrap(err)
            # Audio came, so a client leaving mid-stream leaves the outcome "ok" (the error
            # type says it was cut short); an engine failing mid-stream is "failed".
            if not isinstance(error, GeneratorExit | asyncio.CancelledError):
                outcome = "failed"
                self._verdict(engine, error)
                told = True
            raise
        finally:
            gen.cancel()
            if not told:  # the engine was never asked: nothing learned about it
                self.breakers[engine].abandoned()
            if error is None:  # said whole: what is still being heard is waited for
                verdicts += [v for v in await asyncio.gather(*reported, return_exceptions=True) if isinstance(v, Verdict)]
            for task in reported:
                task.cancel()
            if verdicts:
                mark(span, Verdict.of(verdicts))
            _end(span, outcome, error, audio_seconds=seconds, began=began, variant=first.variant)

    async def _in_time(self, gen: Any, deadline: Deadline) -> AsyncIterator[AudioChunk]:
        """A stream's chunks, each within the chunk timeout and the request's deadline;
        `TimeoutError` (a `DeadlinePassed` when the deadline was the shorter wait) when one
        does not come in time."""
        limit = self.deadlines.stream_chunk_s
        while True:
            try:
                chunk = await asyncio.wait_for(as_coroutine(gen.__anext__()), timeout=deadline.limit(limit))
            except StopAsyncIteration:
                return
            except TimeoutError:
                if deadline.cuts(limit):
                    raise deadline.cut_short() from None
                raise TimeoutError(f"no audio for {limit:g} s") from None
            yield chunk

    @staticmethod
    async def _charged(charge: Charge | None, engine: EngineId, request: SynthesisRequest, call: Awaitable[T]) -> T:
        """`call`, the piece `request` to `engine`, told to the caller's `charge`: sent
        before it, given back if the engine failed it (not if the caller went away)."""
        if charge is None:
            return await call
        charge.sent(engine, len(request.text))
        try:
            return await call
        except Exception:
            charge.failed(engine, len(request.text))
            raise

    async def _billed(self, engine: EngineId, request: SynthesisRequest) -> None:
        """Tell the meter a piece came back from `engine`: its characters were billed."""
        if self.meter is not None:
            await self.meter.record(engine, request.voice, len(request.text))

    def _give_up(self, engine: EngineId, err: Exception, span: Span, attempts: list[Attempt]) -> None:
        """An attempt ended in `err`: it counts for the engine's circuit and closes its span.
        Bad input is the caller's and goes up at once; anything else is recorded and the plan
        moves on to the next engine."""
        self._verdict(engine, err)
        if isinstance(err, BadInputError):
            _end(span, "failed", err)
            raise err
        attempt = attempt_after(engine, err, self.timeouts.get(engine))
        attempts.append(attempt)
        span.set_attribute(spans.REASON, attempt.reason)
        _end(span, attempt.outcome, err)

    async def _call(self, engine: EngineId, awaitable: Any, deadline: Deadline, cancel: Any = None) -> Any:
        """One call within the engine's timeout and the request's deadline. A call given up
        on (late, or its caller gone) is cancelled: Ray cancels the replica's task, and the
        engine stops working on it."""
        timeout = self.timeouts.get(engine)
        cancel = cancel or getattr(awaitable, "cancel", lambda: None)
        try:
            return await asyncio.wait_for(as_coroutine(awaitable), timeout=deadline.limit(timeout))
        except TimeoutError:
            cancel()
            if deadline.cuts(timeout):
                raise deadline.cut_short() from None
            raise
        except asyncio.CancelledError:
            cancel()
            raise
        except Exception as err:
            raise unwrap(err) from None


def _end(
    span: Span, outcome: spans.AttemptOutcome, error: BaseException | None = None, *,
    audio_seconds: float = 0.0, began: float | None = None, variant: str | None = None,
) -> None:
    """Close an attempt span with its outcome, the error's type, and on audio its seconds
    and real-time factor (wall seconds of the attempt per second of audio)."""
    span.set_attribute(spans.OUTCOME, outcome)
    if error is not None:
        span.set_attribute(spans.ERROR_TYPE, type(unwrap(error)).__name__)
    if variant:
        span.set_attribute(spans.VARIANT, variant)
    if audio_seconds > 0 and began is not None:
        span.set_attribute(spans.AUDIO_SECONDS, audio_seconds)
        span.set_attribute(spans.REAL_TIME_FACTOR, (time.perf_counter() - began) / audio_seconds)
    span.end()


def _resampled(chunk: AudioChunk, rate: int) -> AudioChunk:
    """A later engine's chunk at the stream's sample rate; its sentences' sample counts with it."""
    pcm = resample(chunk.pcm, chunk.sample_rate, rate)
    sentences, left = [], len(pcm) // 2
    for i, s in enumerate(chunk.sentences):
        samples = left if i == len(chunk.sentences) - 1 else min(left, round(s.samples * rate / chunk.sample_rate))
        sentences.append(s.model_copy(update={"samples": samples}))
        left -= samples
    return chunk.model_copy(update={"pcm": pcm, "sample_rate": rate, "sentences": sentences})


def _farther(closest: RoutedAudio, than: Verdict) -> bool:
    assert closest.verdict is not None
    return (closest.verdict.word_error_rate or 0.0) > (than.word_error_rate or 0.0)


def _said(chunk: AudioChunk) -> str:
    return " ".join(s.text for s in chunk.sentences)


async def _after(first: AudioChunk, rest: AsyncIterator[AudioChunk]) -> AsyncIterator[AudioChunk]:
    yield first
    async for chunk in rest:
        yield chunk
