"""The web console under /ui: static files shipped in this package, served by `forwarder api`.

The page is plain HTML, CSS and one script; it calls the API it is served by (same origin)
and nothing else, which the Content-Security-Policy enforces in the browser.
"""

from __future__ import annotations

from importlib import resources

from aiohttp import web

PREFIX = "/ui"
# The files the page is made of, by name, with their content type; nothing else is served.
ASSETS = {
    "index.html": "text/html; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    # A new release's files are fetched again rather than mixed with cached ones.
    "Cache-Control": "no-cache",
}


def is_console_path(path: str) -> bool:
    return path == "/" or path == PREFIX or path.startswith(PREFIX + "/")


def load_assets() -> dict[str, bytes]:
    static = resources.files(__name__).joinpath("static")
    return {name: static.joinpath(name).read_bytes() for name in ASSETS}


def add_console_routes(app: web.Application) -> None:
    assets = load_assets()

    async def redirect(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": PREFIX + "/", **SECURITY_HEADERS})

    async def asset(request: web.Request) -> web.Response:
        name = request.match_info.get("name") or "index.html"
        if name not in assets:
            return web.Response(
                status=404, text="not found", content_type="text/plain", headers=SECURITY_HEADERS
            )
        return web.Response(
            body=assets[name], headers={"Content-Type": ASSETS[name], **SECURITY_HEADERS}
        )

    app.router.add_get("/", redirect)
    app.router.add_get(PREFIX, redirect)
    app.router.add_get(PREFIX + "/", asset)
    app.router.add_get(PREFIX + "/{name}", asset)
