"""Tests for dd0c_route.redaction and dd0c_route.secret: secrets never reach text."""

from __future__ import annotations

import secrets
import string
import time
from typing import Any

import attrs
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from dd0c_route.ledger.keys import generate_key
from dd0c_route.redaction import (
    REDACTED,
    is_sensitive_field,
    redact_sensitive,
    redact_structure,
)
from dd0c_route.secret import Secret

KEY_CHARS = string.ascii_letters + string.digits + "_-"


def fake_openai_key() -> str:
    return "sk-proj-" + secrets.token_urlsafe(48)


def fake_legacy_openai_key() -> str:
    return "sk-" + secrets.token_urlsafe(36)


def fake_anthropic_key() -> str:
    return "sk-ant-api03-" + secrets.token_urlsafe(70)


def fake_anthropic_admin_key() -> str:
    return "sk-ant-admin01-" + secrets.token_urlsafe(70)


# --- shapes ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "hint"),
    [
        (fake_openai_key, "sk-proj-"),
        (fake_legacy_openai_key, "sk-"),
        (fake_anthropic_key, "sk-ant-"),
        (fake_anthropic_admin_key, "sk-ant-"),
        (generate_key, "dd0c-"),
    ],
)
def test_key_shapes_keep_only_the_fixed_prefix(make: Any, hint: str) -> None:
    """Each key shape becomes its public prefix plus the marker, nothing else."""
    key = make()
    out = redact_sensitive(f"using {key} now")
    assert out == f"using {hint}{REDACTED} now"
    assert key[-4:] not in out


def test_bearer_token_anywhere() -> None:
    """A bearer token is replaced but the scheme word is kept."""
    token = secrets.token_urlsafe(24)
    assert redact_sensitive(f"sent bearer {token}, ok") == f"sent bearer {REDACTED}, ok"


@pytest.mark.parametrize("name", ["Authorization", "authorization", "Proxy-Authorization", "X-Api-Key", "api-key"])
def test_header_line_value(name: str) -> None:
    """The value of a credential header line is replaced up to the end of line."""
    token = secrets.token_urlsafe(16)
    out = redact_sensitive(f"{name}: Basic {token} extra\nHost: example.com")
    assert out == f"{name}: {REDACTED}\nHost: example.com"


def test_header_dict_and_list_reprs() -> None:
    """Reprs of header mappings and raw header lists lose the values only."""
    token = secrets.token_urlsafe(5)
    text = repr({b"Authorization": [b"Bearer " + token.encode()], b"Host": [b"h"]})
    assert redact_sensitive(text) == ("{b'Authorization': [b'" + REDACTED + "'], b'Host': [b'h']}")
    text = repr([("x-api-key", token), ("accept", "*/*")])
    assert redact_sensitive(text) == f"[('x-api-key', '{REDACTED}'), ('accept', '*/*')]"


@pytest.mark.parametrize("name", ["key", "api_key", "apikey", "access_token", "token"])
def test_query_parameters(name: str) -> None:
    """Credential query parameters keep their name; other parameters stay."""
    value = secrets.token_urlsafe(12)
    out = redact_sensitive(f"GET /v1/models?a=1&{name}={value}&b=2 HTTP/1.1")
    assert out == f"GET /v1/models?a=1&{name}={REDACTED}&b=2 HTTP/1.1"


def test_quoted_credential_fields() -> None:
    """JSON and repr fields named like credentials lose their string value."""
    value = secrets.token_urlsafe(12)
    assert redact_sensitive(f'{{"api_key": "{value}", "model": "m"}}') == (f'{{"api_key": "{REDACTED}", "model": "m"}}')
    assert redact_sensitive(f"Client(api_key='{value}')") == f"Client(api_key='{REDACTED}')"


@pytest.mark.parametrize(
    "text",
    [
        "task-list-with-a-rather-long-name-indeed and disk-space-remaining-on-device",
        "ask-the-model-to-summarize-the-following-text",
        "sk-short",
        "max_tokens=100 completion_tokens=5 tokens_in=3",
        "monkey=banana donkey=1",
        "The Bearer of bad news",
        "dd0c-route started, version 1.2.3",
        "Authorization was refused",
        "",
    ],
)
def test_ordinary_text_is_untouched(text: str) -> None:
    """Look-alikes (task-, disk-, max_tokens=, our own name) are not secrets."""
    assert redact_sensitive(text) is text


