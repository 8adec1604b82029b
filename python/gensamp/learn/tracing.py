"""Capture a torch score network as a :class:`gensamp.graph.Graph` (weights format 2).

Why torch.fx symbolic tracing rather than torch.export: fx keeps the user's own vocabulary --
``nn.Linear``, ``nn.SiLU``, ``torch.cat``, ``x[:, None]`` -- as graph nodes with their modules'
parameters and the source line of each call, which is what a mapping to the engine's ops and
an error message that points at the user's code need. torch.export lowers to ATen (a linear
becomes ``addmm`` over a transposed weight, a slice ``aten.slice.Tensor``), asks for
dynamic-shape specs for the batch dimension and is far heavier, for no gain on the small
feed-forward networks the engine runs. fx refuses data-dependent control flow outright (a
tensor in an ``if``), so a branch can never be baked in silently.

How a network is mapped: the traced graph is run once on concrete example inputs (a batch of
``n`` chains). Each node's value is either *constant* (it depends on neither x nor sigma:
parameters, ``torch.arange`` frequencies -- folded to numbers here) or *dynamic*; a dynamic
tensor must be ``[n]`` or ``[n, k]`` (one feature vector per chain) and becomes an engine
node. Layout operations (indexing, view/reshape, unsqueeze, flatten, expand, dtype casts, ...)
are mapped by running the same call on a probe tensor that holds each feature's index: what
comes out says which features, in which order, and that chains stay apart. The finished graph
is checked against the module itself in float64 before it is returned; a mismatch is an error,
never a wrong network.
"""

from __future__ import annotations

import copy
import inspect
import math
import operator
import traceback
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from .. import activations as _acts
from .. import reference as _reference
from ..graph import Graph, Node

_BATCH = 29  # chains in the example run: odd and prime, so it is no network's feature width
OUTPUTS = ("score", "denoiser", "noise")


class ExportError(TypeError):
    """A network (or one of its operations) that the engine cannot run."""


# ---- what maps to what ---------------------------------------------------------------------

_BINARY = {
    operator.add: "add",
    operator.iadd: "add",
    torch.add: "add",
    "add": "add",
    "add_": "add",
    operator.sub: "sub",
    operator.isub: "sub",
    torch.sub: "sub",
    torch.subtract: "sub",
    "sub": "sub",
    "sub_": "sub",
    operator.mul: "mul",
    operator.imul: "mul",
    torch.mul: "mul",
    torch.multiply: "mul",
    "mul": "mul",
    "mul_": "mul",
    operator.truediv: "div",
    operator.itruediv: "div",
    torch.div: "div",
    torch.true_divide: "div",
    torch.divide: "div",
    "div": "div",
    "div_": "div",
    "true_divide": "div",
}
_UNARY: dict[Any, str] = {}
for _name in ("sin", "cos", "exp", "log", "sqrt", "neg"):
    _UNARY[getattr(torch, _name)] = _name
    _UNARY[_name] = _name
    _UNARY[_name + "_"] = _name
_UNARY[operator.neg] = "neg"
_POWERS = {torch.rsqrt: -0.5, "rsqrt": -0.5, torch.reciprocal: -1.0, "reciprocal": -1.0}
_POWERS |= {torch.square: 2.0, "square": 2.0}
_POW = {operator.pow, torch.pow, "pow", operator.ipow}
# activations as functions: torch's name -> (engine name, the keyword defaults the engine has)
_ACT_FUNCS: dict[Any, tuple[str, dict[str, Any]]] = {
    F.relu: ("relu", {}),
    torch.relu: ("relu", {}),
    "relu": ("relu", {}),
    F.silu: ("silu", {}),
    F.tanh: ("tanh", {}),
    torch.tanh: ("tanh", {}),
    "tanh": ("tanh", {}),
    F.sigmoid: ("sigmoid", {}),
    torch.sigmoid: ("sigmoid", {}),
    "sigmoid": ("sigmoid", {}),
    F.softplus: ("softplus", {"beta": 1.0, "threshold": 20.0}),
    F.elu: ("elu", {"alpha": 1.0}),
    F.leaky_relu: ("leaky_relu", {"negative_slope": 0.01}),
}
_LAYOUT_FUNCS = {
    operator.getitem,
    torch.reshape,
    torch.flatten,
    torch.unsqueeze,
    torch.squeeze,
    torch.narrow,
    torch.flip,
    torch.clone,
    torch.chunk,
    torch.split,
    torch.unbind,
}
_LAYOUT_METHODS = {
    "view",
    "view_as",
    "reshape",
    "reshape_as",
    "flatten",
    "unsqueeze",
    "squeeze",
    "expand",
    "expand_as",
    "repeat",
    "contiguous",
    "float",
    "double",
    "to",
    "type",
    "type_as",
    "clone",
    "detach",
    "narrow",
    "flip",
    "chunk",
    "split",
    "unbind",
    "__getitem__",
}
_NO_VALUE = {"size", "dim", "ndimension", "numel", "type", "get_device"}
_RANDOM = {
    torch.rand,
    torch.randn,
    torch.randint,
    torch.rand_like,
    torch.randn_like,
    torch.randint_like,
    torch.normal,
    torch.bernoulli,
    torch.multinomial,
    torch.poisson,
    "normal_",
    "uniform_",
    "bernoulli_",
    "random_",
    "exponential_",
}


