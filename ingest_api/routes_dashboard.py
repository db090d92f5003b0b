"""The dashboard: a static page, its assets (shipped in the package: nothing comes from a CDN), and the view it
fetches with the viewer's own credential.

The page holds no data and no credential; its script sends the pasted token (or admin key) with each view request,
which `viewer_endpoint` resolves like any API call. Every response carries a strict Content-Security-Policy: scripts,
styles and images from this origin only, no inline script or style, no framing, nothing sent elsewhere.
"""

from __future__ import annotations

import asyncio
from importlib import resources

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from ingest_api.auth import Viewer, viewer_endpoint
from ingest_api.charts import chart_stylesheet
from ingest_api.dashboard import admin_dashboard, client_dashboard
from ingest_api.dashboard_page import render_admin, render_client
from ingest_api.errors import ApiError

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
_STATIC = resources.files("ingest_api") / "dashboard_static"
# The assets by name: a fixed set, so no request path ever reaches the file system.
ASSET_TYPES = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
    "charts.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}


def _asset(name: str) -> str:
    if name == "charts.css":
        return chart_stylesheet()
    return (_STATIC / name).read_text(encoding="utf-8")


async def page(request: Request) -> HTMLResponse:
    return HTMLResponse(_asset("index.html"), headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"})


async def asset(request: Request) -> Response:
    name = str(request.path_params["name"])
    media_type = ASSET_TYPES.get(name)
    if media_type is None:
        raise ApiError(404, "NOT_FOUND", f"no dashboard asset {name!r}")
    return Response(_asset(name), media_type=media_type, headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"})


@viewer_endpoint
async def view(request: Request, viewer: Viewer) -> HTMLResponse:
    # Drawing takes tens of milliseconds (an hour of samples, 30 days of labels): off the event loop, so usage
    # posts are not held up by someone looking at charts.
    if viewer.principal is None:
        body = await asyncio.to_thread(render_admin, await admin_dashboard(viewer.svc))
    else:
        body = await asyncio.to_thread(render_client, await client_dashboard(viewer.svc, viewer.principal))
    return HTMLResponse(body, headers={**SECURITY_HEADERS, "Cache-Control": "no-store"})


routes = [
    Route("/dashboard", page, methods=["GET"]),
    Route("/dashboard/assets/{name}", asset, methods=["GET"]),
    Route("/dashboard/view", view, methods=["GET"]),
]
