# Tests: tests/test_admin_live.py, tests/test_request_id.py
"""
Request ids: ours, and the client's ``X-Request-ID``.

Every request gets its own id (``req_`` + 24 hex digits): it is the
ledger's idempotency key, so it must be unique, and a client's id cannot
be (retries resend it).  A client's ``X-Request-ID`` is adopted beside it:
kept on the record as ``client_request_id``, put in the access event and
the trace, and echoed in the answer's ``X-Request-ID`` (without one, ``X-Request-ID``
is the provider's, as the SDKs expect; ours is always in
``x-dd0c-request-id``).  It is bounded (128 characters) and sanitized (printable ASCII
without spaces or quotes, anything else dropped), since it lands in logs,
and redacted like any client text (a pasted key never reaches a log).
"""

from __future__ import annotations

import os
import re
from typing import Optional

from ..redaction import redact_sensitive

__all__ = ["MAX_CLIENT_ID", "client_request_id", "new_request_id"]

MAX_CLIENT_ID = 128
_UNSAFE = re.compile(rb"[^A-Za-z0-9._:/+=@-]")


#: Ids drawn from the OS per ``getrandom`` call: one system call per 256
#: requests instead of one per request (issue #18), the same 96 random bits
#: from the same source per id.
_IDS_PER_DRAW = 256
_ids: list[str] = []
# A forked child must not hand out the ids its parent will.
os.register_at_fork(after_in_child=_ids.clear)


def new_request_id() -> str:
    if not _ids:
        digits = os.urandom(12 * _IDS_PER_DRAW).hex()
        _ids.extend(["req_" + digits[i:i + 24] for i in range(0, len(digits), 24)])
    return _ids.pop()


def client_request_id(values: Optional[list[bytes]]) -> Optional[str]:
    """The first ``X-Request-ID`` value, bounded and sanitized; None if empty."""
    if not values:
        return None
    cleaned = _UNSAFE.sub(b"", values[0][: MAX_CLIENT_ID * 4])[:MAX_CLIENT_ID]
    if not cleaned:
        return None
    return redact_sensitive(cleaned.decode("ascii"))
