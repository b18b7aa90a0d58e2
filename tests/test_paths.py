"""
Request paths: what :func:`normalize_path` relays, refuses, and the
passthrough allowlist's segment-boundary matching.
"""

from __future__ import annotations

import unittest
from urllib.parse import unquote_to_bytes

from hypothesis import given
from hypothesis import strategies as st

from dd0c_route.config import ServerConfig
from dd0c_route.web.paths import InvalidPath, Passthrough, normalize_path


def _resolve_dots(path: bytes) -> bytes:
    """RFC 3986 remove_dot_segments, as a normalising server would apply it."""
    out: list[bytes] = []
    for segment in path.split(b"/"):
        if segment == b"..":
            if len(out) > 1:
                out.pop()
        elif segment != b".":
            out.append(segment)
    return b"/".join(out)


class NormalizePathTests(unittest.TestCase):
    def test_plain_paths_unchanged(self):
        """Ordinary API paths come back byte for byte."""
        for path in (b"/v1/chat/completions", b"/v1/files/file-abc123/content", b"/v1/models", b"/"):
            self.assertEqual(normalize_path(path), path)

    def test_unreserved_escapes_decoded(self):
        """%XX of an unreserved character is decoded; other escapes kept (upper-cased hex)."""
        self.assertEqual(normalize_path(b"/v1/%65mbeddings"), b"/v1/embeddings")
        self.assertEqual(normalize_path(b"/v1/files/a%7Eb%2d"), b"/v1/files/a~b-")
        self.assertEqual(normalize_path(b"/v1/files/a%3ab%20c"), b"/v1/files/a%3Ab%20c")

    def test_dot_segments_refused(self):
        """'.' and '..' segments, raw or encoded in any case, are refused."""
        for path in (
            b"/v1/../admin", b"/v1/%2e%2e/admin", b"/v1/%2E%2E/admin", b"/v1/.%2e/admin",
            b"/v1/chat/completions/../../../admin", b"/v1/./models", b"/v1/..", b"/v1/%2e",
        ):
            with self.assertRaises(InvalidPath, msg=path):
                normalize_path(path)

    def test_dots_inside_segments_allowed(self):
        """A dot that is part of a name (file.jsonl, ...x) is not a dot segment."""
        self.assertEqual(normalize_path(b"/v1/files/data.jsonl"), b"/v1/files/data.jsonl")
        self.assertEqual(normalize_path(b"/v1/files/..."), b"/v1/files/...")

    def test_encoded_separators_and_controls_refused(self):
        """%2F, %5C, raw backslash, NUL and controls (raw or encoded), non-ASCII, bad escapes."""
        for path in (
            b"/v1/a%2F..%2Fadmin", b"/v1/a%2fb", b"/v1/a%5Cb", b"/v1/a\\b", b"/v1/a%00b",
            b"/v1/a\x00b", b"/v1/a%0D%0Ab", b"/v1/a\x7fb", b"/v1/a%7Fb", b"/v1/\xc3\xa9",
            b"/v1/a%zz", b"/v1/a%2", b"/v1/a%",
        ):
            with self.assertRaises(InvalidPath, msg=path):
                normalize_path(path)

    def test_message_never_echoes_the_path(self):
        """The refusal says why, never what: a path may carry a key."""
        secret = b"/v1/sk-" + b"A" * 40 + b"/../x"
        with self.assertRaises(InvalidPath) as ctx:
            normalize_path(secret)
        self.assertNotIn("AAAA", str(ctx.exception))

    @given(st.binary(max_size=60))
    def test_accepted_paths_mean_what_they_say(self, tail):
        """
        For any bytes: an accepted path, decoded once by a normaliser and
        dot-resolved, is still the same path (so a /v1/ path stays under
        /v1/), and normalizing again changes nothing.
        """
        path = b"/v1/" + tail
        try:
            clean = normalize_path(path)
        except InvalidPath:
            return
        decoded = unquote_to_bytes(clean)
        self.assertEqual(_resolve_dots(decoded), decoded)
        self.assertNotIn(b"\\", decoded)
        self.assertTrue(decoded.startswith(b"/v1/"))
        self.assertEqual(normalize_path(clean), clean)

    @given(st.lists(st.sampled_from(["v1", "..", ".", "%2e%2e", "%2E.", "a", "%2f", "%5c", ""]), max_size=8))
    def test_traversal_combinations(self, segments):
        """Any path built from traversal pieces is refused or resolves to itself."""
        path = ("/" + "/".join(segments)).encode()
        try:
            clean = normalize_path(path)
        except InvalidPath:
            return
        self.assertEqual(_resolve_dots(unquote_to_bytes(clean)), unquote_to_bytes(clean))


class PassthroughTests(unittest.TestCase):
    def test_segment_boundary(self):
        """A prefix allows itself and what is under it, not a longer name."""
        allow = Passthrough(["/v1/files", "/v1/audio/"])
        self.assertTrue(allow.allows(b"/v1/files"))
        self.assertTrue(allow.allows(b"/v1/files/file-1/content"))
        self.assertTrue(allow.allows(b"/v1/audio/speech"))
        self.assertFalse(allow.allows(b"/v1/filesystem"))
        self.assertFalse(allow.allows(b"/v1/admin"))
        self.assertFalse(allow.allows(b"/v1"))

    def test_default_list(self):
        """The default allowlist relays the documented endpoints, not an unknown one."""
        allow = Passthrough(ServerConfig().passthrough)
        for path in (b"/v1/embeddings", b"/v1/responses/resp_1/input_items", b"/v1/vector_stores/vs_1/files"):
            self.assertTrue(allow.allows(path), path)
        for path in (b"/v1/admin", b"/v1/organization/users", b"/v1/embeddingsx"):
            self.assertFalse(allow.allows(path), path)
