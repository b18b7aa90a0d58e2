"""Validate values against OpenAI's published OpenAPI schemas, offline.

The schemas come from ``tests/schemas/openai-subset.json``, a checked-in subset of
OpenAI's OpenAPI spec produced by ``tests/schemas/extract_openai_schemas.py``; this
module never reads ``../shared``. At load time it adapts the spec to a JSON Schema
2020-12 validator:

* OpenAPI 3.0 ``nullable: true`` becomes "this type or null": ``"null"`` is added to
  ``type`` (and ``None`` to ``enum``); schemas without a plain ``type`` (``$ref``,
  ``allOf``/``anyOf``/``oneOf``, ``const``...) are wrapped in
  ``anyOf: [schema, {"type": "null"}]``. Wrapping, not appending to ``oneOf``, keeps
  ``StopConfiguration`` (whose own ``oneOf`` branch is already nullable) valid for null.
* ``Embedding.embedding`` also accepts the base64 string returned for
  ``encoding_format: "base64"``.
* ``CompoundFilter`` (reached from the Responses tools) is written in draft 2019-09's
  ``$recursiveAnchor: true`` / ``$recursiveRef: "#"``; it becomes the equivalent
  ``$ref`` to itself.

Nothing else is relaxed: a property the spec lists in ``required`` must be present even
when its value is null (``finish_reason`` on every chunk, ``logprobs`` and
``message.refusal`` on a completion).

Tested by ``tests/test_openapi_schema.py``.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, ValidationError
from jsonschema.exceptions import best_match
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

__all__ = ["RESPONSE_EVENT_SCHEMAS", "SUBSET_PATH", "component", "schema_names", "validate", "validate_responses_stream", "validate_sse_stream"]

SUBSET_PATH = Path(__file__).resolve().parent / "schemas" / "openai-subset.json"

_BASE_URI = "urn:dd0c-route:openai-subset"
_REF_PREFIX = "#/components/schemas/"
_STREAM_SCHEMA = "CreateChatCompletionStreamResponse"

# Keywords whose value maps names (not keywords) to subschemas.
_NAME_MAPS = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})
# Keywords whose value is instance data or vendor metadata, never a subschema.
_DATA_KEYWORDS = frozenset({"enum", "const", "default", "required", "discriminator", "example", "examples"})
# With any of these, adding "null" to ``type`` is not enough: wrap in anyOf instead.
_NEEDS_WRAP = frozenset({"$ref", "allOf", "anyOf", "oneOf", "not", "const", "if", "$dynamicRef"})

_BASE64 = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"


def _nullable_to_2020_12(node: Any) -> Any:
    """Return ``node`` (a schema) with every OpenAPI 3.0 ``nullable`` rewritten."""
    if isinstance(node, list):
        return [_nullable_to_2020_12(item) for item in node]
    if not isinstance(node, dict):
        return node
    schema: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DATA_KEYWORDS or key.startswith("x-"):
            schema[key] = value
        elif key in _NAME_MAPS and isinstance(value, dict):
            schema[key] = {name: _nullable_to_2020_12(sub) for name, sub in value.items()}
        else:
            schema[key] = _nullable_to_2020_12(value)

    if not schema.pop("nullable", False):
        return schema
    kind = schema.get("type")
    if _NEEDS_WRAP & schema.keys():
        return {"anyOf": [schema, {"type": "null"}]}
    if isinstance(kind, str):
        schema["type"] = [kind, "null"]
    elif isinstance(kind, list):
        if "null" not in kind:
            schema["type"] = [*kind, "null"]
    if "enum" in schema and None not in schema["enum"]:
        schema["enum"] = [*schema["enum"], None]
    # No type, no enum, no combinator: the schema already accepts null.
    return schema


def _patch_embedding(schemas: dict[str, Any]) -> None:
    """Let ``Embedding.embedding`` be the base64 string ``encoding_format: base64`` returns."""
    props = schemas["Embedding"]["properties"]
    props["embedding"] = {
        "anyOf": [
            props["embedding"],
            {"type": "string", "contentEncoding": "base64", "pattern": _BASE64},
        ]
    }


def _patch_recursive_refs(node: Any, name: str) -> Any:
    """Draft 2019-09 recursion (``$recursiveRef: "#"``) as a plain ``$ref`` to component ``name``."""
    if isinstance(node, list):
        return [_patch_recursive_refs(item, name) for item in node]
    if not isinstance(node, dict):
        return node
    if node.get("$recursiveRef") == "#":
        return {"$ref": f"{_REF_PREFIX}{name}"}
    return {k: _patch_recursive_refs(v, name) for k, v in node.items() if k != "$recursiveAnchor"}


@functools.cache
def _load() -> tuple[Registry, frozenset[str]]:
    with SUBSET_PATH.open(encoding="utf-8") as f:
        document = json.load(f)
    schemas = document["components"]["schemas"]
    for name in list(schemas):
        schemas[name] = _nullable_to_2020_12(_patch_recursive_refs(schemas[name], name))
    _patch_embedding(schemas)
    for name, schema in schemas.items():
        try:
            Draft202012Validator.check_schema(schema)
        except Exception as e:  # pragma: no cover - only if the subset is corrupt
            raise RuntimeError(f"{SUBSET_PATH}: component {name!r} is not a valid schema: {e}") from e
    resource = Resource.from_contents(document, default_specification=DRAFT202012)
    registry: Registry = Registry().with_resource(_BASE_URI, resource)
    return registry.crawl(), frozenset(schemas)


@functools.cache
def _validator(schema_name: str) -> Draft202012Validator:
    registry, names = _load()
    if schema_name not in names:
        raise KeyError(
            f"no schema {schema_name!r} in {SUBSET_PATH.name}; add it to ROOTS in "
            f"extract_openai_schemas.py and re-run it. Available: {', '.join(sorted(names))}"
        )
    root = {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "$ref": f"{_BASE_URI}{_REF_PREFIX}{schema_name}"}
    return Draft202012Validator(root, registry=registry)


def schema_names() -> frozenset[str]:
    """Names of the component schemas ``validate`` knows."""
    return _load()[1]


def component(schema_name: str) -> dict[str, Any]:
    """A deep copy of the adapted (2020-12) component schema, for inspection in tests."""
    _validator(schema_name)
    registry, _ = _load()
    resolved = registry.resolver(_BASE_URI).lookup(f"{_REF_PREFIX}{schema_name}")
    return copy.deepcopy(resolved.contents)


def validate(schema_name: str, instance: object, *, label: str | None = None) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``instance`` matches OpenAI's ``schema_name``.

    The message names the schema, the JSON path of the offending value, and the reason;
    ``label`` (e.g. "chunk 3") is prefixed to it. The error's ``path`` and ``schema_path``
    are absolute (from the root of the instance and of the schema) and it keeps the
    ``validator`` and ``instance`` of the most relevant failure.
    """
    validator = _validator(schema_name)
    errors = list(validator.iter_errors(instance))
    if not errors:
        return
    error = best_match(errors)
    more = f" (and {len(errors) - 1} more error(s))" if len(errors) > 1 else ""
    prefix = f"{label}: " if label else ""
    message = (
        f"{prefix}does not match OpenAI schema {schema_name} at {error.json_path}: "
        f"{error.message}{more} [schema path: {'/'.join(map(str, error.absolute_schema_path))}]"
    )
    # No ``schema=``: str() then stays this one-line message instead of dumping the schema.
    raise ValidationError(
        message,
        validator=error.validator,
        path=error.absolute_path,
        schema_path=error.absolute_schema_path,
        validator_value=error.validator_value,
        instance=error.instance,
        context=error.context,
        cause=error.cause,
    )


