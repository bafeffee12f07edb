"""Events and the resources they happen to: the wire model of the Prefect events protocol.

Field names, label names and key order are the protocol's. Every rule of the protocol is
checked when an object is built, whether by the caller or by a decoder, with a message naming
the problem (the rules themselves live in ``_rules``, shared with the server's ingest path).
msgspec checks the types of what it decodes; an event built in Python has every field's type
checked too (msgspec's ``__init__`` does not), raising :class:`~localevents.InvalidEventError`
that names the field and the value. There, as in Prefect's models, an id or ``follows`` may be
given as a UUID string and a time as an ISO 8601 (RFC 3339) string, the wire's forms; a naive
time, string or datetime, is read as UTC.
Limits come from the active settings at construction time, or from the settings given to
:func:`checking_limits_of` for a block; events read back from a store are not held to this
process's limits (:func:`reading_stored_events`).
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Self

import msgspec

from localevents._exceptions import InvalidEventError
from localevents._settings import Settings, get_settings
from localevents.events._nesting import decoded
from localevents.events._rules import (
    RESOURCE_ID,
    RESOURCE_NAME,
    RESOURCE_ROLE,
    event_problem,
    labels_problem,
)
from localevents.events._time import now_utc, uuid7

if TYPE_CHECKING:
    from collections.abc import Iterator


__all__ = (
    "AnyEvent",
    "AwareDatetime",
    "Event",
    "ReceivedEvent",
    "RelatedResource",
    "Resource",
    "checking_limits_of",
    "event_id_of",
    "decode_hook",
    "reading_stored_events",
)


AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]
"""A datetime that must carry an offset on the wire (naive input is an error)."""

# A context variable, not the process-wide settings override: it holds for one decode in one
# task or thread, so concurrent servers with different limits never see each other's.
_limits: contextvars.ContextVar[tuple[Settings, bool] | None] = contextvars.ContextVar(
    "localevents_event_limits", default=None
)


def _decoding() -> tuple[Settings, bool]:
    override = _limits.get()
    return override if override is not None else (get_settings(), False)


@contextlib.contextmanager
def checking_limits_of(settings: Settings, *, decoding: bool = False) -> Iterator[None]:
    """Check events built in this block against ``settings``' limits, not the active ones.

    ``decoding`` says that only a msgspec decoder builds events in the block: it has already
    checked that every label value is a string, so that check is skipped.
    """
    token = _limits.set((settings, decoding))
    try:
        yield
    finally:
        _limits.reset(token)


_UNLIMITED = Settings(
    events_maximum_labels_per_resource=sys.maxsize,
    events_maximum_related_resources=sys.maxsize,
    events_maximum_event_name_length=sys.maxsize,
)


def reading_stored_events() -> contextlib.AbstractContextManager[None]:
    """Decode events a store already accepted: its limits, not this process's, applied."""
    return checking_limits_of(_UNLIMITED, decoding=True)


class Resource(dict[str, str]):
    """The labels of a resource; ``prefect.resource.id`` is required and non-empty."""

    __slots__ = ()

    def __init__(self, labels: Any = (), /, **more: str) -> None:
        if not isinstance(labels, dict | list | tuple):
            raise TypeError("Input should be a valid dictionary")
        super().__init__(labels, **more)
        self._check(_decoding()[0].events_maximum_labels_per_resource)

    @classmethod
    def _wrap(cls, labels: Mapping[str, str]) -> Self:
        """Already-checked labels as this class, without checking them again."""
        if type(labels) is cls:
            return labels
        resource = cls.__new__(cls)
        dict.update(resource, labels)
        return resource

    _related: ClassVar[bool] = False

    def _check(self, maximum: int) -> None:
        _check_strings(self)
        problem = labels_problem(self, maximum, related=self._related)
        if problem is not None:
            raise InvalidEventError(problem)

    @property
    def id(self) -> str:
        """The value of ``prefect.resource.id``."""
        return self[RESOURCE_ID]

    @property
    def name(self) -> str | None:
        """The display name (``prefect.resource.name``), if any."""
        return self.get(RESOURCE_NAME)

    def has_all_labels(self, labels: dict[str, str]) -> bool:
        """Whether every given label is present with exactly the given value."""
        return all(self.get(label) == value for label, value in labels.items())

    def as_label_value_array(self) -> list[dict[str, str]]:
        """``[{"label": ..., "value": ...}, ...]`` in insertion order."""
        return [{"label": label, "value": value} for label, value in self.items()]

    def prefect_object_id(self, kind: str) -> uuid.UUID:
        """The UUID after ``<kind>.`` in the resource id (e.g. ``prefect.flow-run``)."""
        prefix = kind if kind.endswith(".") else f"{kind}."
        if not self.id.startswith(prefix):
            raise ValueError(f"Resource ID {self.id} does not start with {prefix}")
        return uuid.UUID(self.id[len(prefix) :])


class RelatedResource(Resource):
    """A resource related to an event, in a role (``prefect.resource.role``, non-empty)."""

    __slots__ = ()

    _related = True

    @property
    def role(self) -> str:
        """The value of ``prefect.resource.role``."""
        return self[RESOURCE_ROLE]