# ---- values --------------------------------------------------------------------------------


class _Dyn:
    """A tensor that depends on x or sigma: its engine node and torch shape ([n] or [n, k])."""

    __slots__ = ("ref", "shape", "deps")

    def __init__(self, ref: int, shape: tuple[int, ...], deps: frozenset[str]) -> None:
        self.ref, self.shape, self.deps = ref, shape, deps

    @property
    def width(self) -> int:
        return 1 if len(self.shape) == 1 else self.shape[1]


def _where(node: fx.Node) -> str:
    """The user's source line of an fx node, from its recorded stack trace."""
    trace = node.meta.get("stack_trace") or ""
    lines = [ln.strip() for ln in trace.strip().splitlines() if ln.strip()]
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith("File ") and "/torch/" not in lines[i].replace("\\", "/"):
            code = lines[i + 1] if i + 1 < len(lines) else ""
            return f"{lines[i]}: {code}"
    return "(no source line recorded)"


def _describe(node: fx.Node) -> str:
    target = (
        node.target
        if isinstance(node.target, str)
        else getattr(node.target, "__name__", node.target)
    )
    return f"node {node.name!r} ({node.op} {target})"


class _Mapper(fx.Interpreter):
    """Runs the traced module on example inputs and emits engine nodes as it goes."""

    def __init__(self, gm: fx.GraphModule, n: int) -> None:
        super().__init__(gm)
        self.n = n
        self.nodes: list[Node] = []
        self.vals: dict[fx.Node, Any] = {}  # fx node -> _Dyn | constant | list of _Dyn/constant
        self.placeholders = 0
        self.extra_traceback = False  # our errors already name the node and its source line

    # -- errors -----------------------------------------------------------------------------
    def refuse(self, node: fx.Node, why: str, hint: str = "") -> ExportError:
        msg = f"cannot export {_describe(node)} at {_where(node)}: {why}"
        return ExportError(msg + (f" (hint: {hint})" if hint else ""))

    # -- emitting ---------------------------------------------------------------------------
    def emit(
        self, op: str, inputs: list[int], attrs: dict[str, Any] | None = None, **tensors: Any
    ) -> int:
        self.nodes.append(Node(op, inputs, attrs or {}, tensors))
        return len(self.nodes) - 1

    def const(self, values: np.ndarray) -> int:
        v = np.asarray(values, dtype=np.float32).reshape(-1)
        if v.size > 1 and np.all(v == v[0]):
            v = v[:1]
        return self.emit("const", [], value=v)

    def operand(self, node: fx.Node, v: Any, out_shape: tuple[int, ...]) -> tuple[int, int]:
        """(engine node, width) of one operand of an op whose result has torch shape
        out_shape; a constant is broadcast to that shape and must be the same for every chain."""
        if isinstance(v, _Dyn):
            return v.ref, v.width
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            # a Python number: kept in double, as torch applies it
            return self.emit("scalar", [], {"value": float(v)}), 1
        try:
            c = np.asarray(v.detach().cpu().double() if torch.is_tensor(v) else v, dtype=np.float64)
            full = np.broadcast_to(c, out_shape)
        except (TypeError, ValueError, RuntimeError):
            raise self.refuse(
                node, f"operand {type(v).__name__} does not fit shape {out_shape}"
            ) from None
        rows = full.reshape(out_shape[0], -1)
        if not np.all(rows == rows[:1]):
            raise self.refuse(
                node,
                "a tensor that differs from chain to chain without depending on x or sigma",
                "build per-chain values from x or sigma, not from the batch",
            )
        ref = self.const(rows[0])
        return ref, len(self.nodes[ref].tensors["value"])

    # -- the run ----------------------------------------------------------------------------
    def run_node(self, n: fx.Node) -> Any:
        if (
            n.op == "call_function"
            and n.target in _RANDOM
            or (n.op == "call_method" and n.target in _RANDOM)
        ):
            raise self.refuse(
                n, "random numbers inside forward", "the engine adds the noise itself"
            )
        result = super().run_node(n)
        self.vals[n] = self.map(n, result)
        return result

    def dyn_args(self, n: fx.Node) -> list[fx.Node]:
        return [a for a in n.all_input_nodes if self.is_dyn(self.vals.get(a))]

    @staticmethod
    def is_dyn(v: Any) -> bool:
        if isinstance(v, _Dyn):
            return True
        return isinstance(v, (list, tuple)) and any(_Mapper.is_dyn(e) for e in v)

    def val(self, a: Any) -> Any:
        """The mapped value of an argument (an fx node's, or a literal as is)."""
        if isinstance(a, fx.Node):
            return self.vals[a]
        if isinstance(a, (list, tuple)):
            return type(a)(self.val(e) for e in a)
        return a

    def dyn(self, n: fx.Node, result: Any, ref: int, deps: frozenset[str]) -> _Dyn:
        if not torch.is_tensor(result):
            raise self.refuse(n, f"gives a {type(result).__name__}, expected a tensor")
        if not result.is_floating_point():
            raise self.refuse(n, f"gives a {result.dtype} tensor; the engine computes in floats")
        shape = tuple(result.shape)
        if not (1 <= len(shape) <= 2 and shape[0] == self.n) or (
            len(shape) == 2 and shape[1] == self.n
        ):
            raise self.refuse(
                n,
                f"gives shape {tuple(shape)} for a batch of {self.n} chains; the engine maps each "
                "chain to one feature vector ([n] or [n, features])",
            )
        return _Dyn(ref, shape, deps)

    def deps_of(self, n: fx.Node) -> frozenset[str]:
        out: frozenset[str] = frozenset()
        for a in n.all_input_nodes:
            v = self.vals.get(a)
            if isinstance(v, _Dyn):
                out |= v.deps
            elif isinstance(v, list):
                for e in v:
                    if isinstance(e, _Dyn):
                        out |= e.deps
        return out

    def map(self, n: fx.Node, result: Any) -> Any:
        if n.op == "placeholder":
            self.placeholders += 1
            if self.placeholders == 1:
                return self.dyn(n, result, self.emit("x", []), frozenset({"x"}))
            return self.dyn(n, result, self.emit("sigma", []), frozenset({"sigma"}))
        if n.op == "output":
            return self.val(n.args[0])
        deps = self.deps_of(n)
        if not deps:
            return result  # a constant, folded
        holds_tensor = torch.is_tensor(result) or (
            isinstance(result, (tuple, list)) and any(torch.is_tensor(e) for e in result)
        )
        if not holds_tensor:
            return result  # shape, device or dtype of a dynamic tensor: metadata, not a value
        if n.op == "call_module":
            return self.module_call(n, self.module.get_submodule(str(n.target)), result, deps)
        return self.function_call(n, result, deps)

    # -- modules ----------------------------------------------------------------------------
    def module_call(self, n: fx.Node, mod: nn.Module, result: Any, deps: frozenset[str]) -> Any:
        x = self.val(n.args[0]) if n.args else None
        if len(self.dyn_args(n)) != 1 or not isinstance(x, _Dyn):
            raise self.refuse(n, "a module call must take exactly one x- or sigma-dependent tensor")
        if getattr(mod, "inplace", False):
            self.check_inplace(n)
        if isinstance(mod, nn.Linear):
            W = mod.weight.detach().cpu().float().numpy()
            b = (
                mod.bias.detach().cpu().float().numpy()
                if mod.bias is not None
                else np.zeros(W.shape[0], np.float32)
            )
            return self.dyn(n, result, self.emit("linear", [x.ref], weight=W, bias=b), deps)
        if isinstance(mod, (nn.Identity, nn.Flatten, nn.Unflatten)):
            return self.layout(n, result, deps, lambda p: mod(p))
        if isinstance(mod, nn.Dropout):
            if mod.training and mod.p > 0:
                raise self.refuse(
                    n, "Dropout in training mode", "call module.eval() before exporting"
                )
            return x
        if isinstance(mod, nn.modules.batchnorm._BatchNorm):
            if mod.training or not mod.track_running_stats or mod.running_mean is None:
                raise self.refuse(
                    n,
                    "BatchNorm in training mode (it normalises over the batch, coupling chains)",
                    "call module.eval() before exporting",
                )
            rm = mod.running_mean.detach().double().numpy()
            assert mod.running_var is not None  # with running_mean, by track_running_stats
            rv = mod.running_var.detach().double().numpy()
            w = mod.weight.detach().double().numpy() if mod.weight is not None else 1.0
            b = mod.bias.detach().double().numpy() if mod.bias is not None else 0.0
            scale = w / np.sqrt(rv + mod.eps)
            shift = b - rm * scale
            h = self.emit("mul", [x.ref, self.const(np.broadcast_to(scale, rm.shape))])
            h = self.emit("add", [h, self.const(np.broadcast_to(shift, rm.shape))])
            return self.dyn(n, result, h, deps)
        if isinstance(mod, nn.LayerNorm):
            if len(mod.normalized_shape) != 1 or len(x.shape) != 2:
                raise self.refuse(n, "LayerNorm over more than the feature dimension")
            k = x.width
            w = (
                mod.weight.detach().cpu().float().numpy()
                if mod.weight is not None
                else np.ones(k, np.float32)
            )
            b = (
                mod.bias.detach().cpu().float().numpy()
                if mod.bias is not None
                else np.zeros(k, np.float32)
            )
            ref = self.emit("layer_norm", [x.ref], {"eps": float(mod.eps)}, weight=w, bias=b)
            return self.dyn(n, result, ref, deps)
        try:
            name = _act_module_name(mod)
        except TypeError as exc:
            raise self.refuse(n, str(exc)) from None
        return self.dyn(n, result, self.emit("act", [x.ref], {"name": name}), deps)

    def check_inplace(self, n: fx.Node) -> None:
        """An in-place op is mapped as out-of-place: only safe if its input is not read again."""
        src = n.args[0]
        if isinstance(src, fx.Node) and len(src.users) > 1:
            raise self.refuse(
                n,
                "an in-place operation on a value that is also used elsewhere",
                "use the out-of-place form (inplace=False, x = x * 2)",
            )

    # -- functions and methods --------------------------------------------------------------
    def function_call(self, n: fx.Node, result: Any, deps: frozenset[str]) -> Any:
        t = n.target
        args = [self.val(a) for a in n.args]
        kwargs = {k: self.val(v) for k, v in n.kwargs.items()}
        is_method = n.op == "call_method"
        if isinstance(t, str) and t.endswith("_") and not t.startswith("__"):
            self.check_inplace(n)
        if t in _BINARY:
            if kwargs.get("alpha", 1) != 1 or kwargs.get("rounding_mode") is not None:
                raise self.refuse(n, "alpha= or rounding_mode= is not supported")
            a, b = (args + [kwargs.get("other")])[:2]
            shape = tuple(result.shape)
            ra, _ = self.operand(n, a, shape)
            rb, _ = self.operand(n, b, shape)
            return self.dyn(n, result, self.emit(_BINARY[t], [ra, rb]), deps)
        if t in _UNARY:
            return self.dyn(n, result, self.emit(_UNARY[t], [self.one(n, args)]), deps)
        if t in _POWERS:
            ref = self.emit("pow", [self.one(n, args)], {"exponent": _POWERS[t]})
            return self.dyn(n, result, ref, deps)
        if t in _POW:
            base, expo = args[0], args[1] if len(args) > 1 else kwargs.get("exponent")
            if isinstance(base, _Dyn) and not self.is_dyn(expo):
                e = float(expo.item() if torch.is_tensor(expo) else expo)  # type: ignore[arg-type]
                return self.dyn(n, result, self.emit("pow", [base.ref], {"exponent": e}), deps)
            if isinstance(expo, _Dyn) and not self.is_dyn(base):
                b = float(base.item() if torch.is_tensor(base) else base)
                if b <= 0:
                    raise self.refuse(
                        n, "a power of a non-positive number with a variable exponent"
                    )
                h = self.emit("mul", [expo.ref, self.emit("scalar", [], {"value": math.log(b)})])
                return self.dyn(n, result, self.emit("exp", [h]), deps)
            raise self.refuse(n, "a power whose base and exponent both vary")
        if t in _ACT_FUNCS or (t is F.gelu):
            return self.act_function(n, t, args, kwargs, result, deps)
        if t in (torch.cat, torch.concat, torch.concatenate):
            return self.cat(n, args, kwargs, result, deps)
        if t is F.linear or t in (torch.matmul, operator.matmul, torch.mm, "matmul", "mm"):
            return self.matmul(n, t, args, kwargs, result, deps)
        if t is F.layer_norm:
            return self.layer_norm(n, args, kwargs, result, deps)
        if t is F.pad:
            return self.pad(n, args, kwargs, result, deps)
        if t is F.dropout or t is torch.dropout:
            training = kwargs.get("training", args[2] if len(args) > 2 else True)
            p = kwargs.get("p", args[1] if len(args) > 1 else 0.5)
            if training and p > 0:
                raise self.refuse(
                    n, "dropout in training mode", "pass training=self.training and call .eval()"
                )
            return args[0]
        if (t in _LAYOUT_FUNCS) or (is_method and t in _LAYOUT_METHODS):
            if t in ("to", "type") and any(
                isinstance(a, torch.dtype) and not a.is_floating_point
                for a in list(args[1:]) + list(kwargs.values())
            ):
                raise self.refuse(n, "a cast to a non-float dtype")
            return self.layout_call(n, t, args, kwargs, result, deps)
        if is_method and t in _NO_VALUE:
            return result
        name = t if isinstance(t, str) else getattr(t, "__name__", repr(t))
        hint = {
            "abs": "abs has no engine op yet",
            "clamp": "clamp has no engine op yet",
            "where": "data-dependent selection (torch.where) cannot be exported",
            "sum": "reductions over features are not supported (except LayerNorm)",
            "mean": "reductions over features are not supported (except LayerNorm)",
        }.get(
            name,
            "supported: Linear, activations, + - * /, pow, sin/cos/exp/log/sqrt, cat, "
            "indexing/reshape, LayerNorm",
        )
        raise self.refuse(n, f"{name} has no engine counterpart", hint)

    def one(self, n: fx.Node, args: list[Any]) -> int:
        if not args or not isinstance(args[0], _Dyn):
            raise self.refuse(n, "expected a tensor that depends on x or sigma")
        return args[0].ref

    def act_function(
        self,
        n: fx.Node,
        t: Any,
        args: list[Any],
        kwargs: dict[str, Any],
        result: Any,
        deps: frozenset[str],
    ) -> _Dyn:
        if t is F.gelu:
            approx = kwargs.get("approximate", args[1] if len(args) > 1 else "none")
            name, fixed = ("gelu_tanh" if approx == "tanh" else "gelu"), dict[str, Any]()
        else:
            name, fixed = _ACT_FUNCS[t]
        sig_params = list(fixed)
        for i, key in enumerate(sig_params):
            v = kwargs.get(key, args[i + 1] if len(args) > i + 1 else fixed[key])
            if float(v) != float(fixed[key]):
                raise self.refuse(
                    n, f"{name} with {key}={v!r}: the engine implements {key}={fixed[key]!r}"
                )
        if kwargs.get("inplace") or (t is F.leaky_relu and len(args) > 2 and args[2]):
            self.check_inplace(n)
        return self.dyn(n, result, self.emit("act", [self.one(n, args)], {"name": name}), deps)

    def cat(
        self, n: fx.Node, args: list[Any], kwargs: dict[str, Any], result: Any, deps: frozenset[str]
    ) -> _Dyn:
        parts: Any = args[0] if args else kwargs.get("tensors")
        dim = kwargs.get("dim", args[1] if len(args) > 1 else 0)
        nd = result.dim()
        if nd != 2 or dim not in (1, -1):
            raise self.refuse(
                n,
                f"concatenation along dim {dim} of a {nd}-D result",
                "concatenate features: dim=-1",
            )
        refs = []
        for p in parts:
            if isinstance(p, _Dyn):
                if len(p.shape) != 2:
                    raise self.refuse(n, "a 1-D tensor in a concatenation along features")
                refs.append(p.ref)
            else:
                c = p.detach().cpu().double().numpy() if torch.is_tensor(p) else np.asarray(p)
                if c.ndim != 2 or c.shape[0] not in (1, self.n):
                    raise self.refuse(n, f"a constant part of shape {c.shape}")
                refs.append(self.operand(n, p, (self.n, c.shape[1]))[0])
        return self.dyn(n, result, self.emit("cat", refs), deps)

    def matmul(
        self,
        n: fx.Node,
        t: Any,
        args: list[Any],
        kwargs: dict[str, Any],
        result: Any,
        deps: frozenset[str],
    ) -> _Dyn:
        W: Any
        b: Any
        if t is F.linear:
            x, W = args[0], kwargs.get("weight", args[1] if len(args) > 1 else None)
            b = kwargs.get("bias", args[2] if len(args) > 2 else None)
        else:
            x, other = args[0], args[1]
            if (
                not isinstance(x, _Dyn)
                or self.is_dyn(other)
                or not torch.is_tensor(other)
                or other.dim() != 2
            ):
                raise self.refuse(
                    n, "a matrix product must be (x-dependent [n, k]) @ (constant [k, m])"
                )
            W, b = other.t(), None
        if not isinstance(x, _Dyn) or self.is_dyn(W) or self.is_dyn(b) or len(x.shape) != 2:
            raise self.refuse(
                n, "a linear map needs an x- or sigma-dependent [n, k] input and constant weights"
            )
        Wn = W.detach().cpu().float().numpy()
        bn = (
            b.detach().cpu().float().numpy() if b is not None else np.zeros(Wn.shape[0], np.float32)
        )
        return self.dyn(n, result, self.emit("linear", [x.ref], weight=Wn, bias=bn), deps)

    def layer_norm(
        self, n: fx.Node, args: list[Any], kwargs: dict[str, Any], result: Any, deps: frozenset[str]
    ) -> _Dyn:
        x = args[0]
        shape: Any = kwargs.get("normalized_shape", args[1] if len(args) > 1 else None)
        w = kwargs.get("weight", args[2] if len(args) > 2 else None)
        b = kwargs.get("bias", args[3] if len(args) > 3 else None)
        eps = kwargs.get("eps", args[4] if len(args) > 4 else 1e-5)
        if (
            not isinstance(x, _Dyn)
            or len(x.shape) != 2
            or len(tuple(shape)) != 1
            or self.is_dyn(w)
            or self.is_dyn(b)
        ):
            raise self.refuse(
                n, "layer_norm over the features of an [n, k] tensor with constant weights"
            )
        k = x.width
        wn = w.detach().cpu().float().numpy() if w is not None else np.ones(k, np.float32)
        bn = b.detach().cpu().float().numpy() if b is not None else np.zeros(k, np.float32)
        return self.dyn(
            n,
            result,
            self.emit("layer_norm", [x.ref], {"eps": float(eps)}, weight=wn, bias=bn),
            deps,
        )

    def pad(
        self, n: fx.Node, args: list[Any], kwargs: dict[str, Any], result: Any, deps: frozenset[str]
    ) -> _Dyn:
        x = args[0]
        pads: Any = kwargs.get("pad", args[1] if len(args) > 1 else None)
        mode = kwargs.get("mode", args[2] if len(args) > 2 else "constant")
        value = kwargs.get("value", args[3] if len(args) > 3 else None) or 0.0
        if (
            not isinstance(x, _Dyn)
            or len(x.shape) != 2
            or mode != "constant"
            or len(pads) not in (2, 4)
            or any(pads[2:])
        ):
            raise self.refuse(n, "only constant padding of the feature dimension is supported")
        left, right = int(pads[0]), int(pads[1])
        if left < 0 or right < 0:
            raise self.refuse(n, "negative padding")
        refs = ([self.const(np.full(left, value))] if left else []) + [x.ref]
        refs += [self.const(np.full(right, value))] if right else []
        if left and len(self.nodes[refs[0]].tensors["value"]) != left:
            refs[0] = self.emit("const", [], value=np.full(left, value, np.float32))
        if right and len(self.nodes[refs[-1]].tensors["value"]) != right:
            refs[-1] = self.emit("const", [], value=np.full(right, value, np.float32))
        return self.dyn(n, result, self.emit("cat", refs), deps)

    # -- layout: which features, in which order --------------------------------------------
    def layout_call(
        self,
        n: fx.Node,
        t: Any,
        args: list[Any],
        kwargs: dict[str, Any],
        result: Any,
        deps: frozenset[str],
    ) -> Any:
        src = args[0]
        if not isinstance(src, _Dyn):
            if (
                isinstance(src, list)
                and t is operator.getitem
                and isinstance(args[1], (int, slice))
            ):
                return src[args[1]]  # elements of a chunk/split result
            raise self.refuse(n, "indexing into something other than a tensor")
        others = self.is_dyn(args[1:]) or any(self.is_dyn(v) for v in kwargs.values())
        if others and t not in ("expand_as", "view_as", "reshape_as", "type_as"):
            raise self.refuse(n, "a layout operation whose arguments depend on x or sigma")
        raw = [self.vals_raw(a) for a in n.args]
        raw_kwargs = {k: self.vals_raw(v) for k, v in n.kwargs.items()}

        def call(p: torch.Tensor) -> Any:
            a = [p] + raw[1:]
            if n.op == "call_method":
                return getattr(p, str(t))(*a[1:], **raw_kwargs)
            return t(*a, **raw_kwargs)

        return self.layout(n, result, deps, call, src)

    def vals_raw(self, a: Any) -> Any:
        """An argument's concrete value from the example run (for re-running a layout op)."""
        if isinstance(a, fx.Node):
            return self.env[a]
        if isinstance(a, (list, tuple)):
            return type(a)(self.vals_raw(e) for e in a)
        return a

    def layout(
        self, n: fx.Node, result: Any, deps: frozenset[str], call: Any, src: _Dyn | None = None
    ) -> Any:
        if src is None:
            src = self.val(n.args[0])
        assert isinstance(src, _Dyn)
        # probes: each element holds its feature index, or its chain index
        feat = (
            torch.arange(src.width, dtype=torch.float64)
            .expand(self.n, src.width)
            .reshape(src.shape)
        )
        chain = (
            torch.arange(self.n, dtype=torch.float64)[:, None]
            .expand(self.n, src.width)
            .reshape(src.shape)
        )
        try:
            pf, pc = call(feat.clone()), call(chain.clone())
        except Exception as exc:  # noqa: BLE001 - any failure means: not a pure layout op
            raise self.refuse(
                n, f"not a layout operation the engine can follow ({type(exc).__name__})"
            ) from None
        if isinstance(result, (tuple, list)):
            return [self.one_layout(n, r, f, c, src, deps) for r, f, c in zip(result, pf, pc)]
        return self.one_layout(n, result, pf, pc, src, deps)

    def one_layout(
        self, n: fx.Node, result: Any, pf: Any, pc: Any, src: _Dyn, deps: frozenset[str]
    ) -> _Dyn:
        shape = tuple(result.shape)
        self.dyn(n, result, -1, deps)  # checks the shape
        f = pf.detach().double().reshape(self.n, -1).numpy()
        c = pc.detach().double().reshape(self.n, -1).numpy()
        if not (np.all(c == np.arange(self.n)[:, None]) and np.all(f == f[:1])):
            raise self.refuse(
                n, "a reshape that mixes chains (the batch must stay the first dimension)"
            )
        idx = [int(v) for v in f[0]]
        if idx == list(range(src.width)):
            return _Dyn(src.ref, shape, deps)
        runs: list[tuple[int, int]] = []
        for i in idx:
            if runs and runs[-1][1] == i:
                runs[-1] = (runs[-1][0], i + 1)
            else:
                runs.append((i, i + 1))
        refs = [
            src.ref
            if (a, b) == (0, src.width)
            else self.emit("slice", [src.ref], {"start": a, "stop": b})
            for a, b in runs
        ]
        ref = refs[0] if len(refs) == 1 else self.emit("cat", refs)
        return _Dyn(ref, shape, deps)


