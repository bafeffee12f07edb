"""The OpenAPI document: request and response bodies described from the msgspec models.

Routes decode their bodies themselves (faster, and with our error messages), so the framework
cannot see the body types; each route names its body schema here instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import msgspec
from litestar.openapi.spec import Components, Operation

if TYPE_CHECKING:
    from litestar import Litestar
    from litestar.openapi.spec import Schema

from localevents.events._counting import EventCount
from localevents.events._pages import EventPage
from localevents.events._schemas import ReceivedEvent, RelatedResource, Resource
from localevents.server._bodies import CountRequest, FilterRequest

__all__ = ("add_body_schemas", "body_operation")

_LABELS: dict[str, Any] = {
    "type": "object",
    "additionalProperties": {"type": "string"},
    "required": ["prefect.resource.id"],
}


def _schema_hook(type_: type) -> dict[str, Any]:
    if type_ is Resource:
        return {**_LABELS, "title": "Resource"}
    if type_ is RelatedResource:
        return {
            **_LABELS,
            "title": "RelatedResource",
            "required": ["prefect.resource.id", "prefect.resource.role"],
        }
    raise NotImplementedError


_TYPES = (list[ReceivedEvent], FilterRequest, CountRequest, EventPage, list[EventCount])
_SCHEMAS, _COMPONENT_SCHEMAS = msgspec.json.schema_components(
    _TYPES, schema_hook=_schema_hook, ref_template="#/components/schemas/{name}"
)
SCHEMAS = dict(zip(("events", "filter", "count", "page", "counts"), _SCHEMAS, strict=True))


def add_body_schemas(app: Litestar) -> None:
    """Add the body models to the app's OpenAPI components (the framework fills that table
    from the types it decodes itself, which these bodies are not). This builds the document
    now, which costs about 0.1 s: in-process apps, which serve no docs, skip it."""
    components = app.openapi_schema.components
    assert isinstance(components, Components)
    schemas = components.schemas if components.schemas is not None else {}
    schemas.update(cast("dict[str, Schema]", _COMPONENT_SCHEMAS))
    components.schemas = schemas


def body_operation(schema_name: str) -> type[Operation]:
    """An Operation class whose request body is the named JSON schema."""
    schema = SCHEMAS[schema_name]

    @dataclass
    class JSONBodyOperation(Operation):
        def to_schema(self) -> dict[str, Any]:
            result = super().to_schema()
            content = {"application/json": {"schema": schema}}
            result["requestBody"] = {"required": schema_name != "filter", "content": content}
            return result

    return JSONBodyOperation
