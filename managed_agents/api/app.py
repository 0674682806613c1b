"""The ASGI app: one app for the embedded server and the API Lambda (behind Lambda Web Adapter)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI

from managed_agents import __version__
from managed_agents.api import console
from managed_agents.api.errors import RequestIdMiddleware, install_error_handlers
from managed_agents.api.hot_routes import HotRoutes
from managed_agents.api.openapi import install_openapi
from managed_agents.api.routes import (
    agents,
    deployments,
    environments,
    files,
    materials,
    memory_stores,
    planned,
    session_resources,
    sessions,
    skills,
    threads,
    vaults,
    webhooks,
    work,
)

if TYPE_CHECKING:
    from managed_agents.wiring import Runtime


def create_app(rt: Runtime) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # the harness's model requests run on the serving loop while it serves (adapters/anthropic_model.py)
        loop = asyncio.get_running_loop()
        rt.serve_model_requests_on(loop)
        try:
            yield
        finally:
            rt.serve_model_requests_on(loop, leaving=True)

    app = FastAPI(
        title="Managed Agents (self-hosted)",
        version=__version__,
        description="The Anthropic Managed Agents API, served by your own deployment.",
        docs_url="/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.runtime = rt
    install_error_handlers(app)
    app.add_middleware(HotRoutes)  # inside RequestIdMiddleware (the last added is the outermost)
    app.add_middleware(RequestIdMiddleware)
    # sessions first: a request is matched against each router in turn (each scanning its routes), and event sends and
    # streams are most of a busy server's requests (no two routers here share a path, so the order changes nothing else)
    built = (
        sessions.router,
        agents.router,
        environments.router,
        session_resources.router,
        threads.router,
        work.router,
        work.keys_router,
        vaults.router,
        files.router,
        deployments.router,
        deployments.runs_router,
        webhooks.router,
        webhooks.organization_router,
        materials.router,
        materials.outputs_router,
        materials.inputs_router,
    )
    know_how = (skills.router, memory_stores.router)
    for r in (*built, *know_how, console.router, *planned.routers):  # planned last: a built route always wins
        app.include_router(r)

    install_openapi(app)

    @app.get("/health", tags=["health"])
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app
