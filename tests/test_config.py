"""
Config: embedded defaults, every documented key, and bad configs that fail
at start with a message naming the key.
"""

from __future__ import annotations

from decimal import Decimal

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


def test_new_server_and_ledger_keys_have_their_defaults():
    """The keys declared for workers, client timeouts and PostgreSQL default as the issues fix them."""
    config = parse_config({}, {})
    assert config.server.passthrough[:3] == ("/v1/embeddings", "/v1/completions", "/v1/moderations")
    assert len(config.server.passthrough) == 18
    assert (config.server.client_header_timeout, config.server.client_body_timeout) == (30.0, 30.0)
    assert (config.server.drain_seconds, config.server.workers) == (30.0, 1)
    ledger = config.ledger
    assert (ledger.path, ledger.url, ledger.password_env) == ("dd0c-route.sqlite3", None, None)
    assert (ledger.connect_timeout, ledger.auto_migrate, ledger.pool_size) == (10.0, True, 4)


def test_new_keys_are_read():
    """Every new key is read from its table, ints widened to floats where seconds are meant."""
    config = parse_config(
        {
            "server": {"passthrough": ["/v1/embeddings"], "client_header_timeout": 5, "client_body_timeout": 7.5,
                       "drain_seconds": 0, "workers": "auto"},
            "ledger": {"url": "postgresql://u@127.0.0.1:5432/test", "password_env": "PGPASS",
                       "connect_timeout": 3, "auto_migrate": False, "pool_size": 64},
        },
        {},
    )
    assert config.server.passthrough == ("/v1/embeddings",)
    assert (config.server.client_header_timeout, config.server.client_body_timeout) == (5.0, 7.5)
    assert (config.server.drain_seconds, config.server.workers) == (0.0, "auto")
    assert config.ledger.url == "postgresql://u@127.0.0.1:5432/test"
    assert (config.ledger.password_env, config.ledger.connect_timeout) == ("PGPASS", 3.0)
    assert (config.ledger.auto_migrate, config.ledger.pool_size) == (False, 64)
    libpq = parse_config({"ledger": {"url": "host=127.0.0.1 dbname=test user='a b'"}}, {})
    assert libpq.ledger.url == "host=127.0.0.1 dbname=test user='a b'"


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"server": {"passthrough": ["/admin"]}}, "server.passthrough[0]"),
        ({"server": {"passthrough": "/v1/embeddings"}}, "server.passthrough"),
        ({"server": {"client_header_timeout": 0}}, "server.client_header_timeout"),
        ({"server": {"client_body_timeout": -1.0}}, "server.client_body_timeout"),
        ({"server": {"drain_seconds": -0.5}}, "server.drain_seconds"),
        ({"server": {"workers": 0}}, "server.workers"),
        ({"server": {"workers": "many"}}, "server.workers"),
        ({"server": {"workers": True}}, "server.workers"),
        ({"server": {"listen": "tcp:eighty"}}, "server.listen"),
        ({"ledger": {"pool_size": 65}}, "ledger.pool_size"),
        ({"ledger": {"connect_timeout": 0}}, "ledger.connect_timeout"),
        ({"ledger": {"auto_migrate": "yes"}}, "ledger.auto_migrate"),
        ({"ledger": {"password_env": "NOT A NAME"}}, "ledger.password_env"),
        ({"ledger": {"path": "a.sqlite3", "url": "postgresql://h/db"}}, "ledger.url"),
        ({"ledger": {"url": "mysql://h/db"}}, "ledger.url"),
        ({"ledger": {"url": "host=h dbname"}}, "ledger.url"),
        ({"timeouts": {"idle": float("nan")}}, "timeouts.idle"),
        ({"timeouts": {"idle": float("inf")}}, "timeouts.idle"),
        ({"timeouts": {"connect": 10**400}}, "timeouts.connect"),
        ({"budgets": {"me": {"daily_usd": "NaN"}}}, "budgets.me.daily_usd"),
        ({"budgets": {"me": {"daily_usd": "sNaN"}}}, "budgets.me.daily_usd"),
        ({"prices": {"gpt-4o": {"input": "1.0000001"}}}, "prices.gpt-4o.input"),
        ({"prices": {"gpt-4o": {"input": 10**30}}}, "prices.gpt-4o.input"),
        ({"prices": {"gpt-4.1": {"output": "Infinity"}}}, 'prices."gpt-4.1".output'),
        ({"prices": {"gpt-4o": {"colour": 1}}}, "prices.gpt-4o.colour"),
        ({"routing": {"aliases": {"a*": "gpt-4o"}}}, 'routing.aliases."a*"'),
        ({"providers": {"openai": {"models": ["gpt-4o", ""]}}}, "providers.openai.models[1]"),
        ({"providers": {"openai": {"api_key_env": ""}}}, "providers.openai.api_key_env"),
        ({"providers": {}}, "providers"),
        ({"server": []}, "server"),
    ],
)
def test_every_malformed_value_names_its_key(raw, key):
    """Wrong types, non-finite and out-of-range numbers and unknown keys all fail naming the dotted key."""
    with pytest.raises(ConfigError) as info:
        parse_config(raw, {})
    assert info.value.key == key, str(info.value)


