# Tests: tests/test_provider_contract.py
"""
The provider adapter seam: what the proxy needs to reach one kind of
upstream API.

An adapter knows its provider's wire: where an endpoint lives, which
headers carry the provider's key (never the client's), how a chat
completion is asked for (model substitution, asking for usage, translating
to another API) and read back (the body handler, which fills the request's
:class:`~dd0c_route.metering.usage.UsageFacts`), and how its errors look to
an OpenAI-format client.  The tap builds one adapter per kind and hands the
app a ``{kind: adapter}`` mapping; a new kind (Azure OpenAI, Bedrock) is one
module implementing :class:`IProvider` and one entry in
:func:`dd0c_route.providers.adapters.default_adapters`.

Every kind serves both client APIs the proxy routes, chat completions and
the Responses API: a kind that cannot speak Responses natively translates
it (Anthropic does, in ``providers.anthropic_responses``), so the seam is
one interface, not an optional second one the web layer would have to
probe for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.web.http_headers import Headers
from zope.interface import Attribute, Interface

if TYPE_CHECKING:
    from ..config import ProviderConfig
    from ..relay.plan import UpstreamCall

__all__ = ["IProvider"]


class IProvider(Interface):
    """One upstream API kind; see the module docstring."""

    kind = Attribute("The config ``kind`` this adapter serves, e.g. ``'openai'``.")

    def url(provider: ProviderConfig, endpoint: str) -> str:
        """
        The upstream URL for a client endpoint path (``/v1/...``, with its
        query string) on ``provider``.
        """

    def headers(provider: ProviderConfig, client_headers: Headers, native: bool) -> dict[bytes, list[bytes]]:
        """
        Upstream request headers: ``provider``'s own key, never the
        client's, plus the client headers the provider's API reads; ``native`` when the client speaks this
        provider's own API.
        """

    def chat_completion(
        provider: ProviderConfig,
        client_headers: Headers,
        body: dict[str, Any],
        raw: bytes,
        model: str,
        stream: bool,
        created: int,
    ) -> UpstreamCall:
        """
        The :class:`~dd0c_route.relay.plan.UpstreamCall` that serves an OpenAI chat completion (``body``,
        whose bytes are ``raw``) with ``model`` on ``provider``.  Raises
        :class:`~dd0c_route.providers.errors.CannotServe` for a request this provider cannot take.
        """

    def responses(
        provider: Any, client_headers: Any, body: dict[str, Any], raw: bytes, model: str, stream: bool, created: int
    ) -> Any:
        """
        The UpstreamCall that serves a Responses API request (``POST
        /v1/responses``; ``body``, whose bytes are ``raw``) with ``model``
        on ``provider``: relayed to a provider that speaks it, translated
        for one that does not.  Its handler fills the UsageFacts from the
        final event's usage, or from the output delivered when the stream
        is cut.  Raises CannotServe for a request this provider cannot take.
        """

    def translate_error(status: int, body: bytes, headers: dict[bytes, list[bytes]]) -> tuple[int, bytes, dict[bytes, list[bytes]]]:
        """A provider error response as an OpenAI-format client sees it (scrubbed of keys)."""
