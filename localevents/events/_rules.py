"""The rules of the protocol that a JSON schema cannot say, as plain functions.

Each returns ``None`` when the rule holds, else the message naming the problem. Resources and
events built in Python raise with these messages; the server's ingest path checks decoded
batches with the same functions, so the two never disagree.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from localevents._settings import Settings

__all__ = ("RESOURCE_ID", "RESOURCE_NAME", "RESOURCE_ROLE", "event_problem", "labels_problem")

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


def event_problem(
    name: str,
    resource: Mapping[str, str],
    related: Sequence[Mapping[str, str]],
    settings: Settings,
) -> tuple[str, str] | None:
    """What is wrong with an event, and where (a path below the event), if anything."""
    maximum_labels = settings.events_maximum_labels_per_resource
    if (  # every rule at once, cheaply: the common case on the ingest path
        len(name) <= settings.events_maximum_event_name_length
        and resource.get(RESOURCE_ID)
        and len(resource) <= maximum_labels
        and len(related) <= settings.events_maximum_related_resources
        and all(
            r.get(RESOURCE_ID) and r.get(RESOURCE_ROLE) and len(r) <= maximum_labels
            for r in related
        )
    ):
        return None
    if len(name) > settings.events_maximum_event_name_length:
        maximum = settings.events_maximum_event_name_length
        return "event", f"Event name must be at most {maximum} characters"
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
    raise AssertionError("the quick check and the explanation disagree")
