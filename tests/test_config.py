"""
Config: embedded defaults, every documented key, and bad configs that fail
at start with a message naming the key.
"""

from __future__ import annotations

import pytest

from dd0c_route.config import ConfigError, load_config, parse_config
from dd0c_route.providers.registry import ProviderRegistry

from .live import fake_provider_key


def test_embedded_defaults_from_environment():
    """No file: loopback 8080, SQLite in the cwd, both providers from env."""
    key = fake_provider_key()
    config = load_config(None, {"OPENAI_API_KEY": key, "ANTHROPIC_BASE_URL": "http://127.0.0.1:9/"})
    assert config.server.listen == "tcp:8080:interface=127.0.0.1"
    assert config.server.max_body_bytes == 10 * 1024 * 1024
    assert config.ledger.path == "dd0c-route.sqlite3"
    openai = config.provider_named("openai")
    anthropic = config.provider_named("anthropic")
    assert openai.base_url == "https://api.openai.com/v1"
    assert openai.api_key.reveal() == key
    assert anthropic.base_url == "http://127.0.0.1:9"
    assert anthropic.api_key is None
    assert key not in repr(config)


def test_full_file(tmp_path):
    """Every documented key is read from TOML."""
    path = tmp_path / "c.toml"
    path.write_text(
        """
[server]
listen = "tcp:9999:interface=127.0.0.1"
max_body_bytes = 1024
[ledger]
path = "x.sqlite3"
[timeouts]
connect = 1
first_byte = 2.5
idle = 3
[providers.openai]
base_url = "http://127.0.0.1:1/v1"
api_key_env = "MY_KEY"
[providers.vllm]
kind = "openai"
base_url = "http://127.0.0.1:2/v1"
models = ["llama-3", "gpt-4o"]
[prices."gpt-4o"]
input = 1.5
output = "2.25"
"""
    )
    config = load_config(str(path), {"MY_KEY": "k-test"})
    assert config.server.listen == "tcp:9999:interface=127.0.0.1"
    assert config.server.max_body_bytes == 1024
    assert config.ledger.path == "x.sqlite3"
    assert (config.timeouts.connect, config.timeouts.first_byte, config.timeouts.idle) == (1.0, 2.5, 3.0)
    assert config.provider_named("openai").api_key.reveal() == "k-test"
    assert config.provider_named("anthropic") is None
    assert str(config.price_overrides["gpt-4o"]["output"]) == "2.25"
    registry = ProviderRegistry(config)
    assert registry.provider_for("llama-3").name == "vllm"
    # An exact name wins over another provider's glob.
    assert registry.provider_for("gpt-4o").name == "vllm"
    assert registry.provider_for("gpt-4o-mini").name == "openai"
    assert registry.provider_for("mistral") is None


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ("[server]\nlisten = 8080", "server.listen"),
        ("[server]\nmax_body_bytes = -1", "server.max_body_bytes"),
        ("[server]\nport = 1", "server.port"),
        ("[timeouts]\nidle = 0", "timeouts.idle"),
        ("[ledger]\nkey_cache_ttl = 60", "ledger.key_cache_ttl"),
        ("[providers.x]\nbase_url = 'http://a'\nmodels = ['m']", "providers.x.kind"),
        ("[providers.x]\nkind = 'cohere'", "providers.x.kind"),
        ("[providers.openai]\nbase_url = 'ftp://a'", "providers.openai.base_url"),
        ("[providers.openai]\napi_key = 'a'\napi_key_env = 'B'", "providers.openai.api_key"),
        ("[providers.x]\nkind = 'openai'\nbase_url = 'http://a'", "providers.x.models"),
        ("[providers.a]\nkind='openai'\nbase_url='http://a'\nmodels=['m1']\n[providers.b]\nkind='openai'\nbase_url='http://b'\nmodels=['m1']", "providers.b.models"),
        ("[prices.m]\ninput = 'lots'", "prices.m.input"),
        ("[prices.m]\ninput = -1", "prices.m.input"),
        ("[nonsense]\nx = 1", "nonsense"),
    ],
)
def test_bad_config_names_key(tmp_path, toml, key):
    """A bad value fails with a ConfigError naming the key."""
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as info:
        load_config(str(path), {})
    assert info.value.key == key, str(info.value)
    assert key in str(info.value)


def test_inline_key_never_in_error(tmp_path):
    """A wrong-typed inline key is reported without its value."""
    secret = fake_provider_key()
    with pytest.raises(ConfigError) as info:
        parse_config({"providers": {"openai": {"api_key": [secret]}}}, {})
    assert secret not in str(info.value)


def test_invalid_toml_and_missing_file(tmp_path):
    """Unreadable files fail with a clear message."""
    with pytest.raises(ConfigError, match="not found"):
        load_config(str(tmp_path / "missing.toml"), {})
    path = tmp_path / "broken.toml"
    path.write_text("[server\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(str(path), {})


def test_server_hardening_keys():
    """passthrough and the client timeouts parse, with their defaults; bad values name the key."""
    default = parse_config({}, {}).server
    assert "/v1/embeddings" in default.passthrough and default.client_header_timeout == 30.0
    server = parse_config(
        {"server": {"passthrough": ["/v1/files"], "client_header_timeout": 2, "client_body_timeout": 0.5}}, {}
    ).server
    assert server.passthrough == ("/v1/files",)
    assert (server.client_header_timeout, server.client_body_timeout) == (2.0, 0.5)
    for table, key in (
        ({"passthrough": ["/admin"]}, "server.passthrough"),
        ({"passthrough": ["/v1/../x"]}, "server.passthrough"),
        ({"passthrough": [3]}, "server.passthrough"),
        ({"client_header_timeout": 0}, "server.client_header_timeout"),
        ({"client_body_timeout": "soon"}, "server.client_body_timeout"),
    ):
        with pytest.raises(ConfigError) as info:
            parse_config({"server": table}, {})
        assert info.value.key == key, table
