"""The embeddings `measure.py` compares: the default encoder and its parts, probe baselines,
weight statistics, and (for coordinate nets) the rendered image."""

from __future__ import annotations

import logging

import numpy as np
import torch

from zoolens.graph import default_probes
from zoolens.ir import Net
from zoolens.nn import Encoder, encoder_class

log = logging.getLogger("foreign")

PROBE_DISTRIBUTIONS = ("gaussian", "uniform", "sobol", "structured")
NORMALISATIONS = ("raw", "softmax", "zscore")
_ZOOLENS_KIND = {"gaussian": "normal", "sobol": "sobol", "structured": "structured"}


def encode_each(encoder: Encoder, nets: list[Net], ids: list[str]) -> tuple[np.ndarray, dict]:
    """`encoder`'s embeddings of `nets`, in batches of 16; a batch that fails is embedded one
    net at a time, and the nets that still fail get a row of NaN and an entry in the
    returned ``{id: error}``."""
    rows: list[np.ndarray | None] = []
    errors: dict[str, str] = {}
    for start in range(0, len(nets), 16):
        batch = nets[start : start + 16]
        try:
            rows += list(encoder.encode(batch))
            continue
        except Exception:
            pass
        for net, nid in zip(batch, ids[start : start + 16], strict=True):
            try:
                rows.append(encoder.encode([net])[0])
            except Exception as e:
                errors[nid] = f"{type(e).__name__}: {e}"
                rows.append(None)
    dim = next((len(r) for r in rows if r is not None), 1)
    return np.stack([r if r is not None else np.full(dim, np.nan) for r in rows]), errors


def split_parts(encoder: Encoder, emb: np.ndarray, nets: list[Net]) -> dict[str, np.ndarray]:
    """The default encoder's two parts, from its embeddings `emb` of `nets`.

    The learned part is the first ``module_dim`` columns; the fingerprint the next
    ``fingerprint_dim`` columns when the config weighs it (each part is unit-normalised and
    times ``sqrt(weight)``, so a slice's cosine is that part's cosine), else recomputed by
    ``encoder.fingerprints``. Empty for an encoder without a fingerprint.
    """
    cfg = getattr(encoder, "config", None)
    if not hasattr(cfg, "fingerprint_dim"):
        return {}
    d, fp_dim = int(encoder.module_dim), int(cfg.fingerprint_dim)  # type: ignore[attr-defined, union-attr]
    parts = {"learned part alone": emb[:, :d]}
    if float(cfg.fingerprint) > 0:  # type: ignore[union-attr]
        parts["fingerprint alone"] = emb[:, d : d + fp_dim]
    else:
        parts["fingerprint alone"] = encoder.fingerprints(encoder.graphs(nets))  # type: ignore[attr-defined]
    return parts


def probe_inputs(dist: str, input_shape: tuple[int, ...], n: int, seed: int = 0) -> torch.Tensor:
    """``(n, *input_shape)`` float64 probe inputs: standard-normal, uniform on [-1, 1], or
    one of zoolens' probe kinds (`default_probes`, the design of the `probe` baseline)."""
    if dist == "uniform":
        g = torch.Generator().manual_seed(seed)
        return torch.rand((n, *input_shape), generator=g, dtype=torch.float64) * 2 - 1
    return default_probes(input_shape, n, seed=seed, kind=_ZOOLENS_KIND[dist])


def net_outputs(net: Net, x: torch.Tensor) -> np.ndarray:
    """`net`'s (float64) outputs ``(n, n_out)`` on inputs `x`."""
    with torch.no_grad():
        return net(x).reshape(len(x), -1).numpy()


def normalise(y: np.ndarray, how: str) -> np.ndarray:
    """Outputs ``(n_probes, n_out)`` as raw values, softmax over outputs, or z-scored per
    output over the probes."""
    if how == "raw":
        return y
    if how == "softmax":
        e = np.exp(y - y.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    if how == "zscore":
        return (y - y.mean(0)) / np.maximum(y.std(0), 1e-12)
    raise ValueError(how)


def probe_embeddings(
    nets: list[Net], counts: list[int], single_output: bool
) -> dict[str, np.ndarray]:
    """Probe-baseline embeddings ``{name: (n, n_probes · n_out)}`` for every distribution,
    count and normalisation (softmax is skipped for single-output nets: it is constant)."""
    out: dict[str, np.ndarray] = {}
    shape = tuple(nets[0].input_shape)
    nets = [net.to(torch.float64) for net in nets]
    for dist in PROBE_DISTRIBUTIONS:
        for n in counts:
            x = probe_inputs(dist, shape, n)
            ys = [net_outputs(net, x) for net in nets]
            for how in NORMALISATIONS:
                if how == "softmax" and single_output:
                    continue
                out[f"probe {dist} n={n} {how}"] = np.stack(
                    [normalise(y, how).reshape(-1) for y in ys]
                )
    return out


def weight_stats(nets: list[Net]) -> dict[str, np.ndarray]:
    """The `weight-stats` baseline, raw and standardised on the zoo itself (unsupervised)."""
    ws = encoder_class("weight-stats")()
    raw = ws.encode(nets)
    fitted = encoder_class("weight-stats")().fit(nets).encode(nets)
    return {"weight-stats (raw)": raw, "weight-stats (standardised on the zoo)": fitted}


def rendered_images(nets: list[Net], side: int = 28) -> np.ndarray:
    """Each coordinate net evaluated on the ``side × side`` pixel-centre grid ((2i+1)/side
    - 1, the grid the shapes INRs were fit on): ``(n, side²)`` pixels."""
    nets = [net.to(torch.float64) for net in nets]
    c = (torch.arange(side, dtype=torch.float64) * 2 + 1) / side - 1
    yy, xx = torch.meshgrid(c, c, indexing="ij")
    grid = torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)
    return np.stack([net_outputs(net, grid).reshape(-1) for net in nets])
