# Tests: tests/test_fakeprovider.py, tests/test_live_responses.py
"""
The fake OpenAI provider's ``POST /v1/responses``: a ``response`` object, or
its event stream, in the shapes of OpenAI's published schema (``Response``,
``ResponseStreamEvent``), with usage, driven by the same :class:`Scenario`
controls as chat completions (reply text and chunking, tool calls, delays,
resets, mid-stream errors, error statuses).  ``Scenario.cached_tokens`` and
``reasoning_tokens`` set the usage details it reports.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterator

from ..providers.responses_input import chat_view
from ._fakehttp import Event
from ._fakestate import FakeProviderState, Scenario, _flatten, argument_fragments, reply_text_for, split_reply

__all__ = ["responses_answer"]

Body = Callable[[Scenario], Any]
Stream = Callable[[Scenario], Iterator[Event]]


def _sse(event: dict[str, Any], content: bool = False) -> Event:
    return Event(b"event: " + event["type"].encode() + b"\ndata: " + json.dumps(event).encode() + b"\n\n", content)


def responses_answer(state: FakeProviderState, created: int, request: dict[str, Any]) -> tuple[Body, Stream]:
    """The whole answer and the stream for one Responses request."""
    model: str = request["model"]
    messages = chat_view(request)["messages"]
    last_user = next((_flatten(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")
    counter = state.counter
    prompt_tokens = counter.count_prompt(model, messages)
    response_id = state.next_id("resp_")

    def usage(scenario: Scenario, text: str) -> dict[str, Any]:
        if scenario.tool_calls:
            output = sum(counter.count_text(model, n) + counter.count_text(model, a) for n, a in scenario.tool_calls)
        else:
            output = counter.count_text(model, text)
        output += scenario.reasoning_tokens
        return {
            "input_tokens": prompt_tokens,
            "input_tokens_details": {"cached_tokens": scenario.cached_tokens, "cache_write_tokens": 0},
            "output_tokens": output,
            "output_tokens_details": {"reasoning_tokens": scenario.reasoning_tokens},
            "total_tokens": prompt_tokens + output,
        }

    def response(status: str, output: list[dict[str, Any]], use: Any) -> dict[str, Any]:
        value = {
            "id": response_id, "object": "response", "created_at": created, "status": status,
            "completed_at": created if status == "completed" else None, "error": None,
            "incomplete_details": None, "instructions": request.get("instructions"),
            "max_output_tokens": request.get("max_output_tokens"), "model": model, "output": output,
            "parallel_tool_calls": True, "previous_response_id": None, "reasoning": {"effort": None, "summary": None},
            "store": True, "temperature": 1.0, "text": {"format": {"type": "text"}}, "tool_choice": "auto",
            "tools": request.get("tools") or [], "top_p": 1.0, "truncation": "disabled", "metadata": {},
        }
        if use is not None:
            value["usage"] = use
        return value

    def items(scenario: Scenario) -> list[tuple[str, dict[str, Any]]]:
        if scenario.tool_calls:
            return [
                (a, {"id": state.next_id("fc_"), "type": "function_call", "status": "completed", "arguments": a,
                     "call_id": state.next_id("call_"), "name": n})
                for n, a in scenario.tool_calls
            ]
        text = reply_text_for(scenario, last_user)
        part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
        message = {"id": state.next_id("msg_"), "type": "message", "status": "completed", "role": "assistant", "content": [part]}
        return [(text, message)]

    def whole(scenario: Scenario) -> dict[str, Any]:
        output = items(scenario)
        text = "" if scenario.tool_calls else output[0][0]
        return response("completed", [item for _, item in output], usage(scenario, text))

    def events(scenario: Scenario) -> Iterator[Event]:
        seq = iter(range(1 << 30))

        def event(kind: str, **fields: Any) -> dict[str, Any]:
            return {"type": kind, "sequence_number": next(seq), **fields}

        yield _sse(event("response.created", response=response("in_progress", [], None)))
        yield _sse(event("response.in_progress", response=response("in_progress", [], None)))
        output = items(scenario)
        text = ""
        for index, (content, item) in enumerate(output):
            if item["type"] == "function_call":
                added = dict(item, arguments="", status="in_progress")
                yield Event(_sse(event("response.output_item.added", output_index=index, item=added)).data, True)
                for piece in argument_fragments(content):
                    delta = event("response.function_call_arguments.delta", item_id=item["id"], output_index=index, delta=piece)
                    yield _sse(delta, True)
                yield _sse(event("response.function_call_arguments.done", item_id=item["id"], name=item["name"], output_index=index, arguments=content))
            else:
                text = content
                yield _sse(event("response.output_item.added", output_index=index, item=dict(item, content=[], status="in_progress")))
                empty = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
                yield _sse(event("response.content_part.added", item_id=item["id"], output_index=index, content_index=0, part=empty))
                for words in split_reply(scenario, content):
                    yield _sse(event("response.output_text.delta", item_id=item["id"], output_index=index, content_index=0, delta=words, logprobs=[]), True)
                if scenario.mid_stream_error is not None:
                    break
                yield _sse(event("response.output_text.done", item_id=item["id"], output_index=index, content_index=0, text=content, logprobs=[]))
                yield _sse(event("response.content_part.done", item_id=item["id"], output_index=index, content_index=0, part=item["content"][0]))
            yield _sse(event("response.output_item.done", output_index=index, item=item))
        if scenario.mid_stream_error is not None:
            error = scenario.mid_stream_error
            yield _sse(event("error", code=error.get("code"), message=str(error.get("message")), param=error.get("param")))
            return
        final = response("completed", [item for _, item in output], usage(scenario, text))
        yield _sse(event("response.completed", response=final))

    return whole, events
