"""Every route of the billing app, with the policy it states (for the role and cookie tables)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import asyncpg
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts

from billing.accounts.domain import Role
from billing.auth.policy import Allow
from billing.auth.service import hash_api_key, new_api_key


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


async def user_key(database_url: str, account_id: str, role: Role) -> str:
    """A user of the account with the role, and an API key of theirs."""
    key = new_api_key()
    connection = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    try:
        user_id = uuid.uuid4()
        await connection.execute(
            "INSERT INTO app_user (id, account_id, name, email, role, status) "
            "VALUES ($1, $2, $3, $4, $5, 'ACTIVE')",
            user_id,
            uuid.UUID(account_id),
            f"User {role.value}",
            f"{role.value}-{uuid.uuid4().hex[:6]}@roles.example.com",
            role.name,
        )
        await connection.execute(
            "INSERT INTO api_key (id, key_hash, account_id, user_id) VALUES ($1, $2, $3, $4)",
            uuid.uuid4(),
            hash_api_key(key),
            uuid.UUID(account_id),
            user_id,
        )
    finally:
        await connection.close()
    return key
