"""Settings: one frozen object read from ``LOCALEVENTS_*`` environment variables.

The environment is read once, on first use. Tests (and embedding applications) replace the
active settings for a block with :func:`temporary_settings` instead of touching ``os.environ``.
The override is process-wide on purpose: an event emitted from a worker thread must see the
same configuration as the code that started it.
"""

from __future__ import annotations

import contextlib
import difflib
import enum
import functools
import os
import re
import threading
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

import msgspec

from localevents._exceptions import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping

__all__ = (
    "ServerType",
    "Settings",
    "api_key_problem",
    "determine_server_type",
    "get_settings",
    "parse_duration",
    "parse_seconds",
    "parse_size",
    "spoken_duration",
    "temporary_settings",
)

ENV_PREFIX = "LOCALEVENTS_"
_ZERO = timedelta(0)


class ServerType(enum.Enum):
    """Where the SDK's requests go."""

    EPHEMERAL = "ephemeral"
    SERVER = "server"
    UNCONFIGURED = "unconfigured"


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Every knob of localevents; each field is ``LOCALEVENTS_<FIELD>`` in the environment."""

    api_url: str | None = None
    api_key: str | None = None
    ephemeral: bool = True
    home: str = str(Path("~/.localevents").expanduser())
    database: str | None = None
    database_memory_limit: str = "256MB"
    database_idle_cache: int = 32_000_000
    database_threads: int | None = None
    server_host: str = "127.0.0.1"
    server_port: int = 4200
    server_maximum_body_bytes: int = 64 * 1024 * 1024
    server_websocket_ping_interval: timedelta = timedelta(seconds=20)
    server_websocket_ping_timeout: timedelta = timedelta(seconds=20)
    server_allowed_origins: frozenset[str] = frozenset()
    server_query_timeout: timedelta = timedelta(seconds=30)
    server_headers_timeout: timedelta = timedelta(seconds=10)
    server_shutdown_timeout: timedelta = timedelta(seconds=5)
    client_max_retries: int = 5
    client_retry_jitter_factor: float = 0.2
    client_retry_extra_codes: frozenset[int] = frozenset()
    client_retry_maximum_delay: float = 60.0
    client_timeout: timedelta = timedelta(seconds=60)
    events_maximum_labels_per_resource: int = 500
    events_maximum_related_resources: int = 100
    events_maximum_size_bytes: int = 1_500_000
    events_maximum_event_name_length: int = 1024
    events_maximum_websocket_backfill: timedelta = timedelta(minutes=15)
    events_websocket_backfill_page_size: int = 250
    events_retention_period: timedelta | None = None
    events_retention_interval: timedelta = timedelta(hours=1)
    events_worker_max_queue_size: int = 10_000
    events_subscriber_queue_size: int = 10_000
    events_subscriber_queue_bytes: int = 64 * 1024 * 1024

    def __post_init__(self) -> None:
        if not 0 <= self.server_port <= _LAST_PORT:
            raise ConfigurationError(
                f"LOCALEVENTS_SERVER_PORT must be a TCP port, 0 to {_LAST_PORT} "
                "(0 picks a free one)"
            )
        _check_positive(self, "server_maximum_body_bytes")
        _check_positive(self, "events_maximum_event_name_length")
        _check_positive(self, "events_websocket_backfill_page_size")
        _check_positive(self, "events_worker_max_queue_size", "events_subscriber_queue_size")
        _check_positive(self, "events_subscriber_queue_bytes")
        if self.database_threads is not None:
            _check_positive(self, "database_threads")
        if self.database_idle_cache < 0:
            raise ConfigurationError("LOCALEVENTS_DATABASE_IDLE_CACHE must be >= 0")
        if self.client_max_retries < 0:
            raise ConfigurationError("LOCALEVENTS_CLIENT_MAX_RETRIES must be >= 0")
        if self.client_retry_jitter_factor < 0:
            raise ConfigurationError("LOCALEVENTS_CLIENT_RETRY_JITTER_FACTOR must be >= 0")
        problem = None if self.api_key is None else api_key_problem(self.api_key)
        if problem is not None:  # a server with it would refuse every client
            raise ConfigurationError(f"LOCALEVENTS_API_KEY {problem}")
        self._check_durations()

    def _check_durations(self) -> None:
        if self.events_retention_period is not None and self.events_retention_period <= _ZERO:
            raise ConfigurationError("LOCALEVENTS_EVENTS_RETENTION_PERIOD must be > 0")
        if self.server_websocket_ping_interval < _ZERO:
            raise ConfigurationError(
                "LOCALEVENTS_SERVER_WEBSOCKET_PING_INTERVAL must be >= 0 (0: no pings)"
            )
        if self.server_websocket_ping_timeout <= _ZERO:
            raise ConfigurationError("LOCALEVENTS_SERVER_WEBSOCKET_PING_TIMEOUT must be > 0")
        if self.client_timeout <= _ZERO:
            raise ConfigurationError("LOCALEVENTS_CLIENT_TIMEOUT must be > 0")
        if self.server_query_timeout < _ZERO:
            raise ConfigurationError("LOCALEVENTS_SERVER_QUERY_TIMEOUT must be >= 0 (0: none)")
        if self.events_retention_interval <= _ZERO:
            raise ConfigurationError("LOCALEVENTS_EVENTS_RETENTION_INTERVAL must be > 0")
        if self.server_headers_timeout <= _ZERO:
            raise ConfigurationError("LOCALEVENTS_SERVER_HEADERS_TIMEOUT must be > 0")
        if self.server_shutdown_timeout < timedelta(seconds=1):
            raise ConfigurationError(
                "LOCALEVENTS_SERVER_SHUTDOWN_TIMEOUT must be at least 1s (whole seconds)"
            )

    @property
    def database_path(self) -> str:
        """``LOCALEVENTS_DATABASE``, else ``$LOCALEVENTS_HOME/events.duckdb``."""
        if self.database:
            return self.database
        return _default_database(self.home)

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied, checked as the environment's values are: a name
        that is no setting, or a value that is not of its setting's type, is a
        :class:`ConfigurationError` naming it. A string is read as the environment
        variable would be (``"15m"``, ``"32MB"``); a path is taken for ``database`` and
        ``home``."""
        fields = {field.name: field.type for field in msgspec.structs.fields(self)}
        checked = {}
        for name, value in changes.items():
            if name not in fields:
                raise _unknown_setting(repr(name), name, fields, spelt=str)
            checked[name] = _given_setting(name, fields[name], value)
        return msgspec.structs.replace(self, **checked)


