"""Modern architecture families of generated zoos: residual / depthwise / ConvNeXt CNNs,
ViT on images, RNNs and transformers on sequences and token ids.

Each model is small (a few thousand to ~50k parameters), ends in a ``head`` Linear, and is
read by `zoolens.ir.load_net` (torch.fx, else torch.export) as an exact `Net`. Sequence
families take ``(C, L)`` signals channels-first (like the 1-D CNNs) and read them as ``L``
steps of ``C`` features; token families take ``(T,)`` integer ids.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from zoolens.zoo.archs import ArchSpec, make_activation


# -- images ------------------------------------------------------------------------------
class ResBlock(nn.Module):
    """``act(x + bn2(conv2(act(bn1(conv1(x))))))``: a ResNet basic block."""

    def __init__(self, c: int, act: str) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.act1, self.act2 = make_activation(act), make_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act1(self.bn1(self.conv1(x)))
        out: torch.Tensor = self.act2(x + self.bn2(self.conv2(h)))
        return out


class InvertedResidual(nn.Module):
    """MobileNetV2 block: pointwise expand → depthwise 3x3 → pointwise project, BN after
    each, plus the skip."""

    def __init__(self, c: int, act: str, expand: int = 2) -> None:
        super().__init__()
        e = c * expand
        self.expand, self.bn1 = nn.Conv2d(c, e, 1, bias=False), nn.BatchNorm2d(e)
        self.dw, self.bn2 = nn.Conv2d(e, e, 3, padding=1, groups=e, bias=False), nn.BatchNorm2d(e)
        self.project, self.bn3 = nn.Conv2d(e, c, 1, bias=False), nn.BatchNorm2d(c)
        self.act1, self.act2 = make_activation(act), make_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act1(self.bn1(self.expand(x)))
        h = self.act2(self.bn2(self.dw(h)))
        out: torch.Tensor = x + self.bn3(self.project(h))
        return out


class ConvNeXtBlock(nn.Module):
    """Depthwise 7x7 → LayerNorm over channels → pointwise MLP (GELU) → layer scale → skip."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.dw = nn.Conv2d(c, c, 7, padding=3, groups=c)
        self.norm = nn.LayerNorm(c)
        self.fc1, self.act, self.fc2 = nn.Linear(c, 2 * c), nn.GELU(), nn.Linear(2 * c, c)
        self.gamma = nn.Parameter(torch.full((c,), 0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        h = self.dw(x).permute(0, 2, 3, 1)  # (B, H, W, C)
        h = self.gamma * self.fc2(self.act(self.fc1(self.norm(h))))
        out: torch.Tensor = x + h.permute(0, 3, 1, 2)
        return out


class ConvNet(nn.Module):
    """Stem conv (+ BN), `depth` blocks, global average pool, head."""

    def __init__(self, spec: ArchSpec, block: Callable[[int], nn.Module], bn: bool) -> None:
        super().__init__()
        c = spec.width
        self.stem = nn.Conv2d(spec.input_shape[0], c, 3, padding=1, bias=not bn)
        self.stem_norm = nn.BatchNorm2d(c) if bn else nn.Identity()
        self.stem_act = make_activation(spec.activation)
        self.blocks = nn.Sequential(*[block(c) for _ in range(spec.depth)])
        self.pool, self.flat = nn.AdaptiveAvgPool2d(1), nn.Flatten()
        self.head = nn.Linear(c, spec.n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.stem_act(self.stem_norm(self.stem(x))))
        out: torch.Tensor = self.head(self.flat(self.pool(h)))
        return out


def _patches(spec: ArchSpec) -> tuple[int, int]:
    """Patch size and patch count of an image input (2x2 patches; 7x7 for 14x14 and up)."""
    size = spec.input_shape[1]
    p = 2 if size <= 8 else size // 7
    return p, (size // p) * (spec.input_shape[2] // p)


class EncoderBlock(nn.Module):
    """Pre-norm transformer block: multi-head self-attention and a GELU MLP, both residual."""

    def __init__(self, d: int, heads: int, causal: bool = False) -> None:
        super().__init__()
        self.heads, self.causal = heads, causal
        self.norm1, self.qkv, self.proj = nn.LayerNorm(d), nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.norm2, self.fc1, self.fc2 = nn.LayerNorm(d), nn.Linear(d, 2 * d), nn.Linear(2 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, D)
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).split(d, dim=-1)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)  # (B, H, T, dh)
        x = x + self.proj(a.transpose(1, 2).reshape(b, t, d))
        out: torch.Tensor = x + self.fc2(F.gelu(self.fc1(self.norm2(x))))
        return out


class ViT(nn.Module):
    """Patch embedding (strided conv) + cls token + learned positions, encoder blocks,
    LayerNorm, head on the cls token."""

    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        d, (p, n) = spec.width, _patches(spec)
        self.patch = nn.Conv2d(spec.input_shape[0], d, p, stride=p)
        self.cls = nn.Parameter(0.02 * torch.randn(1, 1, d))
        self.pos = nn.Parameter(0.02 * torch.randn(1, n + 1, d))
        self.blocks = nn.Sequential(*[EncoderBlock(d, 2) for _ in range(spec.depth)])
        self.norm, self.head = nn.LayerNorm(d), nn.Linear(d, spec.n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.patch(x).flatten(2).transpose(1, 2)  # (B, N, D)
        h = torch.cat([self.cls.expand(h.shape[0], -1, -1), h], dim=1) + self.pos
        out: torch.Tensor = self.head(self.norm(self.blocks(h))[:, 0])
        return out


# -- sequences of feature vectors ((C, L) signals) -----------------------------------------
class Recurrent(nn.Module):
    """An LSTM / GRU over the ``L`` steps (maybe bidirectional), last step, act, head."""

    def __init__(self, spec: ArchSpec, cell: str, bidirectional: bool = False) -> None:
        super().__init__()
        rnn = nn.LSTM if cell == "lstm" else nn.GRU
        h = spec.width
        self.rnn = rnn(
            spec.input_shape[0], h, spec.depth, batch_first=True, bidirectional=bidirectional
        )
        self.act = make_activation(spec.activation)
        self.head = nn.Linear(2 * h if bidirectional else h, spec.n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, L)
        out, _ = self.rnn(x.transpose(1, 2))  # (B, L, H)
        y: torch.Tensor = self.head(self.act(out[:, -1]))
        return y


class SignalTransformer(nn.Module):
    """Linear step embedding, a prepended cls token, learned positions, bidirectional encoder
    blocks, LayerNorm, head on the cls token."""

    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        d, steps = spec.width, spec.input_shape[1]
        self.embed = nn.Linear(spec.input_shape[0], d)
        self.cls = nn.Parameter(0.02 * torch.randn(1, 1, d))
        self.pos = nn.Parameter(0.02 * torch.randn(1, steps + 1, d))
        self.blocks = nn.Sequential(*[EncoderBlock(d, 2) for _ in range(spec.depth)])
        self.norm, self.head = nn.LayerNorm(d), nn.Linear(d, spec.n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, L)
        h = self.embed(x.transpose(1, 2))  # (B, L, D)
        h = torch.cat([self.cls.expand(h.shape[0], -1, -1), h], dim=1) + self.pos
        out: torch.Tensor = self.head(self.norm(self.blocks(h))[:, 0])
        return out


class DepthwiseSeparable1d(nn.Module):
    """Stem conv, `depth` depthwise(5) + pointwise conv pairs, global pool, head."""

    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        c = spec.width
        layers: list[nn.Module] = [nn.Conv1d(spec.input_shape[0], c, 3, padding=1)]
        layers.append(make_activation(spec.activation))
        for _ in range(spec.depth):
            layers += [nn.Conv1d(c, c, 5, padding=2, groups=c), nn.Conv1d(c, c, 1)]
            layers.append(make_activation(spec.activation))
        layers += [nn.AdaptiveAvgPool1d(1), nn.Flatten()]
        self.body, self.head = nn.Sequential(*layers), nn.Linear(c, spec.n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.body(x))
        return out


# -- token ids -----------------------------------------------------------------------------
class TokenTransformer(nn.Module):
    """Token + learned position embeddings, encoder blocks (bidirectional with a prepended
    cls token, or causal reading the last token), LayerNorm, head."""

    def __init__(self, spec: ArchSpec, causal: bool) -> None:
        super().__init__()
        d, t = spec.width, spec.input_shape[0]
        self.causal = causal
        self.tok = nn.Embedding(spec.vocab, d)
        self.cls = None if causal else nn.Parameter(0.02 * torch.randn(1, 1, d))
        self.pos = nn.Parameter(0.02 * torch.randn(1, t + (0 if causal else 1), d))
        self.blocks = nn.Sequential(*[EncoderBlock(d, 2, causal) for _ in range(spec.depth)])
        self.norm, self.head = nn.LayerNorm(d), nn.Linear(d, spec.n_outputs)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:  # (B, T)
        h = self.tok(ids)  # (B, T, D)
        if self.cls is not None:
            h = torch.cat([self.cls.expand(h.shape[0], -1, -1), h], dim=1)
        h = self.norm(self.blocks(h + self.pos))
        out: torch.Tensor = self.head(h[:, -1] if self.causal else h[:, 0])
        return out


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


class RMSNorm(nn.Module):
    """``weight * x * rsqrt(mean(x²) + eps)`` over the last axis."""

    def __init__(self, d: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight, self.eps = nn.Parameter(torch.ones(d)), eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


class LlamaBlock(nn.Module):
    """RMSNorm, causal grouped-query attention with rotary positions, RMSNorm, SwiGLU MLP."""

    def __init__(self, d: int, t: int, heads: int = 4, kv_heads: int = 2) -> None:
        super().__init__()
        self.heads, self.kv_heads, self.dh = heads, kv_heads, d // heads
        self.norm1, self.norm2 = RMSNorm(d), RMSNorm(d)
        self.q = nn.Linear(d, d, bias=False)
        self.k = nn.Linear(d, kv_heads * self.dh, bias=False)
        self.v = nn.Linear(d, kv_heads * self.dh, bias=False)
        self.o = nn.Linear(d, d, bias=False)
        self.gate, self.up = nn.Linear(d, 2 * d, bias=False), nn.Linear(d, 2 * d, bias=False)
        self.down = nn.Linear(2 * d, d, bias=False)
        freq = 1.0 / 10000 ** (torch.arange(0, self.dh, 2).float() / self.dh)
        angle = torch.arange(t).float()[:, None] * freq[None]  # (T, dh/2)
        angle = torch.cat([angle, angle], dim=-1)
        self.register_buffer("cos", angle.cos(), persistent=False)
        self.register_buffer("sin", angle.sin(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, D)
        b, t, d = x.shape
        h = self.norm1(x)
        q = self.q(h).view(b, t, self.heads, self.dh).transpose(1, 2)
        k = self.k(h).view(b, t, self.kv_heads, self.dh).transpose(1, 2)
        v = self.v(h).view(b, t, self.kv_heads, self.dh).transpose(1, 2)
        cos, sin = self.get_buffer("cos"), self.get_buffer("sin")  # (T, dh)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        x = x + self.o(a.transpose(1, 2).reshape(b, t, d))
        h = self.norm2(x)
        out: torch.Tensor = x + self.down(F.silu(self.gate(h)) * self.up(h))
        return out


class Llama(nn.Module):
    """Token embedding (no positions: rotary), Llama blocks, RMSNorm, head on the last token."""

    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        d, t = spec.width, spec.input_shape[0]
        self.tok = nn.Embedding(spec.vocab, d)
        self.blocks = nn.Sequential(*[LlamaBlock(d, t) for _ in range(spec.depth)])
        self.norm, self.head = RMSNorm(d), nn.Linear(d, spec.n_outputs)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:  # (B, T)
        out: torch.Tensor = self.head(self.norm(self.blocks(self.tok(ids)))[:, -1])
        return out


# -- the registry --------------------------------------------------------------------------
_BUILDERS: dict[str, Callable[[ArchSpec], nn.Module]] = {
    "resnet": lambda s: ConvNet(s, lambda c: ResBlock(c, s.activation), bn=True),
    "mobilenet": lambda s: ConvNet(s, lambda c: InvertedResidual(c, s.activation), bn=True),
    "convnext": lambda s: ConvNet(s, ConvNeXtBlock, bn=False),
    "vit": ViT,
    "lstm": lambda s: Recurrent(s, "lstm"),
    "gru": lambda s: Recurrent(s, "gru"),
    "bilstm": lambda s: Recurrent(s, "lstm", bidirectional=True),
    "bigru": lambda s: Recurrent(s, "gru", bidirectional=True),
    "signal-transformer": SignalTransformer,
    "dwsep1d": DepthwiseSeparable1d,
    "tf-encoder": lambda s: TokenTransformer(s, causal=False),
    "tf-decoder": lambda s: TokenTransformer(s, causal=True),
    "llama": Llama,
}

#: family → (largest depth, smallest width, largest width) in generated zoos.
SIZES: dict[str, tuple[int, int, int]] = {
    "resnet": (2, 8, 16),
    "mobilenet": (2, 8, 16),
    "convnext": (2, 8, 16),
    "vit": (2, 16, 32),
    "lstm": (2, 8, 32),
    "gru": (2, 8, 32),
    "bilstm": (1, 8, 24),
    "bigru": (1, 8, 24),
    "signal-transformer": (2, 16, 32),
    "dwsep1d": (3, 8, 32),
    "tf-encoder": (2, 16, 32),
    "tf-decoder": (2, 16, 32),
    "llama": (2, 16, 32),
}


def clip_size(family: str, depth: int, width: int) -> tuple[int, int]:
    """A drawn ``(depth, width)`` brought inside the family's `SIZES` (width: a multiple of 8)."""
    max_depth, lo, hi = SIZES[family]
    return min(depth, max_depth), int(min(max(8 * math.ceil(width / 16), lo), hi))


def build_modern(spec: ArchSpec) -> nn.Module:
    """A freshly initialised model of a modern `spec.family` (uses torch's global RNG)."""
    return _BUILDERS[spec.family](spec)
