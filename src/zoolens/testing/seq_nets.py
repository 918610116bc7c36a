"""Tiny random transformers written directly as IR `Net`s, for tests.

GPT-2-like (causal, learned positions, GELU MLP, LayerNorm), Llama-like (RMSNorm, RoPE,
grouped-query attention, SwiGLU), BERT-like (bidirectional, post-LN, cls readout, tanh
pooler) and ViT-like (conv patches → tokens → cls → positions → blocks → cls readout).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from zoolens.ir import Net, Op

SEQ_FAMILIES = ("gpt2", "llama", "bert", "vit")


@dataclass(frozen=True)
class SeqConfig:
    """Sizes of a tiny transformer."""

    vocab: int = 11
    width: int = 8
    heads: int = 2
    kv_heads: int = 2
    head_dim: int = 4
    ffn: int = 12
    layers: int = 2
    max_len: int = 7
    seq_len: int = 5
    rope_dims: int = 0
    classes: int = 3
    image: tuple[int, int, int] = (2, 6, 6)
    patch: int = 3


class _Builder:
    def __init__(self, g: torch.Generator, dtype: torch.dtype) -> None:
        self.g, self.dtype = g, dtype
        self.ops: list[Op] = []

    def rand(self, *shape: int, std: float = 0.4, mean: float = 0.0) -> torch.Tensor:
        t = torch.randn(shape, generator=self.g, dtype=torch.float64) * std + mean
        return t.to(self.dtype)

    def op(
        self,
        kind: str,
        inputs: tuple[str, ...],
        params: dict[str, torch.Tensor] | None = None,
        **attrs: Any,
    ) -> str:
        name = f"{kind}{len(self.ops)}"
        self.ops.append(Op(name, kind, inputs, name, params or {}, attrs))
        return name

    def linear(self, x: str, n_in: int, n_out: int, bias: bool = True) -> str:
        p = {"weight": self.rand(n_out, n_in, std=n_in**-0.5)}
        if bias:
            p["bias"] = self.rand(n_out, std=0.1)
        return self.op("linear", (x,), p)

    def norm(self, x: str, n: int, kind: str = "layernorm") -> str:
        p = {"weight": self.rand(n, std=0.2, mean=1.0)}
        if kind == "layernorm":
            p["bias"] = self.rand(n, std=0.1)
        return self.op(kind, (x,), p, eps=1e-5)

    def attention(self, x: str, c: SeqConfig, causal: bool, bias: bool = True) -> str:
        d, hd = c.width, c.head_dim
        q = self.linear(x, d, c.heads * hd, bias)
        k = self.linear(x, d, c.kv_heads * hd, bias)
        v = self.linear(x, d, c.kv_heads * hd, bias)
        rope = {"theta": 10000.0, "dims": c.rope_dims, "style": "half"} if c.rope_dims else None
        a = self.op(
            "sdpa",
            (q, k, v),
            heads=c.heads,
            kv_heads=c.kv_heads,
            causal=causal,
            scale=None,
            rope=rope,
        )
        return self.linear(a, c.heads * hd, d, bias)

    def net(self, input_shape: tuple[int, ...], family: str) -> Net:
        return Net(self.ops, input_shape, meta={"family": family})


def gpt2_like(c: SeqConfig, g: torch.Generator, dtype: torch.dtype = torch.float64) -> Net:
    """Causal decoder with learned positions and a tied LM head: ids ``(B, T)`` →
    logits ``(B, V, T)``."""
    b = _Builder(g, dtype)
    wte = b.rand(c.width, c.vocab, std=0.5)
    x = b.op("embedding", ("input",), {"weight": wte})
    x = b.op("posembed", (x,), {"weight": b.rand(c.width, c.max_len, std=0.3)})
    for _ in range(c.layers):
        x = b.op("add", (x, b.attention(b.norm(x, c.width), c, causal=True)))
        h = b.linear(b.norm(x, c.width), c.width, c.ffn)
        h = b.op("act", (h,), fn="gelu", approximate="tanh")
        x = b.op("add", (x, b.linear(h, c.ffn, c.width)))
    x = b.norm(x, c.width)
    b.op("linear", (x,), {"weight": wte.T.contiguous()})  # tied to the embedding
    return b.net((c.seq_len,), "gpt2")


def llama_like(c: SeqConfig, g: torch.Generator, dtype: torch.dtype = torch.float64) -> Net:
    """RMSNorm, RoPE, grouped-query attention, SwiGLU; no biases; ids → ``(B, V, T)``."""
    b = _Builder(g, dtype)
    x = b.op("embedding", ("input",), {"weight": b.rand(c.width, c.vocab, std=0.5)})
    for _ in range(c.layers):
        x = b.op("add", (x, b.attention(b.norm(x, c.width, "rmsnorm"), c, True, bias=False)))
        h = b.norm(x, c.width, "rmsnorm")
        gate = b.op("act", (b.linear(h, c.width, c.ffn, bias=False),), fn="silu")
        up = b.linear(h, c.width, c.ffn, bias=False)
        x = b.op("add", (x, b.linear(b.op("mul", (gate, up)), c.ffn, c.width, bias=False)))
    x = b.norm(x, c.width, "rmsnorm")
    b.linear(x, c.width, c.vocab, bias=False)
    return b.net((c.seq_len,), "llama")


def _post_ln_blocks(b: _Builder, x: str, c: SeqConfig) -> str:
    for _ in range(c.layers):
        x = b.norm(b.op("add", (x, b.attention(x, c, causal=False))), c.width)
        h = b.op("act", (b.linear(x, c.width, c.ffn),), fn="gelu")
        x = b.norm(b.op("add", (x, b.linear(h, c.ffn, c.width))), c.width)
    return x


def bert_like(c: SeqConfig, g: torch.Generator, dtype: torch.dtype = torch.float64) -> Net:
    """Bidirectional post-LN encoder, cls readout, tanh pooler: ids → ``(B, classes)``."""
    b = _Builder(g, dtype)
    x = b.op("embedding", ("input",), {"weight": b.rand(c.width, c.vocab, std=0.5)})
    x = b.norm(b.op("posembed", (x,), {"weight": b.rand(c.width, c.max_len, std=0.3)}), c.width)
    x = b.op("select", (_post_ln_blocks(b, x, c),), index=0)
    x = b.op("act", (b.linear(x, c.width, c.width),), fn="tanh")
    b.linear(x, c.width, c.classes)
    return b.net((c.seq_len,), "bert")


def vit_like(c: SeqConfig, g: torch.Generator, dtype: torch.dtype = torch.float64) -> Net:
    """Conv patches → tokens → cls → positions → pre-LN blocks with layer scale → cls →
    head: images ``(B, C, H, W)`` → ``(B, classes)``."""
    b = _Builder(g, dtype)
    ch, hh, ww = c.image
    p = c.patch
    w = b.rand(c.width, ch, p, p, std=(ch * p * p) ** -0.5)
    x = b.op(
        "conv2d",
        ("input",),
        {"weight": w, "bias": b.rand(c.width, std=0.1)},
        stride=[p, p],
        padding=[0, 0],
        dilation=[1, 1],
    )
    x = b.op("prepend", (b.op("tokens", (x,)),), {"weight": b.rand(c.width)})
    n_tok = (hh // p) * (ww // p) + 1
    x = b.op("posembed", (x,), {"weight": b.rand(c.width, n_tok, std=0.3)})
    for _ in range(c.layers):
        a = b.attention(b.norm(x, c.width), c, causal=False)
        x = b.op("add", (x, b.op("channel_scale", (a,), {"weight": b.rand(c.width, mean=0.5)})))
        h = b.op("act", (b.linear(b.norm(x, c.width), c.width, c.ffn),), fn="gelu")
        x = b.op("add", (x, b.linear(h, c.ffn, c.width)))
    x = b.op("select", (b.norm(x, c.width),), index=0)
    b.linear(x, c.width, c.classes)
    return b.net(c.image, "vit")


def seq_net(family: str, generator: torch.Generator, config: SeqConfig | None = None) -> Net:
    """A random tiny transformer of `family` (one of `SEQ_FAMILIES`), float64."""
    if family == "llama":
        c = config or SeqConfig(heads=4, kv_heads=2, rope_dims=4, head_dim=6)
        return llama_like(c, generator)
    builders = {"gpt2": gpt2_like, "bert": bert_like, "vit": vit_like}
    return builders[family](config or SeqConfig(), generator)


def seq_input(net: Net, generator: torch.Generator, n: int = 6) -> torch.Tensor:
    """Token ids (float64) for nets read by an embedding, else normal inputs."""
    first = net.consumers(net.input)[0]
    if first.kind == "embedding":
        vocab = first.params["weight"].shape[1]
        ids = torch.randint(0, vocab, (n, *net.input_shape), generator=generator)
        return ids.to(torch.float64)
    return torch.randn((n, *net.input_shape), generator=generator, dtype=torch.float64)
