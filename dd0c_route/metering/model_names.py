# Tests: tests/test_tokens.py, tests/test_prices.py
"""
Model ids as the tables see them: one normal form, one family test.

Routers and clouds wrap the same model in different names (a provider
prefix, a Bedrock region, a fine-tune wrapper, Vertex's ``@``); the price
table and the tokenizer choice both key on the bare id this module returns,
so they always agree about which model a request used.
"""

from __future__ import annotations

__all__ = ["CLAUDE_FAMILY", "family_matches", "is_claude_model", "normalize_model"]

CLAUDE_FAMILY = "claude"
"""The id prefix every Anthropic Claude model shares, in any naming scheme."""

_SEPARATORS = frozenset("-.:@_")


def normalize_model(model: str) -> str:
    """
    The bare model id that tables are keyed by.

    Strips what routers and clouds add around an id so that one table serves
    them all: case and whitespace, a provider prefix (``openai/gpt-4o``), a
    Bedrock region/vendor prefix (``us.anthropic.claude-...``), a fine-tune
    wrapper (``ft:gpt-4o-mini-2024-07-18:org::id``) and Vertex's ``@`` before
    a date.  Dated and versioned suffixes are kept: tables decide whether a
    suffix may resolve to a base entry.
    """
    name = model.strip().lower()
    if name.startswith("ft:"):
        name = name[3:].split(":", 1)[0]
    name = name.rsplit("/", 1)[-1]
    marker = "anthropic."
    if marker in name:
        name = name.split(marker, 1)[1]
    return name.replace("@", "-")


def family_matches(name: str, prefix: str) -> bool:
    """
    Whether the normalized ``name`` is ``prefix`` or ``prefix`` followed by a
    separator, so ``gpt-4o`` matches ``gpt-4o-mini`` but ``o1`` not ``o10``.
    """
    if not name.startswith(prefix):
        return False
    return len(name) == len(prefix) or name[len(prefix)] in _SEPARATORS


def is_claude_model(model: str) -> bool:
    """Whether ``model`` is an Anthropic Claude model (any naming scheme)."""
    return family_matches(normalize_model(model), CLAUDE_FAMILY)
