# Tests: tests/test_envconfig.py
"""
Configuration from the environment, for containers and process managers.

``DD0C_ROUTE_CONFIG`` names the config file, and ``DD0C_ROUTE_<TABLE>_<KEY>``
sets any scalar key (``DD0C_ROUTE_SERVER_LISTEN``,
``DD0C_ROUTE_ROUTING_CIRCUIT_BREAKER_FAILURES``,
``DD0C_ROUTE_PROVIDERS_OPENAI_BASE_URL``), winning over the file.

This works on the raw TOML document, before the config is checked, so the
overridden value is validated exactly as if it had been written in the file
(whatever parses the document), and an error names the variable.  The text
of a variable is typed by the key's TOML type: the type of the value the
file has, else of the built-in default, else what the text reads as in TOML
(``true``, ``42``, ``1.5``; anything else is a string).  Values are never
echoed in errors: a variable may hold a provider key.
"""

from __future__ import annotations

import copy
import tomllib
from typing import Any, Callable, Mapping, Optional

__all__ = ["CONFIG_VARIABLE", "PREFIX", "apply_overrides", "parse_with_overrides"]

PREFIX = "DD0C_ROUTE_"
#: The variable that names the config file (when ``--config`` is not given).
CONFIG_VARIABLE = "DD0C_ROUTE_CONFIG"

#: Tables the environment may set keys in even when the file has none of them.
KNOWN_TABLES = (
    "server", "ledger", "timeouts", "routing", "routing.circuit_breaker",
    "admin", "telemetry", "log", "providers.openai", "providers.anthropic",
)
#: What parse_config assumes when the file declares no provider.
_DEFAULT_PROVIDERS = ("openai", "anthropic")


def _error(key: str, problem: str) -> Exception:
    from .config import ConfigError

    return ConfigError(key, problem)


def _env_name(path: str) -> str:
    return path.upper().replace(".", "_").replace("-", "_")


def _tables(raw: Mapping[str, Any], prefix: str = "") -> list[str]:
    out = []
    for name, value in raw.items():
        if isinstance(value, Mapping):
            path = f"{prefix}{name}"
            out.append(path)
            out.extend(_tables(value, path + "."))
    return out


def _default_for(path: str, key: str) -> Any:
    """The built-in default of ``path.key`` on the checked Config, or None."""
    import attrs

    from .config import Config

    parts = (*path.split("."), key)
    field = attrs.fields_dict(Config).get(parts[0])
    node: Any = None if field is None or field.default is attrs.NOTHING else field.default
    for part in parts[1:]:
        node = getattr(node, part, None)
        if node is None:
            return None
    return node


def _typed(variable: str, text: str, like: Any) -> Any:
    if isinstance(like, bool):
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise _error(variable, "must be true or false")
    if isinstance(like, int):
        try:
            return int(text)
        except ValueError:
            raise _error(variable, "must be an integer") from None
    if isinstance(like, float):
        try:
            return float(text)
        except ValueError:
            raise _error(variable, "must be a number") from None
    if isinstance(like, str):
        return text
    if like is not None:
        raise _error(variable, "sets a key that is not a scalar (only strings, numbers and booleans can be set)")
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text
    return value if isinstance(value, (bool, int, float)) else text


def apply_overrides(raw: Mapping[str, Any], environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """
    ``raw`` with every ``DD0C_ROUTE_<TABLE>_<KEY>`` applied, and which
    variable set which key (``{"server.listen": "DD0C_ROUTE_SERVER_LISTEN"}``).
    """
    names = sorted(
        (name for name in environ if name.startswith(PREFIX) and name != CONFIG_VARIABLE),
    )
    if not names:
        return dict(raw), {}
    out: dict[str, Any] = copy.deepcopy(dict(raw))
    candidates = sorted(set(KNOWN_TABLES) | set(_tables(raw)), key=len, reverse=True)
    origins: dict[str, str] = {}
    for variable in names:
        rest = variable[len(PREFIX):]
        path: Optional[str] = None
        for table in candidates:
            head = _env_name(table) + "_"
            if rest.startswith(head) and len(rest) > len(head):
                path = table
                break
        if path is None:
            raise _error(variable, "names no config table (DD0C_ROUTE_<TABLE>_<KEY>, e.g. DD0C_ROUTE_SERVER_LISTEN)")
        key = rest[len(_env_name(path)) + 1:].lower()
        if path.startswith("providers.") and "providers" not in out:
            out["providers"] = {name: {} for name in _DEFAULT_PROVIDERS}
        node = out
        for part in path.split("."):
            node = node.setdefault(part, {})
        like = node.get(key, _default_for(path, key))
        node[key] = _typed(variable, environ[variable], like)
        origins[f"{path}.{key}"] = variable
    return out, origins


def parse_with_overrides(
    parse: Callable[..., Any], raw: Mapping[str, Any], environ: Mapping[str, str], source: Optional[str]
) -> Any:
    """``parse(raw + overrides, environ, source=source)``; an error in an overridden key names its variable."""
    from .config import ConfigError

    merged, origins = apply_overrides(raw, environ)
    try:
        return parse(merged, environ, source=source)
    except ConfigError as error:
        variable = origins.get(error.key)
        if variable is None:
            raise
        raise ConfigError(error.key, f"{error.problem} (set by the environment variable {variable})") from None
