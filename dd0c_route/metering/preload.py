# Tests: tests/test_tokens.py
"""
Load the tokenizers a process will need before the reactor serves.
"""

from __future__ import annotations

from typing import Iterable

from dd0c_route.metering.tokenizers import tokenizer_for_model

__all__ = ["preload_for_kinds"]


def preload_for_kinds(kinds: Iterable[str]) -> None:
    """
    Load, verify and warm the tokenizers the configured providers need.

    Building a tokenizer holds the GIL for 100-300 ms (tiktoken builds its
    BPE tables in one native call), so loading one lazily, in a worker
    thread, on the first stream cut short would stall the reactor for that
    long.  The tap calls this once at start, before the reactor serves; the
    price is the tables' memory from the start (see docs/metering.md).
    """
    from .vocab import get_encoding

    kinds = set(kinds)
    if "openai" in kinds:
        get_encoding("o200k_base")
        get_encoding("cl100k_base")
    if "anthropic" in kinds:
        tokenizer_for_model("claude-sonnet-4-5").tokenizer.count("warm up")
    _return_freed_memory()


def _return_freed_memory() -> None:
    """
    Building the tables frees tens of MB of temporaries that glibc keeps
    mapped; hand them back to the system once (about 10 MiB of RSS).
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name is None:
        return
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return
    trim(0)