_LAST_PORT = 65535


def api_key_problem(api_key: str) -> str | None:
    """Why an HTTP header cannot carry ``api_key`` as it is, naming the character and where
    it is but never showing the key (None: it can): a newline read from a file, a letter
    outside ASCII, a control character, a space at either end."""
    for position, char in enumerate(api_key, 1):
        if not " " <= char <= "~":
            return (
                f"holds {char!r} at character {position} of {len(api_key)}: a key is "
                "printable ASCII"
            )
    if api_key != api_key.strip(" "):  # a header value cannot end in one; a start one is lost
        end = "starts" if api_key.startswith(" ") else "ends"
        return f"{end} with a space, which an HTTP header cannot carry as it is: remove it"
    return None


def _check_positive(settings: Settings, *names: str) -> None:
    for name in names:
        if getattr(settings, name) <= 0:
            raise ConfigurationError(f"{ENV_PREFIX}{name.upper()} must be > 0")


_DURATION = re.compile(
    r"^\s*(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>"
    r"s|sec|secs|seconds?|m|min|mins|minutes?|h|hours?|d|days?|w|weeks?)?\s*$",
    re.IGNORECASE,
)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_seconds(text: str) -> float:
    """``text`` read as :func:`parse_duration` reads it, as a number of seconds, however
    many (the caller checks the range it accepts)."""
    match = _DURATION.match(text)
    if match is None:
        raise ConfigurationError(
            f"cannot read {text!r} as a duration: use seconds or e.g. '15 minutes', '7 days'"
        )
    unit = (match["unit"] or "s").lower()
    return float(match["n"]) * _UNIT_SECONDS["m" if unit.startswith("mi") else unit[0]]


