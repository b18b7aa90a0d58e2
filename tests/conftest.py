"""
Shared pytest configuration.

Hypothesis: the "ci" profile (loaded when the CI environment variable is set)
derandomizes example generation, so a CI failure reproduces on every rerun
and on a laptop with CI=1, and drops the per-example deadline, since shared
CI machines have noisy timings that are not what these tests measure.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, deadline=None)
if os.environ.get("CI"):
    settings.load_profile("ci")
