"""
Tests for dd0c_route.redacting_log (and the redacting_observer, redacting_stdlib,
redacting_hooks and redacted_failure modules it installs): no log path reaches
a sink unredacted.
"""

from __future__ import annotations

import gc
import io
import json
import logging
import secrets
import threading
import types
from collections.abc import Iterator
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.logger import (
    ILogObserver,
    LegacyLogObserverWrapper,
    LogBeginner,
    Logger,
    LoggingFile,
    LogLevel,
    LogPublisher,
    eventAsText,
    globalLogPublisher,
    jsonFileLogObserver,
    textFileLogObserver,
)
from twisted.python import log as legacy_log
from twisted.python.failure import Failure
from zope.interface.verify import verifyObject

from dd0c_route.redacted_failure import RedactedFailure
from dd0c_route.redacting_log import install_redacting_logging
from dd0c_route.redacting_observer import RedactingObserver, redact_event
from dd0c_route.secret import Secret


def fake_key() -> str:
    return "sk-ant-api03-" + secrets.token_urlsafe(70)


def fake_process() -> types.SimpleNamespace:
    """A stand-in for ``sys`` with the hooks the installer replaces."""
    return types.SimpleNamespace(
        stderr=io.StringIO(),
        __stderr__=io.StringIO(),
        excepthook=lambda *a: None,
        unraisablehook=lambda u: None,
    )


def failure_with_key_in_local(key: str, capture_vars: bool = False) -> Failure:
    """A Failure raised while ``key`` sits in a local variable and the message."""

    def call_provider(api_key: str) -> None:
        password = "hunter2-not-key-shaped"  # noqa: F841 - a local to leak
        raise ValueError(f"provider rejected key {api_key}")

    try:
        call_provider(key)
    except ValueError:
        return Failure(captureVars=capture_vars)
    raise AssertionError("unreachable")


@pytest.fixture
def installed() -> Iterator[tuple[LogPublisher, io.StringIO, io.StringIO]]:
    """Redaction on a private publisher, with a text and a JSON sink behind it."""
    publisher = LogPublisher()
    text, js = io.StringIO(), io.StringIO()
    installation = install_redacting_logging(
        publisher,
        stdlib_root=logging.getLogger("dd0c-test-private"),
        process=fake_process(),
        threads=types.SimpleNamespace(excepthook=lambda args: None),
    )
    publisher.addObserver(textFileLogObserver(text))
    publisher.addObserver(jsonFileLogObserver(js))
    yield publisher, text, js
    installation.uninstall()


# --- the observer ------------------------------------------------------------


def test_observer_provides_ILogObserver() -> None:
    """RedactingObserver is a verified ILogObserver."""
    verifyObject(ILogObserver, RedactingObserver([]))


def test_observer_rejects_non_callable_sinks() -> None:
    """A sink that is not an observer is refused at construction, by type name."""
    with pytest.raises(TypeError, match="got a str"):
        RedactingObserver(["not an observer"])  # type: ignore[list-item]


def test_failure_traceback_and_message_are_redacted() -> None:
    """A traceback whose exception message holds a key prints, without the key."""
    key = fake_key()
    out = io.StringIO()
    observer = RedactingObserver([textFileLogObserver(out)])
    Logger(observer=observer).failure("call failed", failure_with_key_in_local(key))
    text = out.getvalue()
    assert key not in text
    assert "Traceback (most recent call last):" in text
    assert "in call_provider" in text
    assert "builtins.ValueError: provider rejected key sk-ant-[REDACTED]" in text


def test_locals_captured_by_debug_failures_are_never_rendered() -> None:
    """captureVars failures (Deferred.debug) reach no sink with their locals."""
    key = fake_key()
    failure = failure_with_key_in_local(key, capture_vars=True)
    raw = io.StringIO()
    jsonFileLogObserver(raw)({"log_failure": failure, "log_format": "x", "log_time": 0.0})
    assert "hunter2-not-key-shaped" in raw.getvalue(), "control: raw JSON leaks locals"

    text, js = io.StringIO(), io.StringIO()
    observer = RedactingObserver([textFileLogObserver(text), jsonFileLogObserver(js)])
    Logger(observer=observer).failure("boom", failure)
    for output in (text.getvalue(), js.getvalue()):
        assert key not in output
        assert "hunter2-not-key-shaped" not in output
    substitute = RedactedFailure.from_failure(failure)
    for detail in ("default", "brief", "verbose"):
        rendered = substitute.getTraceback(detail=detail)
        assert key not in rendered and "hunter2" not in rendered


def test_redacted_failure_keeps_type_for_check_and_trap() -> None:
    """The substitute still answers check() by the original exception type."""
    substitute = RedactedFailure.from_failure(failure_with_key_in_local(fake_key()))
    assert substitute.check(ValueError) is ValueError
    assert substitute.check(KeyError) is None
    assert "sk-ant-[REDACTED]" in substitute.getErrorMessage()