def test_redaction_is_idempotent() -> None:
    """Redacted text contains nothing that would be redacted again."""
    once = redact_sensitive(f"Authorization: Bearer {fake_openai_key()} {fake_anthropic_key()} ?key=abc")
    assert redact_sensitive(once) == once


@pytest.mark.parametrize(
    "adversary",
    [
        "sk-" * 300_000,
        "Bearer " * 150_000,
        "Bearer a" * 125_000,
        "a" * 1_000_000,
        "a" * 999_990 + " sk-",
        "authorization" * 77_000,
        "authorization:" * 70_000,
        "key=" * 250_000,
        "'token':" * 125_000,
        "dd0c-" * 200_000,
        "-" * 1_000_000,
    ],
    ids=lambda s: repr(s[:10]),
)
def test_adversarial_megabyte_is_linear(adversary: str) -> None:
    """A megabyte built to make a regex backtrack redacts in well under a second."""
    start = time.perf_counter()
    redact_sensitive(adversary)
    assert time.perf_counter() - start < 2.0


# --- properties --------------------------------------------------------------

# Text that cannot form a secret: no k/K (sk-, key, token), b/B (bearer),
# z/Z (authorization), 0 (dd0c-), '=' or ':' (parameters, fields, headers).
SAFE_ALPHABET = "".join(c for c in string.printable if c not in "kKbBzZ0=:" and c not in "\x0b\x0c") + "éß→"
safe_text = st.text(alphabet=SAFE_ALPHABET, max_size=200)
separators = st.sampled_from([" ", "\n", "\t", "'", '"', "(", "[", "{", ",", ";", "<", "/"])
key_body = st.text(alphabet=KEY_CHARS, min_size=20, max_size=120)
token_body = st.text(alphabet=KEY_CHARS + ".~+/", min_size=8, max_size=80)
param_body = st.text(alphabet=KEY_CHARS + ".~", min_size=8, max_size=80)
# A body drawn from these would be "found" in the kept names, not leaked.
KEPT_TEXT = "Proxy-Authorization x-api-key API-KEY access_token apikey Bearer " + REDACTED


@st.composite
def embedded_secret(draw: st.DrawFn) -> tuple[str, str]:
    """A secret of any shape, with the part that must disappear."""
    kind = draw(st.sampled_from(["sk", "proj", "ant", "admin", "proxy", "bearer", "header", "param"]))
    if kind in ("sk", "proj", "ant", "admin"):
        body = draw(key_body)
        prefix = {
            "sk": "sk-",
            "proj": "sk-proj-",
            "ant": "sk-ant-api03-",
            "admin": "sk-ant-admin01-",
        }
        return prefix[kind] + body, body
    if kind == "proxy":
        body = draw(st.text(alphabet=KEY_CHARS, min_size=43, max_size=43))
        return "dd0c-" + body, body
    if kind == "bearer":
        body = draw(token_body)
        assume(body not in KEPT_TEXT)
        return draw(st.sampled_from(["Bearer ", "bearer  ", "BEARER\t"])) + body, body
    if kind == "header":
        body = draw(token_body)
        assume(body not in KEPT_TEXT)
        name = draw(st.sampled_from(["Authorization", "x-api-key", "Proxy-Authorization", "API-KEY"]))
        return f"{name}: {body}", body
    body = draw(param_body)
    assume(body not in KEPT_TEXT)
    name = draw(st.sampled_from(["key", "api_key", "apikey", "access_token", "token"]))
    return f"?{name}={body}", body


@settings(max_examples=300, deadline=None)
@given(safe_text, separators, embedded_secret(), separators, safe_text)
def test_embedded_secrets_are_always_removed(
    before: str, left: str, secret: tuple[str, str], right: str, after: str
) -> None:
    """Any secret shape, anywhere in surrounding text, leaves no trace of its body."""
    text, body = secret
    assume(body not in before + after)
    out = redact_sensitive(before + left + text + right + after)
    assert body not in out
    assert REDACTED in out


@settings(max_examples=300, deadline=None)
@given(safe_text)
def test_text_without_secrets_is_returned_unchanged(text: str) -> None:
    """Text that holds no secret comes back as the very same object."""
    assert redact_sensitive(text) is text


