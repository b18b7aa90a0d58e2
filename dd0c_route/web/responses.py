# Tests: tests/test_live_responses.py, tests/test_bad_input.py
"""
``POST /v1/responses``: the Responses API, routed like a chat completion.

The request is read as the chat completion it asks for
(:func:`~dd0c_route.providers.responses_input.chat_view`) so that routing
rules match on the same keys (``tools``, ``images``, ``json_mode`` from
``text.format``, prompt size, complexity) and a prompt can be counted
locally; then each attempt's adapter serves it (OpenAI relayed with the
routed model, Anthropic translated).  Auth, budgets, aliases, fallbacks,
the breaker, shadow mode, the ``x-dd0c-*`` headers and the one record are
the :class:`~dd0c_route.web.call.Call`'s, exactly as for chat completions.
"""

from __future__ import annotations

from ..config import ProviderConfig
from ..providers.responses_input import chat_view
from ..relay.plan import UpstreamCall
from .call import Call
from .chat import adapter_for
from .errors import ProxyError

__all__ = ["responses"]


def responses(call: Call) -> None:
    if call.method != b"POST":
        raise ProxyError(405, "Method not allowed: use POST", code="method_not_allowed")
    body = call.json_body()
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ProxyError(400, "you must provide a model parameter", param="model", code="missing_required_parameter" if "model" not in body else "invalid_type")
    raw_input = body.get("input")
    if not isinstance(raw_input, (str, list)) or (isinstance(raw_input, list) and not raw_input and "previous_response_id" not in body):
        raise ProxyError(400, "Invalid 'input': expected a string or a non-empty array of input items.", param="input", code="invalid_value")
    stream = body.get("stream", False)
    if stream is not None and not isinstance(stream, bool):
        raise ProxyError(400, "'stream' must be a boolean", param="stream", code="invalid_type")
    stream = bool(stream)
    app = call.app
    adapters = app.adapters
    view = chat_view(body)
    messages = view["messages"]
    decision = call.route(model, view, messages, app.kinds)
    call.info.stream = stream
    call.info.messages = messages
    client_headers = call.request.requestHeaders
    raw = call.raw_body
    created = int(app.reactor.seconds())

    def plan_for(served: str, provider: ProviderConfig) -> UpstreamCall:
        return adapter_for(adapters, served, provider).responses(provider, client_headers, body, raw, served, stream, created)

    call.serve(decision, plan_for)
