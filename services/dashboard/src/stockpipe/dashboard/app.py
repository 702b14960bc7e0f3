"""The app factory: one Flask server carrying the Dash pages, the REST API and the probes.

``create_app(settings)`` builds everything and connects to nothing: the first request opens
the first database connection, so importing this module, or gunicorn's master loading the
settings, never touches PostgreSQL. gunicorn serves ``stockpipe.dashboard.wsgi:server``
(``python -m stockpipe.dashboard`` starts it; Flask's debug server is never used).
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import time
from pathlib import Path

import dash
import flask
import psycopg2
import psycopg2.pool
from flask_smorest import Api

from stockpipe.common.db import Database
from stockpipe.common.errors import TransientError
from stockpipe.dashboard import api, metrics, pages
from stockpipe.dashboard.queries import Reader
from stockpipe.dashboard.settings import DashboardSettings

__all__ = ["create_app"]

logger = logging.getLogger(__name__)

# Probes and scrapes stay reachable without credentials (kubelet and Prometheus talk to the
# pod directly, not through the ingress that basic auth protects).
_OPEN_PATHS = ("/healthz", "/readyz", "/metrics")


class _PooledDatabase(Database):
    """common.db's pool, keeping its connections open between requests.

    psycopg2's pool closes every returned connection beyond ``minconn``, and common.db asks
    for ``minconn=0``: each statement would pay a new connection (10-90 ms here). The
    dashboard makes many short reads, so its pool keeps all of them (opened on first use,
    never at import).
    """

    def _get_pool(self) -> psycopg2.pool.ThreadedConnectionPool:
        with self._lock:
            if self._pool is None:
                try:
                    self._pool = psycopg2.pool.ThreadedConnectionPool(self._max, self._max, self._dsn,
                                                                      **self._connect_args)
                except psycopg2.Error as exc:
                    raise TransientError(f"PostgreSQL unreachable: {exc}".strip()) from exc
            return self._pool


def _route_kind(path: str) -> str:
    """A low-cardinality label for a request path."""
    if path.startswith("/api/v1/"):
        return "api_" + path[len("/api/v1/"):].split("/", 1)[0][:20] if path.count("/") == 3 else "api_other"
    if path.startswith("/_dash-update-component"):
        return "dash_callback"
    if path.startswith(("/_dash", "/assets")):
        return "static"
    if path in _OPEN_PATHS:
        return path.strip("/")
    return "page"


def _authorized(header: str | None, user: bytes, password: bytes) -> bool:
    """HTTP basic auth, both parts compared in constant time (no early exit on the user)."""
    if not header or not header.startswith("Basic "):
        return False
    try:
        given_user, _, given_password = base64.b64decode(header[6:], validate=True).partition(b":")
    except ValueError:
        return False
    user_ok = hmac.compare_digest(given_user, user)
    password_ok = hmac.compare_digest(given_password, password)
    return user_ok & password_ok


def create_app(settings: DashboardSettings, *, db: Database | None = None) -> dash.Dash:
    """The dashboard: Dash on a Flask server with /api/v1, /metrics, /healthz, /readyz."""
    server = flask.Flask(__name__)
    server.config.update(
        API_TITLE="stockpipe API", API_VERSION="v1", OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api/v1", OPENAPI_JSON_PATH="openapi.json",
        JSON_SORT_KEYS=False, MAX_CONTENT_LENGTH=1 << 20,
    )
    db = db or _PooledDatabase(settings, max_connections=settings.dashboard_threads)
    reader = Reader(db)
    server.extensions["stockpipe_reader"] = reader
    server.extensions["stockpipe_db"] = db

    smorest = Api(server, spec_kwargs={"info": {"description": "Read-only access to stockpipe's tables."}})
    smorest.register_blueprint(api.blueprint)

    @server.route("/api/v1/<path:rest>")
    def _api_not_found(rest: str) -> flask.Response:
        # Without this the Dash page catch-all would answer unknown API paths with HTML.
        return _json(404, {"code": 404, "status": "Not Found", "message": f"no endpoint /api/v1/{rest}"})

    @server.route("/healthz")
    def _healthz() -> flask.Response:
        return _json(200, {"status": "ok"})

    @server.route("/readyz")
    def _readyz() -> flask.Response:
        try:
            db.check()
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
            from stockpipe.common.logs import mask_secrets

            return _json(503, {"status": "unavailable",
                               "reasons": {"postgres": mask_secrets(f"{type(exc).__name__}: {exc}")[:500]}})
        return _json(200, {"status": "ready"})

    @server.route("/metrics")
    def _metrics() -> flask.Response:
        return flask.Response(metrics.render(), mimetype=metrics.CONTENT_TYPE_LATEST)

    user = settings.dashboard_auth_user.encode()
    password = settings.dashboard_auth_password.get().encode()
    cors = set(settings.dashboard_cors_origins)

    @server.before_request
    def _before() -> flask.Response | None:
        flask.g.started = time.perf_counter()
        if settings.auth_enabled and flask.request.path not in _OPEN_PATHS \
                and not _authorized(flask.request.headers.get("Authorization"), user, password):
            return flask.Response(b'{"code": 401, "status": "Unauthorized"}', 401, mimetype="application/json",
                                  headers={"WWW-Authenticate": 'Basic realm="stockpipe", charset="UTF-8"'})
        return None

    @server.after_request
    def _after(response: flask.Response) -> flask.Response:
        kind = _route_kind(flask.request.path)
        started = flask.g.get("started")
        if started is not None:
            metrics.REQUEST_SECONDS.labels(kind).observe(time.perf_counter() - started)
        metrics.REQUESTS.labels(kind, str(response.status_code)).inc()
        origin = flask.request.headers.get("Origin")
        # CORS is off unless origins are listed: then only the API, only those origins.
        if origin and origin in cors and flask.request.path.startswith("/api/v1/"):
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    app = dash.Dash(
        __name__, server=server, title="stockpipe", update_title=None,
        assets_folder=str(Path(__file__).parent / "assets"),
        suppress_callback_exceptions=True, compress=False,
        meta_tags=[{"name": "viewport", "content": "width=device-width, initial-scale=1"}],
    )
    app.layout = pages.shell_layout
    pages.register(app, reader, settings)
    _render_index_once(app, settings)
    return app


def _render_index_once(app: dash.Dash, settings: DashboardSettings) -> None:
    """Render the page shell once, in this process, before serving.

    Dash learns which script files it may serve (``/_dash-component-suites/...``) while
    rendering the index page, per process. Under several gunicorn workers the browser's
    ``GET /`` and its script requests land on different workers: one that had not rendered
    the index yet answered 500 ("dash is not a registered library") and the page stayed blank
    (seen in the browser tests). No database is touched: the layout comes by a later request.
    """
    headers = {}
    if settings.auth_enabled:
        token = f"{settings.dashboard_auth_user}:{settings.dashboard_auth_password.get()}"
        headers["Authorization"] = "Basic " + base64.b64encode(token.encode()).decode()
    response = app.server.test_client().get("/", headers=headers)
    if response.status_code != 200:  # a bug: crash loudly at start rather than serve blank pages
        raise RuntimeError(f"rendering the dashboard's index page gave HTTP {response.status_code}")


def _json(code: int, body: dict) -> flask.Response:
    return flask.Response(json.dumps(body), code, mimetype="application/json")
