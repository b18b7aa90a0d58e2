# Tests: tests/test_redaction.py
"""
A string that will not show itself.

Provider keys live in config objects that get formatted into logs and
tracebacks (attrs reprs, ``formatUnformattableEvent``, frame locals).  Holding
them in :class:`Secret` means formatting an object can never print the key:
only :meth:`Secret.reveal` gives it back, at the one place it is needed (the
upstream request header).
"""

from __future__ import annotations

import hmac

__all__ = ["Secret"]


class Secret:
    """
    An opaque holder for a credential; ``repr``/``str`` are masked.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself: call only where it is sent, never to format."""
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and hmac.compare_digest(
            other._value.encode("utf-8"), self._value.encode("utf-8")
        )

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __reduce__(self) -> str | tuple[object, ...]:
        # Refuse to pickle/serialize the value by accident.
        raise TypeError("Secret values cannot be pickled")
