"""Import a program traced by ``torch.export`` into a `Net`.

One general mechanism, not a template per model: every traced node whose inputs do not depend
on the input's *values* (masks from position ids, rotary tables, position-embedding lookups) is
run once and becomes a constant; values computed from the token ids alone (padding-aware
positions) are kept as functions of the ids (`zoolens.ir._export_tokens`); every other node is
translated by its ATen op, with the layout algebra of `zoolens.ir._export_layout` tracking
where each traced axis lives in the IR values, and the pending values of
`zoolens.ir._export_patterns` gathering the ops the IR holds as one (activations spelled
elementwise, RMSNorm, rotary embedding). Anything else that reads the input raises
`UnsupportedOpError` naming the ATen op.
"""

from __future__ import annotations

import operator
from typing import Any

import torch

from zoolens.errors import UnsupportedOpError
from zoolens.ir import _export_attention  # noqa: F401  (registers the handlers it wraps too)
from zoolens.ir import _export_layout as L
from zoolens.ir._export_context import Const, Context, Value, materialise
from zoolens.ir._export_layout import Atom, Dyn
from zoolens.ir._export_mask import MASK, mask_input, mask_value
from zoolens.ir._export_ops import ELEMENTWISE, HANDLERS, IDENTITY, arrange
from zoolens.ir._export_patterns import PENDING
from zoolens.ir._export_tokens import token_value
from zoolens.ir.net import Net


def import_exported(
    program: torch.export.ExportedProgram,
    input_kind: str,
    output_index: int = 0,
    meta: dict[str, Any] | None = None,
) -> tuple[Net, Dyn]:
    """Translate `program` (traced with one input tensor, and maybe its attention mask) into
    a `Net`.

    Args:
        program: the exported program; its first user input is token ids ``(B, T)``
            (``input_kind="tokens"``) or an image/feature batch ``(B, C, *S)``; a second,
            named ``attention_mask`` ``(B, T)``, becomes the net's extra input of that name.
        input_kind: ``"tokens"`` or ``"dense"``.
        output_index: which of the program's outputs is the net's output.
        meta: provenance stored on the net.

    Returns:
        The net and the layout of its output (how the traced output's axes map to the net's
        ``(B, U, *S)`` output).
    """
    sig = program.graph_signature
    params = dict(sig.inputs_to_parameters)
    buffers = dict(sig.inputs_to_buffers)
    consts_map = dict(getattr(sig, "inputs_to_lifted_tensor_constants", {}) or {})
    state = program.state_dict
    tensors = {**state, **getattr(program, "constants", {})}
    ctx = Context(params=params)
    env: dict[str, Value] = {}
    user_inputs = list(sig.user_inputs)
    if len(user_inputs) not in (1, 2) or user_inputs[1:] not in ([], [MASK]):
        raise UnsupportedOpError(
            f"the traced model reads inputs {user_inputs}; read: one data input, optionally "
            f"followed by {MASK!r}"
        )
    graph = program.graph_module.graph
    for node in graph.nodes:
        ctx.consumers[node.name] = len(node.users)
    input_shape: tuple[int, ...] = ()
    for node in graph.nodes:
        if node.op == "placeholder":
            if node.name in params:
                env[node.name] = Const(tensors[params[node.name]], param=params[node.name])
            elif node.name in buffers:
                env[node.name] = Const(tensors[buffers[node.name]])
            elif node.name in consts_map:
                env[node.name] = Const(tensors[consts_map[node.name]])
            elif node.name == MASK and len(user_inputs) == 2:
                val = node.meta["val"]
                env[node.name] = mask_input(tuple(val.shape), val.dtype)
            else:
                shape = tuple(int(s) for s in node.meta["val"].shape)
                input_shape = shape[1:]
                ctx.batch = Atom("B", shape[0])
                env[node.name] = _input_dyn(ctx, shape, input_kind)
        elif node.op == "call_function":
            env[node.name] = _call(ctx, node, env)
        elif node.op == "output":
            outs = node.args[0]
            flat = list(outs) if isinstance(outs, (list, tuple)) else [outs]
            out = env[flat[output_index].name]
            if isinstance(out, Const):
                raise UnsupportedOpError("the chosen output does not depend on the input")
            out = materialise(ctx, out, "the output")
            _fuse_norm_scales(ctx)
            extra = tuple(user_inputs[1:])
            net = Net(ctx.ops, input_shape, "input", out.value, dict(meta or {}), extra)
            net.meta["tied"] = {k: v for k, v in ctx.used.items() if len(v) > 1}
            if ctx.implied:  # e.g. a bias-free LayerNorm's zero bias: not counted
                net.meta["implied"] = list(ctx.implied)
            return net, out
    raise UnsupportedOpError("the traced program has no output")