def test_price_override_for_unknown_model_needs_all_prices():
    """#17 item 9: an unknown model's override without all four prices fails naming the key, not at start."""
    with pytest.raises(ConfigError) as info:
        parse_config({"prices": {"my-model": {"input": 1, "output": 2}}}, {})
    assert info.value.key == "prices.my-model"
    assert "cached_input" in info.value.problem and "cache_write" in info.value.problem
    with pytest.raises(ConfigError) as dotted_name:
        parse_config({"prices": {"vendor.model-1": {"input": 1}}}, {})
    assert dotted_name.value.key == 'prices."vendor.model-1"'
    full = {"input": 1, "output": 2, "cached_input": "0.5", "cache_write": 3}
    assert parse_config({"prices": {"my-model": full}}, {}).price_overrides["my-model"]["cached_input"] == Decimal("0.5")
    # A model the shipped table knows may override one price.
    assert parse_config({"prices": {"gpt-4o": {"input": 1}}}, {}).price_overrides == {"gpt-4o": {"input": Decimal(1)}}


def test_ledger_url_password_never_shown():
    """A malformed ledger URL is named without its password; the config's repr masks the password."""
    password = fake_provider_key("pw-")
    with pytest.raises(ConfigError) as info:
        parse_config({"ledger": {"url": f"postgresql://u:{password}@h:notaport/db"}}, {})
    assert info.value.key == "ledger.url"
    assert password not in str(info.value)
    with pytest.raises(ConfigError) as conninfo:
        parse_config({"ledger": {"url": f"host=h password={password} dbname"}}, {})
    assert password not in str(conninfo.value)
    for url in (f"postgresql://u:{password}@h:5432/db", f"host=h password='{password}' dbname=d"):
        config = parse_config({"ledger": {"url": url}}, {})
        assert config.ledger.url == url
        assert password not in repr(config)


def test_secret_never_in_any_error_about_it():
    """An inline key that fails a check is reported without its value."""
    secret = fake_provider_key()
    for bad in ({"api_key": secret, "api_key_env": "X"}, {"api_key": " " * 3}):
        with pytest.raises(ConfigError) as info:
            parse_config({"providers": {"openai": bad}}, {})
        assert info.value.key == "providers.openai.api_key"
        assert secret not in str(info.value)


def test_checks_hold_for_values_built_in_code():
    """The declared checks are attrs validators: a value built in code is checked too."""
    from dd0c_route.config import CircuitBreakerConfig, RuleMatch
    from dd0c_route.schema import Invalid

    with pytest.raises(Invalid):
        CircuitBreakerConfig(failures=0)
    with pytest.raises(Invalid):
        RuleMatch(min_prompt_tokens=5, max_prompt_tokens=1)


def test_docs_table_is_the_declared_schema():
    """docs/configuration.md holds the table generated from the declarations (regenerate when a key changes)."""
    from pathlib import Path

    from dd0c_route.config import Config
    from dd0c_route.schema_docs import markdown_table

    docs = Path(__file__).parent.parent / "docs" / "configuration.md"
    assert markdown_table(Config) in docs.read_text(encoding="utf-8"), (
        "regenerate: python -c 'from dd0c_route.config import Config; "
        "from dd0c_route.schema_docs import markdown_table; print(markdown_table(Config))'"
    )


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
        assert info.value.key.split("[")[0] == key, table  # the walker may name the list element
