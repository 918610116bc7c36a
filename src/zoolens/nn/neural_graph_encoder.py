"""`NeuralGraphEncoder`: the product — canonical neural graph → equivariant GNN → vector."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import nn

from zoolens.errors import LoadError
from zoolens.graph import GraphCache, NeuralGraph, batch_graphs, net_to_graph
from zoolens.graph.coarsen import COARSEN_PARAMS
from zoolens.graph.seq import token_vocab
from zoolens.graph.stacked import (
    GraphStack,
    batch_stacks,
    group_by_architecture,
    stack_graphs,
    stackable,
)
from zoolens.ir import Net, TensorSet
from zoolens.nn.base import register_encoder
from zoolens.nn.config import ConfigError, EncoderConfig, bounded
from zoolens.nn.fingerprint import STATISTICS, Fingerprinter, combine, output_statistics
from zoolens.nn.gnn import NeuralGraphNet
from zoolens.nn.torch_encoder import TorchEncoder, TorchEncoderConfig

#: How the probe inputs are drawn (`zoolens.graph.default_probes`).
PROBE_KIND = "structured"
#: State-tensor key prefix of the user's sample inputs (`with_probe_inputs`).
PROBE_INPUTS_PREFIX = "probe_inputs."


@dataclass(frozen=True)
class NeuralGraphConfig(TorchEncoderConfig):
    """Hyper-parameters of `NeuralGraphEncoder`.

    Args:
        dim: width of the learned part.
        hidden: node-state width.
        edge_hidden: edge-state width.
        layers: message-passing steps.
        heads: attention heads of the layer readout (divides ``hidden``).
        readout_layers: Transformer layers of the layer readout.
        readout_hidden: width of the per-output readout MLP; 0 = ``2 * hidden``.
        n_probes: probe inputs whose activations every node carries; 0 = none (then
            the fingerprint cannot weigh anything).
        fingerprint: w, the fingerprint's weight in the embedding's cosine; the learned
            part weighs ``1 - w``. 0 = the learned part alone.
        fingerprint_dim: columns of the fingerprint.
        fingerprint_layout: how it projects the responses (`zoolens.nn.fingerprint.LAYOUTS`:
            "isometric" keeps the cosines of nets of up to ``fingerprint_dim / n_probes``
            outputs exact; "gaussian", of the encoders saved before it, approximates all).
        fingerprint_probes: the fingerprint reads the outputs on the first this many
            probe inputs only (fewer probes keep the cosines of nets of more outputs
            exact in the isometric layout); 0 = on all ``n_probes``.
        quality_stats: the quality head also reads the function's `output_statistics`.
    """

    dim: int = bounded(256, 1)
    hidden: int = bounded(32, 1)
    edge_hidden: int = bounded(16, 1)
    layers: int = bounded(3, 0)
    heads: int = bounded(4, 1)
    readout_layers: int = bounded(2, 1)
    readout_hidden: int = bounded(0, 0)
    n_probes: int = bounded(64, 0)
    fingerprint: float = bounded(0.0, 0.0, 1.0)
    fingerprint_dim: int = bounded(256, 1)
    fingerprint_layout: Literal["gaussian", "isometric"] = "gaussian"
    fingerprint_probes: int = bounded(0, 0)
    quality_stats: bool = False

    def validate(self) -> None:
        if self.hidden % self.heads:
            raise ConfigError(
                f"NeuralGraphConfig: hidden {self.hidden} is not a multiple of heads {self.heads}"
            )
        if self.fingerprint and not self.n_probes:
            raise ConfigError(
                "NeuralGraphConfig: the fingerprint reads the probe values; set n_probes > 0 "
                "or fingerprint = 0"
            )
        if self.fingerprint_probes > self.n_probes:
            raise ConfigError(
                f"NeuralGraphConfig: fingerprint_probes {self.fingerprint_probes} exceeds "
                f"n_probes {self.n_probes}"
            )


@register_encoder("neural-graph")
class NeuralGraphEncoder(TorchEncoder):
    """Exactly invariant to hidden-unit permutations (equivariant layers + invariant
    readout) and to scale/sign symmetries (the graph is built from `canonicalize(net)`).

    With ``fingerprint`` w > 0 an embedding is the learned one (weight ``1 - w``) beside
    the function fingerprint (`zoolens.nn.fingerprint`: the outputs on the probes,
    randomly projected, nothing learned; weight w), both unit vectors scaled by the square
    roots of their weights: the cosine of two embeddings is ``(1 - w)`` times the learned
    cosine plus ``w`` times the fingerprints'. Training and the quality head read the
    learned part only; w can be changed on a trained encoder (`with_fingerprint`).

    Args:
        config: a `NeuralGraphConfig` (or keyword overrides of its defaults).
    """

    config_class: ClassVar[type[EncoderConfig]] = NeuralGraphConfig
    config: NeuralGraphConfig

    def __init__(self, config: EncoderConfig | Mapping[str, Any] | None = None) -> None:
        super().__init__(config)
        self.graph_cache = GraphCache()  # this encoder's: architectures' wiring, probe sets
        cfg = self.config
        self.fingerprinter = Fingerprinter(
            cfg.fingerprint_dim, cfg.seed, cfg.fingerprint_layout, cfg.fingerprint_probes
        )
        #: Nets of more parameters get a coarse graph (`net_to_graph`).
        self.coarsen_above = COARSEN_PARAMS
        #: Input shape → the user's sample inputs used as probes for nets of that shape.
        self.probe_inputs: dict[tuple[int, ...], torch.Tensor] = {}

    @property
    def dim(self) -> int:
        fp = self.config.fingerprint_dim if self.config.fingerprint else 0
        return self.module_dim + fp

    def build_module(self) -> nn.Module:
        return NeuralGraphNet(self.config)

    @property
    def quality_extra_dim(self) -> int:
        """With ``quality_stats``, the head also reads the function's `output_statistics`
        on the probes (no trainer step computes them: `fit_quality_head` fits such a head
        on a trained encoder)."""
        return len(STATISTICS) if self.config.quality_stats else 0

    def quality_batch(
        self, models: list[Net | TensorSet]
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        z, graphs = self._learned(models)  # no fingerprint: the head does not read it
        return z, output_statistics(graphs()) if self.quality_extra_dim else None

    def with_fingerprint(
        self, weight: float, layout: str | None = None, probes: int | None = None
    ) -> NeuralGraphEncoder:
        """This encoder (same learned state and heads) with the fingerprint's weight set
        to `weight` (and its layout and probe count to `layout` and `probes`, if given)."""
        changes: dict[str, Any] = {"fingerprint": float(weight)}
        if layout is not None:
            changes["fingerprint_layout"] = layout
        if probes is not None:
            changes["fingerprint_probes"] = int(probes)
        return self._copy(self.config.replace(**changes))

    def with_probe_inputs(
        self, x: torch.Tensor | np.ndarray, source: str = "inputs"
    ) -> NeuralGraphEncoder:
        """This encoder (same state) probing nets whose input shape is ``x.shape[1:]`` on
        the first ``n_probes`` rows of `x` — a user's sample inputs — instead of the drawn
        probes. The inputs become part of the encoder's state (its `id` changes; an index
        records them), so every model of one index is read on the same inputs. Other
        input shapes keep the drawn probes.

        Raises:
            LoadError: fewer rows than ``n_probes``, non-finite values, or token-id inputs
                (nets that embed tokens are probed with drawn ids).
        """
        t = torch.as_tensor(np.asarray(x, dtype=np.float64))
        n = self.config.n_probes
        if t.ndim < 2 or t.shape[0] < n:
            raise LoadError(
                f"{source}: {n} sample inputs needed (rows of shape (n, *input_shape)), "
                f"got shape {tuple(t.shape)}"
            )
        if not bool(torch.isfinite(t).all()):
            raise LoadError(f"{source}: sample inputs hold NaN or Inf")
        enc = self._copy(self.config)
        enc.probe_inputs = {**self.probe_inputs, tuple(t.shape[1:]): t[:n].contiguous()}
        return enc

    def _copy(self, config: NeuralGraphConfig) -> NeuralGraphEncoder:
        """An encoder of `config` holding this one's state (learned, heads, probe inputs)."""
        enc = NeuralGraphEncoder(config)
        enc.load_state_tensors(self.state_tensors())
        return enc

    def state_tensors(self) -> dict[str, torch.Tensor]:
        state = super().state_tensors()
        for shape, t in self.probe_inputs.items():
            state[PROBE_INPUTS_PREFIX + "x".join(map(str, shape))] = t
        return state

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        own = {k: v for k, v in tensors.items() if k.startswith(PROBE_INPUTS_PREFIX)}
        super().load_state_tensors({k: v for k, v in tensors.items() if k not in own})
        self.probe_inputs = {
            tuple(int(d) for d in k[len(PROBE_INPUTS_PREFIX) :].split("x")): v.double()
            for k, v in own.items()
        }

    def probes(self, net: Net) -> torch.Tensor | None:
        """The inputs `net` is probed on: the user's sample inputs for its input shape
        (`with_probe_inputs`), else the drawn ones; None without probes."""
        probes = self.probe_inputs.get(tuple(net.input_shape))
        if probes is not None and token_vocab(net.consumers(net.input)) is not None:
            raise LoadError(
                f"{net.meta.get('source', 'a net')}: sample inputs cannot probe a net that "
                "reads token ids; embed it without --probe-inputs"
            )
        n = self.config.n_probes
        if probes is None and n:
            probes = self.graph_cache.probes(net.input_shape, n, kind=PROBE_KIND)
        return probes

    def graph(self, net: Net) -> NeuralGraph:
        probes = self.probes(net)
        return net_to_graph(
            net,
            canonical=True,
            probes=probes,
            flatten="grid",
            cache=self.graph_cache,
            coarsen_above=self.coarsen_above,
        )

    def graphs(self, models: list[Net | TensorSet]) -> list[NeuralGraph]:
        return [self.graph(m) for m in _nets(models)]

    def stacks(self, models: list[Net | TensorSet]) -> tuple[list[GraphStack], torch.Tensor]:
        """The graphs of `models` as `GraphStack`s, one per architecture that
        `stack_graphs` takes (built together) and one per other net, and where each
        model's graph is in them: graph ``order[i]`` of the stacks, in order, is model i's.
        """
        nets = _nets(models)
        stacks, placed = [], []
        for key, ids in group_by_architecture(nets):
            first = nets[ids[0]]
            if len(ids) > 1 and stackable(first, self.coarsen_above):
                probes = self.probes(first)
                group = [nets[i] for i in ids]
                stacks.append(
                    stack_graphs(
                        group, True, probes, "grid", self.graph_cache, key, self.coarsen_above
                    )
                )
            else:
                stacks += [GraphStack.of(self.graph(nets[i])) for i in ids]
            placed += ids
        order = torch.empty(len(nets), dtype=torch.long)
        order[torch.tensor(placed, dtype=torch.long)] = torch.arange(len(nets))
        return stacks, order

    def forward(self, graphs: list[NeuralGraph]) -> torch.Tensor:
        """Differentiable embeddings ``(len(graphs), module_dim)`` (unnormalised), for
        training."""
        z: torch.Tensor = self.module(batch_graphs(graphs))
        return z

    def train_forward(self, models: list[Net | TensorSet]) -> torch.Tensor:
        """Differentiable embeddings of loaded models (the training entry point)."""
        return self.forward(self.graphs(models))

    def embed_batch(self, models: list[Net | TensorSet]) -> np.ndarray:
        """Embeddings without autograd: the learned part, then (if it weighs anything)
        the fingerprint."""
        z, graphs = self._learned(models)
        w = self.config.fingerprint
        if not w:
            return z.numpy()
        return combine([(z.numpy(), 1.0 - w), (self.fingerprints(graphs()), w)])

    def fingerprints(self, graphs: list[NeuralGraph]) -> np.ndarray:
        """The unit fingerprints ``(n, fingerprint_dim)`` float32 of built graphs."""
        return self.fingerprinter(graphs)

    def _learned(
        self, models: list[Net | TensorSet]
    ) -> tuple[torch.Tensor, Callable[[], list[NeuralGraph]]]:
        """The learned embeddings ``(n, module_dim)`` float64 of `models`, and a function
        that returns their graphs (in input order; their wiring tensors are shared)."""
        self.module.eval()
        with torch.no_grad():
            stacks, order = self.stacks(models)
            z = self.module(batch_stacks(stacks)).double()[order]

        def graphs() -> list[NeuralGraph]:
            built = [s.graph(i) for s in stacks for i in range(len(s))]
            return [built[i] for i in order.tolist()]

        return z, graphs


def _nets(models: list[Net | TensorSet]) -> list[Net]:
    """`models`, each checked to be a `Net` (the neural graph needs the wiring)."""
    for m in models:
        if not isinstance(m, Net):
            src = m.meta.get("source", "a TensorSet")
            raise LoadError(
                f"{src}: the neural-graph encoder needs the network's wiring; "
                "embed bare weights with the 'layerwise' encoder"
            )
    return models  # type: ignore[return-value]