def _input_dyn(ctx: Context, shape: tuple[int, ...], kind: str) -> Dyn:
    if kind == "tokens":
        if len(shape) != 2:
            raise UnsupportedOpError(f"token input of shape {list(shape)}; expected (B, T)")
        t = Atom("S", shape[1])
        return Dyn("input", ((ctx.batch,), (t,)), (), (t,), (shape[1],))
    return L.canonical("input", shape[1], tuple(shape[2:]), ctx.batch)


def _resolve(v: Any, env: dict[str, Value]) -> Any:
    if isinstance(v, torch.fx.Node):
        return env[v.name]
    if isinstance(v, (list, tuple)):
        return type(v)(_resolve(x, env) for x in v)
    return v


def _is_static(v: Any) -> bool:
    if isinstance(v, (Dyn, *PENDING)):
        return False
    if isinstance(v, (list, tuple)):
        return all(_is_static(x) for x in v)
    return True


def _plain(v: Any) -> Any:
    if isinstance(v, Const):
        return v.value
    if isinstance(v, (list, tuple)):
        return type(v)(_plain(x) for x in v)
    return v


def _call(ctx: Context, node: torch.fx.Node, env: dict[str, Value]) -> Value:
    args = _resolve(node.args, env)
    kwargs = {k: _resolve(v, env) for k, v in node.kwargs.items()}
    target = node.target
    if target is operator.getitem:
        return args[0][args[1]]
    name = getattr(getattr(target, "overloadpacket", None), "__name__", str(target))
    if name.endswith("_") and not name.startswith("_"):
        name = name[:-1]  # in-place spelling (``add_``): the traced program is functional here
    from_mask = mask_value(name, target, args, kwargs)  # e.g. the mask an SDPA reads
    if from_mask is not None:
        return from_mask
    from_tokens = token_value(ctx, name, target, args, kwargs)  # e.g. padding-aware positions
    if from_tokens is not None:
        return from_tokens
    if _is_static(list(args)) and _is_static(list(kwargs.values())):
        return _fold(name, target, args, kwargs)
    if name in IDENTITY:
        return args[0]
    handler = HANDLERS.get(name)
    if handler is not None:
        return handler(ctx, node, args, kwargs)
    if name in ELEMENTWISE:
        return HANDLERS["_elementwise"](ctx, node, args, kwargs)
    raise UnsupportedOpError(f"ATen op {name!r} on a value that depends on the input")


_KEEPS_PARAM = IDENTITY | {"expand", "unsqueeze", "view", "reshape", "squeeze"}


def _fold(name: str, target: Any, args: Any, kwargs: dict[str, Any]) -> Value:
    """Run a node none of whose inputs depends on the input's values."""
    with torch.no_grad():
        out = target(*_plain(args), **_plain(kwargs))
    if not isinstance(out, torch.Tensor):
        return out
    if name == "embedding" and isinstance(args[0], Const) and args[0].param is not None:
        ids = args[1].value if isinstance(args[1], Const) else torch.as_tensor(args[1])
        return Const(out, param=args[0].param, ids=ids, table=args[0].value)
    if name in IDENTITY and isinstance(args[0], Const):
        return Const(out, args[0].param, args[0].ids, args[0].table)
    if name in _KEEPS_PARAM and isinstance(args[0], Const) and args[0].param is not None:
        return Const(out, args[0].param)
    return Const(out)


def _fuse_norm_scales(ctx: Context) -> None:
    """An RMSNorm without weight read only by a per-unit scale takes that scale as its weight
    (RMSNorm is traced as ``weight * (x * rsqrt(mean(x²) + eps))``)."""
    for norm in list(ctx.ops):
        if norm.kind != "rmsnorm" or not bool((norm.params["weight"] == 1).all()):
            continue
        readers = [op for op in ctx.ops if norm.output in op.inputs]
        if len(readers) != 1 or readers[0].kind != "channel_scale":
            continue
        scale = readers[0]
        norm.params["weight"] = scale.params["weight"]
        norm.name = scale.name  # named after the weight's parameter
        ctx.ops.remove(scale)
        norm.output = scale.output


