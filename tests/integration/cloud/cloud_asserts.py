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
