"""The web console's server side: serves the files in `ingress/console/` under `/ui` on the admin port.

The console is a client of the admin API (the browser calls the same paths as
the `restate` CLI, `POST /query` included), so all this module does is hand
out its files: `/ui/assets/<path>` is a file, every other path under `/ui` is
the page shell (`index.html`), whose script renders the page the URL names,
so each page can be linked and reloaded. The files ship inside the package
(package-data) and are read once, when the app is built. Every answer carries
a Content-Security-Policy that allows only the console's own scripts and
styles and no inline code, as a second line of defence behind the rule that
the console never turns data into HTML.
"""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

CONSOLE_DIR: Final = Path(__file__).parent / "console"
"""Where the console's files are: `index.html` and the `assets/` it loads."""

SHELL: Final = "index.html"

CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

_CONTENT_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}


@dataclass(frozen=True, slots=True)
class ConsoleFile:
    body: bytes
    content_type: str
    etag: str


def load_console_files(directory: Path = CONSOLE_DIR) -> dict[str, ConsoleFile]:
    """Every file under `directory`, by its path relative to it (`index.html`, `assets/app.js`, ...)."""
    files: dict[str, ConsoleFile] = {}
    for path in sorted(directory.rglob("*")):
        if not path.is_file():
            continue
        body = path.read_bytes()
        content_type = _CONTENT_TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        files[path.relative_to(directory).as_posix()] = ConsoleFile(body, content_type, '"' + hashlib.sha256(body).hexdigest()[:20] + '"')
    if SHELL not in files:
        raise FileNotFoundError(f"the console's {SHELL} is missing from {directory}: the package was installed without its package data")
    return files


def console_routes(directory: Path = CONSOLE_DIR) -> list[Route]:
    """Routes of the console: `/ui` and everything under it."""
    files = load_console_files(directory)

    async def asset(request: Request) -> Response:
        found = files.get("assets/" + request.path_params["path"])
        if found is None:
            return Response(f"no console file {request.url.path}\n", status_code=404, media_type="text/plain", headers=_SECURITY_HEADERS)
        return _file_response(request, found)

    async def shell(request: Request) -> Response:
        return _file_response(request, files[SHELL])

    return [
        Route("/ui", shell, methods=["GET", "HEAD"]),
        Route("/ui/assets/{path:path}", asset, methods=["GET", "HEAD"]),
        Route("/ui/{page:path}", shell, methods=["GET", "HEAD"]),
    ]


_SECURITY_HEADERS: Final = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


def _file_response(request: Request, found: ConsoleFile) -> Response:
    """The file, or 304 when the browser's copy is current (the browser revalidates each time: `no-cache`)."""
    headers = {**_SECURITY_HEADERS, "etag": found.etag, "cache-control": "no-cache"}
    if request.headers.get("if-none-match") == found.etag:
        return Response(status_code=304, headers=headers)
    return Response(found.body, status_code=200, media_type=found.content_type, headers=headers)
