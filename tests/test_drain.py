"""The drain's timing on a Clock (dd0c_route/drain.py)."""

from __future__ import annotations

from twisted.internet.task import Clock

from dd0c_route.admin.health import Readiness
from dd0c_route.drain import DrainService


def test_waits_for_in_flight_then_stops():
    clock, readiness, left = Clock(), Readiness(), [2]
    service = DrainService(clock, lambda: left[0], 30.0, readiness)
    service.startService()
    done = service.stopService()
    assert readiness.draining and not readiness.report()[0]
    clock.advance(5)
    assert not done.called
    left[0] = 0
    clock.advance(0.05)
    assert done.called


def test_gives_up_after_drain_seconds():
    clock = Clock()
    service = DrainService(clock, lambda: 1, 3.0)
    service.startService()
    done = service.stopService()
    clock.pump([0.05] * 59)
    assert not done.called
    clock.pump([0.05] * 2)
    assert done.called


def test_nothing_in_flight_stops_at_once():
    service = DrainService(Clock(), lambda: 0, 30.0)
    service.startService()
    assert service.stopService().called
