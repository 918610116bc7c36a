"""The one protocol every encoder follows: ``encode(items) -> (n, d)`` float32, L2-normalised.

A saved encoder is a directory of ``config.json`` + ``model.safetensors``; never a pickle.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from zoolens.errors import LoadError
from zoolens.ir import Net, TensorSet, load_net
from zoolens.nn.config import ConfigError, EncoderConfig

if TYPE_CHECKING:
    from zoolens.nn.heads import Head

Item = Net | TensorSet | str | os.PathLike[str]
FORMAT_VERSION = 2  # 2: typed configs (`zoolens.nn.config`); 1 is refused
_REGISTRY: dict[str, type[Encoder]] = {}
E = TypeVar("E", bound="type[Encoder]")


def register_encoder(name: str) -> Callable[[E], E]:
    """Class decorator: make an encoder loadable by `name` and from saved directories."""

    def wrap(cls: E) -> E:
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


def encoder_class(name: str) -> type[Encoder]:
    if name not in _REGISTRY:
        raise LoadError(f"unknown encoder {name!r}; known: {sorted(_REGISTRY)}")
    return _REGISTRY[name]


def as_model(item: Item) -> Net | TensorSet:
    """A Net or TensorSet for `item`, loading it when it is a path."""
    if isinstance(item, (Net, TensorSet)):
        return item
    return load_net(item)


def l2_normalise(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    norm = np.linalg.norm(z, axis=1, keepdims=True)
    out: np.ndarray = (z / np.maximum(norm, 1e-12)).astype(np.float32)
    return out


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with torch's intra-op thread count set to `n`, then restore the
    caller's; with None leave it untouched. (torch's count is process-wide: other
    threads of the process see `n` while the block runs.)"""
    if n is None:
        yield
        return
    if n < 1:
        raise ConfigError(f"threads = {n}: expected an int >= 1, or None")
    saved = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


