"""Every route of the billing app, with the policy it states (for the role and cookie tables)."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts

from billing.auth.policy import Allow


def api_routes(app: FastAPI) -> list[tuple[str, str, APIRoute]]:
    """(method, path template, route) of every API route, included routers' too."""
    found = [
        (method, context.original_route.path, context.original_route)
        for context in iter_route_contexts(app.routes)
        if isinstance(context.original_route, APIRoute)
        for method in sorted(context.original_route.methods)
    ]
    assert len(found) > 10, "the walk sees the included routers' routes"
    return found


def policies(dependant: Dependant) -> Iterator[Allow]:
    """The policies among a route's dependencies, at any depth."""
    for dependency in dependant.dependencies:
        if isinstance(dependency.call, Allow):
            yield dependency.call
        yield from policies(dependency)
