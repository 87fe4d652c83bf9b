"""The FastAPI app Airflow's API server mounts at ``/pgwarden`` (``PgwardenPlugin.fastapi_apps``).

Airflow mounts a plugin's app without any auth of its own, so every route here asks Airflow's security
dependencies for the user (``get_user``: the UI's ``_token`` cookie or an ``Authorization: Bearer`` token):
no user, no data (401; the HTML page sends a browser to Airflow's login instead). A database is listed only
when the user may read all of its DAGs (``access.py``, through the auth manager's
``filter_authorized_dag_ids``).

Settings (Airflow config, so ``AIRFLOW__PGWARDEN__UI_CACHE_TTL`` etc. work): ``[pgwarden] ui_cache_ttl``
(seconds a status is served before a background refresh, default 60), ``ui_source_timeout`` (seconds each
source of a database may take, default 5), ``ui_dag_ids_ttl`` (seconds the list of known DAG ids is kept,
default 30).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from pgwarden.airflow.ui.access import readable_databases
from pgwarden.airflow.ui.render import page_html
from pgwarden.engine.status import DEFAULT_TIMEOUT, DEFAULT_TTL, StatusCache, StatusSources

_state: dict[str, Any] = {}
_lock = threading.Lock()


def _setting(name: str, default: float) -> float:
    from airflow.configuration import conf

    return conf.getfloat("pgwarden", name, fallback=default)


def _config():
    """The pgwarden config, read once per cache TTL (a changed file shows up without a restart)."""
    from pgwarden.engine.config_file import load_config

    ttl = _setting("ui_cache_ttl", DEFAULT_TTL)
    with _lock:
        loaded = _state.get("config")
        if loaded is None or time.monotonic() - loaded[1] > ttl:
            loaded = (load_config(), time.monotonic())
            _state["config"] = loaded
    return loaded[0]


def _cache() -> StatusCache:
    with _lock:
        cache = _state.get("cache")
        if cache is None:
            from pgwarden.airflow.hooks import open_repository
            from pgwarden.airflow.hooks.postgres import pg_target

            sources = StatusSources(open_repository, pg_target, _setting("ui_source_timeout", DEFAULT_TIMEOUT))

            def load(name: str) -> dict[str, Any]:
                config = _config()
                return sources.collect(name, config.databases[name])

            cache = StatusCache(load, ttl=_setting("ui_cache_ttl", DEFAULT_TTL))
            _state["cache"] = cache
    return cache


def _known_dag_ids() -> set[str]:
    """Every DAG id Airflow's metadata database knows (not stale), kept for ``ui_dag_ids_ttl`` seconds."""
    with _lock:
        known = _state.get("dag_ids")
        if known is not None and time.monotonic() - known[1] <= _setting("ui_dag_ids_ttl", 30.0):
            return known[0]
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        ids = set(session.scalars(select(DagModel.dag_id).where(DagModel.is_stale.is_(False))))
    with _lock:
        _state["dag_ids"] = (ids, time.monotonic())
    return ids


async def _user(request: Request) -> Any:
    """Airflow's own ``get_user`` (Bearer header first, else the UI's cookie; 401 without either), imported
    on the first request so loading the plugin in the scheduler or a worker stays cheap."""
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi.security import HTTPAuthorizationCredentials

    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    bearer = HTTPAuthorizationCredentials(scheme=scheme, credentials=token) if scheme and token else None
    return await get_user(request, None, bearer)


def statuses_for(user: Any) -> list[dict[str, Any]]:
    from airflow.api_fastapi.app import get_auth_manager

    config = _config()
    names = readable_databases(sorted(config.databases), user, get_auth_manager(), _known_dag_ids())
    return _cache().get_many(names)


def create_app() -> FastAPI:
    app = FastAPI(title="pgwarden", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(StarletteHTTPException)
    async def _login_first(request: Request, exc: StarletteHTTPException) -> Response:
        # A browser without a session goes to Airflow's login and comes back; API clients get the status code.
        if exc.status_code in (401, 403) and not request.url.path.rstrip("/").endswith(("/api/status",)):
            from airflow.api_fastapi.app import get_auth_manager

            return RedirectResponse(get_auth_manager().get_url_login(next_url=str(request.url)), status_code=302)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)

    @app.get("/", response_class=HTMLResponse)
    def page(user: Any = Depends(_user)) -> HTMLResponse:  # noqa: B008 - FastAPI's dependency idiom
        return HTMLResponse(page_html(statuses_for(user), user.get_name()),
                            headers={"Cache-Control": "no-store", "Content-Security-Policy":
                                     "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
                                     "frame-ancestors 'self'"})

    @app.get("/api/status")
    def api_status(user: Any = Depends(_user)) -> JSONResponse:  # noqa: B008
        return JSONResponse({"databases": statuses_for(user)}, headers={"Cache-Control": "no-store"})

    return app
