"""``zoolens index add|ls|rm|stats|reembed`` and ``zoolens search``: the model index commands."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import typer

from zoolens.cli.app import app, fail
from zoolens.cli.embed import PROBE_INPUTS_OPTION, with_probe_inputs

index_app = typer.Typer(help="Build and manage a model index (a directory).", no_args_is_help=True)
app.add_typer(index_app, name="index")

_INDEX_HELP = "The index directory (or set ZOOLENS_INDEX)."
_JSON_HELP = "Print JSON instead of a table."
_WHERE_HELP = "Metadata filter KEY=VALUE or KEY>=VALUE (= != < <= > >=); repeat to AND."


def _index_option() -> Any:
    return typer.Option(..., "--index", "-i", envvar="ZOOLENS_INDEX", help=_INDEX_HELP)


def _echo_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=1, default=str))


def _table(columns: list[str], rows: list[list[Any]], title: str | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(*columns, title=title, title_justify="left")
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    Console(soft_wrap=False).print(table)


def _short(metadata: dict[str, Any], width: int = 60) -> str:
    text = json.dumps(metadata, separators=(",", ":"), default=str)
    return text if len(text) <= width else text[: width - 1] + "…"


def _parse_meta(pairs: list[str]) -> dict[str, Any]:
    from zoolens.errors import ZoolensError
    from zoolens.index.filters import coerce_value

    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ZoolensError(f"--meta {pair!r}: expected KEY=VALUE")
        out[key.strip()] = coerce_value(value.strip())
    return out


def _named(label: str, message: str) -> str:
    """``label: message`` unless the message already starts with the label."""
    return message if message.startswith(label) else f"{label}: {message}"


def _threads_option() -> Any:
    return typer.Option(
        None, "--threads", min=1, help="Torch threads while embedding (default: torch's own)."
    )


def _progress(as_json: bool) -> bool:
    return not as_json and sys.stderr.isatty()


def _exit(code: int) -> None:
    if code:
        sys.exit(code)  # not typer.Exit: the app runs with standalone_mode=False


@index_app.command("add")
def add_command(
    paths: list[str] = typer.Argument(
        ..., help="Model files, net directories or zoo directories (a zoo is added whole)."
    ),
    index: str = _index_option(),
    meta: list[str] = typer.Option(
        [], "--meta", "-m", help="KEY=VALUE metadata for every model added; repeat for more keys."
    ),
    recursive: bool = typer.Option(
        False, "--recursive", "-r", help="Add the models found inside plain directories."
    ),
    encoder: str | None = typer.Option(
        None,
        "--encoder",
        "-e",
        help="Encoder name or directory; default: the index's own, or 'default' for a new index.",
    ),
    batch_size: int = typer.Option(64, "--batch-size", help="Models committed together."),
    threads: int | None = _threads_option(),
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
    ray: str | None = typer.Option(
        None,
        "--ray",
        metavar="ADDRESS|local",
        help="Load and embed on the Ray cluster at ADDRESS ('local': start one here); "
        "each batch is committed as it returns, a re-run skips what is indexed.",
    ),
    ray_actors: int = typer.Option(
        1, "--ray-actors", min=1, help="With --ray: encoder replicas (one CPU each)."
    ),
    probe_inputs: Path | None = PROBE_INPUTS_OPTION,
    kind: str | None = typer.Option(
        None,
        "--kind",
        metavar="auto|flat|hnsw|ivf|ivfpq",
        help="Vector index kind, recorded with --nlist / --pq-m for later opens "
        "(default: the recorded one, 'auto' for a new index; a change rebuilds it).",
    ),
    nlist: int | None = typer.Option(
        None, "--nlist", min=1, help="With --kind ivf|ivfpq: IVF cells (default 4·√n)."
    ),
    pq_m: int | None = typer.Option(
        None, "--pq-m", min=1, help="With --kind ivfpq: bytes per PQ code (default 64)."
    ),
) -> None:
    """Embed and add models. Bad files are reported on stderr and skipped.

    Exit code 2 when something failed and nothing was added, else 0.
    """
    from zoolens.index import ModelIndex
    from zoolens.nn.base import torch_threads

    metadata = _parse_meta(meta)
    config = _index_config(kind, nlist, pq_m)
    chosen: Any = encoder or (None if ModelIndex.exists(index) else "default")
    if probe_inputs is not None:
        from zoolens.index.encoders import resolve_encoder

        if chosen is None:
            raise fail("--probe-inputs: name the encoder (--encoder) the index was built with")
        chosen = with_probe_inputs(resolve_encoder(chosen), probe_inputs)
    opened = ModelIndex.open(index, encoder=chosen, kind=kind, config=config)
    with opened as model_index, torch_threads(threads):
        if ray is not None:
            from zoolens.index.ray_embed import add_with_ray

            report = add_with_ray(
                model_index,
                paths,
                ray,
                metadata=metadata or None,
                recursive=recursive,
                batch_size=batch_size,
                actors=ray_actors,
                threads=threads,
            )
        else:
            report = model_index.add(
                paths,
                metadata=metadata or None,
                recursive=recursive,
                batch_size=batch_size,
                progress=_progress(as_json),
            )
        total = len(model_index)
    for label, message in report.failed:
        typer.echo(f"zoolens: skipped {_named(label, message)}", err=True)
    for label, existing in report.duplicates:
        typer.echo(f"zoolens: already indexed: {label} (as {existing})", err=True)
    if as_json:
        _echo_json({**report.to_dict(), "count": total})
    else:
        typer.echo(f"{report}; the index holds {total} models")
    _exit(2 if report.failed and not report.added else 0)


def _index_config(kind: str | None, nlist: int | None, pq_m: int | None) -> Any:
    """The vector-index settings of `index add` (None: keep the recorded ones)."""
    from zoolens.errors import ZoolensError
    from zoolens.index import IndexConfig

    if kind is None:
        if nlist is not None or pq_m is not None:
            raise ZoolensError("--nlist / --pq-m: give them with --kind ivf or --kind ivfpq")
        return None
    config = IndexConfig(ivf_nlist=nlist)
    return config if pq_m is None else replace(config, pq_m=pq_m)


@app.command("search")
def search_command(
    query: str = typer.Argument(
        ..., help="A model file or directory, or the id of a model in the index."
    ),
    index: str = _index_option(),
    k: int = typer.Option(10, "-k", "--k", help="Number of hits."),
    where: list[str] = typer.Option([], "--where", "-w", help=_WHERE_HELP),
    encoder: str | None = typer.Option(
        None, "--encoder", "-e", help="Must be the index's encoder (default: it)."
    ),
    same_interface: bool = typer.Option(
        False,
        "--same-interface",
        help="Only models with the query's input shape and output count.",
    ),
    head: str | None = typer.Option(
        None, "--head", help="A head directory (zoolens fit-head): add each hit's prediction."
    ),
    threads: int | None = _threads_option(),
    as_json: bool = typer.Option(
        False,
        "--json",
        help="Print {query, k, where, hits: [{rank, id, source, score, metadata[, prediction]}]}.",
    ),
) -> None:
    """Find the k models most similar to QUERY, filtered by metadata before ranking."""
    from zoolens.index import NO_HIT, ModelIndex, parse_where
    from zoolens.nn.base import torch_threads

    conditions = parse_where(where)
    with ModelIndex.open(index, encoder=encoder, create=False) as model_index:
        fitted = _load_head(head, model_index.encoder_id)
        with torch_threads(threads):
            scores, ids = model_index.search(
                query, k=k, where=conditions, same_interface=same_interface
            )
        hits = []
        for rank, (score, model_id) in enumerate(zip(scores[0], ids[0], strict=True), 1):
            if model_id is NO_HIT or not isinstance(model_id, str):
                break
            rec = model_index.get(model_id)
            hits.append(
                {
                    "rank": rank,
                    "id": model_id,
                    "source": rec["source"],
                    "score": round(float(score), 6),
                    "metadata": rec["metadata"],
                }
            )
        if fitted is not None and hits:
            z = [model_index.get(h["id"], embedding=True)["embedding"] for h in hits]
            for h, pred in zip(hits, fitted.predict(z, model_index.encoder_id), strict=True):
                h["prediction"] = pred.item() if hasattr(pred, "item") else pred
    if as_json:
        _echo_json({"query": query, "k": k, "where": where, "hits": hits})
        return
    extra = [fitted.config.label] if fitted is not None else []
    _table(
        ["#", "id", "score", *extra, "source", "metadata"],
        [
            [h["rank"], h["id"], f"{h['score']:.4f}"]
            + ([h["prediction"]] if extra else [])
            + [h["source"], _short(h["metadata"])]
            for h in hits
        ],
        title=f"{len(hits)} hit(s) for {query}",
    )


def _load_head(path: str | None, encoder_id: str | None) -> Any:
    """The head at `path` (None without one), refused unless fitted on the index's encoder."""
    if path is None:
        return None
    from zoolens.nn.heads import Head

    fitted = Head.load(path)
    fitted.check_encoder(encoder_id)
    return fitted


