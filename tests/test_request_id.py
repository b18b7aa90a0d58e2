"""Our request ids (web/request_id.py): unique, 96 random bits each, drawn from the OS in blocks."""

from __future__ import annotations

import os
import re

import pytest

from dd0c_route.web import request_id
from dd0c_route.web.request_id import new_request_id


def test_ids_are_unique_and_well_formed_across_draws() -> None:
    """Ids from several draws of the block are all distinct, each ``req_`` and 24 hex digits."""
    ids = [new_request_id() for _ in range(3 * request_id._IDS_PER_DRAW + 7)]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"req_[0-9a-f]{24}", i) for i in ids)


def test_one_os_draw_per_block(monkeypatch: pytest.MonkeyPatch) -> None:
    """The OS is asked once per block of ids, not once per id."""
    calls = []
    real = os.urandom
    request_id._ids.clear()
    monkeypatch.setattr(request_id.os, "urandom", lambda n: calls.append(n) or real(n))
    for _ in range(request_id._IDS_PER_DRAW):
        new_request_id()
    assert calls == [12 * request_id._IDS_PER_DRAW]


def test_a_forked_child_draws_its_own() -> None:
    """After a fork the child does not reuse the ids left in its parent's block."""
    new_request_id()
    assert request_id._ids, "ids left in the block"
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its first id and leave at once
        try:
            os.write(write, new_request_id().encode())
        finally:
            os._exit(0)
    os.close(write)
    child = os.read(read, 100).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert re.fullmatch(r"req_[0-9a-f]{24}", child)
    assert child not in request_id._ids
