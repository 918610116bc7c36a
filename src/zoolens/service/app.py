"""`create_app`: the FastAPI application of ``zoolens serve`` — the JSON API, the page and its
assets (all served from the package: no CDN), and the error boundary (every error is a JSON
``{"detail": "one line"}``; bad input is a 4xx, never a stack trace)."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from zoolens.errors import IndexError as IndexStoreError
from zoolens.errors import MissingDependencyError, ZoolensError
from zoolens.service.api import router
from zoolens.service.state import Service
from zoolens.service.uploads import TooLarge, UploadLimit

log = logging.getLogger(__name__)

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")


def create_app(
    index_dir: str | os.PathLike[str],
    token_file: str | os.PathLike[str] | None = None,
    max_upload_mb: float = 256,
    map_at_start: bool = False,
) -> FastAPI:
    """The service over the index in `index_dir`.

    Args:
        index_dir: an existing index (``zoolens index add``).
        token_file: a file whose first line is the write token; without one the server is
            read-only (POST / DELETE on ``/api/models`` answer 403).
        max_upload_mb: uploads larger than this get 413.
        map_at_start: start laying out the zoo map when the server starts (UMAP / t-SNE
            take minutes of CPU at 10^5 models, competing with queries); by default the
            first ``GET /api/map`` starts it.

    Returns:
        The app; serve it with uvicorn (``zoolens serve``) or test it with a TestClient.
    """
    service = Service(
        os.fspath(index_dir), os.fspath(token_file) if token_file else None, max_upload_mb
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        service.warm_up(map_at_start)
        yield
        service.close()

    app = FastAPI(
        title="zoolens",
        summary="Search trained networks by what their weights compute.",
        docs_url=None,  # FastAPI's /docs loads Swagger UI from a CDN; ours is served locally
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.service = service
    app.include_router(router)
    _add_error_handlers(app)
    _add_pages(app)
    app.add_middleware(UploadLimit, max_bytes=service.max_bytes)
    return app


def _detail(status: int, message: str) -> JSONResponse:
    return JSONResponse({"detail": " ".join(message.split())[:500]}, status_code=status)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, e: StarletteHTTPException) -> JSONResponse:
        return _detail(e.status_code, str(e.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        first: dict[str, Any] = (e.errors() or [{}])[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _detail(422, f"{where}: {first.get('msg', 'invalid request')}")

    @app.exception_handler(ZoolensError)
    async def zoolens_error(_: Request, e: ZoolensError) -> JSONResponse:
        if isinstance(e, TooLarge):
            return _detail(413, str(e))
        if isinstance(e, IndexStoreError) and "no model with id" in str(e):
            return _detail(404, str(e))
        if isinstance(e, MissingDependencyError):
            return _detail(501, str(e))
        return _detail(400, str(e))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, e: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return _detail(500, f"internal error ({type(e).__name__}); see the server log")


def _add_pages(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(os.path.join(STATIC, "index.html"))

    @app.get("/docs", include_in_schema=False)
    def docs() -> FileResponse:
        return FileResponse(os.path.join(STATIC, "docs.html"))

    @app.get("/models/{model_id}", include_in_schema=False)
    def model_page(model_id: str) -> RedirectResponse:
        from urllib.parse import quote

        return RedirectResponse(f"/#/models/{quote(model_id, safe='')}")