def activation_name(mod: nn.Module) -> str | None:
    """The engine's name for a torch activation module whose parameters are the ones the
    engine implements (:data:`gensamp.activations.SPEC`); TypeError for an activation with
    other parameters; None for a module that is no activation."""
    for name, (cls_name, params) in _acts.SPEC.items():
        if name == "identity" or type(mod).__name__ != cls_name:
            continue
        if all(getattr(mod, k, None) == v for k, v in params.items()):
            return name
    candidates = [p for _, (c, p) in _acts.SPEC.items() if c == type(mod).__name__]
    if candidates:
        fixed = " or ".join(", ".join(f"{k}={v!r}" for k, v in p.items()) for p in candidates)
        raise TypeError(
            f"{type(mod).__name__} is supported only with {fixed}: the engine "
            "implements torch's default parameters"
        )
    return None


def _act_module_name(mod: nn.Module) -> str:
    name = activation_name(mod)
    if name is not None:
        return name
    raise TypeError(
        f"module {type(mod).__name__} has no engine counterpart (supported: Linear, LayerNorm, "
        "BatchNorm in eval mode, Identity, Dropout, Flatten and the activations "
        f"{', '.join(_acts.HIDDEN)})"
    )


# ---- the entry point -----------------------------------------------------------------------


def _refuse_kind(module: Any) -> None:
    if isinstance(module, torch.jit.ScriptModule):
        raise ExportError(
            "cannot export a TorchScript module (torch.jit.script/trace): it has lost the Python "
            "code gensamp traces; export the original nn.Module instead"
        )
    if isinstance(module, Mapping):
        raise ExportError(
            "cannot export a state_dict: it holds the weights but not the network's structure; "
            "build the module, load_state_dict() into it, and export the module"
        )
    if not isinstance(module, nn.Module):
        raise ExportError(f"export needs a torch nn.Module, got {type(module).__name__}")
    if type(module).__module__.startswith("torch.") and not isinstance(module, nn.Sequential):
        try:  # a built-in layer on its own: an activation is not a score network either
            _act_module_name(module)
        except TypeError as exc:
            raise ExportError(f"cannot export {type(module).__name__}: {exc}") from None
        raise ExportError(f"an activation alone ({type(module).__name__}) is not a score network")


