"""The lean event send (api/hot_routes.py) takes its door and fields from the app's own route."""

from __future__ import annotations

from managed_agents.api import betas
from managed_agents.api.hot_routes import SEND_ROUTE, HotRoutes, _is_json
from managed_agents.api.routes.sessions import send_events


def test_the_send_route_is_the_sessions_routers_own() -> None:
    # When HotRoutes looks up the route whose door, body field and response field it uses
    route = HotRoutes(lambda *a: None)._route()
    # Then it is the send route of the sessions router, with its beta rule
    assert route is not None and route.endpoint is send_events and route.path == SEND_ROUTE
    assert route.beta is betas.SESSIONS_API and route.body_field is not None and route.response_field is not None


def test_only_a_json_body_is_taken() -> None:
    assert _is_json("application/json") and _is_json("Application/JSON; charset=utf-8")
    assert not _is_json(None) and not _is_json("text/plain") and not _is_json("application/vnd.api+json")
