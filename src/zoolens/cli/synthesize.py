"""``zoolens fit-decoder --zoo DIR --family F --out DIR`` and
``zoolens synthesize A B --decoder DIR --out OUT``."""

from __future__ import annotations

from collections import Counter

import typer

from zoolens.cli.app import app
from zoolens.cli.merge import _NET_HELP, _OUT_HELP, _check_out, _load, _save
from zoolens.errors import ZoolensError


@app.command("fit-decoder")
def fit_decoder_command(
    zoo: str = typer.Option(..., "--zoo", help="A zoolens zoo directory."),
    family: str = typer.Option(..., "--family", help="Architecture family (manifest column)."),
    out: str = typer.Option(..., "--out", "-o", help="Directory to write the decoder to."),
    arch: str | None = typer.Option(
        None, "--arch", help="Architecture (manifest column); default: the family's commonest."
    ),
    split: str = typer.Option("train", "--split", help="Manifest split to fit on, or 'all'."),
    encoder: str = typer.Option("default", "--encoder", help="Encoder name or directory."),
    steps: int = typer.Option(500, "--steps", min=1, help="Decoder training steps."),
    functional: float = typer.Option(
        0.0, "--functional", min=0.0, help="Weight of the functional loss on probe inputs."
    ),
) -> None:
    """Fit a decoder from embeddings to the weights of one architecture of a zoo."""
    from zoolens.merge.synthesis import fit_decoder
    from zoolens.nn import load_encoder
    from zoolens.zoo import Zoo

    z = Zoo.open(zoo)
    rows = z.manifest[z.manifest["family"] == family]
    if split != "all":
        rows = rows[rows["split"] == split]
    if rows.empty:
        raise ZoolensError(f"--zoo {zoo}: no models of family {family!r} in split {split!r}")
    if arch is None:
        arch = Counter(rows["arch"]).most_common(1)[0][0]
    rows = rows[rows["arch"] == arch]
    if len(rows) < 2:
        raise ZoolensError(f"--zoo {zoo}: {len(rows)} models of arch {arch!r}; need >= 2")
    nets = [z.load(str(i)) for i in rows["id"]]
    enc = load_encoder(encoder)
    typer.echo(f"fitting a decoder on {len(nets)} models of {arch}")
    dec = fit_decoder(
        nets,
        enc.encode(nets),
        {"steps": steps, "functional": functional},
        encoder_id=enc.id,
        encoder_source=encoder,
    )
    dec.save(out)
    typer.echo(f"wrote {out}")


@app.command("synthesize")
def synthesize_command(
    a: str = typer.Argument(..., help=f"First net. {_NET_HELP}"),
    b: str = typer.Argument(..., help=f"Second net, the decoder's architecture. {_NET_HELP}"),
    decoder: str = typer.Option(..., "--decoder", help="A decoder written by fit-decoder."),
    out: str = typer.Option(..., "--out", "-o", help=_OUT_HELP),
    alpha: float = typer.Option(0.5, "--alpha", min=0.0, max=1.0, help="Weight of B."),
    encoder: str | None = typer.Option(
        None, "--encoder", help="Encoder name or directory (default: the decoder's)."
    ),
) -> None:
    """Decode the interpolation of A's and B's embeddings into a net."""
    from zoolens.merge.synthesis import Decoder, synthesize
    from zoolens.nn import load_encoder

    _check_out(out)
    dec = Decoder.load(decoder)
    net_a, net_b = _load(a, "A"), _load(b, "B")
    dec.check_net(net_a, "A")
    dec.check_net(net_b, "B")
    enc = load_encoder(encoder if encoder is not None else dec.encoder_source_)
    _save(synthesize(net_a, net_b, alpha, dec, enc), out)
