# Tests: tests/test_meter.py
"""
Turning a finished exchange into exactly one usage record.

The provider's reported usage is the record whenever it exists.  Local
counts fill only the gaps: the completion of a stream cut short (counted on
the concatenated text the client was actually given) and the prompt of a
request that never got a usage report.  Local counting runs in a thread
pool, never on the reactor, so a mass disconnect cannot stall other
streams; the record is submitted to the ledger writer when it is ready.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Callable, Optional, Sequence

import attrs
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ..ledger.records import UsageRecord
from ..redaction import redact_sensitive
from .interfaces import IPriceTable, ITokenCounter
from .usage import UsageFacts

__all__ = ["CLIENT_TEXT_LIMIT", "TRUNCATED_MARKER", "Meter", "RequestInfo", "client_text"]

log = Logger()


@attrs.define
class RequestInfo:
    """What the web layer knows about a request before it goes upstream."""

    request_id: str
    started: float
    endpoint: str
    key_id: Optional[str] = None
    team: Optional[str] = None
    provider: Optional[str] = None
    model_requested: Optional[str] = None
    model: Optional[str] = None
    stream: bool = False
    messages: Optional[Sequence[Any]] = None
    route_rule: Optional[str] = None
    complexity: Optional[str] = None
    #: Fallbacks: every attempt as ``model@provider:outcome`` (routing/fallback.py).
    attempts: Optional[str] = None
    #: Shadow mode: the model a rule would have used.
    shadow_model: Optional[str] = None
    #: How the shadow model's provider counts prompts: Anthropic-kind usage
    #: excludes cached tokens from the prompt count.
    shadow_prompt_includes_cached: bool = True
    #: The client's X-Request-ID, already bounded and sanitized (web/request_id.py).
    client_request_id: Optional[str] = None
    #: The features routing measured (plain values: metering sits below
    #: routing), copied onto the record for what-if replays.
    prompt_tokens_estimate: Optional[int] = None
    tools: Optional[bool] = None
    images: Optional[bool] = None
    json_mode: Optional[bool] = None
    long_context: Optional[bool] = None


@attrs.frozen
class Outcome:
    """How the exchange ended, in the numbers the record needs."""

    status: int
    ended: float
    ttfb: Optional[float] = None
    disconnected: bool = False
    error_type: Optional[str] = None
    truncated: bool = False


class Meter:
    """
    Builds each request's one record and publishes it to its subscribers
    (budgets and the ledger writer today; metrics, rollups and alerts plug
    in the same way, with :meth:`subscribe`).  A subscriber that raises is
    logged and the others still get the record.

    ``run_in_thread(f, *args)`` returns a Deferred for ``f(*args)`` run off
    the reactor thread.
    """

    def __init__(
        self,
        subscriber: Optional[Callable[[UsageRecord], None]],
        prices: IPriceTable,
        run_in_thread: Callable[..., Deferred[Any]],
        counter: Optional[ITokenCounter] = None,
        clock: Optional[IReactorTime] = None,
    ) -> None:
        self._subscribers: list[Callable[[UsageRecord], None]] = [] if subscriber is None else [subscriber]
        self._prices = prices
        self._run_in_thread = run_in_thread
        if counter is None:
            from .tokens import TokenCounter

            counter = TokenCounter()
        self._counter = counter
        #: With a clock, counting jobs finalized in the same reactor turn go
        #: to the thread as one batch (a mass disconnect then costs one
        #: thread hand-off, not one per stream); without, one job each.
        self._clock = clock
        self._queue: list[_Job] = []
        self._flush_call: Any = None
        self._pending: set[Deferred[Any]] = set()

    def subscribe(self, subscriber: Callable[[UsageRecord], None]) -> None:
        """Hand every record from now on to ``subscriber`` too (in order of subscription)."""
        self._subscribers.append(subscriber)

    def _submit(self, record: UsageRecord) -> None:
        for subscriber in self._subscribers:
            try:
                subscriber(record)
            except Exception:
                log.failure("a usage record subscriber failed; the others still get the record")

    @property
    def pending(self) -> int:
        """Records still being counted (queued or in the thread)."""
        return len(self._queue) + sum(1 for _ in self._pending)

    def drain(self) -> Deferred[None]:
        """Fires when every record being counted has been submitted."""
        if self._queue:
            self._flush()
        if not self._pending:
            return succeed(None)
        return DeferredList(list(self._pending)).addCallback(lambda _: None)

    def finalize(self, info: RequestInfo, facts: UsageFacts, outcome: Outcome) -> None:
        """
        Record one request.  Counting, if needed, happens in a thread; the
        record is submitted exactly once either way.
        """
        # What the provider will bill: anything it answered with success,
        # a stream cut short by either side, a request the client left
        # while the provider worked on it, or one that timed out after it
        # was sent.  Errors the provider refused cost nothing.
        billable = info.model is not None and (
            200 <= outcome.status < 300
            or outcome.disconnected
            or outcome.truncated
            or outcome.error_type == "upstream_timeout"
        )
        need_prompt = billable and facts.prompt_tokens is None and info.messages is not None
        need_completion = billable and facts.completion_tokens is None
        if not (need_prompt or need_completion):
            self._submit(self._record(info, facts, outcome, ""))
            return
        delivered = "".join(facts.delivered) if need_completion else None
        # Claude: the local tokenizer drifts from Anthropic's; when the
        # provider reported this prompt's size, calibrate the local output
        # count by it.
        reported_prompt = None
        if need_completion and not need_prompt and info.messages is not None and facts.prompt_tokens is not None:
            from .model_names import is_claude_model

            if is_claude_model(info.model or ""):
                reported_prompt = facts.prompt_tokens
                if not facts.prompt_includes_cached:
                    reported_prompt += (facts.cached_tokens or 0) + (facts.cache_creation_tokens or 0)
        args = (
            info.model, info.messages if need_prompt else None, delivered, info.messages, reported_prompt,
            getattr(facts.delivered, "scale", None),
        )
        self._queue.append(_Job(info, facts, outcome, args))
        if self._clock is None:
            self._flush()
        elif self._flush_call is None:
            self._flush_call = self._clock.callLater(0, self._flush)

    def _flush(self) -> None:
        """Hand every queued counting job to the thread, as one call."""
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None
        jobs, self._queue = self._queue, []
        if not jobs:
            return
        d = self._run_in_thread(_count_many, self._counter, [job.args for job in jobs])

        def counted(results: list[Any]) -> None:
            for job, result in zip(jobs, results, strict=True):
                if isinstance(result, BaseException):
                    log.error("local token counting failed: {error!r}", error=result)
                    self._submit(self._record(job.info, job.facts, job.outcome, ""))
                    continue
                prompt, completion = result
                local = []
                if prompt is not None:
                    job.facts.prompt_tokens = prompt
                    local.append("prompt")
                if completion is not None:
                    job.facts.completion_tokens = completion
                    local.append("completion")
                self._submit(self._record(job.info, job.facts, job.outcome, ",".join(local)))

        def failed(failure: Any) -> None:
            log.failure("local token counting failed", failure)
            for job in jobs:
                self._submit(self._record(job.info, job.facts, job.outcome, ""))

        d.addCallbacks(counted, failed)
        if not d.called:
            self._pending.add(d)
            d.addBoth(self._forget, d)

    def _forget(self, result: Any, d: Deferred[Any]) -> Any:
        self._pending.discard(d)
        return result

    def _record(
        self, info: RequestInfo, facts: UsageFacts, outcome: Outcome, local: str
    ) -> UsageRecord:
        quote = self._quote(info.model, info.provider, facts, info.started)
        cost = None if quote is None else quote.cost_usd
        cost_requested = (
            cost if info.model_requested == info.model else _cost(self._quote(info.model_requested, None, facts, info.started))
        )
        return UsageRecord(
            request_id=info.request_id,
            response_id=_clean(facts.response_id),
            key_id=info.key_id,
            team=info.team,
            provider=info.provider,
            model_requested=_clean(info.model_requested),
            model=_clean(info.model),
            endpoint=client_text(info.endpoint),
            prompt_tokens=facts.prompt_tokens,
            completion_tokens=facts.completion_tokens,
            cached_tokens=facts.cached_tokens,
            cache_creation_tokens=facts.cache_creation_tokens,
            tokens_counted_locally=local,
            cost_usd=cost,
            status=outcome.status,
            stream=info.stream,
            disconnected=outcome.disconnected,
            ttfb_ms=None if outcome.ttfb is None else round((outcome.ttfb - info.started) * 1000, 3),
            latency_ms=round((outcome.ended - info.started) * 1000, 3),
            error_type=_clean(outcome.error_type or facts.error_type),
            created_at=info.started,
            route_rule=info.route_rule,
            complexity=info.complexity,
            cost_requested_usd=cost_requested,
            # Attempts name models, which a glob-served client model makes client text.
            attempts=None if info.attempts is None else client_text(info.attempts, limit=1024),
            shadow_model=info.shadow_model,
            cost_shadow_usd=self._shadow_cost(info, facts),
            price_source=None if quote is None else quote.source,
            price_tier=None if quote is None else quote.tier,
            client_request_id=info.client_request_id,
            reasoning_tokens=facts.reasoning_tokens,
            prompt_tokens_estimate=info.prompt_tokens_estimate,
            tools=info.tools,
            images=info.images,
            json_mode=info.json_mode,
            long_context=info.long_context,
        )

    def _shadow_cost(self, info: RequestInfo, facts: UsageFacts) -> Optional[Decimal]:
        """What the shadow model would have cost on the same token counts."""
        if info.shadow_model is None or (facts.prompt_tokens is None and facts.completion_tokens is None):
            return None
        return self._prices.cost_usd(
            info.shadow_model,
            facts.prompt_tokens or 0,
            facts.completion_tokens or 0,
            cached_tokens=facts.cached_tokens or 0,
            cache_creation_tokens=facts.cache_creation_tokens or 0,
            prompt_includes_cached=info.shadow_prompt_includes_cached,
        )

    def _quote(self, model: Optional[str], provider: Optional[str], facts: UsageFacts, when: float) -> Any:
        try:
            return self._prices.quote_facts(model, provider, facts, when)
        except ValueError as error:
            # Usage that contradicts itself (more cached than prompt): the
            # record is kept, unpriced, rather than lost.
            log.warn("usage could not be priced: {error}", error=str(error))
            return None


def _cost(quote: Any) -> Optional[Decimal]:
    return None if quote is None else quote.cost_usd


#: The most characters of a client-controlled string a record keeps.
CLIENT_TEXT_LIMIT = 256
TRUNCATED_MARKER = "…[truncated]"


#: Short client strings that were found to need no change (model names,
#: endpoints, ids repeat from request to request): a set lookup instead of
#: a redaction scan each time.  Only strings returned unchanged enter it,
#: so it never holds one with a credential; bounded, it starts over when full.
_PLAIN: set[str] = set()
_PLAIN_LIMIT = 4096


def client_text(value: str, limit: int = CLIENT_TEXT_LIMIT) -> str:
    """
    A client-controlled string as a record may keep it: redacted (a key
    pasted into a model name must not land in the ledger) and at most
    ``limit`` characters, the cut marked with :data:`TRUNCATED_MARKER` (any
    key could otherwise grow the ledger by a body's worth per request).
    Redaction runs on a window wider than the cut by more than a key's
    length, so a key across the cut is redacted whole before it is cut.
    """
    if len(value) <= limit:
        if value in _PLAIN:
            return value
        cleaned = redact_sensitive(value)
        if cleaned is value and value.__class__ is str:
            if len(_PLAIN) >= _PLAIN_LIMIT:
                _PLAIN.clear()
            _PLAIN.add(value)
        return cleaned
    head = redact_sensitive(value[: limit + 512])
    if len(head) <= limit and len(value) <= limit + 512:
        return head
    return head[: limit - len(TRUNCATED_MARKER)] + TRUNCATED_MARKER


def _clean(value: Optional[str]) -> Optional[str]:
    """Client-controlled text (a model name, a path, an id): see :func:`client_text`."""
    return None if value is None else client_text(value)


@attrs.frozen
class _Job:
    info: RequestInfo
    facts: UsageFacts
    outcome: Outcome
    args: tuple[Any, ...]


def _count_many(counter: ITokenCounter, jobs: list[tuple[Any, ...]]) -> list[Any]:
    """Runs in a worker thread: each job's counts, or the error it raised."""
    results: list[Any] = []
    for args in jobs:
        try:
            results.append(_count(counter, *args))
        except Exception as error:
            results.append(error)
    return results


def _count(
    counter: ITokenCounter,
    model: str,
    messages: Optional[Sequence[Any]],
    delivered: Optional[str],
    all_messages: Optional[Sequence[Any]] = None,
    reported_prompt: Optional[int] = None,
    scale: Optional[tuple[int, int]] = None,
) -> tuple[Optional[int], Optional[int]]:
    """Runs in a worker thread: the local counts the record lacks."""
    prompt = None
    if messages is not None:
        prompt = counter.count_prompt(model, list(messages))
    completion = None
    if delivered is not None:
        completion = counter.count_text(model, delivered) if delivered else 0
        if completion and scale is not None and scale[0] > scale[1] > 0:
            # Text past the per-request limit was only measured: extrapolate.
            completion = (completion * scale[0] + scale[1] // 2) // scale[1]
        if completion and reported_prompt is not None and all_messages is not None:
            from .calibration import ClaudeCalibration

            local_prompt = counter.count_prompt(model, list(all_messages))
            completion = ClaudeCalibration.from_prompt(local_prompt, reported_prompt).scale(completion)
    return prompt, completion
