"""The API's exact contract: every error a client can get is declared with the body actually sent.

- :class:`ErrorResponse` is the one error body of the API (``error`` code, ``detail`` sentence, and
  ``violations`` naming field, value, rule and message where input was refused). :func:`openapi_with_errors`
  declares it in ``/openapi.json`` for every status an operation can answer with (400, 401, 403, 404,
  409, 413, 422), in place of FastAPI's own validation-error schema, which this API never sends.
- :class:`InputGuard` refuses, before any endpoint runs, what no endpoint can store: bodies over the
  size limit (413), and text with NUL characters, lone UTF-16 surrogates or overlong values in the
  path, the query or the JSON body (422 naming the field). A database would otherwise fail on them
  deep inside a transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY_BYTES = 1024 * 1024        # a form save is a few kB; a megabyte is far beyond any real request
MAX_TEXT_LENGTH = 20_000            # characters in any one string value (the longest field holds 500)
ERROR_STATUSES = {
    400: "The request could not be read",
    401: "No, invalid, expired or revoked bearer token (or wrong credentials)",
    403: "The role or site may not do this",
    404: "Unknown (or another site's) subject, visit, form or record",
    409: "Stale version, or the action is not allowed in the record's state: nothing was written",
    413: f"Request body larger than {MAX_BODY_BYTES} bytes",
    422: "Invalid input: every violation with field, value, rule and message; nothing was written",
    503: "The database could not be reached or did not answer in time; retry after the Retry-After seconds",
}


class ViolationBody(BaseModel):
    field: str = Field(description="Field (or request part: path, query parameter, JSON path) that was refused")
    value: Any = Field(None, description="The value given (null when it cannot be echoed)")
    rule: str = Field(description="Machine code of the rule broken")
    message: str = Field(description="What is wrong, fit to show a user")


class ErrorResponse(BaseModel):
    """The body of every error answer of the API."""

    error: str = Field(description="Machine code, e.g. validation_failed, unauthenticated, forbidden")
    detail: str = Field(description="One sentence for a person")
    violations: list[ViolationBody] | None = Field(None, description="Every refused value (422)")


def error_json(status: int, error: str, detail: str, violations: list[dict[str, Any]] | None = None) -> bytes:
    body = {"error": error, "detail": detail} | ({"violations": violations} if violations is not None else {})
    return json.dumps(body).encode("utf-8")


# ---------------------------------------------------------------------------------------------- OpenAPI
def openapi_with_errors(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document with :class:`ErrorResponse` declared for every error status of every API call."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    error_schema = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(error_schema.pop("$defs", {}))
    components["ErrorResponse"] = error_schema
    ref = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
    for path, item in schema.get("paths", {}).items():
        if not path.startswith("/api") or path == "/api/health":
            continue
        for operation in item.values():
            responses = operation.setdefault("responses", {})
            for status, description in ERROR_STATUSES.items():
                declared = responses.get(str(status), {})
                responses[str(status)] = {"description": declared.get("description", description), "content": ref}
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    app.openapi_schema = schema
    return schema


# ---------------------------------------------------------------------------------------------- input guard
def _text_problem(value: str) -> tuple[str, str] | None:
    if "\x00" in value:
        return "no_nul", "must not contain NUL characters"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "unicode", "must be valid Unicode text (it contains a lone UTF-16 surrogate)"
    if len(value) > MAX_TEXT_LENGTH:
        return "max_length", f"must be at most {MAX_TEXT_LENGTH} characters"
    return None


def _walk(value: Any, path: str) -> Iterator[tuple[str, str, str]]:
    if isinstance(value, str):
        problem = _text_problem(value)
        if problem:
            yield path or "(body)", *problem
    elif isinstance(value, dict):
        for key, item in value.items():
            key_problem = _text_problem(key)
            if key_problem:
                yield (path or "(body)"), *key_problem
                continue
            yield from _walk(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _walk(item, f"{path}[{i}]")


def _violation(field: str, rule: str, message: str) -> dict[str, Any]:
    return {"field": field, "value": None, "rule": rule, "message": message}


class InputGuard:
    """ASGI middleware for ``/api``: size limit (413) and text no store can hold (422), before the endpoint."""

    def __init__(self, app: ASGIApp, max_body: int = MAX_BODY_BYTES):
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope.get("path", "").startswith("/api"):
            await self.app(scope, receive, send)
            return
        violations = list(self._url_violations(scope))
        if violations:
            await self._reply(send, 422, "validation_failed", "the request contains text that cannot be stored",
                              violations)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            await self._reply(send, 413, "payload_too_large",
                              f"the request body is larger than {self.max_body} bytes")
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                await self._reply(send, 413, "payload_too_large",
                                  f"the request body is larger than {self.max_body} bytes")
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if body and b"json" in headers.get(b"content-type", b""):
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None  # FastAPI answers malformed JSON with its own 422
            violations = [_violation(field, rule, message) for field, rule, message in _walk(parsed, "")]
            if violations:
                await self._reply(send, 422, "validation_failed",
                                  f"{len(violations)} value(s) cannot be stored", violations)
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    @staticmethod
    def _url_violations(scope: Scope) -> Iterator[dict[str, Any]]:
        problem = _text_problem(scope.get("path", ""))
        if problem:
            yield _violation("(path)", *problem)
        raw = scope.get("query_string", b"")
        try:
            pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, errors="strict")
        except UnicodeDecodeError:
            yield _violation("(query)", "unicode", "the query string is not valid UTF-8")
            return
        for name, value in pairs:
            problem = _text_problem(name) or _text_problem(value)
            if problem:
                yield _violation(name if _text_problem(name) is None else "(query)", *problem)

    @staticmethod
    async def _reply(send: Send, status: int, error: str, detail: str,
                     violations: list[dict[str, Any]] | None = None) -> None:
        body = error_json(status, error, detail, violations)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"cache-control", b"no-store")]})
        await send({"type": "http.response.body", "body": body})