@index_app.command("ls")
def ls_command(
    index: str = _index_option(),
    where: list[str] = typer.Option([], "--where", "-w", help=_WHERE_HELP),
    limit: int | None = typer.Option(None, "--limit", help="Show at most this many."),
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
) -> None:
    """List the models of the index (id, source, metadata), oldest first."""
    from zoolens.index import ModelIndex, parse_where

    with ModelIndex.open(index, encoder=None, create=False) as model_index:
        records = model_index.records(parse_where(where), limit=limit)
    if as_json:
        _echo_json(records)
        return
    _table(
        ["id", "source", "metadata"],
        [[r["id"], r["source"], _short(r["metadata"])] for r in records],
        title=f"{len(records)} model(s)",
    )


@index_app.command("rm")
def rm_command(
    ids: list[str] = typer.Argument(..., help="Ids of the models to remove."),
    index: str = _index_option(),
    missing_ok: bool = typer.Option(False, "--missing-ok", help="Ignore unknown ids."),
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
) -> None:
    """Remove models by id (all or none, unless --missing-ok)."""
    from zoolens.index import ModelIndex

    with ModelIndex.open(index, encoder=None, create=False) as model_index:
        removed = model_index.remove(ids, missing_ok=missing_ok)
        total = len(model_index)
    if as_json:
        _echo_json({"removed": removed, "count": total})
    else:
        typer.echo(f"removed {len(removed)} model(s); the index holds {total}")


