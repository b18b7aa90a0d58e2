# Tests: tests/test_tokens.py, tests/test_meter.py
"""
How far a local Claude count is off, learnt from one request's prompt.

Anthropic's tokenizer for Claude 3 and later is not public, so a local count
of a cut-short stream's output is an estimate (see :mod:`.tokenizers`); this
module turns a request's own usage report into an exact, bounded correction
of that estimate.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any, Optional

import attrs

__all__ = ["ClaudeCalibration"]

_MIN_RATIO = Fraction(1, 2)
_MAX_RATIO = Fraction(2)


def _check_ratio(instance: Any, attribute: Any, value: Fraction) -> None:
    if not _MIN_RATIO <= value <= _MAX_RATIO:
        raise ValueError(f"A calibration ratio must lie between {_MIN_RATIO} and {_MAX_RATIO}: ratio={value}")


@attrs.frozen
class ClaudeCalibration:
    """
    How far our local Claude count is off, learnt from one request's prompt.

    The local tokenizer predates Claude 3, and Anthropic adds framing we can
    only estimate, so local counts drift from billed ones by model and by
    language.  When a request's usage report gives input tokens but the
    output was cut before its final usage, the prompt tells us the drift
    for *this* model and *this* text: ``reported / local``.  We scale the
    local count of the delivered output by it.

    The ratio is clamped to [1/2, 2]: beyond that the two counts are not of
    the same thing (a cache hit, tools we did not count, a wrong model), and
    trusting them would let one odd report double or zero a bill.  It is a
    ``Fraction`` so that scaling is exact and reproducible; it never touches
    money directly.
    """

    ratio: Fraction = attrs.field(default=Fraction(1), validator=_check_ratio)

    @classmethod
    def from_prompt(cls, local_prompt_tokens: int, reported_input_tokens: Optional[int]) -> ClaudeCalibration:
        """
        The calibration for one request, or the identity when there is nothing
        to learn from (no report, or an empty count on either side).

        ``reported_input_tokens`` must cover the same text as the local count:
        for Anthropic that is ``input_tokens + cache_read_input_tokens +
        cache_creation_input_tokens``, since ``input_tokens`` alone excludes
        cached parts of the prompt.
        """
        if reported_input_tokens is None or local_prompt_tokens <= 0 or reported_input_tokens <= 0:
            return cls()
        ratio = Fraction(reported_input_tokens, local_prompt_tokens)
        return cls(min(max(ratio, _MIN_RATIO), _MAX_RATIO))

    def scale(self, local_tokens: int) -> int:
        """``local_tokens`` times the ratio, rounded half up (so 1 stays >= 1)."""
        if local_tokens < 0:
            raise ValueError(f"A token count cannot be negative: local_tokens={local_tokens}")
        return math.floor(local_tokens * self.ratio + Fraction(1, 2))