def validate_sse_stream(events: Sequence[Mapping[str, Any]]) -> None:
    """Validate a chat-completion stream: its parsed ``data:`` payloads, ``[DONE]`` excluded.

    Every chunk must match ``CreateChatCompletionStreamResponse``. Beyond the per-chunk
    schema it checks what the spec states in prose: every chunk has the same ``id`` and
    ``created``; and ``choices`` may be empty only in the last chunk, which then carries
    ``usage`` (``stream_options.include_usage``).
    """
    if isinstance(events, (str, bytes)) or not isinstance(events, Sequence):
        raise TypeError(f"events must be a list of parsed chunks, not {type(events).__name__}")
    if not events:
        raise ValidationError(f"{_STREAM_SCHEMA} stream: no chunks")
    first = events[0]
    last = len(events) - 1
    for i, chunk in enumerate(events):
        label = f"chunk {i} of {len(events)}"
        if chunk == "[DONE]":
            raise ValidationError(f"{label}: pass parsed JSON chunks only, without the [DONE] sentinel")
        validate(_STREAM_SCHEMA, chunk, label=label)
        for key in ("id", "created"):
            if chunk[key] != first[key]:
                raise ValidationError(
                    f"{label}: {key} {chunk[key]!r} differs from the first chunk's {first[key]!r}; "
                    f"every chunk of a stream has the same {key}",
                    path=[key], instance=chunk[key],
                )
        if not chunk["choices"]:
            if i != last:
                raise ValidationError(
                    f"{label}: empty choices is only allowed in the final usage chunk, "
                    f"but {last - i} chunk(s) follow it",
                    path=["choices"], instance=chunk["choices"],
                )
            if chunk.get("usage") is None:
                raise ValidationError(
                    f"{label}: final chunk has empty choices but no usage",
                    path=["usage"], instance=chunk.get("usage"),
                )



