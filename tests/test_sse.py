"""
The SSE decoder gives the same events however the bytes are split.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from dd0c_route.relay.sse import SSEDecoder, encode_event

line_ends = st.sampled_from([b"\n", b"\r\n", b"\r"])
field_text = st.text(
    alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=30
)


@st.composite
def streams(draw):
    """A stream of events with mixed line endings, comments and names."""
    events = draw(st.lists(st.tuples(st.one_of(st.none(), field_text.filter(bool)), field_text), min_size=1, max_size=8))
    out = b""
    for name, data in events:
        end = draw(line_ends)
        if draw(st.booleans()):
            out += b": keep-alive" + end
        if name is not None:
            out += b"event: " + name.encode() + end
        # The blank line repeats the line end: a CR then an LF would be one
        # CRLF, not two line ends.
        out += b"data: " + data.encode() + end + end
    return events, out


def decode_all(parts):
    decoder = SSEDecoder()
    events = []
    for part in parts:
        events.extend(decoder.feed(part))
    events.extend(decoder.flush())
    return [(e.event, e.data) for e in events]


@given(streams(), st.lists(st.integers(min_value=0, max_value=10_000), max_size=12))
def test_any_split_gives_same_events(stream, cuts):
    """Every way of splitting the bytes yields the same events, in order."""
    expected_events, data = stream
    points = sorted({c % (len(data) + 1) for c in cuts})
    parts = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=False)]
    assert decode_all(parts) == decode_all([data])
    assert decode_all([data]) == [(n, d) for n, d in expected_events]


@given(streams())
def test_byte_by_byte(stream):
    """Feeding one byte at a time yields the same events."""
    expected_events, data = stream
    assert decode_all([data[i : i + 1] for i in range(len(data))]) == [(n, d) for n, d in expected_events]


def test_raw_bytes_preserved():
    """The raw bytes of each event (terminator included) are kept for relaying."""
    decoder = SSEDecoder()
    events = list(decoder.feed(b'data: {"a":1}\r\n\r\ndata: [DONE]\n\n'))
    assert [e.raw for e in events] == [b'data: {"a":1}\r\n\r\n', b"data: [DONE]\n\n"]


def test_multiline_data_joined():
    """Several data lines in one event are joined with newlines."""
    decoder = SSEDecoder()
    (event,) = list(decoder.feed(b"event: x\ndata: a\ndata: b\n\n"))
    assert (event.event, event.data) == ("x", "a\nb")


def test_encode_event_round_trip():
    """encode_event produces what the decoder reads back."""
    decoder = SSEDecoder()
    (event,) = list(decoder.feed(encode_event('{"k": "v"}', event="message_start")))
    assert (event.event, event.data) == ("message_start", '{"k": "v"}')


def test_oversized_event_refused():
    """An event without end beyond the limit raises instead of growing memory."""
    decoder = SSEDecoder(max_event_bytes=100)
    try:
        list(decoder.feed(b"data: " + b"x" * 200))
    except ValueError:
        return
    raise AssertionError("no error for an oversized event")
