"""The rules of the protocol that a JSON schema cannot say, as plain functions.

Each ``*_problem`` returns ``None`` when the rule holds, else the message naming the problem.
Resources and events built in Python raise with these messages. The server's ingest path
finds the first bad event of a batch with :func:`first_breaking`, the same rules tested
inline, and explains it with :func:`event_problem`, so the two never disagree.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from localevents._settings import Settings

__all__ = (
    "RESOURCE_ID",
    "RESOURCE_NAME",
    "RESOURCE_ROLE",
    "Checkable",
    "event_problem",
    "first_breaking",
    "labels_problem",
    "size_problem",
)

RESOURCE_ID = "prefect.resource.id"
RESOURCE_ROLE = "prefect.resource.role"
RESOURCE_NAME = "prefect.resource.name"


def labels_problem(labels: Mapping[str, str], maximum: int, *, related: bool) -> str | None:
    """What is wrong with a resource's labels (id and, for related ones, role; the count)."""
    identifier = labels.get(RESOURCE_ID)
    if identifier is None:
        return f"Resources must include the {RESOURCE_ID} label"
    if not identifier:
        return f"The {RESOURCE_ID} label must be non-empty"
    if len(labels) > maximum:
        return f"The maximum number of labels per resource is {maximum}"
    if related:
        role = labels.get(RESOURCE_ROLE)
        if role is None:
            return f"Related Resources must include the {RESOURCE_ROLE} label"
        if not role:
            return f"The {RESOURCE_ROLE} label must be non-empty"
    return None


def size_problem(size: int, settings: Settings) -> str | None:
    """What is wrong with an event whose compact JSON is ``size`` bytes long, if anything."""
    maximum = settings.events_maximum_size_bytes
    if size <= maximum:
        return None
    return (
        f"the event is {size} bytes of JSON, over the limit of {maximum} "
        "(LOCALEVENTS_EVENTS_MAXIMUM_SIZE_BYTES)"
    )


def event_problem(
    name: str,
    resource: Mapping[str, str],
    related: Sequence[Mapping[str, str]],
    settings: Settings,
) -> tuple[str, str] | None:
    """What is wrong with an event, and where (a path below the event), if anything."""
    if len(name) > settings.events_maximum_event_name_length:
        maximum = settings.events_maximum_event_name_length
        return "event", f"Event name must be at most {maximum} characters"
    maximum_labels = settings.events_maximum_labels_per_resource
    problem = labels_problem(resource, maximum_labels, related=False)
    if problem is not None:
        return "resource", problem
    if len(related) > settings.events_maximum_related_resources:
        limit = settings.events_maximum_related_resources
        return "related", f"The maximum number of related resources is {limit}"
    for index, labels_of_related in enumerate(related):
        problem = labels_problem(labels_of_related, maximum_labels, related=True)
        if problem is not None:
            return f"related[{index}]", problem
    return None


class Checkable(Protocol):
    """What the rules read of an event."""

    @property
    def event(self) -> str: ...
    @property
    def resource(self) -> Mapping[str, str]: ...
    @property
    def related(self) -> Sequence[Mapping[str, str]]: ...


def first_breaking(events: Sequence[Checkable], settings: Settings) -> int:
    """The index of the first event that :func:`event_problem` would refuse, or
    ``len(events)`` when none breaks a rule.

    The same rules, tested inline in one loop: the server's ingest path checks every event
    of every batch, and there a function call per event cost more than the tests.
    """
    longest_name = settings.events_maximum_event_name_length
    most_labels = settings.events_maximum_labels_per_resource
    most_related = settings.events_maximum_related_resources
    for index, event in enumerate(events):
        resource, related = event.resource, event.related
        if (
            len(event.event) > longest_name
            or not resource.get(RESOURCE_ID)
            or len(resource) > most_labels
            or len(related) > most_related
        ):
            return index
        for labels in related:
            if not (labels.get(RESOURCE_ID) and labels.get(RESOURCE_ROLE)):
                return index
            if len(labels) > most_labels:
                return index
    return len(events)