def test_original_event_is_not_modified() -> None:
    """Scrubbing builds a copy: other holders of the event keep it as it was."""
    key = fake_key()
    event: dict[str, Any] = {
        "log_format": "key {k}",
        "k": key,
        "log_level": LogLevel.info,
        "log_failure": failure_with_key_in_local(key),
        "nested": {"authorization": "Bearer x"},
    }
    before = dict(event)
    scrubbed = redact_event(event)
    assert event == before
    assert event["nested"] == {"authorization": "Bearer x"}
    assert key not in eventAsText(scrubbed)
    assert scrubbed["log_level"] is LogLevel.info


def test_log_source_repr_with_key_is_redacted(installed: Any) -> None:
    """A source object whose repr carries the URI's key is logged without it."""
    publisher, text, js = installed
    key = fake_key()

    class FakeRequest:
        def __repr__(self) -> str:
            return f"<Request at 0x1 method=POST uri=/v1/messages?key={key}>"

    Logger(observer=publisher, source=FakeRequest()).info("handled {log_source!r}")
    assert key not in text.getvalue() and key not in js.getvalue()
    assert "uri=/v1/messages?key=[REDACTED]>" in text.getvalue()


def test_unformattable_event_does_not_leak_fields(installed: Any) -> None:
    """A broken format string falls back to a repr of the event, redacted."""
    publisher, text, js = installed
    key = fake_key()
    Logger(observer=publisher).info("oops {broken", stray=key, config={"api_key": "plain-value"})
    output = text.getvalue()
    assert "Unable to format event" in output
    assert key not in output and "plain-value" not in output
    assert key not in js.getvalue()


def test_sensitive_field_is_masked_even_when_not_key_shaped(installed: Any) -> None:
    """A field named like a credential is masked in the text, whatever it holds."""
    publisher, text, _ = installed
    Logger(observer=publisher).info("using {api_key} and {cfg}", api_key="plainsecretvalue", cfg=Secret("hidden-value"))
    output = text.getvalue()
    assert "plainsecretvalue" not in output and "hidden-value" not in output
    assert "using [REDACTED] and Secret('***')" in output


def test_braces_in_redacted_text_survive_reformatting(installed: Any) -> None:
    """The rendered text is escaped, so sinks that format it again print it as is."""
    publisher, text, _ = installed
    Logger(observer=publisher).info("json {body}", body='{"a": "{x}"}')
    assert 'json {"a": "{x}"}' in text.getvalue()


def test_a_raising_sink_does_not_stop_the_others() -> None:
    """One broken sink is reported to the others, and they still get the event."""
    key = fake_key()
    seen: list[dict[str, Any]] = []

    def broken(event: dict[str, Any]) -> None:
        raise RuntimeError("disk full while writing " + key)

    observer = RedactingObserver([broken, seen.append])
    Logger(observer=observer).info("hello {k}", k=key)
    assert len(seen) == 2
    rendered = "".join(eventAsText(event) for event in seen)
    assert "hello sk-ant-[REDACTED]" in rendered
    assert "RuntimeError" in rendered and key not in rendered


def test_scrubbing_never_raises() -> None:
    """Objects whose repr or traceback raise still produce a redacted event."""

    class Hostile:
        def __repr__(self) -> str:
            raise RuntimeError("no")

        def __format__(self, spec: str) -> str:
            raise RuntimeError("no")

    class BadFailure(Failure):
        def getTraceback(self, *args: Any, **kwargs: Any) -> str:
            raise RuntimeError("no traceback")

    bad = BadFailure(ValueError("x"))
    seen: list[dict[str, Any]] = []
    RedactingObserver([seen.append])(
        {"log_format": "{h}", "h": Hostile(), "log_failure": bad, "log_level": LogLevel.error}
    )
    assert len(seen) == 1
    assert "UNABLE TO OBTAIN TRACEBACK" in eventAsText(seen[0])


def test_legacy_observer_sinks_get_redacted_failures(installed: Any) -> None:
    """A legacy (syslog-style) observer prints the redacted traceback."""
    publisher = installed[0]
    key = fake_key()
    lines: list[str] = []
    publisher.addObserver(LegacyLogObserverWrapper(lambda e: lines.append(legacy_log.textFromEventDict(e) or "")))
    Logger(observer=publisher).failure("failed", failure_with_key_in_local(key))
    assert lines and "provider rejected key sk-ant-[REDACTED]" in lines[0]
    assert key not in "".join(lines)


# --- stdlib logging, stdio, legacy publishers ---------------------------------


