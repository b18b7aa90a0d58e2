"""
A client's JSON: the depth limit and every parse failure as one client error.
"""

from __future__ import annotations

import json
import unittest

from hypothesis import given
from hypothesis import strategies as st

from dd0c_route.boundedjson import MAX_DEPTH, InvalidJSON, loads_bounded


class LoadsBoundedTests(unittest.TestCase):
    def test_depth_limit(self):
        """MAX_DEPTH levels parse; one more is refused; arrays and objects both count."""
        ok = b"[" * MAX_DEPTH + b"]" * MAX_DEPTH
        self.assertIsInstance(loads_bounded(ok), list)
        with self.assertRaises(InvalidJSON) as ctx:
            loads_bounded(b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1))
        self.assertIn("deeper", str(ctx.exception))
        deep_objects = '{"a":' * (MAX_DEPTH + 1) + "1" + "}" * (MAX_DEPTH + 1)
        with self.assertRaises(InvalidJSON):
            loads_bounded(deep_objects)

    def test_deep_beyond_recursion(self):
        """100,000 levels is an InvalidJSON, never a RecursionError."""
        with self.assertRaises(InvalidJSON):
            loads_bounded(b"[" * 100_000 + b"]" * 100_000)
        with self.assertRaises(InvalidJSON):
            loads_bounded(b'{"a":' * 100_000)

    def test_brackets_in_strings_do_not_count(self):
        """Brackets inside strings are text, not nesting."""
        body = json.dumps({"messages": [{"content": "[" * 5000}]})
        self.assertEqual(loads_bounded(body)["messages"][0]["content"], "[" * 5000)

    def test_parse_errors(self):
        """Invalid JSON, invalid UTF-8 and empty input are InvalidJSON (a ValueError)."""
        for raw in (b"{not json", b"\xff\xfe{", b"", b'{"a": 1', b"NaNx"):
            with self.assertRaises(InvalidJSON, msg=raw):
                loads_bounded(raw)

    @given(st.recursive(st.none() | st.integers() | st.text(), lambda c: st.lists(c) | st.dictionaries(st.text(), c), max_leaves=30))
    def test_same_value_as_json_loads(self, value):
        """Within the limit, the result is exactly json.loads's."""
        raw = json.dumps(value).encode()
        self.assertEqual(loads_bounded(raw), json.loads(raw))


class StdlibFallbackTests(unittest.TestCase):
    """orjson parses first (issue #18); what it refuses and json accepts is still accepted, with json's value."""

    def test_what_orjson_refuses_is_parsed_as_before(self):
        for raw in (b'{"a": NaN, "b": Infinity, "c": -Infinity}', b'{"n": 123456789012345678901234567890}',
                    b'{"s": "\\ud800 lone"}', '{"u": "\u00e9"}'.encode("utf-16"), b'{"e": 1e400}'):
            got, want = loads_bounded(raw), json.loads(raw)
            self.assertEqual(repr(got), repr(want), msg=raw)

    @given(st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(alphabet=st.characters()),
        lambda c: st.lists(c) | st.dictionaries(st.text(), c), max_leaves=30))
    def test_same_value_and_types_as_json_loads(self, value):
        """Floats, integers of any size, any code point (lone surrogates included): exactly json.loads's value."""
        for raw in (json.dumps(value).encode(), json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")):
            self.assertEqual(repr(loads_bounded(raw)), repr(json.loads(raw)))
