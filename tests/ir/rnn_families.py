"""Small recurrent and grouped-conv torch models shared by the ir, symmetry and graph tests."""

from __future__ import annotations

import torch
from torch import nn


class RnnClassifier(nn.Module):
    """``(B, T, F)`` → an LSTM/GRU (batch first, maybe stacked or bidirectional) → last
    step → head."""

    def __init__(
        self, cell: str = "lstm", layers: int = 1, act: str = "tanh", bidirectional: bool = False
    ) -> None:
        super().__init__()
        rnn = nn.LSTM if cell == "lstm" else nn.GRU
        self.rnn = rnn(5, 8, num_layers=layers, batch_first=True, bidirectional=bidirectional)
        self.act = nn.Tanh() if act == "tanh" else nn.ReLU()
        self.head = nn.Linear(16 if bidirectional else 8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.head(self.act(out[:, -1]))


class Encoded(nn.Module):
    """Linear → ReLU per step, then a GRU and an LSTM in sequence (a scaled ReLU layer
    feeds a recurrent reader)."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Conv1d(4, 6, 1)
        self.gru = nn.GRU(6, 7, batch_first=True)
        self.lstm = nn.LSTM(7, 5, batch_first=True)
        self.head = nn.Linear(5, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, 4, T), channels first
        h = torch.relu(self.proj(x)).transpose(1, 2)  # (B, T, 6)
        h, _ = self.gru(h)
        h, _ = self.lstm(h)
        return self.head(h[:, -1])


class MobileBlock(nn.Module):
    """Stem, an inverted-residual block (depthwise + pointwise + BatchNorm + residual),
    a grouped conv, chunk/cat, global pooling and a head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.bn0 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.pw, self.bn2 = nn.Conv2d(8, 8, 1, bias=False), nn.BatchNorm2d(8)
        self.grouped = nn.Conv2d(8, 6, 3, padding=1, groups=2)
        self.pool, self.flat, self.fc = nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(10, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn0(self.stem(x)))
        y = torch.relu(self.bn1(self.dw(h)))
        h = h + self.bn2(self.pw(y))
        a, b = torch.chunk(h, 2, dim=1)
        z = torch.cat([torch.relu(self.grouped(torch.cat([b, a], dim=1))), a], dim=1)
        return self.fc(self.flat(self.pool(z)))


class Depthwise1d(nn.Module):
    """Depthwise-separable 1-d conv stack with biases and tanh (sign and scale segments)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv1d(2, 6, 3, padding=1)
        self.dw = nn.Conv1d(6, 6, 5, padding=2, groups=6)
        self.pw = nn.Conv1d(6, 4, 1)
        self.head = nn.Linear(4 * 10, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.stem(x))
        h = torch.tanh(self.dw(h))
        return self.head(torch.flatten(torch.relu(self.pw(h)), 1))


class ConcatMLP(nn.Module):
    """Two branches concatenated, a residual added to the concat under LayerNorm, and a
    dense skip (``cat([f(h), h])``): concat spaces made of concat spaces."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.skip = nn.Linear(4, 5), nn.Linear(4, 3), nn.Linear(4, 8)
        self.norm, self.c, self.head = nn.LayerNorm(8), nn.Linear(8, 6), nn.Linear(14, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.cat([torch.relu(self.a(x)), torch.tanh(self.b(x))], dim=1)
        h = self.norm(h + self.skip(x))
        return self.head(torch.cat([torch.relu(self.c(h)), h], dim=1))


#: name → (model factory, input shape without the batch axis)
MODELS = {
    "lstm": (lambda: RnnClassifier("lstm"), (6, 5)),
    "lstm_relu": (lambda: RnnClassifier("lstm", act="relu"), (6, 5)),
    "gru2": (lambda: RnnClassifier("gru", layers=2), (6, 5)),
    "lstm2": (lambda: RnnClassifier("lstm", layers=2), (6, 5)),
    "bilstm2": (lambda: RnnClassifier("lstm", layers=2, bidirectional=True), (6, 5)),
    "bigru": (lambda: RnnClassifier("gru", bidirectional=True), (6, 5)),
    "encoded": (Encoded, (4, 6)),
    "mobile": (MobileBlock, (3, 8, 8)),
    "depthwise1d": (Depthwise1d, (2, 10)),
    "concat_mlp": (ConcatMLP, (4,)),
}


def make(name: str, seed: int) -> tuple[nn.Module, tuple[int, ...]]:
    """Model `name` with seeded weights (BatchNorm statistics not trivial), in eval mode."""
    factory, shape = MODELS[name]
    torch.manual_seed(seed)
    model = factory()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.randn(m.num_features, generator=g))
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.3)
    return model.eval(), shape


def num_weights(model: nn.Module) -> int:
    """Parameters plus BatchNorm running statistics (what a Net holds)."""
    bn = sum(
        m.running_mean.numel() + m.running_var.numel()
        for m in model.modules()
        if isinstance(m, nn.BatchNorm2d)
    )
    return sum(p.numel() for p in model.parameters()) + bn
