# Tests: tests/test_classifier.py, tests/test_routing.py
"""
Seams of the router: what a complexity classifier is given and returns.

The shipped classifier is a heuristic (:mod:`.classifier`); a trained model
can replace it behind :class:`IComplexityClassifier` as long as it answers
in microseconds on the reactor thread (or is given a cache), because it runs
once per request before the upstream call.
"""

from __future__ import annotations

from typing import Any, Sequence

import attrs
from zope.interface import Attribute, Interface

__all__ = [
    "COMPLEXITY_CLASSES",
    "Classification",
    "IComplexityClassifier",
    "RequestFeatures",
    "RoutingRequest",
]

#: The classes, cheapest first.  Rules name them in ``match.complexity``.
COMPLEXITY_CLASSES = ("simple", "medium", "complex", "reasoning")


@attrs.frozen(slots=True)
class RequestFeatures:
    """
    What rules can match on, measured without a tokenizer.

    ``prompt_tokens`` is an estimate: characters / 4 over every text part.
    """

    prompt_tokens: int = 0
    messages: int = 0
    user_turns: int = 0
    tools: bool = False
    images: bool = False
    json_mode: bool = False
    long_context: bool = False


@attrs.frozen(slots=True)
class RoutingRequest:
    """
    One request as the router sees it: its features, and the texts a
    classifier reads (the system prompt and the last user message), plus
    the raw messages for a classifier that wants them all.
    """

    features: RequestFeatures
    last_user_text: str = ""
    system_text: str = ""
    messages: Sequence[Any] = ()


@attrs.frozen(slots=True)
class Classification:
    """
    A complexity class and why: ``features`` are the measured values,
    ``reasons`` the ones that decided the class (for explanations and tests).
    """

    label: str
    features: tuple[tuple[str, int], ...] = ()
    reasons: tuple[str, ...] = ()


class IComplexityClassifier(Interface):
    """Puts a request into one of :data:`COMPLEXITY_CLASSES`."""

    classes = Attribute("The labels this classifier can return (a subset of COMPLEXITY_CLASSES).")

    def classify(request: RoutingRequest) -> Classification:
        """
        Classify one request.  Runs on the reactor thread: must be
        deterministic, never raise, and take microseconds.
        """
