"""Weight synthesis: a hypernetwork decoder from embeddings to the weights of one
architecture, and `synthesize`, which decodes the interpolation of two nets' embeddings.

The encoder is exactly invariant to the nets' symmetries, so an embedding names a whole
orbit of weight vectors (every permutation, and rescaling where exact, of one net). A
regression on raw weights would be asked for all of them at once and learn their mean, a
net that computes nothing. `Decoder.fit` therefore aligns every zoo member to one
reference net (`zoolens.merge.align`) first: the target of each embedding is then the
orbit member closest to that reference, one well-defined weight vector, and nets that
compute similar functions get nearby targets.

    decoder = fit_decoder(nets, encoder.encode(nets), encoder_id=encoder.id)
    decoder.save("decoder/")                       # config.json + model.safetensors + reference/
    child = synthesize(a, b, 0.5, Decoder.load("decoder/"), encoder)
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from zoolens.errors import ArchitectureMismatchError, EncoderMismatchError, LoadError, ZoolensError
from zoolens.ir import Net, load_net_dir
from zoolens.merge.activations import as_inputs
from zoolens.merge.align import align
from zoolens.merge.compat import check_same_architecture
from zoolens.nn.base import Encoder, as_config, torch_threads
from zoolens.nn.config import EncoderConfig, bounded

FORMAT_VERSION = 1
REFERENCE_DIR = "reference"


@dataclasses.dataclass(frozen=True)
class DecoderConfig(EncoderConfig):
    """Hyper-parameters of a `Decoder`.

    Args:
        hidden: width of the decoder MLP's hidden layers.
        layers: hidden layers of the decoder MLP.
        steps: full-batch Adam steps of `Decoder.fit`.
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        functional: weight of the functional loss (the decoded net's outputs vs the target
            net's on probe inputs, each normalised by the target's output variance); 0: MSE
            on the weights only.
        seed: initialisation seed.
    """

    hidden: int = bounded(256, 1)
    layers: int = bounded(2, 1, 8)
    steps: int = bounded(500, 1)
    lr: float = bounded(1e-3, 0.0)
    weight_decay: float = bounded(0.0, 0.0)
    functional: float = bounded(0.0, 0.0)
    seed: int = 0


def flat_weights(net: Net) -> torch.Tensor:
    """Every tensor of `net` (op order, role order), flattened into one vector."""
    return torch.cat([t.reshape(-1) for t in net.parameters()])


def _with_flat(template: Net, flat: torch.Tensor) -> Net:
    """`template` (changed in place) holding views of `flat` as its tensors."""
    i = 0
    for op in template.ops:
        params = {}
        for role, t in op.params.items():
            params[role] = flat[i : i + t.numel()].reshape(t.shape)
            i += t.numel()
        op.params = params
    return template


def _mlp(in_dim: int, out_dim: int, config: DecoderConfig) -> nn.Sequential:
    torch.manual_seed(config.seed)
    layers: list[nn.Module] = []
    width = in_dim
    for _ in range(config.layers):
        layers += [nn.Linear(width, config.hidden), nn.GELU()]
        width = config.hidden
    last = nn.Linear(width, out_dim)
    nn.init.zeros_(last.weight)  # the untrained decoder returns the zoo mean
    nn.init.zeros_(last.bias)
    return nn.Sequential(*layers, last)


class Decoder:
    """Embeddings → weights of one architecture (a fixed net shape). Fit with `fit`.

    Learned state: ``reference_`` (the net every target was aligned to; its architecture
    is the decoder's), ``mlp_``, ``mean_`` and ``scale_`` (the standardisation of the
    aligned weight vectors), ``encoder_id_`` and ``encoder_source_``.

    Args:
        config: a `DecoderConfig`, a mapping of overrides, or None for the defaults.
    """

    def __init__(self, config: DecoderConfig | dict[str, Any] | None = None) -> None:
        self.config: DecoderConfig = as_config(DecoderConfig, config, "decoder")

    def fit(
        self,
        nets: Sequence[Net],
        embeddings: np.ndarray,
        reference: Net | None = None,
        encoder_id: str = "",
        encoder_source: str = "default",
        threads: int | None = 1,
    ) -> Decoder:
        """Align `nets` to `reference` (default ``nets[0]``) and fit the decoder MLP.

        Args:
            nets: a zoo of one architecture.
            embeddings: ``(len(nets), d)`` embeddings of `nets` by one encoder.
            reference: the net every target is aligned to.
            encoder_id: the id of the encoder (`Encoder.id`) that made `embeddings`.
            encoder_source: how to load that encoder (a name or a directory).
            threads: torch threads while fitting (restored after); the tensors are small,
                so one is fastest on a busy machine. None: the caller's setting.

        Returns:
            self.
        """
        z = np.asarray(embeddings, dtype=np.float32)
        if len(nets) < 2 or z.ndim != 2 or len(z) != len(nets):
            raise ZoolensError(
                f"fit_decoder: need >= 2 nets and one embedding row per net; got {len(nets)} "
                f"nets and embeddings of shape {z.shape}"
            )
        ref = (reference if reference is not None else nets[0]).clone()
        for i, net in enumerate(nets):
            check_same_architecture(ref, net, ("the reference", f"net {i}"))
        self.reference_, self.encoder_id_, self.encoder_source_ = ref, encoder_id, encoder_source
        with torch_threads(threads):
            targets = torch.stack([flat_weights(align(ref, n)).float() for n in nets])  # (n, P)
            self.mean_ = targets.mean(dim=0)
            self.scale_ = (targets - self.mean_).std().clamp_min(1e-8).reshape(1)
            self.mlp_ = _mlp(z.shape[1], targets.shape[1], self.config)
            self._train(torch.as_tensor(z), (targets - self.mean_) / self.scale_, nets)
        return self

    def _train(self, z: torch.Tensor, y: torch.Tensor, nets: Sequence[Net]) -> None:
        cfg = self.config
        opt = torch.optim.Adam(self.mlp_.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        probe = None
        if cfg.functional > 0:
            work = self.reference_.to(torch.float32)
            probe = as_inputs(work, None, n=64)
            with torch.no_grad():
                outs = torch.stack([n.to(torch.float32)(probe) for n in nets])  # (n, B, out)
            var = outs.var(dim=(1, 2), keepdim=True).clamp_min(1e-8)
        self.mlp_.train()
        for _ in range(cfg.steps):
            opt.zero_grad()
            pred = self.mlp_(z)  # (n, P)
            loss = (pred - y).square().mean()
            if probe is not None:
                flat = self.mean_ + self.scale_ * pred
                got = torch.stack([_with_flat(work, f)(probe) for f in flat])
                loss = loss + cfg.functional * ((got - outs).square() / var).mean()
            loss.backward()
            opt.step()
        self.mlp_.eval()

    def _check_fitted(self) -> None:
        if not hasattr(self, "mlp_"):
            raise ZoolensError("decoder is not fitted: call fit (or fit_decoder) or Decoder.load")

    def check_net(self, net: Net, what: str = "net") -> None:
        """Raise `ArchitectureMismatchError` (one line) unless `net` has the decoder's
        architecture."""
        self._check_fitted()
        try:
            check_same_architecture(self.reference_, net, ("the decoder's architecture", what))
        except ArchitectureMismatchError as e:
            raise ArchitectureMismatchError(
                f"{what} is not of the architecture this decoder was fitted on: {e}; fit a "
                "decoder on a zoo of its architecture"
            ) from None

    def check_encoder(self, encoder_id: str) -> None:
        """Raise `EncoderMismatchError` unless `encoder_id` is the encoder fitted with."""
        self._check_fitted()
        if self.encoder_id_ and encoder_id != self.encoder_id_:
            raise EncoderMismatchError(
                f"decoder was fitted on embeddings of encoder {self.encoder_id_}, not "
                f"{encoder_id}; use that encoder ({self.encoder_source_}) or re-fit the decoder"
            )

    def decode(self, embeddings: np.ndarray) -> list[Net]:
        """Nets of the decoder's architecture for embeddings ``(n, d)`` (or one ``(d,)``)."""
        self._check_fitted()
        z = torch.as_tensor(np.atleast_2d(np.asarray(embeddings, dtype=np.float32)))
        d = self.mlp_[0].in_features
        if z.shape[1] != d:
            raise ZoolensError(f"decoder reads {d}-dim embeddings, got shape {tuple(z.shape)}")
        with torch.no_grad():
            flat = self.mean_ + self.scale_ * self.mlp_(z)  # (n, P)
        dtype = next(self.reference_.parameters()).dtype
        return [_with_flat(self.reference_.clone(), f.to(dtype).clone()) for f in flat]

    def tensors(self) -> dict[str, torch.Tensor]:
        """The learned tensors, as `save` writes them."""
        self._check_fitted()
        out = {f"mlp.{k}": v.detach().contiguous() for k, v in self.mlp_.state_dict().items()}
        return {**out, "mean": self.mean_.contiguous(), "scale": self.scale_.contiguous()}

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write ``config.json`` + ``model.safetensors`` + ``reference/`` (a zoolens net)."""
        path = os.fspath(path)
        os.makedirs(path, exist_ok=True)
        save_file(self.tensors(), os.path.join(path, "model.safetensors"))
        self.reference_.save(os.path.join(path, REFERENCE_DIR))
        doc = {
            "class": "decoder",
            "format_version": FORMAT_VERSION,
            "config": self.config.to_dict(),
            "encoder_id": self.encoder_id_,
            "encoder_source": self.encoder_source_,
        }
        with open(os.path.join(path, "config.json"), "w") as f:
            json.dump(doc, f, indent=1, sort_keys=True)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Decoder:
        """Read a decoder written by `save`."""
        path = os.fspath(path)
        try:
            with open(os.path.join(path, "config.json")) as f:
                doc = json.load(f)
            tensors = load_file(os.path.join(path, "model.safetensors"))
        except Exception as e:  # OSError, JSON errors, safetensors' own
            raise LoadError(f"{path}: not a saved zoolens decoder ({e})") from None
        if not isinstance(doc, dict) or doc.get("class") != "decoder":
            raise LoadError(f"{path}/config.json: not a zoolens decoder config")
        if doc.get("format_version") != FORMAT_VERSION:
            raise LoadError(
                f"{path}/config.json: decoder format_version {doc.get('format_version')!r}; "
                f"this zoolens reads {FORMAT_VERSION}"
            )
        out = cls(DecoderConfig.from_dict(doc["config"], f"{path}/config.json"))
        out.reference_ = load_net_dir(os.path.join(path, REFERENCE_DIR))
        out.encoder_id_ = str(doc.get("encoder_id", ""))
        out.encoder_source_ = str(doc.get("encoder_source", "default"))
        out.mean_, out.scale_ = tensors["mean"], tensors["scale"]
        mlp = {k[4:]: v for k, v in tensors.items() if k.startswith("mlp.")}
        out.mlp_ = _mlp(mlp["0.weight"].shape[1], out.mean_.numel(), out.config)
        out.mlp_.load_state_dict(mlp)
        out.mlp_.eval()
        return out


def fit_decoder(
    nets: Sequence[Net],
    embeddings: np.ndarray,
    config: DecoderConfig | dict[str, Any] | None = None,
    reference: Net | None = None,
    encoder_id: str = "",
    encoder_source: str = "default",
    threads: int | None = 1,
) -> Decoder:
    """A `Decoder` fitted on `nets` and their `embeddings` (see `Decoder.fit`)."""
    return Decoder(config).fit(nets, embeddings, reference, encoder_id, encoder_source, threads)


def synthesize(a: Net, b: Net, alpha: float, decoder: Decoder, encoder: Encoder) -> Net:
    """Decode ``(1 - alpha) z_a + alpha z_b``, rescaled to unit norm like the embeddings the
    decoder was fitted on, into a net of the decoder's architecture.

    Raises:
        ArchitectureMismatchError: `a` or `b` is not of the decoder's architecture.
        EncoderMismatchError: `encoder` is not the one the decoder was fitted with.
    """
    decoder.check_net(a, "A")
    decoder.check_net(b, "B")
    decoder.check_encoder(encoder.id)
    z = encoder.encode([a, b]).astype(np.float64)  # (2, d)
    mid = (1 - alpha) * z[0] + alpha * z[1]
    mid /= max(float(np.linalg.norm(mid)), 1e-12)
    net = decoder.decode(mid)[0]
    net.meta = {"synthesized": {"alpha": alpha, "encoder": encoder.id}}
    return net
