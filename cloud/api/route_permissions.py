"""Which permission (and so which minimum role) each API route requires, read from the
routes' dependency trees — the source of the README's route table and of the role and
tenancy tests, so documentation and enforcement cannot drift apart."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from cloud.api.deps import permission_of
from cloud.auth.permissions import Permission
from cloud.store.models import Role


@dataclass(frozen=True, slots=True)
class RoutePermission:
    method: str
    path: str
    permission: Permission | None
    """None: the route needs no credentials (health, sign-in) or device credentials."""

    @property
    def minimum_role(self) -> Role | None:
        return self.permission.minimum_role if self.permission else None


def _permissions(dependant: Dependant) -> Iterator[Permission]:
    for sub in dependant.dependencies:
        if sub.call is not None and (found := permission_of(sub.call)) is not None:
            yield found
        yield from _permissions(sub)


def _api_routes(app: FastAPI) -> Iterator[tuple[str, set[str], Dependant]]:
    """(full path, methods, dependant) of every API route. FastAPI >= 0.160 keeps included
    routers as nodes that resolve prefixes lazily (``effective_route_contexts``); older
    versions flatten them into ``APIRoute`` objects."""
    for route in app.routes:
        if isinstance(route, APIRoute):
            yield route.path, set(route.methods or ()), route.dependant
        elif hasattr(route, "effective_route_contexts"):
            for context in route.effective_route_contexts():
                if context.dependant is not None:
                    yield context.path, set(context.methods), context.dependant


def route_permissions(app: FastAPI, prefix: str = "/api/v1") -> list[RoutePermission]:
    """Every route under ``prefix`` with its permission, sorted by path then method.
    Raises ``RuntimeError`` for a route that depends on more than one permission."""
    out: list[RoutePermission] = []
    for path, methods, dependant in _api_routes(app):
        if not path.startswith(prefix):
            continue
        found = set(_permissions(dependant))
        if len(found) > 1:
            raise RuntimeError(f"{path} depends on several permissions: {sorted(found)}")
        for method in sorted(methods):
            out.append(RoutePermission(method, path, next(iter(found), None)))
    return sorted(out, key=lambda r: (r.path, r.method))


def markdown_table(app: FastAPI) -> str:
    """The README's two permission tables: permission → roles, and route → permission."""
    roles = list(Role)
    lines = [
        "| permission | " + " | ".join(r.value for r in roles) + " | allows |",
        "|---|" + "---|" * len(roles) + "---|",
    ]
    for permission in Permission:
        marks = ["✓" if role.rank >= permission.minimum_role.rank else "" for role in roles]
        lines.append(
            f"| `{permission.value}` | " + " | ".join(marks) + f" | {permission.description} |"
        )
    lines += ["", "| route | permission | minimum role |", "|---|---|---|"]
    for route in route_permissions(app):
        if route.permission is None:
            lines.append(f"| `{route.method} {route.path}` | none | public |")
        else:
            lines.append(
                f"| `{route.method} {route.path}` | `{route.permission.value}` "
                f"| {route.permission.minimum_role.value} |"
            )
    return "\n".join(lines) + "\n"
