"""`NeuralGraphEncoder`: the product — canonical neural graph → equivariant GNN → vector."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
from torch import nn

from zoolens.errors import LoadError
from zoolens.graph import ROLE_OUTPUT, GraphCache, NeuralGraph, batch_graphs, net_to_graph
from zoolens.ir import Net, TensorSet
from zoolens.nn.base import register_encoder
from zoolens.nn.fingerprint import (
    STATISTICS,
    FunctionHead,
    check_norm,
    combine,
    fingerprints,
    output_statistics,
)
from zoolens.nn.gnn import NeuralGraphNet
from zoolens.nn.interface import interface_vectors, signature
from zoolens.nn.render import RENDER_CHANNELS, RenderHead, renders
from zoolens.nn.torch_encoder import TorchEncoder

DEFAULTS: dict[str, Any] = {
    "dim": 256,
    "hidden": 32,
    "edge_hidden": 16,
    "layers": 3,
    "heads": 4,
    "readout_layers": 2,
    "readout": "transformer",
    "n_probes": 64,
    "probes": "sobol",
    "flatten": "grid",
    "output_readout": True,
    "readout_hidden": 0,
    "output_linear": 0,  # 16 gains on seen tasks, loses on unseen ones (docs/benchmark)
    "domain": True,
    "fingerprint": 0.0,  # its weight in the cosine; the shipped encoder sets it (MODEL_CARD)
    "fingerprint_dim": 256,
    "fingerprint_norm": "none",  # or "centre", "zscore": per output, over the probes
    "quality_stats": False,  # the quality head also reads `output_statistics` (refit)
    "function_head": 0.0,  # weight of the learned map of the fingerprint (fit after training)
    "function_hidden": 512,
    "function_dim": 128,
    "interface": 0.0,  # weight of the input-shape / output-count vector (`zoolens.nn.interface`)
    "interface_dim": 128,
    "class_head": 0.0,  # weight of the class probabilities of the fingerprint (fit after training)
    "class_count": 0,  # classes it tells apart: the train split's groups (set by the fit)
    "class_temperature": 3.0,  # the probabilities are softmax(logits / T)
    "class_dropout": 0.3,  # input dropout of the class head (and of the render head's MLP)
    "render_head": 0.0,  # weight of the class probabilities of coordinate nets' drawings
    "render_side": 28,  # pixels per side of the drawings (`zoolens.nn.render`)
    "render_count": 0,  # classes the render head tells apart (set by the fit)
    "render_temperature": 3.0,
    "seed": 0,
}


_FUNCTION = "function_head."  # state-dict prefixes of the function head
_CLASSES = "class_head."  # of the class head
_RENDER = "render_head."  # and of the render head


class EmbeddingParts(NamedTuple):
    """What `NeuralGraphEncoder.compose` makes embeddings of: the learned rows ``(n,
    module_dim)``, the fingerprints ``(n, fingerprint_dim)``, the interface vectors
    ``(n, interface_dim)``, the drawings ``(n, RENDER_CHANNELS, side, side)`` and which
    models are drawn ``(n,)`` (`zoolens.nn.render`) of n models."""

    learned: np.ndarray
    fingerprint: np.ndarray
    interface: np.ndarray
    drawing: np.ndarray
    drawn: np.ndarray


@register_encoder("neural-graph")
class NeuralGraphEncoder(TorchEncoder):
    """Exactly invariant to hidden-unit permutations (equivariant layers + invariant
    readout) and to scale/sign symmetries (the graph is built from `canonicalize(net)`).

    With ``fingerprint`` w > 0 an embedding is the learned one (weight ``sqrt(1 - w)``)
    beside the function fingerprint (`zoolens.nn.fingerprint`, ``fingerprint_dim``
    columns, weight ``sqrt(w)``), both unit vectors: the cosine of two embeddings is then
    ``(1 - w)`` times the learned cosine plus ``w`` times the fingerprints'. Training and
    the quality head read the learned part only; w can be set on a trained encoder.
    With ``function_head`` v > 0 a `FunctionHead` of the fingerprint follows, at weight
    v (``function_dim`` columns; the learned part then weighs ``1 - w - v``); it is fit on
    a trained encoder by `zoolens.train.function.fit_function_head`. With ``interface`` k >
    0 the net's interface vector (`zoolens.nn.interface`: input shape and output count)
    comes next, at weight k. With ``class_head`` u > 0 a second `FunctionHead` of the
    fingerprint, a classifier over the groups of the zoo it was fit on
    (`zoolens.train.function.fit_class_head`), adds its class probabilities at weight u.
    With ``render_head`` r > 0 a `RenderHead`, a classifier of the drawings of coordinate
    nets (`zoolens.nn.render`; fit by `zoolens.train.function.fit_render_head`), adds
    its class probabilities at weight r (nets that are not drawn share one vector
    orthogonal to them: `render_probabilities`).
    The learned part weighs ``1 - w - v - k - u - r``.

    Args:
        config: overrides of `DEFAULTS`.
    """

    DEFAULTS = DEFAULTS
    OLD_DEFAULTS: ClassVar[dict[str, Any]] = {
        **TorchEncoder.OLD_DEFAULTS,
        "output_readout": False,
        "readout_hidden": 0,
        "output_linear": 0,
        "probes": "normal",
        "flatten": "flat",
        "domain": False,
        "fingerprint": 0.0,
        "fingerprint_norm": "none",
        "quality_stats": False,
        "function_head": 0.0,
        "interface": 0.0,
        "class_head": 0.0,
        "render_head": 0.0,
    }

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__(config)
        self.graph_cache = GraphCache()  # this encoder's: architectures' wiring, probe sets
        w, v, k, u, r = self._weights()
        if min(w, v, k, u, r) < 0.0 or w + v + k + u + r >= 1.0:
            raise ValueError(
                f"fingerprint weight {w}, function head weight {v}, interface weight {k}, "
                f"class head weight {u}, render head weight {r}: expected all >= 0 and "
                "their sum < 1"
            )
        if u and int(self.config["class_count"]) < 2:
            raise ValueError("a class head needs class_count >= 2 (set by fit_class_head)")
        if r and int(self.config["render_count"]) < 2:
            raise ValueError("a render head needs render_count >= 2 (set by fit_render_head)")
        if (w or v or u) and not int(self.config["n_probes"]):
            raise ValueError("the fingerprint reads the probe values: set n_probes > 0")
        check_norm(str(self.config["fingerprint_norm"]))
        self.function: FunctionHead | None = None
        self.classes: FunctionHead | None = None
        self.render: RenderHead | None = None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(self.config["seed"]))
            if v:
                self.function = self.new_function_head()
            if u:
                self.classes = self.new_class_head()
            if r:
                self.render = self.new_render_head()

    @property
    def dim(self) -> int:
        fp = int(self.config["fingerprint_dim"]) if self.config["fingerprint"] else 0
        head = int(self.config["function_dim"]) if self.config["function_head"] else 0
        iface = int(self.config["interface_dim"]) if self.config["interface"] else 0
        classes = int(self.config["class_count"]) if self.config["class_head"] else 0
        render = int(self.config["render_count"]) + 1 if self.config["render_head"] else 0
        return self.module_dim + fp + head + iface + classes + render

    def _weights(self) -> tuple[float, float, float, float, float]:
        """The weights of the fingerprint, the function head, the interface, the class
        head and the render head."""
        cfg = self.config
        keys = ("fingerprint", "function_head", "interface", "class_head", "render_head")
        w, v, k, u, r = (float(cfg[key]) for key in keys)
        return w, v, k, u, r

    def new_function_head(self) -> FunctionHead:
        """An untrained `FunctionHead` for this configuration."""
        cfg = self.config
        return FunctionHead(
            int(cfg["fingerprint_dim"]), int(cfg["function_hidden"]), int(cfg["function_dim"])
        ).eval()

    def new_class_head(self) -> FunctionHead:
        """An untrained class head over ``class_count`` classes."""
        cfg = self.config
        return FunctionHead(
            int(cfg["fingerprint_dim"]),
            int(cfg["function_hidden"]),
            int(cfg["class_count"]),
            dropout=float(cfg["class_dropout"]),
        ).eval()

    def new_render_head(self) -> RenderHead:
        """An untrained render head over ``render_count`` classes."""
        cfg = self.config
        return RenderHead(int(cfg["render_count"]), float(cfg["class_dropout"])).eval()

    def heads(self) -> dict[str, nn.Module]:
        heads = super().heads()
        if self.function is not None:
            heads[_FUNCTION] = self.function
        if self.classes is not None:
            heads[_CLASSES] = self.classes
        if self.render is not None:
            heads[_RENDER] = self.render
        return heads

    def build_module(self) -> nn.Module:
        return NeuralGraphNet(self.config)

    @property
    def quality_extra_dim(self) -> int:
        """With ``quality_stats``, the head also reads the function's `output_statistics`
        on the probes (no trainer step computes them: `fit_quality_head` fits such a head
        on a trained encoder)."""
        return len(STATISTICS) if self.config["quality_stats"] else 0

    def quality_batch(
        self, models: list[Net | TensorSet]
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        z, graphs = self._learned(models)  # no fingerprint: the head does not read it
        return z, output_statistics(graphs) if self.quality_extra_dim else None

    def with_fingerprint(
        self,
        weight: float,
        norm: str | None = None,
        head: float | None = None,
        interface: float | None = None,
        classes: float | None = None,
        render: float | None = None,
    ) -> NeuralGraphEncoder:
        """This encoder (same learned state) with the fingerprint's weight set to `weight`
        (and its per-output normalisation to `norm`, the function head's weight to `head`,
        the interface's to `interface`, the class head's to `classes` and the render
        head's to `render`, if given; a head weight of 0 drops that head)."""
        changes: dict[str, Any] = {"fingerprint": float(weight)}
        if norm is not None:
            changes["fingerprint_norm"] = norm
        if head is not None:
            changes["function_head"] = float(head)
        if interface is not None:
            changes["interface"] = float(interface)
        if classes is not None:
            changes["class_head"] = float(classes)
        if render is not None:
            changes["render_head"] = float(render)
        for kind, key, have in (
            ("function", "function_head", self.function),
            ("class", "class_head", self.classes),
            ("render", "render_head", self.render),
        ):
            if changes.get(key) and have is None:
                raise ValueError(f"no {kind} head to weigh: fit one first (zoolens fit-function)")
        enc = NeuralGraphEncoder({**self.config, **changes})
        state = self.state_tensors()
        heads = ((_FUNCTION, enc.function), (_CLASSES, enc.classes), (_RENDER, enc.render))
        for prefix, module in heads:
            if module is None:
                state = {k: v for k, v in state.items() if not k.startswith(prefix)}
        enc.load_state_tensors(state)
        return enc

    def graph(self, net: Net) -> NeuralGraph:
        n = int(self.config["n_probes"])
        kind = str(self.config["probes"])
        probes = self.graph_cache.probes(net.input_shape, n, kind=kind) if n else None
        flatten = str(self.config["flatten"])
        return net_to_graph(
            net, canonical=True, probes=probes, flatten=flatten, cache=self.graph_cache
        )

    def graphs(self, models: list[Net | TensorSet]) -> list[NeuralGraph]:
        out = []
        for m in models:
            if not isinstance(m, Net):
                src = m.meta.get("source", "a TensorSet")
                raise LoadError(
                    f"{src}: the neural-graph encoder needs the network's wiring; "
                    "embed bare weights with the 'layerwise' encoder"
                )
            out.append(self.graph(m))
        return out

    def forward(self, graphs: list[NeuralGraph]) -> torch.Tensor:
        """Differentiable embeddings ``(len(graphs), dim)`` (unnormalised), for training."""
        z: torch.Tensor = self.module(batch_graphs(graphs))
        return z

    def train_forward(self, models: list[Net | TensorSet]) -> torch.Tensor:
        """Differentiable embeddings of loaded models (the training entry point)."""
        return self.forward(self.graphs(models))

    def embed_batch(self, models: list[Net | TensorSet]) -> np.ndarray:
        """Embeddings without autograd, on one torch intra-op thread (see `_one_thread`):
        the learned part, then the fingerprint, the function head's vector, the interface
        vector, the class probabilities and the drawings' class probabilities, each if it
        weighs anything."""
        if not any(self._weights()):
            return self._learned(models)[0].numpy()
        return self.compose(self.parts(models))

    def parts(self, models: list[Net | TensorSet]) -> EmbeddingParts:
        """The parts of `models`' embeddings, before weighing (see `compose`); the
        drawings only with a render head to read them (else ``(n, RENDER_CHANNELS, 0,
        0)``, none drawn)."""
        z, graphs = self._learned(models)
        fp, iface = self.fingerprints(graphs), self.interfaces(models, graphs)
        if self.render is not None:
            with _one_thread():
                drawing, drawn = renders(models, int(self.config["render_side"]))
        else:
            drawing = np.zeros((len(models), RENDER_CHANNELS, 0, 0), dtype=np.float32)
            drawn = np.zeros(len(models), dtype=bool)
        return EmbeddingParts(z.numpy(), fp, iface, drawing, drawn)

    def compose(self, parts: EmbeddingParts) -> np.ndarray:
        """The embeddings of models from their `parts` under this encoder's weights:
        learned, fingerprint, function head, interface, class probabilities, drawings'
        class probabilities side by side."""
        w, v, k, u, r = self._weights()
        weighed = [(parts.learned, 1.0 - w - v - k - u - r)]
        if w:
            weighed.append((parts.fingerprint, w))
        fp = torch.from_numpy(parts.fingerprint).float()
        if self.function is not None:
            with _one_thread(), torch.no_grad():
                weighed.append((self.function(fp).double().numpy(), v))
        if k:
            weighed.append((parts.interface, k))
        if self.classes is not None:
            t = float(self.config["class_temperature"])
            with _one_thread(), torch.no_grad():
                probs = torch.softmax(self.classes(fp).double() / t, dim=1)
            weighed.append((probs.numpy(), u))
        if self.render is not None:
            weighed.append((self.render_probabilities(parts.drawing, parts.drawn), r))
        return combine(weighed)

    def render_probabilities(self, drawing: np.ndarray, drawn: np.ndarray) -> np.ndarray:
        """The render part ``(n, render_count + 1)`` float64: for the drawn rows of
        `drawing`, the render head's class probabilities (softmax of the logits over
        ``render_temperature``) and a 0; for the models that are not drawn, zeros and a 1.
        Every row is a unit vector (so the embedding's cosine stays the weighted sum of
        its parts'); a drawn and an undrawn model's render cosine is 0, two undrawn ones'
        is 1 whatever they are, so it reorders none of their neighbours among
        themselves."""
        assert self.render is not None
        side = int(self.config["render_side"])
        if drawing.shape[-2:] != (side, side):
            raise ValueError(f"drawings of side {drawing.shape[-1]}; the render head reads {side}")
        out = np.zeros((len(drawn), int(self.config["render_count"]) + 1))
        out[~drawn, -1] = 1.0
        if drawn.any():
            t = float(self.config["render_temperature"])
            x = torch.from_numpy(drawing[drawn])
            with _one_thread(), torch.no_grad():
                out[drawn, :-1] = torch.softmax(self.render(x).double() / t, dim=1).numpy()
        return out

    def interfaces(self, models: list[Net | TensorSet], graphs: list[NeuralGraph]) -> np.ndarray:
        """The interface vectors ``(n, interface_dim)`` of `models` and their built
        `graphs` (`zoolens.nn.interface`)."""
        sigs = [
            signature(m.input_shape, int((g.role == ROLE_OUTPUT).sum()))
            for m, g in zip(models, graphs, strict=True)
            if isinstance(m, Net)  # always: `graphs` refuses the rest
        ]
        return interface_vectors(sigs, int(self.config["interface_dim"]))

    def fingerprints(self, graphs: list[NeuralGraph]) -> np.ndarray:
        """The unit fingerprints ``(n, fingerprint_dim)`` float32 of built graphs (what
        the function head reads)."""
        dim, seed = int(self.config["fingerprint_dim"]), int(self.config["seed"])
        with _one_thread():
            return fingerprints(graphs, dim, seed, str(self.config["fingerprint_norm"]))

    def _learned(self, models: list[Net | TensorSet]) -> tuple[torch.Tensor, list[NeuralGraph]]:
        """The learned embeddings ``(n, module_dim)`` float64 of `models` and their graphs."""
        self.module.eval()
        with _one_thread(), torch.no_grad():
            graphs = self.graphs(models)
            return self.forward(graphs).double(), graphs


_THREADS_LOCK = threading.Lock()
_THREADS_SAVED = [0, 0]  # callers inside `_one_thread`, torch's thread count before them


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch ops single-threaded, then restore the thread count (nesting and concurrent
    callers are fine).

    Embedding issues thousands of mid-sized ops; with one intra-op thread per core and
    other processes on the cores, every op waits for a descheduled thread: measured 4–15×
    slower than one thread on a busy 2-core machine (mlp-2k, cnn-50k, cnn-1m).
    """
    with _THREADS_LOCK:
        if _THREADS_SAVED[0] == 0:
            _THREADS_SAVED[1] = torch.get_num_threads()
            torch.set_num_threads(1)
        _THREADS_SAVED[0] += 1
    try:
        yield
    finally:
        with _THREADS_LOCK:
            _THREADS_SAVED[0] -= 1
            if _THREADS_SAVED[0] == 0:
                torch.set_num_threads(_THREADS_SAVED[1])
