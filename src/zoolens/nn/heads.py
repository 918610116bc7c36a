"""Heads: a classifier or regressor of a user's own label on an encoder's frozen embeddings.

A head never enters an embedding: it reads the ``(n, d)`` output of one encoder's
`Encoder.encode` and knows that encoder's id, so embeddings of another encoder are refused.
It is a small torch model (inputs standardised, then a linear layer or a one-hidden-layer
MLP) fitted full-batch with an L2 penalty whose weight is chosen on a validation split.

    head = fit_head_on_embeddings(z_train, y_train, z_val, y_val, label="task",
                                  encoder_id=encoder.id)
    head.save("heads/task")                      # config.json + model.safetensors
    labels = encoder.predict(paths, Head.load("heads/task"))

Fitting on a zoo (reading its manifest and splits) is `zoolens.train.heads.fit_head`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from zoolens.errors import EncoderMismatchError, HeadError, LoadError
from zoolens.nn.base import torch_threads

FORMAT_VERSION = 1
KINDS = ("classify", "regress")
#: L2 penalty weights tried on the validation split.
WEIGHT_DECAYS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)


@dataclass(frozen=True)
class HeadConfig:
    """Everything about a fitted head but its tensors; saved as ``config.json``.

    Args:
        kind: ``"classify"`` or ``"regress"``.
        label: the label it predicts (a manifest column, or any name).
        encoder_id: id of the encoder whose embeddings it reads.
        in_dim: embedding dimension.
        hidden: hidden units of the MLP; 0 for a linear head.
        classes: the class values (str, int, bool or float), sorted; empty when regressing.
        weight_decay: the L2 penalty weight chosen on validation.
        metric: ``"accuracy"`` or ``"r2"``.
        val_score: the metric on the validation split (None when fitted without one).
        baseline_score: the same metric of the trivial predictor (majority class / train mean).
        n_train, n_val: examples in each split.
        encoder_source: how to load the encoder (a name or a directory), if known.
        steps, seed: L-BFGS iterations and initialisation seed.
    """

    kind: str
    label: str
    encoder_id: str
    in_dim: int
    hidden: int = 0
    classes: tuple[Any, ...] = ()
    weight_decay: float = 0.0
    metric: str = "accuracy"
    val_score: float | None = None
    baseline_score: float | None = None
    n_train: int = 0
    n_val: int = 0
    encoder_source: str | None = None
    steps: int = 200
    seed: int = 0

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "head") -> HeadConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise LoadError(f"{where}: unknown head config keys {unknown}; upgrade zoolens")
        data = {**data, "classes": tuple(data.get("classes", ()))}
        try:
            cfg = cls(**data)
        except TypeError as e:
            raise LoadError(f"{where}: incomplete head config ({e})") from None
        if cfg.kind not in KINDS:
            raise LoadError(f"{where}: head kind {cfg.kind!r}; expected one of {KINDS}")
        return cfg


def infer_kind(values: Sequence[Any] | np.ndarray) -> str:
    """``"regress"`` for float labels, ``"classify"`` for str / bool / int categories."""
    arr = np.asarray(values)
    if arr.dtype.kind == "f":
        return "regress"
    if arr.dtype.kind == "O" and all(
        isinstance(v, (float, np.floating)) and not isinstance(v, bool) for v in arr
    ):
        return "regress"
    return "classify"


def _python(value: Any) -> Any:
    """A numpy scalar as the Python value JSON stores."""
    return value.item() if isinstance(value, np.generic) else value


def _network(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    if hidden > 0:
        return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))
    return nn.Sequential(nn.Linear(in_dim, out_dim))


class Head:
    """A fitted head. Make one with `fit_head_on_embeddings` or `Head.load`.

    Args:
        config: its `HeadConfig`.
        tensors: ``mean``, ``std`` (input standardisation, ``(in_dim,)``), ``y_mean``,
            ``y_std`` (target scaling, ``(1,)``; 0 and 1 when classifying) and the
            network's state under ``net.``; float64.
    """

    def __init__(self, config: HeadConfig, tensors: dict[str, torch.Tensor]) -> None:
        self.config = config
        out_dim = len(config.classes) if config.kind == "classify" else 1
        self.net_ = _network(config.in_dim, config.hidden, out_dim).double()
        state = {k[4:]: v for k, v in tensors.items() if k.startswith("net.")}
        try:
            self.net_.load_state_dict(state)
            self.mean_, self.std_ = tensors["mean"], tensors["std"]
            self.y_mean_, self.y_std_ = tensors["y_mean"], tensors["y_std"]
        except (RuntimeError, KeyError) as e:
            raise LoadError(f"head {config.label!r}: tensors do not fit its config ({e})") from None
        self.net_.eval()

    def __repr__(self) -> str:
        c = self.config
        return f"Head({c.kind} {c.label!r} on {c.encoder_id}, {c.metric} {c.val_score})"

    # -- applying ------------------------------------------------------------------------
    def check_encoder(self, encoder_id: str | None) -> None:
        """Refuse embeddings of an encoder other than the one the head was fitted on."""
        if encoder_id is not None and encoder_id != self.config.encoder_id:
            raise EncoderMismatchError(
                f"head {self.config.label!r} was fitted on embeddings of encoder "
                f"{self.config.encoder_id}, not {encoder_id}; use that encoder or refit the head"
            )

    def _outputs(self, z: np.ndarray, encoder_id: str | None) -> torch.Tensor:
        self.check_encoder(encoder_id)
        x = torch.as_tensor(np.asarray(z, dtype=np.float64))
        if x.ndim != 2 or x.shape[1] != self.config.in_dim:
            raise HeadError(
                f"head {self.config.label!r} reads ({self.config.in_dim},) embeddings; "
                f"got shape {tuple(x.shape)}"
            )
        with torch.no_grad():
            out: torch.Tensor = self.net_((x - self.mean_) / self.std_)  # (n, out_dim)
        return out

    def predict_proba(self, z: np.ndarray, encoder_id: str | None = None) -> np.ndarray:
        """Class probabilities ``(n, len(classes))``, columns in ``config.classes`` order.

        Args:
            z: ``(n, in_dim)`` embeddings.
            encoder_id: the id of the encoder that made `z`; refused if not the head's.
        """
        if self.config.kind != "classify":
            raise HeadError(f"head {self.config.label!r} regresses; it has no probabilities")
        return torch.softmax(self._outputs(z, encoder_id), dim=1).numpy()

    def predict(self, z: np.ndarray, encoder_id: str | None = None) -> np.ndarray:
        """Class labels ``(n,)`` (the values of ``config.classes``) or regressed values.

        Args:
            z: ``(n, in_dim)`` embeddings.
            encoder_id: the id of the encoder that made `z`; refused if not the head's.
        """
        out = self._outputs(z, encoder_id)
        if self.config.kind == "regress":
            values: np.ndarray = (out[:, 0] * self.y_std_ + self.y_mean_).numpy()
            return values
        labels: np.ndarray = np.array(self.config.classes)[out.argmax(dim=1).numpy()]
        return labels

    # -- persistence ---------------------------------------------------------------------
    def tensors(self) -> dict[str, torch.Tensor]:
        state = {f"net.{k}": v for k, v in self.net_.state_dict().items()}
        return {
            **state,
            "mean": self.mean_,
            "std": self.std_,
            "y_mean": self.y_mean_,
            "y_std": self.y_std_,
        }

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write ``config.json`` + ``model.safetensors`` into directory `path`."""
        from zoolens import __version__

        path = os.fspath(path)
        os.makedirs(path, exist_ok=True)
        tensors = {k: v.detach().contiguous().cpu() for k, v in self.tensors().items()}
        save_file(tensors, os.path.join(path, "model.safetensors"))
        doc = {
            "class": "head",
            "format_version": FORMAT_VERSION,
            "zoolens_version": __version__,
            "config": asdict(self.config),
        }
        with open(os.path.join(path, "config.json"), "w") as f:
            json.dump(doc, f, indent=1, sort_keys=True)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Head:
        """Read a head saved with `save`."""
        path = os.fspath(path)
        if not os.path.isdir(path):
            raise LoadError(f"{path}: no such head directory (make one with `zoolens fit-head`)")
        try:
            with open(os.path.join(path, "config.json")) as f:
                doc = json.load(f)
            tensors = load_file(os.path.join(path, "model.safetensors"))
        except Exception as e:  # OSError, JSON and safetensors errors alike
            raise LoadError(f"{path}: not a saved zoolens head ({e})") from None
        if not isinstance(doc, dict) or doc.get("class") != "head":
            raise LoadError(f"{path}: config.json does not describe a zoolens head")
        if int(doc.get("format_version", 0)) > FORMAT_VERSION:
            raise LoadError(f"{path}: head format_version {doc['format_version']}; upgrade zoolens")
        return cls(HeadConfig.from_dict(doc.get("config", {}), path), tensors)


