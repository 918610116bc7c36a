"""``zoolens embed PATH... --out FILE.npy``: embed checkpoints into an (n, d) array."""

from __future__ import annotations

from pathlib import Path

import typer

from zoolens.cli.app import app
from zoolens.errors import ZoolensError


@app.command()
def embed(
    paths: list[Path] = typer.Argument(
        ..., help="Checkpoints: zoolens dirs, .onnx, .safetensors, .pt, ..."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Where to write the (n, d) float32 .npy"),
    encoder: str = typer.Option(
        "default",
        "--encoder",
        "-e",
        help="Encoder name (default, neural-graph, layerwise, "
        "raw-weights, ...) or a saved encoder directory",
    ),
    batch_size: int = typer.Option(64, "--batch-size", "-b", min=1, help="Models per batch"),
    threads: int | None = typer.Option(
        None,
        "--threads",
        min=1,
        help="Torch threads while embedding, restored after (default: torch's own). "
        "On a busy machine 1 is often fastest.",
    ),
    ray: str | None = typer.Option(
        None,
        "--ray",
        metavar="ADDRESS|local",
        help="Load and embed on the Ray cluster at ADDRESS ('local': start one here). "
        "Needs zoolens[ray]; paths must be readable on every node.",
    ),
    ray_actors: int = typer.Option(
        1, "--ray-actors", min=1, help="With --ray: encoder replicas (one CPU each)."
    ),
) -> None:
    """Embed PATHs with an encoder and write their vectors, in input order, to OUT."""
    import sys

    import numpy as np

    from zoolens.nn import load_encoder

    enc = load_encoder(encoder)
    if ray is not None:
        from zoolens.index.ray_embed import embed_with_ray

        z = embed_with_ray(
            enc,
            [str(p) for p in paths],
            ray,
            batch_size=batch_size,
            actors=ray_actors,
            threads=threads,
        )
    else:
        z = enc.encode(
            [str(p) for p in paths],
            batch_size=batch_size,
            progress=sys.stderr.isatty(),
            threads=threads,
        )
    try:
        with open(out, "wb") as f:
            np.save(f, z.astype(np.float32, copy=False))
    except OSError as e:
        raise ZoolensError(f"{out}: cannot write the embeddings ({e.strerror})") from None
    typer.echo(
        f"embedded {z.shape[0]} model(s) with {enc.id} → {out} ({z.shape[0]}×{z.shape[1]} float32)"
    )
