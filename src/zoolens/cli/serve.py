"""``zoolens serve``: the HTTP API and the web page over an index (uvicorn + FastAPI)."""

from __future__ import annotations

import typer

from zoolens.cli.app import app


@app.command("serve")
def serve_command(
    index: str = typer.Option(
        ..., "--index", "-i", envvar="ZOOLENS_INDEX", help="The index directory to serve."
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="Port to listen on."),
    token_file: str | None = typer.Option(
        None,
        "--token-file",
        help="A file whose first line is the write token (POST / DELETE /api/models); "
        "without it the server is read-only.",
    ),
    max_upload_mb: float = typer.Option(
        256, "--max-upload-mb", min=0.001, help="Uploads larger than this get 413."
    ),
    map_at_start: bool = typer.Option(
        False,
        "--map-at-start",
        help="Lay out the zoo map (UMAP / t-SNE: minutes at 10^5 models) when the server "
        "starts, not on the first visit to the map.",
    ),
) -> None:
    """Serve the index: the page at http://HOST:PORT/, the JSON API under /api (see /docs)."""
    from zoolens.optional import optional_import
    from zoolens.service import create_app

    uvicorn = optional_import("uvicorn", "zoolens serve", "serve")
    service_app = create_app(index, token_file, max_upload_mb, map_at_start=map_at_start)
    typer.echo(f"zoolens: serving {index} on http://{host}:{port}/", err=True)
    uvicorn.run(service_app, host=host, port=port, log_level="warning", access_log=False)
