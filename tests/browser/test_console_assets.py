"""How the console's files are served (no browser needed): paths, types, security headers, no escape from static/."""

from __future__ import annotations

import httpx2
import pytest

from managed_agents.api.console import GENERATED_ASSETS, STATIC_DIR
from managed_agents.domain import prices
from tests.e2e.conftest import Server


@pytest.fixture
def http(server: Server) -> httpx2.Client:
    return httpx2.Client(base_url=server.url, timeout=30, follow_redirects=False)  # (a bound, not a timing: CI load)


def test_console_redirects_to_its_directory(http: httpx2.Client) -> None:
    resp = http.get("/console")
    assert resp.status_code == 308
    assert resp.headers["location"] == "console/"  # relative: keeps a path prefix such as an API Gateway stage


def test_index_and_every_asset_are_served_with_their_type(http: httpx2.Client) -> None:
    index = http.get("/console/")
    assert index.status_code == 200
    assert index.headers["content-type"] == "text/html; charset=utf-8"
    csp = index.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert index.headers["x-content-type-options"] == "nosniff"
    assert index.headers["referrer-policy"] == "no-referrer"
    names = sorted(p.name for p in STATIC_DIR.iterdir() if p.is_file() and p.name != "index.html")
    assert "app.js" in names and "console.css" in names
    for name in names:
        resp = http.get(f"/console/static/{name}")
        assert resp.status_code == 200, name
        expected = "text/javascript" if name.endswith(".js") else "text/css"
        assert resp.headers["content-type"].startswith(expected), name
        assert resp.headers.get("etag"), name
    # every module the index and the modules import exists (no build step: a typo would be a blank page)
    for name in names:
        if name.endswith(".js"):
            for line in (STATIC_DIR / name).read_text().splitlines():
                if line.startswith("import ") and " from " in line:
                    target = line.split(" from ")[1].strip().strip('";').removeprefix("./")
                    assert (STATIC_DIR / target).is_file() or target in GENERATED_ASSETS, f"{name} imports {target}"
    for name in GENERATED_ASSETS:
        resp = http.get(f"/console/static/{name}")
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/javascript"), name
        assert resp.headers["content-security-policy"] == index.headers["content-security-policy"]


def test_the_console_prices_with_the_platform_table(http: httpx2.Client) -> None:
    # Given the platform's price table (budgets price model requests with it)
    # When the console loads its prices module
    text = http.get("/console/static/prices.js").text
    # Then it is that table: every model, its rates, and the date they were read
    assert f'PRICES_AS_OF = "{prices.PRICES_AS_OF}"' in text
    for model, price in prices.PRICES.items():
        assert f'"{model}": {{' in text
        assert f'"output": {float(price.output)}' in text


@pytest.mark.parametrize(
    "path",
    [
        "/console/static/../__init__.py",
        "/console/static/%2e%2e/__init__.py",
        "/console/static/..%2f__init__.py",
        "/console/static/nope.js",
        "/console/static/",
        "/console/static/.hidden",
    ],
)
def test_nothing_outside_static_is_served(http: httpx2.Client, path: str) -> None:
    resp = http.get(path)
    assert resp.status_code == 404
    assert resp.json()["type"] == "error"
    assert "def " not in resp.text


def test_console_is_not_in_the_api_schema(http: httpx2.Client) -> None:
    paths = http.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith("/console")]
