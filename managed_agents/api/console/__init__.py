"""The trace console (issue 6): static HTML/CSS/JS served by the API app at `/console/`.

No build step and no CDN: every asset lives in `static/` next to this module and is served from here. The pages
talk to the public JSON API with the API key the user typed (kept in sessionStorage, sent as `Authorization:
Bearer`), so the console sees exactly what that key's workspace may see and nothing else.

Paths are relative (`static/app.js`, `../v1/...`) so the console also works under a path prefix such as an API
Gateway stage (`/prod/console/`).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse, Response

from managed_agents.domain import prices
from managed_agents.domain.errors import NotFound

STATIC_DIR = (Path(__file__).parent / "static").resolve()
GENERATED_ASSETS = ("prices.js",)  # served from code, not from static/ (see console_prices)

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",
}

# Everything the pages load comes from this origin; no inline script, no framing, no referrer (session ids are in
# the fragment, but a strict policy costs nothing).
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}

router = APIRouter(prefix="/console", include_in_schema=False)


def _file(path: Path, *, cache: str) -> FileResponse:
    media_type = CONTENT_TYPES.get(path.suffix)
    if media_type is None:
        raise NotFound(f"console asset {path.name!r} not found")
    headers = {**SECURITY_HEADERS, "cache-control": cache}
    return FileResponse(path, media_type=media_type, headers=headers)


def asset_path(name: str) -> Path:
    """The file under static/ that `name` names, refusing anything outside it (`..`, absolute paths, dot files)."""
    parts = name.split("/")
    if not name or any(p in ("", ".", "..") or p.startswith(".") or "\\" in p for p in parts):
        raise NotFound(f"console asset {name[:200]!r} not found")
    path = (STATIC_DIR / name).resolve()
    if not path.is_relative_to(STATIC_DIR) or not path.is_file():
        raise NotFound(f"console asset {name[:200]!r} not found")
    return path


@router.get("")
async def console_root() -> Response:
    # relative, so a path prefix in front of /console is kept
    return RedirectResponse("console/", status_code=308)


@router.get("/")
async def console_index() -> FileResponse:
    return _file(STATIC_DIR / "index.html", cache="no-cache")


@router.get("/static/prices.js")
async def console_prices() -> Response:
    """The platform's price table (domain/prices.py) as the module pricing.js imports: one table for budgets and
    the console's estimates."""
    headers = {**SECURITY_HEADERS, "cache-control": "no-cache"}
    return Response(prices.console_module(), media_type=CONTENT_TYPES[".js"], headers=headers)


@router.get("/static/{name:path}")
async def console_asset(name: str) -> FileResponse:
    # no-cache = revalidate with the ETag FileResponse sends: a new deployment is picked up at once
    return _file(asset_path(name), cache="no-cache")
