# Tests: tests/test_anthropic_request.py, tests/test_anthropic_response.py,
#        tests/test_anthropic_stream.py, tests/test_anthropic_errors.py
"""
The pure translation layer between OpenAI chat completions and Anthropic's
Messages API: no I/O, no reactor, so every rule is testable as a function.

This module is the public surface; each direction lives in its own module:
requests in ``anthropic_request``, replies in ``anthropic_response``, stream
events in ``anthropic_stream``, errors in ``anthropic_errors``.
"""

from __future__ import annotations

from dd0c_route.providers.anthropic_errors import (
    UPSTREAM_AUTH_MESSAGE,
    TranslationError,
    anthropic_error_to_openai,
    anthropic_error_to_openai_payload,
)
from dd0c_route.providers.anthropic_request import (
    DEFAULT_MAX_TOKENS,
    FALLBACK_MAX_TOKENS,
    default_max_tokens,
    openai_to_anthropic_request,
)
from dd0c_route.providers.anthropic_response import (
    AnthropicUsage,
    anthropic_to_openai_response,
    completion_id,
    map_stop_reason,
)
from dd0c_route.providers.anthropic_stream import (
    AnthropicStreamError,
    AnthropicToOpenAIStream,
)

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "FALLBACK_MAX_TOKENS",
    "UPSTREAM_AUTH_MESSAGE",
    "AnthropicStreamError",
    "AnthropicToOpenAIStream",
    "AnthropicUsage",
    "TranslationError",
    "anthropic_error_to_openai",
    "anthropic_error_to_openai_payload",
    "anthropic_to_openai_response",
    "completion_id",
    "default_max_tokens",
    "map_stop_reason",
    "openai_to_anthropic_request",
]
