"""RFC 9457 problem+json for every error the API returns, validation errors included."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from cloud.errors import CloudError, RateLimited, Unauthorized

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
_LOCATIONS = {"query": "query parameter", "path": "path parameter", "body": "body field",
              "header": "header", "cookie": "cookie"}


def problem(
    status: int,
    *,
    title: str | None = None,
    detail: str | None = None,
    type_: str = "about:blank",
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": type_,
        "title": title or HTTPStatus(status).phrase,
        "status": status,
    }
    if detail is not None:
        body["detail"] = detail
    if instance is not None:
        body["instance"] = instance
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _field(loc: tuple[Any, ...] | list[Any]) -> tuple[str, str]:
    """(kind of location, dotted field path) of a validation error location."""
    where = str(loc[0]) if loc else "request"
    path = ".".join(str(p) for p in loc[1:]) or where
    return _LOCATIONS.get(where, where), path


async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = []
    messages = []
    for error in exc.errors():
        kind, path = _field(error.get("loc", ()))
        message = str(error.get("msg", "invalid"))
        errors.append({"location": kind, "field": path, "message": message,
                       "type": error.get("type")})
        messages.append(f"{kind} {path!r}: {message}")
    return problem(
        422,
        title="Invalid request",
        detail="; ".join(messages),
        type_="urn:fieldgate:problem:validation",
        instance=request.url.path,
        errors=errors,
    )


async def _cloud_error(request: Request, exc: CloudError) -> JSONResponse:
    extra = dict(exc.extra)
    if "field" in extra:  # name the parameter like validation errors do
        extra["errors"] = [{"field": extra.pop("field"), "message": exc.detail}]
    headers = None
    if isinstance(exc, Unauthorized):
        headers = {"WWW-Authenticate": 'Bearer realm="fieldgate"'}
    elif isinstance(exc, RateLimited):
        headers = {"Retry-After": str(exc.retry_after)}
    return problem(
        exc.status, title=exc.title, detail=exc.detail, type_=exc.type,
        instance=request.url.path, headers=headers, **extra,
    )


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    detail = exc.detail if isinstance(exc.detail, str) else None
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"no route {request.method} {request.url.path}"
    return problem(exc.status_code, detail=detail, instance=request.url.path,
                   headers=getattr(exc, "headers", None))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem(500, detail="internal error; see the server log",
                   type_="urn:fieldgate:problem:internal", instance=request.url.path)


def install(app: FastAPI) -> None:
    """Register the problem+json handlers on ``app``."""
    app.add_exception_handler(RequestValidationError, _validation)  # type: ignore[arg-type]
    app.add_exception_handler(CloudError, _cloud_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected)
