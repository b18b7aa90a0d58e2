# Tests: tests/test_metering_interfaces.py
"""
The metering seams: what the meter and the providers count and price with.

The meter, routing and the providers depend on these interfaces, never on
the concrete :class:`~dd0c_route.metering.tokens.TokenCounter` or
:class:`~dd0c_route.metering.prices.Prices`, so a test (or the fake
providers) can hand in a verified double.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any, Optional

from zope.interface import Interface

if TYPE_CHECKING:
    from dd0c_route.metering.prices import Priced, Quote

__all__ = ["IPriceTable", "ITokenCounter"]


class ITokenCounter(Interface):
    """The counting seam: providers and the meter count through this."""

    def count_text(model: str, text: str) -> int:  # type: ignore[empty-body]
        """Tokens of ``text`` for ``model`` without chat framing."""

    def count_prompt(model: str, messages: list[dict[str, Any]]) -> int:  # type: ignore[empty-body]
        """Prompt tokens of chat ``messages`` for ``model``."""


class IPriceTable(Interface):
    """The pricing seam: what a request costs, by model, exactly."""

    def price_for(model: str) -> Optional[Priced]:  # type: ignore[empty-body]
        """``model``'s standard rates, or ``None`` when no source prices it."""

    def quote_facts(model: Optional[str], provider: Optional[str], facts: Any, when: Optional[float] = None) -> Optional[Quote]:  # type: ignore[empty-body]
        """One request's cost from its UsageFacts, with what priced it (source, tier)."""

    def cost_usd(  # type: ignore[empty-body]
        model: str,
        prompt_tokens: int,
        completion_tokens: int,
        cached_tokens: int = 0,
        cache_creation_tokens: int = 0,
        *,
        prompt_includes_cached: bool = True,
    ) -> Optional[Decimal]:
        """The exact cost of one request, or ``None`` for an unknown model."""