class Encoder(ABC):
    """Base class: subclasses implement `embed_batch` and the (de)serialisation hooks.

    ``config`` is the encoder's frozen `config_class` instance: hyper-parameters only;
    learned state lives in tensors returned by `state_tensors`.

    Args:
        config: the config, or a mapping of keyword overrides of its defaults (unknown
            keys refused), or None for the defaults.
    """

    name: ClassVar[str] = "encoder"
    config_class: ClassVar[type[EncoderConfig]] = EncoderConfig

    def __init__(self, config: EncoderConfig | Mapping[str, Any] | None = None) -> None:
        self.config: Any = as_config(self.config_class, config, f"encoder {self.name!r}")

    @abstractmethod
    def embed_batch(self, models: list[Net | TensorSet]) -> np.ndarray:
        """Unnormalised embeddings ``(len(models), d)`` for loaded models."""

    def encode(
        self,
        items: Sequence[Item],
        batch_size: int = 64,
        progress: bool = False,
        threads: int | None = None,
    ) -> np.ndarray:
        """Embed `items` (Nets, TensorSets or paths) in input order.

        Args:
            items: what to embed.
            batch_size: models per batch.
            progress: show a progress bar.
            threads: torch intra-op threads for this call (restored after it); None
                leaves the caller's setting untouched. On a busy machine 1 is often
                fastest: embedding issues many mid-sized ops.

        Returns:
            ``(n, d)`` float32 array, each row of unit L2 norm.
        """
        items = list(items)
        chunks = []
        starts: Iterable[int] = range(0, len(items), batch_size)
        if progress:
            from zoolens.progress import progress_bar

            starts = progress_bar(starts, desc="embedding", unit="batch")
        with torch_threads(threads):
            for s in starts:
                models = [as_model(i) for i in items[s : s + batch_size]]
                with torch.no_grad():
                    chunks.append(np.asarray(self.embed_batch(models), dtype=np.float64))
        if not chunks:
            return np.zeros((0, self.dim), dtype=np.float32)
        return l2_normalise(np.concatenate(chunks, axis=0))

    def predict(self, items: Sequence[Item], head: Head, batch_size: int = 64) -> np.ndarray:
        """A head's predictions for `items`: class labels, or values for a regressor.

        The head must have been fitted on this encoder's embeddings (same `id`); class
        probabilities are ``head.predict_proba(encoder.encode(items), encoder.id)``.

        Returns:
            ``(n,)`` array in input order.
        """
        head.check_encoder(self.id)
        return head.predict(self.encode(items, batch_size=batch_size), encoder_id=self.id)

    @property
    def dim(self) -> int:
        return int(getattr(self.config, "dim", 0))

    # -- persistence ----------------------------------------------------------------------
    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Learned state to save; torch modules return their state dict."""
        return {}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:  # noqa: B027
        """Restore what `state_tensors` returned (nothing, for encoders without state)."""

    @property
    def id(self) -> str:
        """Stable identity: name + hash of config and learned state."""
        h = hashlib.sha256(json.dumps(self.config.to_dict(), sort_keys=True).encode())
        for k, t in sorted(self.state_tensors().items()):
            h.update(k.encode())
            h.update(t.detach().contiguous().cpu().view(torch.uint8).numpy().tobytes())
        return f"{self.name}-{h.hexdigest()[:12]}"

    def save(self, path: str) -> None:
        """Write ``config.json`` + ``model.safetensors`` into directory `path`."""
        from zoolens import __version__

        os.makedirs(path, exist_ok=True)
        cfg = {
            "class": self.name,
            "format_version": FORMAT_VERSION,
            "zoolens_version": __version__,
            "config": self.config.to_dict(),
        }
        tensors = {k: v.detach().contiguous().cpu() for k, v in self.state_tensors().items()}
        save_file(tensors, os.path.join(path, "model.safetensors"))
        with open(os.path.join(path, "config.json"), "w") as f:
            json.dump(cfg, f, indent=1, sort_keys=True)

    @classmethod
    def load(cls, path: str) -> Encoder:
        """Read an encoder saved with `save` (any registered class).

        Raises:
            LoadError: not a saved encoder, another format version, an unknown config
                key or an invalid value (each naming ``config.json``).
        """
        cfg_path = os.path.join(path, "config.json")
        try:
            with open(cfg_path) as f:
                cfg = json.load(f)
            tensors = load_file(os.path.join(path, "model.safetensors"))
        except (OSError, json.JSONDecodeError, Exception) as e:  # safetensors raises its own
            raise LoadError(f"{path}: not a saved zoolens encoder ({e})") from None
        version = cfg.get("format_version", 0) if isinstance(cfg, dict) else 0
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise LoadError(
                f"{cfg_path}: encoder format_version {version!r} is newer than this "
                "zoolens reads; upgrade zoolens"
            )
        if version < FORMAT_VERSION:
            raise LoadError(
                f"{cfg_path}: encoder format_version {version} predates typed configs "
                f"(version {FORMAT_VERSION}); re-train the encoder, or re-save it in "
                "the new format"
            )
        cls = encoder_class(cfg.get("class", ""))
        values = cfg.get("config", {})
        if not isinstance(values, dict):
            raise LoadError(f"{cfg_path}: 'config' is not a JSON object")
        try:
            config = cls.config_class.from_dict(values, source=cfg_path)
            enc = cls(config)
        except ConfigError as e:
            raise LoadError(f"{cfg_path}: {e}") from None
        enc.load_state_tensors(tensors)
        return enc


C = TypeVar("C", bound=EncoderConfig)


def as_config(cls: type[C], config: EncoderConfig | Mapping[str, Any] | None, owner: str) -> C:
    """`config` as a `cls`: itself, built from a mapping of overrides, or the defaults."""
    if config is None:
        return cls()
    if isinstance(config, cls):
        return config
    if isinstance(config, EncoderConfig):
        raise ConfigError(f"{owner}: expected a {cls.__name__}, got a {type(config).__name__}")
    return cls.from_dict(dict(config), source=owner)
