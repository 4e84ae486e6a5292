"""``autointerp browse --db PATH``: the browser over HTTP, with a JSON API, from a read-only database.

Routes:

- ``/`` (``/index.html``): the latent list, filled by ``assets/list.js`` from ``/api/latents``;
- ``/latents/<N>.html``: latent N's page, rendered here;
- ``/api/latents?sort=&order=&q=&status=&explained=&offset=&limit=``: one page of the list as JSON;
- ``/api/latents/<N>``: latent N's page data as JSON;
- ``/api/search?q=&k=&keyword=``: the latents closest in meaning to ``q`` (``meaning.py``);
- ``/assets/<file>``: the stylesheet and script shipped in the package.

The database is attached read-only once; each request works on its own cursor (DuckDB's way of using
one database from several threads). The list is computed once at start into an in-memory table
(``listing.materialize``), so a request sorts and filters one flat table however many latents there
are. Bad parameters answer 400 with the AutointerpError's parts as JSON.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import re
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from ..errors import AutointerpError
from . import jsonout, latent, listing, render
from .meaning import MeaningSearch
from .source import Database

log = logging.getLogger(__name__)

ASSET_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}
#: Scripts only from this origin: even a string that escaped escaping could not run inline.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
LATENT_PAGE = re.compile(r"/latents/(\d{1,10})\.html")
LATENT_API = re.compile(r"/api/latents/(\d{1,10})")


def asset(name: str) -> bytes | None:
    """A file of ``assets/`` by exact name, or None (no path from a request reaches the file system)."""
    folder = resources.files(__package__).joinpath("assets")
    for entry in folder.iterdir():
        if entry.name == name and Path(name).suffix in ASSET_TYPES:
            return entry.read_bytes()
    return None


class BrowseServer(ThreadingHTTPServer):
    """The HTTP server, holding the read-only database connection its handlers take cursors from."""

    daemon_threads = True

    def __init__(self, db: str | Path, host: str, port: int, latents: str = "", matches: str | Path | None = None):
        self.db_path = Path(db)
        self.db = Database(db, matches)
        self.latents = latents
        self.meaning = MeaningSearch(str(self.db_path), latents)
        try:
            cur = self.db.cursor()
            try:
                self.list_source = listing.materialize(cur)
            finally:
                cur.close()
            super().__init__((host, port), Handler)
        except OSError as exc:
            self.db.close()
            raise AutointerpError(
                f"Cannot listen on {host}:{port}: {exc}",
                "a free port (0 picks one).",
                "pass another --port, or --port 0.",
            ) from exc
        except BaseException:
            self.db.close()
            raise

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"

    def cursor(self):
        return self.db.cursor()

    def server_close(self) -> None:
        super().server_close()
        self.db.close()


class Handler(BaseHTTPRequestHandler):
    server: BrowseServer
    server_version = "autointerp-browse"

    def log_message(self, format: str, *args) -> None:  # the base class names it format
        log.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:  # the name http.server dispatches GET to
        url = urlsplit(self.path)
        path = url.path
        if not host_allowed(self.headers.get("Host"), self.server.server_address[0]):
            return self._json(
                {
                    "error": f"Host {self.headers.get('Host')!r} is not this server.",
                    "expected": "the address the server is bound to, or localhost",
                    "fix": "open the URL the server printed",
                },
                HTTPStatus.FORBIDDEN,
            )
        try:
            if path in ("/", "/index.html"):
                return self._send(render.list_page("server", self.server.db_path.name), "text/html; charset=utf-8")
            if path.startswith("/assets/"):
                data = asset(path[len("/assets/") :])
                if data is None:
                    return self._not_found(path)
                return self._send(data, ASSET_TYPES[Path(path).suffix])
            if path == "/api/latents":
                return self._api_list(url.query)
            if path == "/api/search":
                return self._api_search(url.query)
            if m := LATENT_API.fullmatch(path):
                d = self._details(int(m.group(1)))
                return self._json(d) if d else self._not_found(path)
            if m := LATENT_PAGE.fullmatch(path):
                d = self._details(int(m.group(1)))
                if not d:
                    return self._not_found(path)
                return self._send(render.latent_page(d, self.server.db_path.name), "text/html; charset=utf-8")
            return self._not_found(path)
        except AutointerpError as exc:
            return self._json({"error": exc.what, "expected": exc.expected, "fix": exc.fix}, HTTPStatus.BAD_REQUEST)
        except Exception:  # a bug or a database error: log it, answer 500, keep serving
            log.exception("error answering %s", self.path)
            return self._json({"error": "internal error; see the server's log"}, HTTPStatus.INTERNAL_SERVER_ERROR)

    def _api_list(self, query_string: str) -> None:
        try:
            raw = parse_qs(query_string, keep_blank_values=True, max_num_fields=20, errors="strict")
        except ValueError as exc:  # too many fields, or not UTF-8
            raise AutointerpError(f"Cannot read the query string: {exc}.", "at most 20 UTF-8 parameters.") from None
        repeated = [k for k, v in raw.items() if len(v) > 1]
        if repeated:
            raise AutointerpError(f"Parameter(s) {', '.join(repeated)} given more than once.", "each at most once.")
        params = {k: v[0] for k, v in raw.items()}
        source = self.server.list_source
        q = listing.parse_request(params, list(source.scorers))
        if self.server.latents:
            q = dataclasses.replace(q, latents=self.server.latents)
        cur = self.server.cursor()
        try:
            self._json(listing.list_latents(cur, q, source))
        finally:
            cur.close()

    def _api_search(self, query_string: str) -> None:
        cur = self.server.cursor()
        try:
            self._json(jsonout.finite(self.server.meaning.answer(cur, query_string)))
        finally:
            cur.close()

    def _details(self, index: int) -> dict | None:
        cur = self.server.cursor()
        try:
            return latent.latent_details(cur, [index], self.server.db.comparison).get(index)
        finally:
            cur.close()

    def _not_found(self, path: str) -> None:
        self._json({"error": f"Nothing at {path}."}, HTTPStatus.NOT_FOUND)

    def _json(self, obj, status: HTTPStatus = HTTPStatus.OK) -> None:
        self._send(jsonout.dumps(obj), "application/json; charset=utf-8", status)

    def _send(self, body: str | bytes, content_type: str, status: HTTPStatus = HTTPStatus.OK) -> None:
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Cache-Control", "no-store")
        if content_type.startswith("text/html"):
            self.send_header("Content-Security-Policy", CSP)
        self.end_headers()
        self.wfile.write(data)


def host_allowed(header: str | None, bound: str) -> bool:
    """Whether a request's Host header names this server: its bound address or localhost. Any other
    name is refused, so a page of another site cannot reach the server through DNS rebinding (a name
    of the attacker's that resolves to 127.0.0.1). A wildcard bind accepts any IP address literal."""
    if header is None:  # HTTP/1.0 clients; browsers always send Host
        return True
    try:
        name = urlsplit("//" + header.strip()).hostname or ""
    except ValueError:
        return False
    if name in ("localhost", bound.lower()):
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    if bound in ("0.0.0.0", "::", ""):
        return True
    try:
        return address == ipaddress.ip_address(bound)
    except ValueError:
        return False


def make_server(
    db: str | Path, host: str = "127.0.0.1", port: int = 0, latents: str = "", matches: str | Path | None = None
) -> BrowseServer:
    """A server for ``db`` bound to (host, port), not yet serving: call ``serve_forever()`` on it.

    ``latents`` (ranges like ``0-999,1500``) limits the list to those latents; ``matches``, a comparison
    file of ``autointerp compare``, adds each latent's matches in the compared SAE to its page.
    """
    from ..config import parse_latent_ranges

    parse_latent_ranges(latents)
    if not 0 <= port <= 65535:
        raise AutointerpError(f"--port {port} is not a port number.", "0 (any free port) to 65535.")
    return BrowseServer(db, host, port, latents, matches)
