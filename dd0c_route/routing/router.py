# Tests: tests/test_routing.py, tests/test_live_routing.py
"""
The routing decision: which model and provider serve a request, which ones
to fall back to, and why.

One call per request, on the reactor thread, in microseconds: aliases are a
dict lookup, the request is measured once (:mod:`.features`) and classified
once (:class:`~.interfaces.IComplexityClassifier`), then the rules are
tried in order and the first that matches wins.

- ``enforce``: the rule's action applies (serve with its model, or keep the
  requested one) and its ``fallbacks`` follow in the chain.
- ``shadow``: the rule is only recorded (``route_rule = "shadow:NAME"`` and
  the model it would have used), the request is served as asked.
- ``off``: no rule is evaluated; aliases still resolve and the complexity
  is still measured, so every response explains itself the same way.

A rule whose model the endpoint cannot reach (an OpenAI model for a native
Anthropic ``/v1/messages`` call) does not match, and the next rule is tried.
"""

from __future__ import annotations

import fnmatch
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence

import attrs

from ..config import ProviderConfig, RouteRule, RoutingConfig
from .breaker import CircuitBreaker
from .features import measure_request
from .interfaces import Classification, IComplexityClassifier, RequestFeatures

if TYPE_CHECKING:
    from ..providers.registry import ProviderRegistry

__all__ = ["Decision", "Router"]


@attrs.frozen(slots=True)
class Decision:
    """
    The router's answer.  ``requested`` is the model the request counts as
    asking for (an alias's target), ``chain`` the (model, provider) pairs to
    try in order (the first is the chosen one), ``route`` what
    ``x-dd0c-route`` shows: a rule name, ``shadow:NAME`` or ``default``.
    """

    requested: str
    chain: tuple[tuple[str, ProviderConfig], ...]
    route: str
    complexity: str
    classification: Optional[Classification] = None
    features: Optional[RequestFeatures] = None
    shadow_model: Optional[str] = None
    rule: Optional[RouteRule] = None

    @property
    def model(self) -> str:
        return self.chain[0][0]

    @property
    def provider(self) -> ProviderConfig:
        return self.chain[0][1]


class UnknownModel(LookupError):
    """No provider serves the requested model (or its alias target)."""


def _glob_match(patterns: tuple[str, ...], *names: str) -> bool:
    for pattern in patterns:
        for name in names:
            if pattern == name or fnmatch.fnmatchcase(name, pattern):
                return True
    return False


class Router:
    """Decides per request; see the module docstring."""

    def __init__(
        self,
        config: RoutingConfig,
        registry: ProviderRegistry,
        classifier: IComplexityClassifier,
        breaker: CircuitBreaker,
    ) -> None:
        self.config = config
        self.mode = config.mode
        self.registry = registry
        self.classifier = classifier
        self.breaker = breaker
        self._aliases = dict(config.aliases)
        self._rules = config.rules if config.mode != "off" else ()

    def resolve(self, requested: str) -> tuple[str, Optional[ProviderConfig]]:
        """An alias's target (or the name itself) and its provider."""
        target = self._aliases.get(requested, requested)
        return target, self.registry.provider_for(target)

    def decide(
        self,
        requested: str,
        body: Mapping[str, Any],
        messages: Sequence[Any],
        key: Any,
        kinds: frozenset[str],
        system: Optional[Any] = None,
    ) -> Decision:
        """
        Route one request (raises :class:`UnknownModel` when nothing serves
        ``requested``).  ``kinds`` are the provider kinds this endpoint can
        reach; ``key`` is the caller's ``KeyInfo`` (or None).
        """
        target, provider = self.resolve(requested)
        if provider is None:
            raise UnknownModel(requested)
        request = measure_request(body, messages, self.config.long_context_tokens, system)
        classification = self.classifier.classify(request)
        label = classification.label
        features = request.features
        for rule in self._rules:
            if not self._matches(rule, requested, target, key, features, label):
                continue
            chosen = rule.model or target
            chosen_provider = provider if chosen == target else self.registry.provider_for(chosen)
            if chosen_provider is None or chosen_provider.kind not in kinds:
                continue
            if self.mode == "shadow":
                return Decision(
                    requested=target,
                    chain=((target, provider),),
                    route="shadow:" + rule.name,
                    complexity=label,
                    classification=classification,
                    features=features,
                    shadow_model=chosen,
                    rule=rule,
                )
            chain = [(chosen, chosen_provider)]
            for fallback in rule.fallbacks:
                fallback_provider = self.registry.provider_for(fallback)
                if (
                    fallback_provider is not None
                    and fallback_provider.kind in kinds
                    and all(fallback != m for m, _ in chain)
                ):
                    chain.append((fallback, fallback_provider))
            return Decision(
                requested=target,
                chain=tuple(chain),
                route=rule.name,
                complexity=label,
                classification=classification,
                features=features,
                rule=rule,
            )
        return Decision(
            requested=target,
            chain=((target, provider),),
            route="default",
            complexity=label,
            classification=classification,
            features=features,
        )

    @staticmethod
    def _matches(
        rule: RouteRule, requested: str, target: str, key: Any, features: RequestFeatures, label: str
    ) -> bool:
        match = rule.match
        if match.models and not _glob_match(match.models, requested, target):
            return False
        if match.keys and (key is None or (key.key_id not in match.keys and key.name not in match.keys)):
            return False
        if match.teams and (key is None or key.team not in match.teams):
            return False
        if match.tools is not None and match.tools != features.tools:
            return False
        if match.images is not None and match.images != features.images:
            return False
        if match.json_mode is not None and match.json_mode != features.json_mode:
            return False
        if match.long_context is not None and match.long_context != features.long_context:
            return False
        if match.min_prompt_tokens is not None and features.prompt_tokens < match.min_prompt_tokens:
            return False
        if match.max_prompt_tokens is not None and features.prompt_tokens > match.max_prompt_tokens:
            return False
        if match.complexity and label not in match.complexity:
            return False
        return True
