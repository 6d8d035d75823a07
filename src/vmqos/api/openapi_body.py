"""Request bodies in the OpenAPI document for routes that read their body themselves.

The routes take the raw JSON (`Body(None)`) so that a wrong body gets the real service's error
shape (Neutron's, Keystone's, ...), not FastAPI's; the document still states the body's schema
through `openapi_extra`. Pydantic's JSON schema keeps nested models in a local `$defs` that means
nothing inside an OpenAPI document (clients and fuzzers fail on the dangling `$ref`), so the
nested models are inlined here.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline(defs[ref.removeprefix("#/$defs/")], defs)
        return {key: _inline(value, defs) for key, value in node.items() if key != "$defs"}
    if isinstance(node, list):
        return [_inline(item, defs) for item in node]
    return node


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` for a route whose JSON body has the shape of `model` (nested models inlined)."""
    schema = model.model_json_schema()
    inlined = _inline(schema, schema.get("$defs", {}))
    return {"requestBody": {"content": {"application/json": {"schema": inlined}}}}