def test_stdlib_records_are_bridged_and_scrubbed(installed: Any) -> None:
    """stdlib records reach twisted sinks redacted, and pre-existing handlers too."""
    text = installed[1]
    key = fake_key()
    direct = io.StringIO()
    handler = logging.StreamHandler(direct)
    child = logging.getLogger("dd0c-test-private.child")
    child.addHandler(handler)
    try:
        try:
            raise ValueError("bad " + key)
        except ValueError:
            child.error("request with %s failed", key, exc_info=True)
    finally:
        child.removeHandler(handler)
    for output in (text.getvalue(), direct.getvalue()):
        assert key not in output
        assert "request with sk-ant-[REDACTED] failed" in output
        assert "ValueError: bad sk-ant-[REDACTED]" in output
    assert "[dd0c-test-private.child#error]" in text.getvalue()


def test_stdio_logging_file_is_redacted(installed: Any) -> None:
    """print() to a redirected stdout (LoggingFile) is logged redacted."""
    publisher, text, _ = installed
    key = fake_key()
    stdout = LoggingFile(Logger(namespace="stdout", observer=publisher))
    print("debug: key is", key, file=stdout)
    assert "debug: key is sk-ant-[REDACTED]" in text.getvalue()
    assert key not in text.getvalue()


def test_legacy_publisher_msg_and_err(installed: Any) -> None:
    """twisted.python.log msg/err routed to the publisher are redacted."""
    publisher, text, _ = installed
    key = fake_key()
    legacy = legacy_log.LogPublisher(publisher, publisher)
    legacy.msg("legacy says", key)
    legacy.msg(failure=failure_with_key_in_local(key), isError=1, why="legacy err")
    output = text.getvalue()
    assert "legacy says sk-ant-[REDACTED]" in output
    assert "legacy err" in output and "provider rejected key sk-ant-[REDACTED]" in output
    assert key not in output


def test_startup_like_twistd_with_a_log_beginner() -> None:
    """Installed before logging begins (as in makeService), every twistd path is redacted.

    Events buffered before ``beginLoggingTo``, critical events printed to the
    error stream before it, observers it adds, and stdout it redirects.
    """
    key = fake_key()
    publisher = LogPublisher()
    error_stream = io.StringIO()
    stdio = types.SimpleNamespace(stdout=io.StringIO(), stderr=io.StringIO())
    warnings_module = types.SimpleNamespace(showwarning=lambda *a, **k: None)
    beginner = LogBeginner(publisher, error_stream, stdio, warnings_module)
    installation = install_redacting_logging(
        publisher,
        stdlib_root=logging.getLogger("dd0c-test-beginner"),
        process=fake_process(),
        threads=types.SimpleNamespace(excepthook=lambda args: None),
    )
    try:
        log = Logger(observer=publisher)
        log.critical("early critical {k}", k=key)
        log.info("buffered {k}", k=key)
        out = io.StringIO()
        beginner.beginLoggingTo([textFileLogObserver(out)])
        print("printed", key, file=stdio.stdout)
        stdio.stderr.write("stderr " + key + "\n")
        output = out.getvalue()
        assert "early critical sk-ant-[REDACTED]" in error_stream.getvalue()
        assert "buffered sk-ant-[REDACTED]" in output
        assert "printed sk-ant-[REDACTED]" in output
        assert "stderr sk-ant-[REDACTED]" in output
        assert key not in output + error_stream.getvalue()
    finally:
        installation.uninstall()


# --- installation ------------------------------------------------------------


def test_install_is_idempotent_and_uninstall_restores() -> None:
    """A second install returns the first; uninstall puts observers and hooks back."""
    publisher = LogPublisher()
    earlier: list[Any] = []
    publisher.addObserver(earlier.append)
    process = fake_process()
    original_hook = process.excepthook
    root_logger = logging.getLogger("dd0c-test-idempotent")
    previous_factory = logging.getLogRecordFactory()
    threads = types.SimpleNamespace(excepthook=lambda args: None)
    first = install_redacting_logging(publisher, stdlib_root=root_logger, process=process, threads=threads)
    second = install_redacting_logging(publisher, stdlib_root=root_logger, process=process, threads=threads)
    assert second is first
    later: list[Any] = []
    publisher.addObserver(later.append)
    assert publisher._observers == [first.observer]
    first.uninstall()
    first.uninstall()
    assert publisher._observers == [earlier.append, later.append]
    assert "addObserver" not in vars(publisher)
    assert process.excepthook is original_hook
    assert logging.getLogRecordFactory() is previous_factory
    assert root_logger.handlers == []
    with install_redacting_logging(publisher, stdlib_root=root_logger, process=process, threads=threads) as third:
        assert third is not first


