# Tests: tests/test_anthropic_request.py
"""
OpenAI message content parts as Anthropic content blocks.

Text, refusals, images (base64 data URLs or http(s) URLs) and inline PDFs
translate; anything else is refused with the index of the offending part.
A client's Anthropic ``cache_control`` on a part is kept: prompt caching is
worth passing through.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

from dd0c_route.providers.anthropic_refusals import refuse, unsupported

__all__ = [
    "ASSISTANT_PARTS",
    "TEXT_PARTS",
    "USER_PARTS",
    "Block",
    "content_blocks",
    "with_cache_control",
]

_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
_DOCUMENT_TYPES = frozenset({"application/pdf"})

Block = dict[str, Any]
"""One Anthropic content block (or tool definition) as JSON."""


def _parse_data_url(url: str, param: str) -> tuple[str, str]:
    """
    ``data:<media type>;base64,<data>`` -> (media type, data).
    """
    header, sep, data = url[len("data:"):].partition(",")
    media_type, _, encoding = header.partition(";")
    if not sep or encoding.lower() != "base64" or not data:
        raise refuse(
            "Only base64 data URLs ('data:<media type>;base64,<data>') are "
            "supported for Anthropic models.",
            param,
            "invalid_image_url",
        )
    return media_type.lower(), data


def _image_block(part: Mapping[str, Any], param: str) -> Block:
    image_url = part.get("image_url")
    url = image_url.get("url") if isinstance(image_url, Mapping) else image_url
    if not isinstance(url, str):
        raise refuse("An image_url part needs image_url.url.", param)
    if url.startswith("data:"):
        media_type, data = _parse_data_url(url, param)
        if media_type not in _IMAGE_TYPES:
            raise refuse(
                f"Image type {media_type!r} is not supported for Anthropic "
                f"models; use one of {', '.join(sorted(_IMAGE_TYPES))}.",
                param,
                "invalid_image_format",
            )
        block: Block = {
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }
    elif url.startswith(("https://", "http://")):
        block = {"type": "image", "source": {"type": "url", "url": url}}
    else:
        raise refuse(
            "An image URL must be an http(s) URL or a base64 data URL.",
            param,
            "invalid_image_url",
        )
    return with_cache_control(block, part)


def _file_block(part: Mapping[str, Any], param: str) -> Block:
    file = part.get("file")
    data_url = file.get("file_data") if isinstance(file, Mapping) else None
    if not isinstance(data_url, str) or not data_url.startswith("data:"):
        raise unsupported(
            param, "only inline PDF files ('file_data' as a base64 data URL) can be sent"
        )
    media_type, data = _parse_data_url(data_url, param)
    if media_type not in _DOCUMENT_TYPES:
        raise unsupported(param, f"file type {media_type!r} (only application/pdf)")
    block: Block = {
        "type": "document",
        "source": {"type": "base64", "media_type": media_type, "data": data},
    }
    return with_cache_control(block, part)


def with_cache_control(block: Block, part: Mapping[str, Any]) -> Block:
    """
    Keep Anthropic's ``cache_control`` when a client put it on an OpenAI
    part: prompt caching is worth passing through.
    """
    if "cache_control" in part:
        block["cache_control"] = part["cache_control"]
    return block


def _text_block(text: str, part: Optional[Mapping[str, Any]] = None) -> Block:
    block: Block = {"type": "text", "text": text}
    return with_cache_control(block, part) if part is not None else block


def content_blocks(
    content: Any, param: str, *, allow: frozenset[str]
) -> list[Block]:
    """
    OpenAI message content (a string or a list of parts) as Anthropic blocks.

    Empty text is dropped: Anthropic rejects empty text blocks.
    """
    if content is None:
        return []
    if isinstance(content, str):
        return [_text_block(content)] if content else []
    if not isinstance(content, list):
        raise refuse("Message content must be a string or a list of parts.", param)
    blocks: list[Block] = []
    for i, part in enumerate(content):
        where = f"{param}[{i}]"
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind not in allow:
            raise refuse(
                f"Content part type {kind!r} is not allowed here for Anthropic "
                f"models; allowed: {', '.join(sorted(allow))}.",
                where,
            )
        assert isinstance(part, Mapping)
        if kind == "text" or kind == "refusal":
            text = part.get(kind)
            if not isinstance(text, str):
                raise refuse(f"A {kind} part needs a string '{kind}'.", where)
            if text:
                blocks.append(_text_block(text, part))
        elif kind == "image_url":
            blocks.append(_image_block(part, where))
        elif kind == "file":
            blocks.append(_file_block(part, where))
    return blocks


USER_PARTS = frozenset({"text", "image_url", "file"})
TEXT_PARTS = frozenset({"text"})
ASSISTANT_PARTS = frozenset({"text", "refusal"})
