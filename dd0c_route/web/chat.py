# Tests: tests/test_live_openai.py, tests/test_live_anthropic.py, tests/test_bad_input.py
"""
``/v1/chat/completions``.

A chat completion is checked, routed, and served by the adapter of each
attempt's provider kind (OpenAI relayed, Anthropic translated); which kinds
can serve it is simply which adapters the app has.
"""

from __future__ import annotations

from typing import Mapping

from ..config import ProviderConfig
from ..providers.errors import CannotServe
from ..providers.interfaces import IProvider
from ..relay.plan import UpstreamCall
from .call import Call
from .errors import ProxyError

__all__ = ["adapter_for", "chat_completions"]


def adapter_for(adapters: Mapping[str, IProvider], served: str, provider: ProviderConfig) -> IProvider:
    """The adapter of ``provider``'s kind, or a 400 naming the model it cannot reach."""
    adapter = adapters.get(provider.kind)
    if adapter is None:
        raise CannotServe(
            400,
            f"The model `{served}` is served by a {provider.kind} provider, which this endpoint cannot reach yet",
            param="model",
            code="model_not_supported",
        )
    return adapter


def chat_completions(call: Call) -> None:
    if call.method != b"POST":
        raise ProxyError(405, "Method not allowed: use POST", code="method_not_allowed")
    body = call.json_body()
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ProxyError(400, "you must provide a model parameter", param="model", code="missing_required_parameter" if "model" not in body else "invalid_type")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ProxyError(400, "'messages' must be a non-empty array of message objects", param="messages", code="invalid_value")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise ProxyError(400, f"messages[{index}] must be an object with a string 'role'", param=f"messages[{index}]", code="invalid_value")
    stream = body.get("stream", False)
    if stream is not None and not isinstance(stream, bool):
        raise ProxyError(400, "'stream' must be a boolean", param="stream", code="invalid_type")
    stream = bool(stream)
    app = call.app
    adapters = app.adapters
    decision = call.route(model, body, messages, app.kinds)
    call.info.stream = stream
    call.info.messages = messages
    client_headers = call.request.requestHeaders
    raw = call.raw_body
    created = int(app.reactor.seconds())

    def plan_for(served: str, provider: ProviderConfig) -> UpstreamCall:
        return adapter_for(adapters, served, provider).chat_completion(provider, client_headers, body, raw, served, stream, created)

    call.serve(decision, plan_for)