def _check_strings(labels: Any) -> None:
    if not isinstance(labels, dict):
        raise TypeError("Input should be a valid dictionary")
    if not all(type(value) is str for value in labels.values()):  # str subclasses are fine
        label = next((k for k, v in labels.items() if not isinstance(v, str)), None)
        if label is not None:
            raise TypeError(f"label {label!r} should be a valid string")


_SHOWN = 60
"""The most characters of a bad value's repr that an error message quotes."""


def _described(value: object) -> str:
    """A value for an error message: its type and a short repr (``str 'order-42'``)."""
    shown = repr(value)
    if len(shown) > _SHOWN:
        shown = shown[: _SHOWN - 3] + "..."
    return f"{type(value).__name__} {shown}"


def _moment(value: object, field: str) -> datetime:
    """A datetime, or an RFC 3339 string as on the wire; naive is read as UTC."""
    if isinstance(value, str):
        with contextlib.suppress(msgspec.ValidationError):
            value = msgspec.convert(value, datetime)
    if not isinstance(value, datetime):
        raise InvalidEventError(
            f"{field} must be a datetime or an ISO 8601 string such as "
            f"'2024-01-01T12:00:00Z', got {_described(value)}"
        )
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _uuid(value: object, field: str) -> uuid.UUID:
    """A UUID, or its string in a form the wire accepts (hyphenated or 32 hex digits)."""
    if isinstance(value, str):
        with contextlib.suppress(msgspec.ValidationError):
            value = msgspec.convert(value, uuid.UUID)
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, _EventBase):  # Event(follows=earlier) for Event(follows=earlier.id)
        raise InvalidEventError(f"{field} must be a UUID (the earlier event's .id), got an event")
    raise InvalidEventError(f"{field} must be a UUID, got {_described(value)}")


def _check_labels(value: object, where: str, index: int | None = None) -> None:
    """That a resource is a mapping of strings to strings (str subclasses, a StrEnum, pass).

    ``index`` is the place in ``related``, formatted into ``where`` only for a message.
    """
    if not isinstance(value, dict) and not isinstance(value, Mapping):
        raise InvalidEventError(
            f"{_at(where, index)} must be a mapping of label names to strings, "
            f"got {_described(value)}"
        )
    if all(type(k) is str and type(v) is str for k, v in value.items()):
        return
    for label, text in value.items():
        if not isinstance(label, str):
            where = _at(where, index)
            raise InvalidEventError(f"{where} label names must be strings, got {_described(label)}")
        if not isinstance(text, str):
            where = _at(where, index)
            raise InvalidEventError(
                f"{where} label {label!r} must be a string, got {_described(text)}"
            )


def _at(where: str, index: int | None) -> str:
    return where if index is None else f"{where}[{index}]"


def _related(value: object) -> list[Any]:
    """Related resources: a list, or any other iterable of label mappings as a list."""
    if type(value) is not list:
        if isinstance(value, Mapping | str | bytes) or not isinstance(value, Iterable):
            raise InvalidEventError(
                f"related must be a list of resources (label mappings), got {_described(value)}"
            )
        value = list(value)
    for index, labels in enumerate(value):
        _check_labels(labels, "related", index)
    return value


def _payload(value: object) -> dict[str, Any]:
    """A JSON object: a dict (any mapping is copied to one) with string keys that JSON can
    encode, so a bad payload fails here and not later in a batch or a background worker."""
    if not isinstance(value, dict):
        if not isinstance(value, Mapping):
            raise InvalidEventError(
                f"payload must be a dict with string keys, got {_described(value)}"
            )
        value = dict(value)
    for key in value:
        if not isinstance(key, str):
            raise InvalidEventError(f"payload keys must be strings, got {_described(key)}")
    try:
        _encode(value)
    except (TypeError, ValueError, RecursionError) as exc:
        where = _unencodable(value)
        raise InvalidEventError(f"{where} cannot be encoded as JSON: {exc}") from exc
    return value


def _unencodable(payload: dict[str, Any]) -> str:
    """Where in a payload JSON fails: ``payload['key']`` for the first bad top-level value."""
    for key, item in payload.items():
        try:
            _encode(item)
        except (TypeError, ValueError, RecursionError):
            return f"payload[{key!r}]"
    return "payload"


_encode = msgspec.json.Encoder().encode


class _Identified(msgspec.Struct, gc=False):
    """Just the id of an event, read from JSON that may not decode as an event."""

    id: uuid.UUID | None = None


_identified = msgspec.json.Decoder(_Identified)


def event_id_of(data: bytes | str) -> uuid.UUID | None:
    """The id of an event's JSON, read without the rest of it (which may break the rules,
    or not be an event at all); None when it has no id that can be read."""
    try:
        return decoded(_identified.decode, data).id
    except msgspec.DecodeError:
        return None


def decode_hook(type_: type, value: Any) -> Any:
    """msgspec ``dec_hook`` for resources typed on their own (events decode them natively)."""
    if type_ is Resource or type_ is RelatedResource:
        return type_(value)
    raise NotImplementedError(f"cannot decode {type_!r}")


