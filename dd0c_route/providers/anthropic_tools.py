# Tests: tests/test_anthropic_request.py
"""
OpenAI function tools, tool choices, tool calls and tool results, as
Anthropic's tools, ``tool_choice``, ``tool_use`` and ``tool_result`` blocks.

Only function tools translate.  Tool call arguments are JSON text for OpenAI
and a JSON object for Anthropic, so arguments that do not parse to an object
are refused rather than sent as something the model did not produce.
"""

from __future__ import annotations

from typing import Any, Mapping

from dd0c_route.boundedjson import InvalidJSON, loads_bounded
from dd0c_route.providers.anthropic_content import TEXT_PARTS, Block, content_blocks, with_cache_control
from dd0c_route.providers.anthropic_refusals import refuse, unsupported

__all__ = ["tool_choice_block", "tool_result_block", "tool_use_blocks", "tools_blocks"]


def tool_use_blocks(tool_calls: Any, param: str) -> list[Block]:
    if not isinstance(tool_calls, list):
        raise refuse("tool_calls must be a list.", param)
    blocks: list[Block] = []
    for j, call in enumerate(tool_calls):
        where = f"{param}[{j}]"
        if not isinstance(call, Mapping) or call.get("type", "function") != "function":
            raise refuse("Only function tool calls are supported for Anthropic models.", where)
        function = call.get("function")
        call_id = call.get("id")
        if not isinstance(function, Mapping) or not isinstance(call_id, str):
            raise refuse("A tool call needs an id and a function.", where)
        name = function.get("name")
        arguments = function.get("arguments")
        if not isinstance(name, str) or not isinstance(arguments, str):
            raise refuse("A tool call function needs a name and string arguments.", where)
        try:
            parsed = loads_bounded(arguments) if arguments.strip() else {}
        except InvalidJSON:
            raise refuse(
                "Tool call arguments must be valid JSON to send them to an "
                "Anthropic model.",
                f"{where}.function.arguments",
                "invalid_tool_call_arguments",
            ) from None
        if not isinstance(parsed, dict):
            raise refuse(
                "Tool call arguments must be a JSON object for Anthropic models.",
                f"{where}.function.arguments",
                "invalid_tool_call_arguments",
            )
        blocks.append({"type": "tool_use", "id": call_id, "name": name, "input": parsed})
    return blocks


def tool_result_block(message: Mapping[str, Any], param: str) -> Block:
    tool_call_id = message.get("tool_call_id")
    if not isinstance(tool_call_id, str) or not tool_call_id:
        raise refuse("A tool message needs a tool_call_id.", f"{param}.tool_call_id")
    block: Block = {"type": "tool_result", "tool_use_id": tool_call_id}
    content = message.get("content")
    if isinstance(content, str):
        if content:
            block["content"] = content
    else:
        blocks = content_blocks(content, f"{param}.content", allow=TEXT_PARTS)
        if blocks:
            block["content"] = blocks
    return block


def tools_blocks(tools: Any) -> list[Block]:
    if not isinstance(tools, list):
        raise refuse("tools must be a list.", "tools")
    out: list[Block] = []
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        if not isinstance(tool, Mapping) or tool.get("type") != "function":
            raise unsupported(where, "only function tools can be sent")
        function = tool.get("function")
        name = function.get("name") if isinstance(function, Mapping) else None
        if not isinstance(name, str) or not name:
            raise refuse("A function tool needs function.name.", f"{where}.function.name")
        assert isinstance(function, Mapping)
        converted: Block = {"name": name}
        if function.get("description"):
            converted["description"] = function["description"]
        parameters = function.get("parameters")
        converted["input_schema"] = (
            parameters if isinstance(parameters, Mapping) else {"type": "object", "properties": {}}
        )
        out.append(with_cache_control(converted, tool))
    return out


def tool_choice_block(choice: Any) -> Block:
    if choice == "auto":
        return {"type": "auto"}
    if choice == "required":
        return {"type": "any"}
    if choice == "none":
        return {"type": "none"}
    if isinstance(choice, Mapping) and choice.get("type") == "function":
        function = choice.get("function")
        name = function.get("name") if isinstance(function, Mapping) else None
        if isinstance(name, str) and name:
            return {"type": "tool", "name": name}
    raise refuse(
        "tool_choice must be 'auto', 'required', 'none' or "
        "{'type': 'function', 'function': {'name': ...}} for Anthropic models.",
        "tool_choice",
    )
