"""`Net`: a framework-neutral, executable description of a trained network."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from zoolens.errors import InvalidWeightsError, LoadError, UnsupportedOpError
from zoolens.ir.ops import DENSE_KINDS, Op
from zoolens.ir.tensorset import hash_tensors

#: Inputs a net may read besides its data input, by name; given to ``net(x, name=...)`` or
#: left out for their default: ``attention_mask`` ``(B, T)`` (1 = attend, 0 = padding; the
#: ``transformers`` convention) defaults to all ones, i.e. no padding.
EXTRA_INPUTS = ("attention_mask",)


@dataclass
class ValueInfo:
    """Shape of one value for batch size 1: ``units`` is axis 1, ``spatial`` the rest."""

    units: int
    spatial: tuple[int, ...]

    @property
    def spatial_size(self) -> int:
        n = 1
        for s in self.spatial:
            n *= s
        return n


@dataclass
class Net:
    """An ordered DAG of ops over named values, runnable with ``net(x)``.

    Args:
        ops: ops in topological order; each reads earlier values or the input.
        input_shape: shape of one input example, without the batch axis.
        input: name of the input value.
        output: name of the output value.
        meta: free-form provenance (source path, importer).
        extra_inputs: further inputs read by name (`EXTRA_INPUTS`), each optional in
            ``net(x, **extra)``: a text model imported with its attention mask reads
            ``("attention_mask",)``.

    Shapes:
        x: ``(B, *input_shape)`` → ``(B, n_out, *spatial)``; ``attention_mask``: ``(B, T)``.
    """

    ops: list[Op]
    input_shape: tuple[int, ...]
    input: str = "input"
    output: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    extra_inputs: tuple[str, ...] = ()
    # (arch_key, value infos) of the last `value_infos` call: valid while the key holds
    _infos: tuple[str, dict[str, ValueInfo]] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if not self.output:
            self.output = self.ops[-1].output if self.ops else self.input
        self.validate_structure()

    # -- running -------------------------------------------------------------------------
    def __call__(self, x: torch.Tensor, **extra: torch.Tensor | None) -> torch.Tensor:
        return self.forward(x, **extra)

    def forward(self, x: torch.Tensor, **extra: torch.Tensor | None) -> torch.Tensor:
        """Run the network on a batch ``x`` of shape ``(B, *input_shape)``; `extra`: values
        of its `extra_inputs` (an ``attention_mask``), each defaulting to no masking."""
        env = self.input_env(x, **extra)
        for op in self.ops:
            env[op.output] = op.run([env[name] for name in op.inputs])
        return env[self.output]

    def input_env(self, x: torch.Tensor, **extra: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """The values a forward pass starts from: ``x`` and every extra input (given, or its
        default for batch `x`).

        Raises:
            UnsupportedOpError: an extra input this net does not read, or of the wrong shape.
        """
        unknown = sorted(set(extra) - set(self.extra_inputs))
        if unknown:
            reads = ", ".join(self.extra_inputs) or "none"
            raise UnsupportedOpError(
                f"this net reads no input {unknown[0]!r} (extra inputs: {reads}); import it "
                'with inputs=("input_ids", "attention_mask") to model a mask'
            )
        env = {self.input: x}
        for name in self.extra_inputs:
            value = extra.get(name)
            if value is None:  # attention_mask: attend to every position
                value = torch.ones(x.shape[:2], dtype=torch.long, device=x.device)
            elif tuple(value.shape) != tuple(x.shape[:2]):
                raise UnsupportedOpError(
                    f"{name} of shape {list(value.shape)}; expected (batch, positions) = "
                    f"{list(x.shape[:2])}"
                )
            env[name] = value
        return env

    def value_infos(self) -> dict[str, ValueInfo]:
        """Units and spatial shape of every value (one forward pass of zeros).

        Kept on this net (and its clones) while its `arch_key` holds, so changing its ops'
        wiring or shapes in place gives fresh ones. To share them between nets of one
        architecture, hold them in an owned cache (`zoolens.graph.GraphCache`).
        """
        key = self.arch_key()
        if self._infos is None or self._infos[0] != key:
            self._infos = (key, self._compute_value_infos())
        return self._infos[1]

    def arch_key(self) -> str:
        """A string equal for two nets iff they have the same ops, wiring and shapes."""
        return repr(
            (
                self.input,
                self.output,
                self.input_shape,
                *((self.extra_inputs,) if self.extra_inputs else ()),
                [
                    (
                        op.kind,
                        op.inputs,
                        op.output,
                        sorted(op.attrs.items()),
                        [(r, tuple(t.shape)) for r, t in op.params.items()],
                    )
                    for op in self.ops
                ],
            )
        )

    def _compute_value_infos(self) -> dict[str, ValueInfo]:
        p = next(self.parameters(), None)
        dtype = p.dtype if p is not None else torch.float32
        env = self.input_env(torch.zeros((1, *self.input_shape), dtype=dtype))
        with torch.no_grad():
            for op in self.ops:
                env[op.output] = op.run([env[n] for n in op.inputs])
        return {
            k: ValueInfo(int(v.shape[1]), tuple(int(s) for s in v.shape[2:]))
            for k, v in env.items()
        }

    # -- structure -----------------------------------------------------------------------
    def validate_structure(self) -> None:
        """Check names are unique and every op reads values defined before it."""
        bad = [n for n in self.extra_inputs if n not in EXTRA_INPUTS or n == self.input]
        if bad:
            raise LoadError(f"extra input {bad[0]!r}; supported: {', '.join(EXTRA_INPUTS)}")
        seen = {self.input, *self.extra_inputs}
        for op in self.ops:
            missing = [n for n in op.inputs if n not in seen]
            if missing:
                raise LoadError(f"op {op.name!r} reads undefined value(s) {missing}")
            if op.output in seen:
                raise LoadError(f"value {op.output!r} is written twice")
            seen.add(op.output)
        if self.output not in seen:
            raise LoadError(f"output value {self.output!r} is never written")
        names = [op.name for op in self.ops]
        if len(set(names)) != len(names):
            raise LoadError("op names are not unique")

    def check_finite(self, source: str = "net") -> None:
        """Raise `InvalidWeightsError` naming the first tensor holding NaN or Inf."""
        for op in self.ops:
            for role, t in op.params.items():
                if not torch.isfinite(t).all():
                    raise InvalidWeightsError(
                        f"{source}: tensor {op.name}.{role} contains NaN or Inf values"
                    )

    def op(self, name: str) -> Op:
        for op in self.ops:
            if op.name == name:
                return op
        raise KeyError(name)

    def consumers(self, value: str) -> list[Op]:
        return [op for op in self.ops if value in op.inputs]

    def producer(self, value: str) -> Op | None:
        for op in self.ops:
            if op.output == value:
                return op
        return None

    def dense_ops(self) -> list[Op]:
        return [op for op in self.ops if op.kind in DENSE_KINDS]

    # -- tensors -------------------------------------------------------------------------
    def parameters(self) -> Iterator[torch.Tensor]:
        for op in self.ops:
            yield from op.params.values()

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors keyed ``"{op}.{role}"`` in op order."""
        return {f"{op.name}.{role}": t for op in self.ops for role, t in op.params.items()}

    def num_params(self) -> int:
        """Parameter count; a tensor tied to another (``meta["tied"]``, e.g. a language-model
        head sharing the token embedding) is counted once, and one the source model does not
        hold (``meta["implied"]``, e.g. the zero bias of a bias-free LayerNorm) not at all,
        as its source model counts them."""
        total = sum(int(t.numel()) for t in self.parameters())
        implied = self.meta.get("implied")
        if implied:
            tensors = self.state_dict()
            total -= sum(int(tensors[k].numel()) for k in implied if k in tensors)
        tied = self.meta.get("tied")
        if tied:
            tensors = self.state_dict()
            for keys in tied.values():
                total -= sum(int(tensors[k].numel()) for k in keys[1:] if k in tensors)
        return total

    def trainable_params(self) -> int:
        """Parameters as ``model.parameters()`` counts them: `num_params` without BatchNorm
        running statistics (buffers, not parameters)."""
        stats = sum(
            int(t.numel())
            for op in self.ops
            for role, t in op.params.items()
            if role in ("running_mean", "running_var")
        )
        return self.num_params() - stats

    def content_hash(self) -> str:
        """SHA-256 of the architecture and every tensor's bytes: equal iff bit-identical."""
        arch = [(op.kind, op.inputs, op.output, sorted(op.attrs.items())) for op in self.ops]
        key = (arch, self.input_shape, *((self.extra_inputs,) if self.extra_inputs else ()))
        return hash_tensors(self.state_dict().items(), repr(key).encode())

    def clone(self) -> Net:
        """A copy whose tensors can be changed without touching this net."""
        ops = [
            Op(
                op.name,
                op.kind,
                op.inputs,
                op.output,
                {k: v.clone() for k, v in op.params.items()},
                copy.deepcopy(op.attrs),
            )
            for op in self.ops
        ]
        out = Net(
            ops,
            self.input_shape,
            self.input,
            self.output,
            copy.deepcopy(self.meta),
            self.extra_inputs,
        )
        out._infos = self._infos  # the same architecture; re-checked against its key on use
        return out

    def to(self, dtype: torch.dtype) -> Net:
        """A copy with every floating tensor cast to `dtype`."""
        out = self.clone()
        for op in out.ops:
            op.params = {k: v.to(dtype) for k, v in op.params.items()}
        return out

    def save(self, path: str) -> None:
        """Write ``model.safetensors`` + ``arch.json`` into directory `path`."""
        from zoolens.ir.io import save_net

        save_net(self, path)

    def summary(self) -> list[dict[str, Any]]:
        """One row per op: name, kind, activation, parameter shapes and count."""
        rows = []
        for op in self.ops:
            rows.append(
                {
                    "name": op.name,
                    "op": op.fn if op.kind == "act" else op.kind,
                    "inputs": list(op.inputs),
                    "params": {r: list(t.shape) for r, t in op.params.items()},
                    "num_params": sum(int(t.numel()) for t in op.params.values()),
                }
            )
        return rows
