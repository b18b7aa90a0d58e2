"""
twistd plugin: ``twistd -n dd0c-route [--config FILE]``.

Kept tiny: twistd imports every plugin file to list them, so the real work
is imported only when the service is made.
"""

from twisted.application.service import ServiceMaker

dd0c_route = ServiceMaker(
    "dd0c-route",
    "dd0c_route.tap",
    "dd0c-route: an OpenAI/Anthropic-compatible LLM gateway that routes, meters and redacts.",
    "dd0c-route",
)