@index_app.command("stats")
def stats_command(
    index: str = _index_option(),
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
) -> None:
    """Count, encoder, dimension, index kind and size on disk."""
    from zoolens.index import ModelIndex

    with ModelIndex.open(index, encoder=None, create=False, autosave=False) as model_index:
        stats = model_index.stats()
    if as_json:
        _echo_json(stats)
        return
    _table(["", ""], [[k, v] for k, v in stats.items()], title=stats["path"])


@index_app.command("reembed")
def reembed_command(
    index: str = _index_option(),
    encoder: str = typer.Option(
        ..., "--encoder", "-e", help="The new encoder (name or directory)."
    ),
    drop_missing: bool = typer.Option(
        False,
        "--drop-missing",
        help="Remove models whose source file cannot be read instead of refusing.",
    ),
    batch_size: int = typer.Option(64, "--batch-size", help="Models embedded together."),
    threads: int | None = _threads_option(),
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
) -> None:
    """Re-embed every model from its source with another encoder (all at once, atomically)."""
    from zoolens.index import ModelIndex
    from zoolens.nn.base import torch_threads

    with ModelIndex.open(index, encoder=None, create=False) as model_index, torch_threads(threads):
        report = model_index.reembed(
            encoder, batch_size=batch_size, progress=_progress(as_json), drop_missing=drop_missing
        )
        encoder_id = model_index.encoder_id
    for label, message in report.failed:
        typer.echo(f"zoolens: dropped {_named(label, message)}", err=True)
    if as_json:
        _echo_json(
            {
                "reembedded": report.added,
                "dropped": [f for f, _ in report.failed],
                "encoder": encoder_id,
            }
        )
    else:
        typer.echo(
            f"re-embedded {len(report.added)} model(s) with {encoder_id}; "
            f"dropped {len(report.failed)}"
        )