def _forward_arity(module: nn.Module) -> int:
    try:
        params = inspect.signature(module.forward).parameters.values()
    except (TypeError, ValueError):
        return 1
    required = [
        p
        for p in params
        if p.default is inspect.Parameter.empty
        and p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    if len(required) not in (1, 2):
        raise ExportError(
            f"{type(module).__name__}.forward takes {len(required)} required arguments; gensamp "
            "exports forward(x) (a score) or forward(x, sigma) (a noise-conditional score)"
        )
    return len(required)


def _examples(
    module: nn.Module, arity: int, dim: int | None, sigma_shape: str | None
) -> tuple[int, str]:
    """The data dimension and sigma's shape ('n' or 'n1') under which forward runs and maps
    [n, d] to [n, d]."""
    if dim is None:
        dims = sorted(
            {m.in_features for m in module.modules() if isinstance(m, nn.Linear)}
            | {m.out_features for m in module.modules() if isinstance(m, nn.Linear)}
        )
    else:
        dims = [dim]
    shapes = [sigma_shape] if sigma_shape else ["n", "n1"]
    g = torch.Generator().manual_seed(0)
    for d in dims:
        for s in shapes if arity == 2 else ["n"]:
            x = torch.randn(_BATCH, d, generator=g)
            args = [x]
            if arity == 2:
                sig = torch.rand(_BATCH, generator=g) + 0.5
                args.append(sig if s == "n" else sig[:, None])
            try:
                with torch.no_grad():
                    out = module(*args)
            except Exception:  # noqa: BLE001 - trying shapes
                continue
            if torch.is_tensor(out) and tuple(out.shape) == (_BATCH, d):
                return d, s
    raise ExportError(
        f"could not run {type(module).__name__}.forward on x of shape [n, d] (d tried: "
        f"{dims[:8]}) with sigma of shape [n] or [n, 1] to give [n, d]; pass dim= (and "
        "sigma_shape='n' or 'n1') if the network is a score network"
    )


def _trace(module: nn.Module) -> fx.GraphModule:
    tracer = fx.Tracer()
    tracer.record_stack_traces = True
    try:
        graph = tracer.trace(module)
    except Exception as exc:  # noqa: BLE001 - fx raises TraceError, TypeError, RuntimeError...
        frames = [
            f
            for f in traceback.extract_tb(exc.__traceback__)
            if "/torch/" not in f.filename.replace("\\", "/") and f.filename != __file__
        ]
        where = (
            f" at {frames[-1].filename}:{frames[-1].lineno}: {frames[-1].line}" if frames else ""
        )
        text = str(exc)
        hint = ""
        if "control flow" in text or "bool" in text or "iteration" in text.lower():
            hint = (
                " (hint: data-dependent control flow -- an if, while or loop on a tensor's value; "
                "write it with torch operations, or branch on Python values only)"
            )
        raise ExportError(f"cannot trace {type(module).__name__}{where}: {text}{hint}") from None
    return fx.GraphModule(tracer.root, graph)


def _denoiser_to_score(nodes: list[Node], ref: int, x_ref: int, s_ref: int) -> int:
    """Appends score = (D - x) / sigma^2 and returns its index. For EDM's D = c_skip * x + F'
    with c_skip depending on sigma only, the score is built as ((c_skip - 1) * x + F') /
    sigma^2, with c_skip - 1 computed per level in double: D - x in float32 would cancel
    catastrophically at small sigma, where c_skip is within sigma^2 of 1."""
    on_x = [False] * len(nodes)
    for i, nd in enumerate(nodes):
        on_x[i] = nd.op == "x" or any(on_x[j] for j in nd.inputs)
    top = nodes[ref]
    if top.op == "add":
        for k in (0, 1):
            m = nodes[top.inputs[k]]
            if m.op != "mul" or x_ref not in m.inputs:
                continue
            c = m.inputs[1] if m.inputs[0] == x_ref else m.inputs[0]
            if on_x[c]:
                continue
            one = len(nodes)
            nodes.append(Node("scalar", [], {"value": 1.0}))
            nodes.append(Node("sub", [c, one]))
            nodes.append(Node("mul", [len(nodes) - 1, x_ref]))
            nodes.append(Node("add", [len(nodes) - 1, top.inputs[1 - k]]))
            break
        else:
            nodes.append(Node("sub", [ref, x_ref]))
    else:
        nodes.append(Node("sub", [ref, x_ref]))
    diff = len(nodes) - 1
    nodes.append(Node("pow", [s_ref], {"exponent": 2.0}))
    nodes.append(Node("div", [diff, len(nodes) - 1]))
    return len(nodes) - 1


def _prune(nodes: list[Node], out: int) -> list[Node]:
    keep = [False] * len(nodes)
    keep[out] = True
    for i in range(out, -1, -1):
        if keep[i]:
            for j in nodes[i].inputs:
                keep[j] = True
    new_index: dict[int, int] = {}
    kept: list[Node] = []
    for i, node in enumerate(nodes[: out + 1]):
        if keep[i]:
            new_index[i] = len(kept)
            kept.append(
                Node(node.op, [new_index[j] for j in node.inputs], node.attrs, node.tensors)
            )
    return kept


def capture(
    module: Any,
    *,
    output: str = "score",
    dim: int | None = None,
    sigma_shape: str | None = None,
    check_sigmas: Any = None,
) -> Graph:
    """The :class:`~gensamp.graph.Graph` of a torch module's ``forward(x)`` or
    ``forward(x, sigma)``.

    ``output``: what forward returns -- ``"score"`` (default), ``"denoiser"`` D(x, sigma)
    (score = (D - x) / sigma^2, EDM's convention) or ``"noise"`` eps(x, sigma)
    (score = -eps / sigma). ``dim``: the data dimension, found by trial when omitted.
    ``sigma_shape``: ``"n"`` or ``"n1"``, sigma as [n] or [n, 1]; found by trial when omitted.
    ``check_sigmas``: noise levels at which the captured graph is compared with the module
    (default: 24 levels from 0.01 to 100).
    """
    _refuse_kind(module)
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
    if sigma_shape not in (None, "n", "n1"):
        raise ValueError(f"sigma_shape must be 'n' or 'n1', got {sigma_shape!r}")
    arity = _forward_arity(module)
    if output != "score" and arity != 2:
        raise ValueError(f"output={output!r} needs forward(x, sigma)")
    gm = _trace(module)
    d, s_shape = _examples(module, arity, dim, sigma_shape)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(_BATCH, d, generator=g)
    inputs = [x]
    if arity == 2:
        sig = torch.rand(_BATCH, generator=g) + 0.5
        inputs.append(sig if s_shape == "n" else sig[:, None])
    mapper = _Mapper(gm, _BATCH)
    with torch.no_grad():
        mapper.run(*inputs)
    out_node = next(nd for nd in gm.graph.nodes if nd.op == "output")
    out = mapper.vals[out_node]
    if not isinstance(out, _Dyn):
        raise ExportError("forward's result does not depend on x or sigma: nothing to export")
    if len(out.shape) != 2 or out.shape[1] != d or "x" not in out.deps:
        raise ExportError(f"forward must return [n, {d}] depending on x, got shape {out.shape}")
    ref = out.ref
    nodes = mapper.nodes
    if output != "score":
        x_ref = next(i for i, nd in enumerate(nodes) if nd.op == "x")
        s_ref = next((i for i, nd in enumerate(nodes) if nd.op == "sigma"), None)
        if s_ref is None:
            raise ExportError(f"output={output!r}: forward never reads sigma")
        if output == "denoiser":
            ref = _denoiser_to_score(nodes, ref, x_ref, s_ref)
        else:
            nodes.append(Node("neg", [ref]))
            nodes.append(Node("div", [len(nodes) - 1, s_ref]))
            ref = len(nodes) - 1
    graph = Graph(_prune(nodes, ref), d)
    _verify(module, graph, arity, s_shape, output, check_sigmas)
    return graph


def _verify(
    module: nn.Module, graph: Graph, arity: int, s_shape: str, output: str, check_sigmas: Any
) -> None:
    """The graph against the module itself at a batch size other than the traced one: a
    construct mapped wrongly shows as an O(1) difference. In float64 where the module runs
    in float64 (a copy), else in float32 with a looser bound."""
    try:
        worst = _worst_error(
            copy.deepcopy(module).double(),
            torch.float64,
            graph,
            arity,
            s_shape,
            output,
            check_sigmas,
        )
        tol = 1e-4  # room for float32 constants torch folded at trace time (frequencies)
    except Exception:  # noqa: BLE001 - e.g. a .float() inside forward: compare in float32
        worst = _worst_error(module, torch.float32, graph, arity, s_shape, output, check_sigmas)
        tol = 1e-3
    if not worst <= tol:
        raise ExportError(
            f"the captured graph does not reproduce {type(module).__name__} (max relative error "
            f"{worst:.3g}): it uses a construct gensamp maps wrongly; please report it"
        )


def _worst_error(
    m: nn.Module,
    dtype: torch.dtype,
    graph: Graph,
    arity: int,
    s_shape: str,
    output: str,
    check_sigmas: Any,
) -> float:
    sigmas = (
        np.geomspace(0.01, 100.0, 24)
        if check_sigmas is None
        else np.asarray(check_sigmas, float).ravel()
    )
    if arity == 1:
        sigmas = np.array([1.0])
    rng = np.random.default_rng(2)
    worst = 0.0
    for s in sigmas:
        x = rng.normal(size=(64, graph.dim)) * math.sqrt(1.0 + (s * s if arity == 2 else 0.0))
        if dtype == torch.float32:
            x = x.astype(np.float32).astype(np.float64)
        args = [torch.tensor(x, dtype=dtype)]
        if arity == 2:
            sig = torch.full((64,), float(s), dtype=dtype)
            args.append(sig if s_shape == "n" else sig[:, None])
        with torch.no_grad():
            want = m(*args).double().numpy()
        if output == "denoiser":
            want = (want - x) / s**2
        elif output == "noise":
            want = -want / s
        if not np.all(np.isfinite(want)):
            continue  # the module itself overflows here; nothing to compare
        got = _reference.graph_forward(graph, x, float(s))
        worst = max(worst, float(np.max(np.abs(got - want) / (1.0 + np.abs(want)))))
    return worst