# -- fitting -------------------------------------------------------------------------------
def _r2(pred: np.ndarray, y: np.ndarray) -> float:
    return float(1.0 - ((pred - y) ** 2).sum() / max(((y - y.mean()) ** 2).sum(), 1e-12))


def score(head: Head, z: np.ndarray, y: np.ndarray) -> float:
    """Accuracy (classify) or R² (regress) of `head` on embeddings `z` with labels `y`."""
    pred = head.predict(z)
    if head.config.kind == "regress":
        return _r2(pred.astype(np.float64), np.asarray(y, dtype=np.float64))
    return float(np.mean([_python(a) == _python(b) for a, b in zip(pred, y, strict=True)]))


def baseline_score(kind: str, y_train: np.ndarray, y_val: np.ndarray) -> float:
    """The metric of the trivial predictor: the train majority class, or the train mean."""
    if kind == "regress":
        mean = float(np.mean(np.asarray(y_train, dtype=np.float64)))
        return _r2(np.full(len(y_val), mean), np.asarray(y_val, dtype=np.float64))
    values, counts = np.unique(np.asarray(y_train), return_counts=True)
    majority = values[np.argmax(counts)]
    return float(np.mean(np.asarray(y_val) == majority))


def _fit_one(
    x: torch.Tensor, t: torch.Tensor, base: HeadConfig, out_dim: int, wd: float
) -> nn.Sequential:
    """One full-batch L-BFGS fit of the network on standardised inputs `x`, targets `t`."""
    torch.manual_seed(base.seed)
    net = _network(x.shape[1], base.hidden, out_dim).double()
    weights = [p for name, p in net.named_parameters() if name.endswith("weight")]
    opt = torch.optim.LBFGS(
        net.parameters(), lr=1.0, max_iter=base.steps, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        out = net(x)  # (n, out_dim)
        if base.kind == "classify":
            loss = nn.functional.cross_entropy(out, t)
        else:
            loss = ((out[:, 0] - t) ** 2).mean()
        loss = loss + wd * sum((w**2).sum() for w in weights)
        loss.backward()  # type: ignore[no-untyped-call]
        return loss

    opt.step(closure)  # type: ignore[no-untyped-call]
    return net.eval()


def fit_head_on_embeddings(
    z_train: np.ndarray,
    y_train: Sequence[Any] | np.ndarray,
    z_val: np.ndarray | None,
    y_val: Sequence[Any] | np.ndarray | None,
    *,
    label: str,
    encoder_id: str,
    kind: str = "auto",
    hidden: int = 0,
    weight_decays: Sequence[float] = WEIGHT_DECAYS,
    steps: int = 200,
    seed: int = 0,
    encoder_source: str | None = None,
    threads: int | None = None,
) -> Head:
    """Fit one head per L2 weight on the train embeddings; keep the best on validation.

    Classification is chosen by validation accuracy, ties broken by validation log-loss;
    regression by validation R². Without a validation split pass a single weight.

    Args:
        z_train, y_train: ``(n, d)`` embeddings and their n labels.
        z_val, y_val: the validation split (or None with a single weight decay).
        label: the label's name, stored in the config.
        encoder_id: id of the encoder that made the embeddings.
        kind: ``"auto"`` (`infer_kind` of the train labels), ``"classify"`` or ``"regress"``.
        hidden: hidden units (0: linear head).
        weight_decays: the L2 penalty weights tried.
        steps, seed: L-BFGS iterations and initialisation seed.
        encoder_source: how to load the encoder again (name or directory), recorded.
        threads: torch threads for the fits (restored after); None leaves the caller's.

    Returns:
        The fitted `Head`; its config holds the validation score and the baseline's.

    Raises:
        HeadError: fewer than 2 classes or examples, an unknown kind, no weight decay.
    """
    y_train = np.asarray(y_train)
    kind = infer_kind(y_train) if kind == "auto" else kind
    if kind not in KINDS:
        raise HeadError(f"head kind {kind!r}; use auto, classify or regress")
    if not weight_decays or (z_val is None and len(weight_decays) != 1):
        raise HeadError("give one weight decay, or a validation split to choose among several")
    classes = tuple(sorted({_python(v) for v in y_train})) if kind == "classify" else ()
    if kind == "classify" and len(classes) < 2:
        raise HeadError(f"label {label!r} has {len(classes)} class(es) in the train split; need 2")
    if len(y_train) < 2:
        raise HeadError(f"label {label!r}: {len(y_train)} train example(s); need at least 2")
    z = torch.as_tensor(np.asarray(z_train, dtype=np.float64))  # (n, d)
    mean, std = z.mean(0), z.std(0).clamp_min(1e-6)
    x = (z - mean) / std
    if kind == "classify":
        lookup = {c: i for i, c in enumerate(classes)}
        t = torch.tensor([lookup[_python(v)] for v in y_train])
        y_mean, y_std = torch.zeros(1, dtype=torch.float64), torch.ones(1, dtype=torch.float64)
    else:
        yt = torch.as_tensor(y_train.astype(np.float64))
        y_mean, y_std = yt.mean().reshape(1), yt.std().clamp_min(1e-12).reshape(1)
        t = (yt - y_mean) / y_std
    base = HeadConfig(
        kind,
        label,
        encoder_id,
        int(z.shape[1]),
        hidden,
        classes,
        metric="accuracy" if kind == "classify" else "r2",
        n_train=len(y_train),
        n_val=0 if y_val is None else len(y_val),
        encoder_source=encoder_source,
        steps=steps,
        seed=seed,
    )
    best: tuple[tuple[float, float], Head] | None = None
    for wd in weight_decays:
        with torch_threads(threads):
            net = _fit_one(x, t, base, max(len(classes), 1), float(wd))
        state = {f"net.{k}": v.detach().clone() for k, v in net.state_dict().items()}
        tensors = {**state, "mean": mean, "std": std, "y_mean": y_mean, "y_std": y_std}
        head = Head(_with(base, weight_decay=float(wd)), tensors)
        key = (0.0, 0.0) if z_val is None else _val_key(head, z_val, np.asarray(y_val))
        if best is None or key > best[0]:
            best = (key, head)
    assert best is not None
    head = best[1]
    if z_val is not None and y_val is not None:
        head.config = _with(
            head.config,
            val_score=best[0][0],
            baseline_score=baseline_score(kind, y_train, np.asarray(y_val)),
        )
    return head


def _with(cfg: HeadConfig, **changes: Any) -> HeadConfig:
    return HeadConfig(**{**asdict(cfg), **changes})


def _val_key(head: Head, z_val: np.ndarray, y_val: np.ndarray) -> tuple[float, float]:
    """What validation maximises: (accuracy, -log-loss) or (R², 0)."""
    main = score(head, z_val, y_val)
    if head.config.kind == "regress":
        return (main, 0.0)
    lookup = {c: i for i, c in enumerate(head.config.classes)}
    p = head.predict_proba(z_val)
    idx = [lookup.get(_python(v)) for v in y_val]
    unseen = -math.log(1e-12)  # a validation class the train split never held
    logloss = np.mean(
        [-math.log(max(p[i, j], 1e-12)) if j is not None else unseen for i, j in enumerate(idx)]
    )
    return (main, -float(logloss))
