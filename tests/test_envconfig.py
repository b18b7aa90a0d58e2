"""DD0C_ROUTE_CONFIG and DD0C_ROUTE_<TABLE>_<KEY> overrides (dd0c_route/envconfig.py)."""

from __future__ import annotations

import pytest

from dd0c_route.config import ConfigError, load_config


def write(tmp_path, text: str) -> str:
    path = tmp_path / "dd0c.toml"
    path.write_text(text)
    return str(path)


def test_config_file_from_environment_and_overrides(tmp_path):
    path = write(tmp_path, '[server]\nlisten = "tcp:1:interface=127.0.0.1"\n[ledger]\nbatch_size = 7\n')
    config = load_config(None, {
        "DD0C_ROUTE_CONFIG": path,
        "DD0C_ROUTE_SERVER_LISTEN": "tcp:9999:interface=127.0.0.1",
        "DD0C_ROUTE_LEDGER_BATCH_SIZE": "50",
        "DD0C_ROUTE_SERVER_DRAIN_SECONDS": "2.5",
        "DD0C_ROUTE_ROUTING_CIRCUIT_BREAKER_FAILURES": "9",
        "DD0C_ROUTE_ADMIN_LISTEN": "tcp:9090:interface=127.0.0.1",
        "DD0C_ROUTE_ADMIN_REQUIRE_KEY": "true",
        "DD0C_ROUTE_LOG_FORMAT": "json",
        "DD0C_ROUTE_PROVIDERS_OPENAI_BASE_URL": "http://127.0.0.1:7000/v1",
    })
    assert config.source == path
    assert config.server.listen == "tcp:9999:interface=127.0.0.1"
    assert config.ledger.batch_size == 50
    assert config.server.drain_seconds == 2.5
    assert config.routing.circuit_breaker.failures == 9
    assert config.admin.listen == "tcp:9090:interface=127.0.0.1" and config.admin.require_key is True
    assert config.log.format == "json"
    assert config.provider_named("openai").base_url == "http://127.0.0.1:7000/v1"
    # Setting one default provider's key keeps the other default provider.
    assert config.provider_named("anthropic") is not None


@pytest.mark.parametrize(
    "variable, value, problem",
    [
        ("DD0C_ROUTE_LEDGER_BATCH_SIZE", "many", "must be an integer"),
        ("DD0C_ROUTE_LEDGER_BATCH_SIZE", "-3", "greater than 0"),
        ("DD0C_ROUTE_SERVER_NO_SUCH_KEY", "1", "unknown key"),
        ("DD0C_ROUTE_NOWHERE_KEY", "1", "names no config table"),
        ("DD0C_ROUTE_LOG_FORMAT", "xml", "must be one of"),
        ("DD0C_ROUTE_ADMIN_REQUIRE_KEY", "maybe", "true or false"),
    ],
)
def test_bad_override_names_the_variable(variable, value, problem):
    with pytest.raises(ConfigError) as caught:
        load_config(None, {variable: value})
    assert variable in str(caught.value)
    assert problem in str(caught.value)


def test_key_value_never_echoed():
    secret = "sk-FAKE" + "x" * 30
    with pytest.raises(ConfigError) as caught:
        load_config(None, {"DD0C_ROUTE_PROVIDERS_OPENAI_API_KEY": secret, "DD0C_ROUTE_PROVIDERS_OPENAI_BASE_URL": "ftp://x"})
    assert secret not in str(caught.value)
    assert "DD0C_ROUTE_PROVIDERS_OPENAI_BASE_URL" in str(caught.value)
