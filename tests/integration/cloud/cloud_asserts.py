"""Assertions shared by the cloud API tests. Imported by module name."""

from __future__ import annotations

from typing import Any

import httpx

PROBLEM = "application/problem+json"


def assert_problem(response: httpx.Response, status: int, *in_detail: str) -> dict[str, Any]:
    """``response`` is an RFC 9457 problem with ``status`` whose detail contains each of
    ``in_detail``; returns the body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["title"] and body["type"]
    for text in in_detail:
        assert text in body["detail"], body
    return body


def error_fields(body: dict[str, Any]) -> list[str]:
    """The fields named by a 422 problem's ``errors``."""
    return [error["field"] for error in body["errors"]]


async def post(client: httpx.AsyncClient, tenant: Any, path: str, **payload: Any) -> Any:
    """POST ``payload`` to ``/api/v1/{path}`` as ``tenant``; asserts 201, returns the body."""
    response = await client.post(f"/api/v1/{path}", json=payload, headers=tenant.headers)
    assert response.status_code == 201, response.text
    return response.json()