class _EventBase(msgspec.Struct, kw_only=True):
    """Fields and rules shared by producer events and stored events (wire key order)."""

    occurred: AwareDatetime
    event: str
    if TYPE_CHECKING:
        resource: Resource
        related: list[RelatedResource] = msgspec.field(default_factory=list)
    else:  # msgspec checks plain string maps in C; __post_init__ adopts them as resources
        resource: dict[str, str]
        related: list[dict[str, str]] = msgspec.field(default_factory=list)
    payload: dict[str, Any] = msgspec.field(default_factory=dict)
    id: uuid.UUID
    follows: uuid.UUID | None = None

    def __post_init__(self) -> None:
        settings, decoded = _decoding()
        if not decoded:  # built in Python: msgspec's __init__ checks no type
            self._check_types()
        elif self.occurred.tzinfo is None:  # only reachable from Python: decoders refuse naive
            self.occurred = self.occurred.replace(tzinfo=UTC)
        problem = event_problem(self.event, self.resource, self.related, settings)
        if problem is not None:
            raise InvalidEventError(problem[1])
        self.resource = Resource._wrap(self.resource)
        self.related = [RelatedResource._wrap(r) for r in self.related]

    def _check_types(self) -> None:
        """Check each field's type; convert what Prefect's models would (strings, mappings,
        iterables). Resources become :class:`Resource` objects afterwards, as decoded ones do."""
        # Each test is inlined for the values already of the right type: a ReceivedEvent
        # decoded outside reading_stored_events() comes this way too.
        if type(self.occurred) is not datetime or self.occurred.tzinfo is None:
            self.occurred = _moment(self.occurred, "occurred")
        if not isinstance(self.event, str):
            raise InvalidEventError(f"event must be a string, got {_described(self.event)}")
        _check_labels(self.resource, "resource")
        if type(self.related) is not list or self.related:
            self.related = _related(self.related)
        if type(self.payload) is not dict or self.payload:
            self.payload = _payload(self.payload)
        if type(self.id) is not uuid.UUID:
            self.id = _uuid(self.id, "id")
        if self.follows is not None and type(self.follows) is not uuid.UUID:
            self.follows = _uuid(self.follows, "follows")

    @property
    def involved_resources(self) -> list[Resource]:
        """The primary resource followed by every related resource."""
        return [self.resource, *self.related]

    @property
    def resources_in_role(self) -> dict[str, list[RelatedResource]]:
        """Related resources grouped by role, in order."""
        grouped: dict[str, list[RelatedResource]] = {}
        for related in self.related:
            grouped.setdefault(related.role, []).append(related)
        return grouped

    @property
    def resource_in_role(self) -> dict[str, RelatedResource]:
        """The first related resource of each role."""
        return {role: found[0] for role, found in self.resources_in_role.items()}

    def find_resource_label(self, label: str) -> str | None:
        """A label's value; ``related:<role>:<label>`` looks on the first resource in a role."""
        directive, _, name = label.rpartition(":")
        kind, _, role = directive.partition(":")
        if kind == "related":
            for related in self.related:
                if related.role == role:
                    return related.get(name)
        return self.resource.get(label)

    @property
    def size_bytes(self) -> int:
        """Bytes of the compact JSON encoding: what the size limit applies to."""
        return len(msgspec.json.encode(self))


class Event(_EventBase, kw_only=True):
    """Something that happened to a resource: what producers emit.

    ``occurred`` defaults to now and ``id`` to a new time-ordered UUID. Resources may be given
    as plain mappings; they are read back as :class:`Resource` and :class:`RelatedResource`.
    """

    occurred: AwareDatetime = msgspec.field(default_factory=now_utc)
    id: uuid.UUID = msgspec.field(default_factory=uuid7)

    if TYPE_CHECKING:  # what callers may pass; the attributes keep the types declared above

        def __init__(
            self,
            *,
            occurred: datetime | str = ...,
            event: str,
            resource: Mapping[str, str],
            related: Iterable[Mapping[str, str]] = ...,
            payload: Mapping[str, Any] = ...,
            id: uuid.UUID | str = ...,
            follows: uuid.UUID | str | None = ...,
        ) -> None: ...


class ReceivedEvent(_EventBase, kw_only=True):
    """An event as the store keeps it: ``occurred`` and ``id`` required, plus ``received``."""

    received: AwareDatetime = msgspec.field(default_factory=now_utc)

    if TYPE_CHECKING:  # what callers may pass; the attributes keep the types declared above

        def __init__(
            self,
            *,
            occurred: datetime | str,
            event: str,
            resource: Mapping[str, str],
            related: Iterable[Mapping[str, str]] = ...,
            payload: Mapping[str, Any] = ...,
            id: uuid.UUID | str,
            follows: uuid.UUID | str | None = ...,
            received: datetime | str = ...,
        ) -> None: ...

    def _check_types(self) -> None:
        super()._check_types()
        if type(self.received) is not datetime or self.received.tzinfo is None:
            self.received = _moment(self.received, "received")


AnyEvent = Event | ReceivedEvent
"""An event as produced or as stored: what filters and helpers accept."""
