# Tests: tests/test_config.py
"""
Which provider serves a model.

Resolution is a dict lookup for exact names and a short scan of globs,
longest glob first, cached per model name so the hot path pays one dict
lookup.  The config check guarantees no two providers declare the same name
or glob, so the answer is unique.
"""

from __future__ import annotations

import fnmatch
from typing import Optional

from ..config import Config, ProviderConfig

__all__ = ["ProviderRegistry"]


class ProviderRegistry:
    """
    Maps model names to provider configs.
    """

    def __init__(self, config: Config) -> None:
        self.providers = config.providers
        self._exact: dict[str, ProviderConfig] = {}
        globs: list[tuple[str, ProviderConfig]] = []
        for provider in config.providers:
            for model in provider.exact_models:
                self._exact[model] = provider
            for glob in provider.model_globs:
                globs.append((glob, provider))
        globs.sort(key=lambda item: len(item[0]), reverse=True)
        self._globs = tuple(globs)
        self._cache: dict[str, Optional[ProviderConfig]] = {}

    def provider_for(self, model: str) -> Optional[ProviderConfig]:
        """
        The provider serving ``model``, or None when no provider does.
        """
        try:
            return self._cache[model]
        except KeyError:
            pass
        found = self._exact.get(model)
        if found is None:
            for glob, provider in self._globs:
                if fnmatch.fnmatchcase(model, glob):
                    found = provider
                    break
        if len(self._cache) < 4096:
            self._cache[model] = found
        return found

    def default_provider(self, kind: str = "openai") -> Optional[ProviderConfig]:
        """The first provider of a kind (for model-less endpoints)."""
        for provider in self.providers:
            if provider.kind == kind:
                return provider
        return None