#: The component schema of each Responses stream event type the proxy produces.
RESPONSE_EVENT_SCHEMAS = {
    "response.created": "ResponseCreatedEvent",
    "response.in_progress": "ResponseInProgressEvent",
    "response.output_item.added": "ResponseOutputItemAddedEvent",
    "response.output_item.done": "ResponseOutputItemDoneEvent",
    "response.content_part.added": "ResponseContentPartAddedEvent",
    "response.content_part.done": "ResponseContentPartDoneEvent",
    "response.output_text.delta": "ResponseTextDeltaEvent",
    "response.output_text.done": "ResponseTextDoneEvent",
    "response.function_call_arguments.delta": "ResponseFunctionCallArgumentsDeltaEvent",
    "response.function_call_arguments.done": "ResponseFunctionCallArgumentsDoneEvent",
    "response.completed": "ResponseCompletedEvent",
    "response.incomplete": "ResponseIncompleteEvent",
    "response.failed": "ResponseFailedEvent",
    "error": "ResponseErrorEvent",
}


def validate_responses_stream(events: Sequence[Mapping[str, Any]]) -> None:
    """Validate a Responses event stream: parsed ``data:`` payloads, in order.

    Each event must match the schema of its ``type`` (see ``RESPONSE_EVENT_SCHEMAS``)
    and ``ResponseStreamEvent``; beyond the schema, ``sequence_number`` counts up from
    0 by one, the first event is ``response.created`` and every ``response`` carried
    has the same ``id``.
    """
    if not events:
        raise ValidationError("Responses stream: no events")
    if events[0].get("type") != "response.created":
        raise ValidationError(f"event 0 is {events[0].get('type')!r}, not response.created")
    response_id = events[0]["response"]["id"]
    for i, event in enumerate(events):
        label = f"event {i} ({event.get('type')})"
        name = RESPONSE_EVENT_SCHEMAS.get(str(event.get("type")))
        if name is None:
            raise ValidationError(f"{label}: not an event type the proxy should produce")
        validate(name, event, label=label)
        validate("ResponseStreamEvent", event, label=label)
        if event["sequence_number"] != i:
            raise ValidationError(f"{label}: sequence_number {event['sequence_number']} is not {i}")
        if "response" in event and event["response"]["id"] != response_id:
            raise ValidationError(f"{label}: response id {event['response']['id']!r} is not {response_id!r}")