def test_removed_observer_stops_receiving() -> None:
    """removeObserver on the global-style publisher reaches the sinks behind it."""
    publisher = LogPublisher()
    seen: list[Any] = []
    with install_redacting_logging(
        publisher,
        stdlib_root=logging.getLogger("dd0c-test-remove"),
        process=fake_process(),
        threads=types.SimpleNamespace(excepthook=lambda args: None),
    ):
        publisher.addObserver(seen.append)
        publisher.removeObserver(seen.append)
        Logger(observer=publisher).info("x")
    assert seen == []


# --- panic handlers ----------------------------------------------------------


def test_excepthook_prints_only_redacted_traceback() -> None:
    """An uncaught exception prints a redacted traceback to stderr."""
    key = fake_key()
    process = fake_process()
    with install_redacting_logging(
        LogPublisher(),
        stdlib_root=logging.getLogger("dd0c-test-panic"),
        process=process,
        threads=types.SimpleNamespace(excepthook=lambda args: None),
    ):
        failure = failure_with_key_in_local(key)
        process.excepthook(failure.type, failure.value, failure.tb)
    output = process.stderr.getvalue()
    assert "Traceback (most recent call last)" in output
    assert "ValueError: provider rejected key sk-ant-[REDACTED]" in output
    assert key not in output and "hunter2" not in output


def test_thread_excepthook_prints_only_redacted_traceback() -> None:
    """An exception that ends a real thread is reported redacted."""
    key = fake_key()
    process = fake_process()

    def crash() -> None:
        api_key = key
        raise RuntimeError("thread crashed holding " + api_key)

    with install_redacting_logging(
        LogPublisher(),
        stdlib_root=logging.getLogger("dd0c-test-thread"),
        process=process,
        threads=threading,
    ):
        thread = threading.Thread(target=crash, name="worker-1")
        thread.start()
        thread.join()
    output = process.stderr.getvalue()
    assert "Exception in thread worker-1:" in output
    assert "RuntimeError: thread crashed holding sk-ant-[REDACTED]" in output
    assert key not in output


def test_unraisable_hook_redacts_object_repr() -> None:
    """An exception in __del__ is reported without the key in the object's repr."""
    key = fake_key()
    process = fake_process()

    class Holder:
        def __repr__(self) -> str:
            return f"<Holder {key}>"

    with install_redacting_logging(
        LogPublisher(),
        stdlib_root=logging.getLogger("dd0c-test-unraisable"),
        process=process,
        threads=types.SimpleNamespace(excepthook=lambda args: None),
    ):
        error = ValueError("in __del__ " + key)
        process.unraisablehook(
            types.SimpleNamespace(
                exc_type=ValueError,
                exc_value=error,
                exc_traceback=None,
                err_msg=None,
                object=Holder(),
            )
        )
    output = process.stderr.getvalue()
    assert "Exception ignored in: <Holder sk-ant-[REDACTED]>" in output
    assert key not in output


# --- the real global publisher -----------------------------------------------


def test_global_paths_unhandled_deferred_log_err_and_processing_failed(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """On the real globals: Deferred GC, log.err, web processingFailed, Logger().

    Also the beginner's pre-logging critical-to-stderr observer, which is
    moved behind the redactor at installation.
    """
    from twisted.web.resource import Resource
    from twisted.web.server import Request, Site
    from twisted.web.test.requesthelper import DummyChannel

    key = fake_key()
    out = io.StringIO()
    sink = jsonFileLogObserver(out)
    process = fake_process()
    with install_redacting_logging(process=process, threads=types.SimpleNamespace(excepthook=lambda args: None)):
        globalLogPublisher.addObserver(sink)
        try:
            d: Deferred[None] = Deferred()
            d.errback(ValueError("deferred lost " + key))
            del d
            gc.collect()

            legacy_log.err(failure_with_key_in_local(key), "legacy why " + key)

            request = Request(DummyChannel())
            request.site = Site(Resource())
            request.uri = ("/v1/chat?key=" + key).encode()
            request.processingFailed(failure_with_key_in_local(key))

            logging.getLogger("openai").error("stdlib %s", key)
        finally:
            globalLogPublisher.removeObserver(sink)
    records = [json.loads(line.lstrip("\x1e")) for line in out.getvalue().splitlines() if line]
    text = out.getvalue()
    assert key not in text
    assert any("Unhandled error in Deferred" in r.get("log_format", "") for r in records)
    assert "deferred lost sk-ant-[REDACTED]" in text
    assert "legacy why sk-ant-[REDACTED]" in text
    assert "stdlib sk-ant-[REDACTED]" in text
    assert text.count("provider rejected key sk-ant-[REDACTED]") >= 2
    captured = capfd.readouterr()
    assert key not in captured.out + captured.err
    assert globalLogPublisher.addObserver.__func__ is LogPublisher.addObserver  # type: ignore[attr-defined]
