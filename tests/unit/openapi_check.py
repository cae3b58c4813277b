"""Check an HTTP answer against the OpenAPI document that its service serves."""
from __future__ import annotations

import jsonschema


def response_schema(doc: dict, path: str, method: str, status: int, content_type: str) -> dict:
    """The schema the document gives for this answer; KeyError when the document does not list it."""
    responses = doc["paths"][path][method.lower()]["responses"]
    response = responses.get(str(status)) or responses["default"]
    media = content_type.split(";")[0].strip()
    return response["content"][media]["schema"]


def check(doc: dict, path: str, method: str, status: int, content_type: str, body) -> None:
    """Raise if the answer's status, media type or body is not what the document says."""
    schema = response_schema(doc, path, method, status, content_type)
    if content_type.startswith("application/json"):
        jsonschema.Draft202012Validator(schema).validate(body)
