"""Events and the resources they happen to: the wire model of the Prefect events protocol.

Field names, label names and key order are the protocol's; every rule of SPEC B §1 is checked
when an object is built, whether by the caller or by a decoder, with a message naming the
problem. Limits come from the active settings at construction time, or from the settings
given to :func:`checking_limits_of` for a block (a server checks against its own settings).
"""

from __future__ import annotations

import contextlib
import contextvars
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import msgspec

from localevents._settings import get_settings
from localevents.events._time import now_utc, uuid7

if TYPE_CHECKING:
    from collections.abc import Iterator

    from localevents._settings import Settings

__all__ = (
    "AwareDatetime",
    "Event",
    "ReceivedEvent",
    "RelatedResource",
    "Resource",
    "checking_limits_of",
    "decode_hook",
)

RESOURCE_ID = "prefect.resource.id"
RESOURCE_ROLE = "prefect.resource.role"
RESOURCE_NAME = "prefect.resource.name"

AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]
"""A datetime that must carry an offset on the wire (naive input is an error)."""

# A context variable, not the process-wide settings override: it holds for one decode in one
# task or thread, so concurrent servers with different limits never see each other's.
_limits: contextvars.ContextVar[Settings | None] = contextvars.ContextVar(
    "localevents_event_limits", default=None
)


def _active_limits() -> Settings:
    return _limits.get() or get_settings()


@contextlib.contextmanager
def checking_limits_of(settings: Settings) -> Iterator[None]:
    """Check events built in this block against ``settings``' limits, not the active ones."""
    token = _limits.set(settings)
    try:
        yield
    finally:
        _limits.reset(token)


class Resource(dict[str, str]):
    """The labels of a resource; ``prefect.resource.id`` is required and non-empty."""

    __slots__ = ()

    def __init__(self, labels: Any = (), /, **more: str) -> None:
        if not isinstance(labels, dict | list | tuple):
            raise TypeError("Input should be a valid dictionary")
        super().__init__(labels, **more)
        self._validate()

    def _validate(self) -> None:
        for label, value in self.items():
            if not isinstance(value, str):
                raise TypeError(f"label {label!r} should be a valid string")
        if RESOURCE_ID not in self:
            raise ValueError(f"Resources must include the {RESOURCE_ID} label")
        if not self[RESOURCE_ID]:
            raise ValueError(f"The {RESOURCE_ID} label must be non-empty")
        maximum = _active_limits().events_maximum_labels_per_resource
        if len(self) > maximum:
            raise ValueError(f"The maximum number of labels per resource is {maximum}")

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

    def _validate(self) -> None:
        super()._validate()
        if RESOURCE_ROLE not in self:
            raise ValueError(f"Related Resources must include the {RESOURCE_ROLE} label")
        if not self[RESOURCE_ROLE]:
            raise ValueError(f"The {RESOURCE_ROLE} label must be non-empty")

    @property
    def role(self) -> str:
        """The value of ``prefect.resource.role``."""
        return self[RESOURCE_ROLE]


def decode_hook(type_: type, value: Any) -> Any:
    """msgspec ``dec_hook``: builds (and so validates) resources while decoding."""
    if type_ is Resource or type_ is RelatedResource:
        return type_(value)
    raise NotImplementedError(f"cannot decode {type_!r}")


class _EventBase(msgspec.Struct, kw_only=True):
    """Fields and rules shared by producer events and stored events (wire key order)."""

    occurred: AwareDatetime
    event: str
    resource: Resource
    related: list[RelatedResource] = msgspec.field(default_factory=list)
    payload: dict[str, Any] = msgspec.field(default_factory=dict)
    id: uuid.UUID
    follows: uuid.UUID | None = None

    def __post_init__(self) -> None:
        settings = _active_limits()
        if self.occurred.tzinfo is None:  # only reachable from Python: decoders refuse naive
            self.occurred = self.occurred.replace(tzinfo=UTC)
        if len(self.event) > settings.events_maximum_event_name_length:
            maximum = settings.events_maximum_event_name_length
            raise ValueError(f"Event name must be at most {maximum} characters")
        if type(self.resource) is not Resource:
            self.resource = Resource(self.resource)
        if len(self.related) > settings.events_maximum_related_resources:
            maximum = settings.events_maximum_related_resources
            raise ValueError(f"The maximum number of related resources is {maximum}")
        self.related = [
            r if type(r) is RelatedResource else RelatedResource(r) for r in self.related
        ]

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

    ``occurred`` defaults to now and ``id`` to a new time-ordered UUID.
    """

    occurred: AwareDatetime = msgspec.field(default_factory=now_utc)
    id: uuid.UUID = msgspec.field(default_factory=uuid7)


class ReceivedEvent(_EventBase, kw_only=True):
    """An event as the store keeps it: ``occurred`` and ``id`` required, plus ``received``."""

    received: AwareDatetime = msgspec.field(default_factory=now_utc)
