# Tests: tests/test_redacting_log.py
"""
A ``Failure`` that carries nothing but redacted text.

Tracebacks are rendered with ``Failure.getTraceback()`` (default detail, no
frame locals) and handed on as :class:`RedactedFailure`, so a JSON sink
cannot serialize locals that ``Deferred.debug``/``captureVars`` captured,
and a text sink prints only what :func:`~dd0c_route.redaction.redact_sensitive`
let through.
"""

from __future__ import annotations

from io import StringIO
from typing import Any

from twisted.python.failure import Failure
from twisted.python.reflect import safe_str

from .redaction import redact_sensitive

__all__ = ["RedactedError", "RedactedFailure"]


class RedactedError(Exception):
    """
    Stands in for an exception whose message may have held a secret.

    ``str()`` gives the redacted message; ``RedactedFailure.type`` still
    names the original class, so ``check``/``trap`` keep working.
    """


class RedactedFailure(Failure):
    """
    A ``Failure`` that carries only redacted text.

    It keeps the original type (for ``check`` and the traceback header), the
    frame positions without locals, the redacted message and the redacted
    default traceback, so text sinks (``eventAsText`` calls
    ``getTraceback()``), legacy sinks and JSON sinks all work unchanged.
    """

    _traceback_text: str

    @classmethod
    def from_failure(cls, failure: Failure) -> RedactedFailure:
        """Render ``failure`` once, then keep only the redacted result."""
        if isinstance(failure, RedactedFailure):
            return failure
        try:
            text = failure.getTraceback()
        except BaseException as error:
            text = "(UNABLE TO OBTAIN TRACEBACK FROM EVENT): " + safe_str(error)
        try:
            message = failure.getErrorMessage()
            frames = [(f[0], f[1], f[2], (), ()) for f in failure.frames]
            parents = list(failure.parents)
        except Exception:
            message, frames, parents = "(unavailable)", [], []
        self = cls.__new__(cls)
        self.__dict__.update(
            count=getattr(failure, "count", 0),
            type=failure.type,
            value=RedactedError(redact_sensitive(message)),
            tb=None,
            captureVars=False,
            pickled=1,
            _parents=parents,
            _frames=frames,
            # Twisted before 25 keeps these as plain attributes (later ones
            # as properties over the underscored names): set both.
            parents=parents,
            frames=frames,
            stack=[],
            _traceback_text=redact_sensitive(text),
        )
        return self

    def printTraceback(
        self,
        file: Any = None,
        elideFrameworkCode: bool = False,
        detail: str = "default",
    ) -> None:
        """Write the redacted traceback; other details are redacted too."""
        if file is None:
            from twisted.python import log

            file = log.logerr
        if detail == "default":
            file.write(self._traceback_text)
            return
        buffer = StringIO()
        super().printTraceback(buffer, elideFrameworkCode, detail)
        file.write(redact_sensitive(buffer.getvalue()))
