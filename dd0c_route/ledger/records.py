# Tests: tests/test_ledger.py
"""
The usage record: one per request, whatever happened to it.

A record is the unit of billing truth.  It never carries a key, only the key's
id, so that a dump of the ledger is safe to share.  Money is a ``Decimal`` (or
``None`` when the price is unknown), never a float.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Optional

import attrs

__all__ = ["UsageRecord", "record_from_json", "record_to_json"]


@attrs.frozen(kw_only=True)
class UsageRecord:
    """
    What one request cost and how it went.

    ``prompt_tokens``/``completion_tokens`` are the provider's figures when it
    reported usage; ``tokens_counted_locally`` says which figures (if any) we
    filled in ourselves ("prompt", "completion", or "prompt,completion").
    """

    request_id: str
    response_id: Optional[str] = None
    key_id: Optional[str] = None
    team: Optional[str] = None
    provider: Optional[str] = None
    model_requested: Optional[str] = None
    model: Optional[str] = None
    endpoint: str = "/v1/chat/completions"
    prompt_tokens: Optional[int] = None
    completion_tokens: Optional[int] = None
    cached_tokens: Optional[int] = None
    cache_creation_tokens: Optional[int] = None
    tokens_counted_locally: str = ""
    cost_usd: Optional[Decimal] = None
    status: int = 0
    stream: bool = False
    disconnected: bool = False
    ttfb_ms: Optional[float] = None
    latency_ms: float = 0.0
    error_type: Optional[str] = None
    created_at: float = 0.0
    route_rule: Optional[str] = None
    complexity: Optional[str] = None
    cost_requested_usd: Optional[Decimal] = None
    #: Fallbacks: every attempt as ``model@provider:outcome``, comma
    #: separated, when there was more than one (see docs/routing.md).
    attempts: Optional[str] = None
    #: Shadow mode: the model a rule would have used, and what it would
    #: have cost on the same token counts.
    shadow_model: Optional[str] = None
    cost_shadow_usd: Optional[Decimal] = None
    #: What priced ``cost_usd`` (``genai-prices 0.2.3`` or ``config``) and
    #: at which tier (``standard``, ``long_context``, ``flex``, ``priority``,
    #: ``batch``, ``batch+long_context``...; see metering/prices.py):
    #: enough to re-derive the bill.  ``None`` when nothing priced it.
    price_source: Optional[str] = None
    price_tier: Optional[str] = None
    #: The client's ``X-Request-ID`` (bounded, sanitized), when it sent one.
    client_request_id: Optional[str] = None
    #: Output tokens the provider reports as reasoning (a part of
    #: ``completion_tokens``, billed as output; kept apart to show it).
    reasoning_tokens: Optional[int] = None
    #: The request features routing measured (routing/features.py), kept
    #: so a candidate rule can be replayed over history (admin what-if):
    #: the character-based prompt estimate and the four match flags.
    #: ``None`` when the endpoint was not routed (or the record is older).
    #: Never content.
    prompt_tokens_estimate: Optional[int] = None
    tools: Optional[bool] = None
    images: Optional[bool] = None
    json_mode: Optional[bool] = None
    long_context: Optional[bool] = None


_DECIMAL_FIELDS = frozenset({"cost_usd", "cost_requested_usd", "cost_shadow_usd"})


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    return value


def record_to_json(record: UsageRecord) -> dict[str, Any]:
    """
    The record as a JSON-ready dict: decimals become strings so that no
    float rounding ever touches money.
    """
    return {k: _jsonable(v) for k, v in attrs.asdict(record).items()}


def record_from_json(data: dict[str, Any]) -> UsageRecord:
    """
    The inverse of L{record_to_json}: money strings become ``Decimal`` again.

    Unknown keys are ignored, so a spool written by a newer version that
    added a field can still be replayed.
    """
    names = {field.name for field in attrs.fields(UsageRecord)}
    values = {k: v for k, v in data.items() if k in names}
    for name in _DECIMAL_FIELDS & values.keys():
        if values[name] is not None:
            values[name] = Decimal(values[name])
    return UsageRecord(**values)