@settings(max_examples=200, deadline=None)
@given(st.lists(embedded_secret(), min_size=2, max_size=5), safe_text)
def test_several_secrets_in_one_text(pieces: list[tuple[str, str]], glue: str) -> None:
    """Every one of several secrets in one text is removed."""
    glue = glue.replace("\n", " ") or " "
    text = "\n".join(glue + " " + secret + " " + glue for secret, _ in pieces)
    out = redact_sensitive(text)
    for _, body in pieces:
        assume(body not in glue)
        assert body not in out


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_redaction_never_raises_and_is_idempotent(text: str) -> None:
    """Arbitrary Unicode text redacts without error, to a fixed point."""
    once = redact_sensitive(text)
    assert redact_sensitive(once) == once


# --- structures --------------------------------------------------------------


def test_sensitive_field_names() -> None:
    """Header and config names of credentials are recognised in any spelling."""
    for name in [
        "Authorization",
        b"X-Api-Key",
        "api-key",
        "OPENAI_API_KEY",
        "client_secret",
        "access_token",
        "password",
        "proxy_key",
        "anthropic_api_key",
    ]:
        assert is_sensitive_field(name), name
    for name in ["model", "max_tokens", "key_id", "prompt_tokens", 3, None]:
        assert not is_sensitive_field(name), name


def test_redact_structure_walks_containers() -> None:
    """Nested values are walked; values under sensitive names go wholesale."""
    key = fake_openai_key()
    data = {
        "headers": {b"Authorization": [b"Bearer x"], b"Accept": [b"*/*"]},
        "config": {"api_key": "plain-non-key-shaped", "timeout": 3.5, "token": None},
        "notes": ("see " + key, b"x-api-key: " + key.encode()),
        "secret_holder": Secret(key),
        "count": 7,
        "flag": True,
    }
    out = redact_structure(data)
    assert out == {
        "headers": {b"Authorization": REDACTED, b"Accept": [b"*/*"]},
        "config": {"api_key": REDACTED, "timeout": 3.5, "token": None},
        "notes": (f"see sk-proj-{REDACTED}", b"x-api-key: " + REDACTED.encode()),
        "secret_holder": REDACTED,
        "count": 7,
        "flag": True,
    }
    assert key in data["notes"][0], "the input must not be modified"


def test_redact_structure_turns_objects_into_redacted_reprs() -> None:
    """An arbitrary object becomes its redacted repr, never a live reference."""
    key = fake_anthropic_key()

    class Request:
        uri = b"/v1/messages?key=" + key.encode()

        def __repr__(self) -> str:
            return f"<Request uri={self.uri.decode()}>"

    out = redact_structure([Request()])
    assert out == [f"<Request uri=/v1/messages?key={REDACTED}>"]


def test_redact_structure_survives_cycles_and_broken_reprs() -> None:
    """Self-referencing data and objects whose repr raises do not break it."""
    loop: list[Any] = []
    loop.append(loop)
    redact_structure(loop)

    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    assert "Broken" in redact_structure(Broken())


# --- Secret ------------------------------------------------------------------


def test_secret_masks_repr_str_and_format() -> None:
    """repr, str, format and f-strings of a Secret never show the value."""
    key = fake_openai_key()
    secret = Secret(key)
    formatted = (
        repr(secret),
        str(secret),
        format(secret, ">200"),
        f"{secret}",
        "{}".format(secret),  # noqa: UP032 - str.format is a separate path
        "%s %r" % (secret, secret),  # noqa: UP031 - so is %-formatting
    )
    for text in formatted:
        assert key not in text
    assert secret.reveal() == key


def test_attrs_object_holding_a_secret_formats_without_the_key() -> None:
    """An attrs config value holding a Secret can be logged as a whole."""

    @attrs.frozen
    class ProviderConfig:
        name: str
        api_key: Secret

    key = fake_anthropic_key()
    config = ProviderConfig("anthropic", Secret(key))
    assert key not in repr(config)
    assert key not in str(attrs.asdict(config))
    assert key not in repr(redact_structure(attrs.asdict(config, recurse=False)))


def test_secret_refuses_to_pickle() -> None:
    """A Secret cannot be serialized by accident."""
    import pickle

    with pytest.raises(TypeError):
        pickle.dumps(Secret(fake_openai_key()))
