"""
State that can leave the process: limits, revocations, breaker (issue #14).

Without ``[state]`` everything stays in process (:mod:`dd0c_route.routing`).
With it, every instance and worker shares spend, rate windows, key
revocations and breaker transitions through Redis, reconciled off the
request path; see ``docs/shared-state.md``.
"""
