"""``zoolens embed PATH... --out FILE.npy``: embed checkpoints into an (n, d) array."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from zoolens.cli.app import app
from zoolens.cli.inspect import INPUTS_OPTION, parse_inputs
from zoolens.errors import ZoolensError

if TYPE_CHECKING:
    from zoolens.nn import Encoder


PROBE_INPUTS_OPTION: Any = typer.Option(
    None,
    "--probe-inputs",
    help="A .npy of sample inputs (n, *input_shape), n >= the encoder's probe count: nets of "
    "that input shape are read on them instead of the drawn probes (neural-graph encoders).",
)


def with_probe_inputs(enc: Encoder, path: Path | None) -> Encoder:
    """`enc` reading nets on the sample inputs in `path` (a .npy); `enc` itself without one.

    Raises:
        LoadError: unreadable file, too few rows, or an encoder without probes.
    """
    if path is None:
        return enc
    import numpy as np

    from zoolens.errors import LoadError
    from zoolens.nn import NeuralGraphEncoder

    if not isinstance(enc, NeuralGraphEncoder) or not enc.config.n_probes:
        raise LoadError(f"{path}: --probe-inputs needs a neural-graph encoder with probes")
    try:
        x = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise LoadError(f"{path}: not a readable .npy array ({e})") from None
    return enc.with_probe_inputs(x, source=str(path))


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
    probe_inputs: Path | None = PROBE_INPUTS_OPTION,
    inputs: str | None = INPUTS_OPTION,
) -> None:
    """Embed PATHs with an encoder and write their vectors, in input order, to OUT."""
    import sys

    import numpy as np

    from zoolens.nn import load_encoder

    names = parse_inputs(inputs) if inputs else None
    if names is not None and ray is not None:
        raise ZoolensError("--inputs is not read with --ray: embed these models locally")
    enc = with_probe_inputs(load_encoder(encoder), probe_inputs)
    if names is not None:
        z = encode_with_inputs(enc, [str(p) for p in paths], names, batch_size, threads)
    elif ray is not None:
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


def encode_with_inputs(
    enc: Encoder, paths: list[str], inputs: tuple[str, ...], batch_size: int, threads: int | None
) -> Any:
    """`enc`'s embeddings ``(n, d)`` of `paths`, each read by ``load_net(path, inputs=inputs)``,
    a batch of `batch_size` loaded at a time.

    Raises:
        LoadError: a path that is not read with these inputs (not a Hugging Face text model).
    """
    import numpy as np

    from zoolens.ir import load_net

    chunks = []
    for s in range(0, len(paths), batch_size):
        nets = [load_net(p, inputs=inputs) for p in paths[s : s + batch_size]]
        chunks.append(enc.encode(nets, batch_size=batch_size, threads=threads))
    return np.concatenate(chunks, axis=0)
