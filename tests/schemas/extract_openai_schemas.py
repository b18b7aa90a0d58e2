#!/usr/bin/env python3
"""Extract the OpenAI component schemas our tests validate against.

Reads OpenAI's published OpenAPI spec (3 MB of YAML), keeps only the closure of
``$ref``s reachable from ``ROOTS`` and writes ``tests/schemas/openai-subset.json``
so the test suite validates offline, quickly, and never reads ``../shared``.

The schemas are copied unmodified except that documentation-only keywords
(``description``, ``example``, ``examples``, ``x-oaiMeta``) are dropped to keep
the file small; the OpenAPI-3.0 ``nullable`` keyword and other quirks are left
as published and handled at load time by ``tests/openapi_schema.py``.

Usage (from the repository root)::

    python tests/schemas/extract_openai_schemas.py [SPEC_YAML] [-o OUT_JSON]

Re-run it when the spec is updated; if the spec's sha256 is not the one whose
provenance is recorded below, pass ``--commit``/``--commit-date``/``--retrieved``
for the new upstream revision.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SPEC = REPO_ROOT / ".." / "shared" / "specs" / "openai-openapi.yaml"
DEFAULT_OUT = Path(__file__).resolve().parent / "openai-subset.json"

ROOTS = (
    "CreateChatCompletionResponse",
    "CreateChatCompletionStreamResponse",
    "ErrorResponse",
    "ListModelsResponse",
    "CreateEmbeddingResponse",
    "CreateCompletionResponse",
    "Model",
    "CreateChatCompletionRequest",
    # The Responses API (issue 12): the object, and every stream event the
    # proxy produces for a translated model.
    "Response",
    "ResponseStreamEvent",
    "ResponseCreatedEvent",
    "ResponseInProgressEvent",
    "ResponseOutputItemAddedEvent",
    "ResponseOutputItemDoneEvent",
    "ResponseContentPartAddedEvent",
    "ResponseContentPartDoneEvent",
    "ResponseTextDeltaEvent",
    "ResponseTextDoneEvent",
    "ResponseFunctionCallArgumentsDeltaEvent",
    "ResponseFunctionCallArgumentsDoneEvent",
    "ResponseCompletedEvent",
    "ResponseIncompleteEvent",
    "ResponseFailedEvent",
    "ResponseErrorEvent",
)

# Provenance of the spec revision we vendor (see ../shared/specs/README.md).
KNOWN_SHA256 = "db5d7478feae10b4d331834c60d9765a8aa042e38419f9b1694288c11aa8ebc8"
UPSTREAM_REPOSITORY = "https://github.com/openai/openai-openapi"
UPSTREAM_PATH = "openapi.yaml"
UPSTREAM_COMMIT = "f85dbe223d40e1a31cba812ab2d755c7e98a92a3"
UPSTREAM_COMMIT_DATE = "2026-08-21"
RETRIEVED = "2026-11-26"

LICENSE_NOTICE = (
    "Schemas extracted from the OpenAI OpenAPI specification, Copyright (c) OpenAI, "
    "licensed under the MIT License:\n\n"
    "Permission is hereby granted, free of charge, to any person obtaining a copy "
    "of this software and associated documentation files (the \"Software\"), to deal "
    "in the Software without restriction, including without limitation the rights "
    "to use, copy, modify, merge, publish, distribute, sublicense, and/or sell "
    "copies of the Software, and to permit persons to whom the Software is "
    "furnished to do so, subject to the following conditions:\n\n"
    "The above copyright notice and this permission notice shall be included in all "
    "copies or substantial portions of the Software.\n\n"
    "THE SOFTWARE IS PROVIDED \"AS IS\", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR "
    "IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, "
    "FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE "
    "AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER "
    "LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, "
    "OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE "
    "SOFTWARE."
)

REF_PREFIX = "#/components/schemas/"
DOC_KEYWORDS = frozenset({"description", "example", "examples", "x-oaiMeta"})
# Keywords whose value maps *names* (not keywords) to subschemas.
NAME_MAPS = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})
# Keywords whose value is instance data, copied verbatim.
DATA_KEYWORDS = frozenset({"enum", "const", "default", "required", "discriminator"})


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _strip(node: Any) -> Any:
    """Copy a schema, dropping documentation keywords at schema positions only."""
    if isinstance(node, list):
        return [_strip(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in DOC_KEYWORDS:
            continue
        if key in DATA_KEYWORDS:
            out[key] = value
        elif key in NAME_MAPS and isinstance(value, dict):
            out[key] = {name: _strip(sub) for name, sub in value.items()}
        else:
            out[key] = _strip(value)
    return out


def _refs(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            if not ref.startswith(REF_PREFIX):
                raise SystemExit(f"unsupported $ref {ref!r}: only {REF_PREFIX}... is handled")
            found.add(_unescape(ref[len(REF_PREFIX):].split("/", 1)[0]))
        for value in node.values():
            _refs(value, found)
    elif isinstance(node, list):
        for item in node:
            _refs(item, found)


def closure(schemas: dict[str, Any], roots: tuple[str, ...]) -> dict[str, Any]:
    """Return the named schemas reachable from ``roots`` through ``$ref``."""
    keep: dict[str, Any] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in keep:
            continue
        if name not in schemas:
            raise SystemExit(f"schema {name!r} is referenced but not defined in the spec")
        keep[name] = _strip(schemas[name])
        found: set[str] = set()
        _refs(keep[name], found)
        todo.extend(sorted(found - keep.keys()))
    return keep


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", nargs="?", type=Path, default=DEFAULT_SPEC)
    parser.add_argument("-o", "--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--commit", help="upstream commit (required if the spec is not the known one)")
    parser.add_argument("--commit-date")
    parser.add_argument("--retrieved")
    args = parser.parse_args(argv)

    raw = args.spec.read_bytes()
    sha256 = hashlib.sha256(raw).hexdigest()
    if sha256 == KNOWN_SHA256:
        commit = args.commit or UPSTREAM_COMMIT
        commit_date = args.commit_date or UPSTREAM_COMMIT_DATE
        retrieved = args.retrieved or RETRIEVED
    elif args.commit and args.commit_date and args.retrieved:
        commit, commit_date, retrieved = args.commit, args.commit_date, args.retrieved
    else:
        parser.error(
            f"{args.spec} has sha256 {sha256}, not the known {KNOWN_SHA256}; "
            "pass --commit, --commit-date and --retrieved for this revision"
        )

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    spec = yaml.load(raw, Loader=loader)  # noqa: S506 - a SafeLoader (the C one when available)
    schemas = closure(spec["components"]["schemas"], ROOTS)

    document = {
        "x-dd0c-source": {
            "generated_by": "tests/schemas/extract_openai_schemas.py",
            "file": UPSTREAM_PATH,
            "sha256": sha256,
            "info_version": spec["info"]["version"],
            "openapi": spec["openapi"],
            "repository": UPSTREAM_REPOSITORY,
            "commit": commit,
            "commit_date": commit_date,
            "retrieved": retrieved,
            "roots": list(ROOTS),
            "dropped_keywords": sorted(DOC_KEYWORDS),
            "license": "MIT",
            "license_notice": LICENSE_NOTICE,
        },
        "openapi": spec["openapi"],
        "info": {"title": spec["info"]["title"], "version": spec["info"]["version"],
                 "license": spec["info"].get("license", {"name": "MIT"})},
        "components": {"schemas": schemas},
    }
    text = json.dumps(document, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out} ({len(text.encode())} bytes, {len(schemas)} schemas)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