def parse_duration(text: str) -> timedelta:
    """Parse ``"900"``, ``"15 minutes"``, ``"7d"`` or ``"1.5 hours"`` into a timedelta;
    one longer than a timedelta holds (999,999,999 days) is a :class:`ConfigurationError`."""
    seconds = parse_seconds(text)
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise ConfigurationError(
            f"cannot read {text!r} as a duration: it is longer than the longest accepted, "
            f"{timedelta.max.days}d"
        ) from None


def spoken_duration(span: timedelta) -> str:
    """``span`` as :func:`parse_duration` reads it back: ``30s``, ``15m``, ``1h``, ``7d``
    (the largest unit it is a whole number of, else seconds)."""
    seconds = span.total_seconds()
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


_SIZE = re.compile(r"^\s*(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>[kmgt]i?b|b)?\s*$", re.IGNORECASE)
_UNIT_BYTES = {"b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
_UNIT_BYTES_BINARY = {"k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
_SIZE_LIMIT = 2**63
"""Sizes are below this many bytes: the most a signed 64-bit integer holds, plus one."""


@functools.lru_cache(maxsize=16)
def _default_database(home: str) -> str:
    """The events file in ``home``. Every ``emit_event`` asks for it twice (where do its
    events go?): joining the paths each time made those two lookups 11.9 µs of the call,
    2.6 µs cached."""
    return str(Path(home) / "events.duckdb")


def parse_size(text: str) -> int:
    """Parse ``"32MB"``, ``"1.5 GiB"`` or ``"4096"`` into bytes. The units mean what
    they mean to DuckDB: ``KB``, ``MB``, ``GB``, ``TB`` are powers of 1000, ``KiB``...
    ``TiB`` powers of 1024; a bare number is bytes. A size is below 2**63 bytes (8 EiB),
    the most a signed 64-bit integer (DuckDB's, for one) holds."""
    match = _SIZE.match(text)
    if match is None:
        raise ConfigurationError(
            f"cannot read {text!r} as a size: use bytes or e.g. '32MB', '1GiB'"
        )
    unit = (match["unit"] or "b").lower()
    scale = _UNIT_BYTES_BINARY[unit[0]] if "i" in unit else _UNIT_BYTES[unit[0]]
    size = float(match["n"]) * scale
    if not size < _SIZE_LIMIT:  # infinity too: digits past a float's range
        raise ConfigurationError(
            f"cannot read {text!r} as a size: it is more than the largest accepted, "
            f"{_SIZE_LIMIT - 1} bytes (8 EiB)"
        )
    return int(size)


def _parse_codes(text: str) -> frozenset[int]:
    try:
        return frozenset(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ConfigurationError(
            f"cannot read {text!r} as HTTP status codes: use comma-separated integers, "
            "e.g. '404,429'"
        ) from None


def _parse_origins(text: str) -> frozenset[str]:
    origins = frozenset(
        part.strip().rstrip("/").lower() for part in text.split(",") if part.strip()
    )
    for origin in origins - {"*"}:
        scheme, _, host = origin.partition("://")
        if scheme not in ("http", "https") or not host or "/" in host:
            raise ConfigurationError(
                f"cannot read {origin!r} as an origin: use comma-separated "
                "scheme://host[:port], e.g. 'http://localhost:3000', or '*' for any"
            )
    return origins


def _home(text: str) -> str:
    return str(Path(text).expanduser())


_PARSERS = {
    "home": _home,
    "database_idle_cache": parse_size,
    "server_maximum_body_bytes": parse_size,
    "events_maximum_size_bytes": parse_size,
    "events_subscriber_queue_bytes": parse_size,
    "client_retry_extra_codes": _parse_codes,
    "server_allowed_origins": _parse_origins,
}


_DURATIONS = (timedelta, timedelta | None)
"""The field types read by :func:`parse_duration` (``90s``, ``15m``, ``7d``)."""
_TEXT = (str, str | None)
"""The field types whose value is text itself (a string given for any other is read)."""
_PATHS = ("database", "home")
"""The settings that also take a path (``pathlib.Path``)."""

# What a value of each plain type must look like, as said to the user (the types msgspec
# reads from a string when not strict).
_EXPECTED = {bool: "true or false (or 1 or 0)", int: "an integer", float: "a number"}


def _unknown_setting(
    given: str, name: str, fields: Iterable[str], *, spelt: Callable[[str], str]
) -> ConfigurationError:
    """The error for ``given``, whose field name ``name`` is no setting, suggesting a close
    one as ``spelt`` writes a field's name (as its variable, or as itself)."""
    close = difflib.get_close_matches(name, list(fields), n=1)
    hint = f": did you mean {spelt(close[0])}?" if close else ""
    return ConfigurationError(f"unknown setting {given}{hint}")


def _variable(name: str) -> str:
    return f"{ENV_PREFIX}{name.upper()}"


def _read_setting(key: str, name: str, annotation: Any, value: str) -> Any:
    """Read one environment value as the type of its field; a bad one is an error naming the
    variable, the value and what it must be."""
    parser = _PARSERS.get(name) or (parse_duration if annotation in _DURATIONS else None)
    if parser is not None:
        try:
            return parser(value)
        except ConfigurationError as exc:
            raise ConfigurationError(f"invalid setting {key}: {exc}") from exc
    try:
        return msgspec.convert(value, annotation, strict=False)
    except msgspec.ValidationError as exc:
        kinds = [kind for kind in get_args(annotation) or (annotation,) if kind is not type(None)]
        expected = _EXPECTED.get(kinds[0]) if len(kinds) == 1 else None
        reason = f"expected {expected}" if expected else str(exc)
        raise ConfigurationError(f"invalid setting {key}={value!r}: {reason}") from exc


def _given_setting(name: str, annotation: Any, value: Any) -> Any:
    """A value given in Python for the setting ``name``, as its field's type."""
    if name in _PATHS and isinstance(value, os.PathLike):
        value = os.fspath(value)
    if isinstance(value, str) and (name in _PARSERS or annotation not in _TEXT):
        return _read_setting(name, name, annotation, value)
    try:
        return msgspec.convert(value, annotation, strict=True)
    except msgspec.ValidationError as exc:
        raise ConfigurationError(f"invalid setting {name}={value!r}: {exc}") from None


def settings_from_environ(environ: Mapping[str, str]) -> Settings:
    """Build settings from an environment mapping; unknown ``LOCALEVENTS_*`` names are an error."""
    annotations = {field.name: field.type for field in msgspec.structs.fields(Settings)}
    raw: dict[str, Any] = {}
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        name = key[len(ENV_PREFIX) :].lower()
        if name not in annotations:
            raise _unknown_setting(key, name, annotations, spelt=_variable)
        raw[name] = _read_setting(key, name, annotations[name], value)
    try:
        return msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigurationError(f"invalid setting: {exc}") from exc


_lock = threading.Lock()
_from_environ: dict[str, Settings] = {}  # read once, on first use
_overrides: list[Settings] = []


def get_settings() -> Settings:
    """The active settings: the innermost override, else the environment (read once)."""
    if _overrides:
        return _overrides[-1]
    settings = _from_environ.get("settings")
    if settings is not None:
        return settings
    with _lock:
        if "settings" not in _from_environ:
            _from_environ["settings"] = settings_from_environ(os.environ)
        return _from_environ["settings"]


@contextlib.contextmanager
def temporary_settings(settings: Settings | None = None, **changes: Any) -> Iterator[Settings]:
    """Make ``settings`` (or the active settings with ``changes``) active for the block."""
    active = (settings or get_settings()).replace(**changes)
    with _lock:
        _overrides.append(active)
    try:
        yield active
    finally:
        with _lock:
            _overrides.remove(active)


def determine_server_type(settings: Settings | None = None) -> ServerType:
    """EPHEMERAL without an API URL (when allowed), SERVER with one, else UNCONFIGURED."""
    settings = settings or get_settings()
    if settings.api_url:
        return ServerType.SERVER
    return ServerType.EPHEMERAL if settings.ephemeral else ServerType.UNCONFIGURED