def trace_module(
    module: torch.nn.Module,
    example: torch.Tensor,
    source: str,
    prefer: tuple[str, ...] = (),
    meta: dict[str, Any] | None = None,
    check: bool = True,
    mask: torch.Tensor | None = None,
) -> Net:
    """Trace `module` on `example` (batch ≥ 2) with torch.export and translate it.

    Args:
        module: the model, in eval mode.
        example: an input batch: integer token ids ``(B, T)`` or a float batch.
        source: what to name in errors (a path or the module's class).
        prefer: output field names (of a ``ModelOutput``) to read, in order of preference;
            the first output otherwise. ``meta["output"]`` / ``meta["outputs"]`` record them.
        meta: provenance stored on the net.
        check: compare the net with the module on a fresh input (≤ 1e-4 relative), and
            with `mask` on left, right and scattered padding.
        mask: an ``attention_mask`` ``(B, T)`` passed as that keyword: the net reads it as
            its extra input of that name (`zoolens.ir.Net.extra_inputs`).
    """
    kind = "dense" if example.is_floating_point() else "tokens"
    kwargs = {} if mask is None else {MASK: mask}
    try:
        program = torch.export.export(module, (example,), kwargs, strict=False)
    except Exception as e:
        first = (str(e).splitlines() or [""])[0][:160]
        raise UnsupportedOpError(
            f"{source}: torch.export cannot trace it ({type(e).__name__}: {first})"
        ) from None
    if _mutates_views(program):  # e.g. BART's shift of the ids: in-place writes to slices
        import warnings

        with warnings.catch_warnings():  # torch's own deprecation notices while it copies
            warnings.simplefilter("ignore", FutureWarning)
            program = program.run_decompositions({})  # functional: slice_scatter, ...
    keys = _output_keys(program)
    output_index = next((keys.index(k) for k in prefer if k in keys), 0)
    meta = {**(meta or {}), "output": keys[output_index], "outputs": keys}
    try:
        net, layout = import_exported(program, kind, output_index, meta)
    except UnsupportedOpError as e:
        raise UnsupportedOpError(f"{source}: {e}") from None
    if check:
        _check(source, module, net, layout, example, output_index)
        if mask is not None:
            _check_masks(source, module, net, layout, example, output_index, mask)
    net.check_finite(source)
    return net


def _mutates_views(program: torch.export.ExportedProgram) -> bool:
    """Whether the traced program writes in place into a slice or element of a value."""
    for node in program.graph_module.graph.nodes:
        src = node.args[0] if node.op == "call_function" and node.args else None
        view = isinstance(src, torch.fx.Node) and _aten_name(src) in ("slice", "select")
        if view and _aten_name(node).endswith("_"):
            return True
    return False


def _aten_name(node: torch.fx.Node) -> str:
    return str(getattr(getattr(node.target, "overloadpacket", None), "__name__", ""))


def _output_keys(program: torch.export.ExportedProgram) -> list[str]:
    """Field names of the traced program's outputs (a ``ModelOutput``'s keys), in order."""
    context = getattr(program.call_spec.out_spec, "context", None)
    if isinstance(context, (list, tuple)) and context and all(isinstance(k, str) for k in context):
        return list(context)
    return [f"output{i}" for i in range(len(program.graph_signature.user_outputs))]


def _output(out: Any, index: int) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    values = list(out.values()) if hasattr(out, "values") else list(out)
    chosen: torch.Tensor = values[index]
    return chosen


def _check_masks(
    source: str,
    module: torch.nn.Module,
    net: Net,
    layout: Dyn,
    example: torch.Tensor,
    index: int,
    mask: torch.Tensor,
) -> None:
    """`_check` with the probe masks: no, full, left, right, scattered and random padding."""
    from zoolens.ir._export_mask import probe_masks

    for probe in probe_masks((int(mask.shape[0]), int(mask.shape[1])), mask.dtype):
        _check(source, module, net, layout, example, index, probe)


def _check(
    source: str,
    module: torch.nn.Module,
    net: Net,
    layout: Dyn,
    example: torch.Tensor,
    index: int,
    mask: torch.Tensor | None = None,
) -> None:
    """Refuse a translation that does not reproduce `module` on a fresh input."""
    g = torch.Generator().manual_seed(1)
    if example.is_floating_point():
        x = torch.randn(example.shape, generator=g, dtype=example.dtype)
    else:
        hi = int(example.max()) + 1
        x = torch.randint(0, max(hi, 2), example.shape, generator=g)
    extra = {} if mask is None else {MASK: mask}
    with torch.no_grad():
        want = arrange(_output(module(x, **extra), index), layout, keep_batch=True)
        try:
            got = net(x, **extra)
        except (RuntimeError, ValueError, IndexError) as e:
            raise UnsupportedOpError(
                f"{source}: the translated net does not run ({str(e).splitlines()[0][:160]})"
            ) from None
    want = want.reshape(got.shape)
    err = float((got - want).abs().max() / want.abs().max().clamp_min(1e-12))
    if not err <= 1e-4:
        raise UnsupportedOpError(
            f"{source}: the translated net does not reproduce the model (max relative "
            f"difference {err:.2e})"
        )
