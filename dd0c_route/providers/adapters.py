# Tests: tests/test_live_openai.py, tests/test_live_anthropic.py
"""
The provider kinds this proxy speaks: one adapter each.

A new kind is one module implementing
:class:`~dd0c_route.providers.interfaces.IProvider` and one entry here; the
config's ``kind`` check reads the same table.
"""

from __future__ import annotations

from typing import Mapping

from .anthropic import AnthropicProvider
from .interfaces import IProvider
from .openai import OpenAIProvider

__all__ = ["default_adapters"]


def default_adapters() -> Mapping[str, IProvider]:
    """``{kind: adapter}`` for every kind we serve."""
    adapters: list[IProvider] = [OpenAIProvider(), AnthropicProvider()]
    return {adapter.kind: adapter for adapter in adapters}
