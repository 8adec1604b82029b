"""Score networks as graphs: what weights format 2 stores and the engine's ``GraphNet`` runs.

A :class:`Graph` is a list of :class:`Node` in topological order; node ``i`` reads only nodes
``< i`` and the last node is the network's output. Every value is a feature vector per chain
(torch's ``[n, k]``; ``[n]`` is ``k = 1``). Binary operations broadcast a width-1 operand. The
ops (the one place they are defined; ``cpp/src/graph.cpp`` implements the same table and
:func:`gensamp.reference.graph_forward` evaluates it independently):

============== ====== ================== ============================= =====================
op             inputs attributes         tensors                       value
============== ====== ================== ============================= =====================
``x``          0                                                       the chain state (d)
``sigma``      0                                                       the noise level (1)
``const``      0                         ``value`` [k]                 ``value``
``scalar``     0      ``value``                                        a number (1), kept in
                                                                       double precision
``linear``     1                         ``weight`` [out, in],         ``weight @ h + bias``
                                         ``bias`` [out]
``act``        1      ``name``                                         an activation of
                                                                       :mod:`gensamp.activations`
``sin`` ...    1                                                       ``sin, cos, exp, log,
                                                                       sqrt, neg``
``pow``        1      ``exponent``                                     ``h ** exponent``
``add`` ...    2                                                       ``add, sub, mul, div``
``cat``        1+                                                      features concatenated
``slice``      1      ``start, stop``                                  ``h[start:stop]``
``layer_norm`` 1      ``eps``            ``weight`` [k], ``bias`` [k]  torch's LayerNorm
============== ====== ================== ============================= =====================

Nodes that do not depend on ``x`` (sigma, its embeddings, constants) are the engine's per-level
work: it computes them once per noise level, before the chains run.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from . import activations as _acts

UNARY = ("sin", "cos", "exp", "log", "sqrt", "neg")
BINARY = ("add", "sub", "mul", "div")
# op -> (number of inputs (-1: one or more), attribute names, tensor names)
SCHEMA: Mapping[str, tuple[int, tuple[str, ...], tuple[str, ...]]] = {
    "x": (0, (), ()),
    "sigma": (0, (), ()),
    "const": (0, (), ("value",)),
    "scalar": (0, ("value",), ()),
    "linear": (1, (), ("weight", "bias")),
    "act": (1, ("name",), ()),
    **{u: (1, (), ()) for u in UNARY},
    "pow": (1, ("exponent",), ()),
    **{b: (2, (), ()) for b in BINARY},
    "cat": (-1, (), ()),
    "slice": (1, ("start", "stop"), ()),
    "layer_norm": (1, ("eps",), ("weight", "bias")),
}
MAX_NODES = 10_000
MAX_WIDTH = 1 << 16
MAX_CAT_INPUTS = 4096


class Node:
    """One graph node: ``op`` (a key of :data:`SCHEMA`), the indices of its inputs, its
    attributes and its tensors (read-only float32 arrays)."""

    __slots__ = ("op", "inputs", "attrs", "tensors")

    def __init__(
        self,
        op: str,
        inputs: Sequence[int] = (),
        attrs: Mapping[str, Any] | None = None,
        tensors: Mapping[str, Any] | None = None,
    ) -> None:
        self.op = op
        self.inputs = tuple(inputs)
        self.attrs = dict(attrs or {})
        self.tensors = dict(tensors or {})

    def __repr__(self) -> str:
        shapes = {k: tuple(v.shape) for k, v in self.tensors.items()}
        return (
            f"Node({self.op!r}, inputs={list(self.inputs)}, attrs={self.attrs}, tensors={shapes})"
        )


def _frozen(a: Any, what: str, ndim: int) -> np.ndarray:
    try:
        arr = np.array(a, dtype=np.float32, copy=True, order="C")
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what} must be a real float array: {exc}") from None
    if arr.ndim != ndim or arr.size == 0:
        raise ValueError(f"{what} must be a non-empty {ndim}-D array, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} contains NaN or Inf")
    return np.frombuffer(arr.tobytes(), dtype=np.float32).reshape(arr.shape)


def _int(v: Any, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise ValueError(f"{what} must be an integer, got {v!r}")
    return int(v)


def _float(v: Any, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
        raise ValueError(f"{what} must be a number, got {v!r}")
    f = float(v)
    if not math.isfinite(f):
        raise ValueError(f"{what} must be finite, got {v!r}")
    return f


class Graph:
    """A validated, immutable score-network graph (see the module docstring).

    Parameters
    ----------
    nodes : sequence of Node
        In topological order; the last one is the output (width ``dim``, depends on x).
    dim : int
        The data dimension d (width of the ``x`` node and of the output).

    Every op, arity, attribute, tensor shape and edge is checked; inputs must be earlier nodes
    (so there are no cycles), every node must feed the output, and there is at most one ``x``
    and one ``sigma`` node. Anything else raises ValueError or TypeError naming the node.
    """

    __slots__ = ("_nodes", "_dim", "_widths", "_chain", "_uses_sigma")

    def __init__(self, nodes: Sequence[Node], dim: int) -> None:
        if isinstance(nodes, (str, bytes)) or not isinstance(nodes, Sequence):
            raise TypeError("nodes must be a sequence of gensamp.graph.Node")
        self._dim = _int(dim, "dim")
        if not 1 <= self._dim <= MAX_WIDTH:
            raise ValueError(f"dim must be in 1..{MAX_WIDTH}, got {dim}")
        if not 1 <= len(nodes) <= MAX_NODES:
            raise ValueError(f"a graph has 1 to {MAX_NODES} nodes, got {len(nodes)}")
        frozen: list[Node] = []
        widths: list[int] = []
        chain: list[bool] = []
        seen: set[str] = set()
        for i, n in enumerate(nodes):
            if not isinstance(n, Node):
                raise TypeError(f"node {i} is a {type(n).__name__}, not a gensamp.graph.Node")
            node, w = self._check(i, n, widths)
            if node.op == "x":
                w = self._dim
            if node.op in ("x", "sigma"):
                if node.op in seen:
                    raise ValueError(f"node {i}: a graph has at most one {node.op!r} node")
                seen.add(node.op)
            frozen.append(node)
            widths.append(w)
            chain.append(node.op == "x" or any(chain[j] for j in node.inputs))
        if widths[-1] != self._dim:
            raise ValueError(
                f"the output (node {len(frozen) - 1}, {frozen[-1].op}) has width {widths[-1]}, "
                f"but a score network's output has width d={self._dim}"
            )
        if not chain[-1]:
            raise ValueError("the output does not depend on x")
        used = [False] * len(frozen)
        used[-1] = True
        for i in range(len(frozen) - 1, -1, -1):
            if used[i]:
                for j in frozen[i].inputs:
                    used[j] = True
        unused = [i for i, u in enumerate(used) if not u]
        if unused:
            raise ValueError(f"node(s) {unused[:10]} do not feed the output")
        self._nodes = tuple(frozen)
        self._widths = tuple(widths)
        self._chain = tuple(chain)
        self._uses_sigma = "sigma" in seen

    @staticmethod
    def _check(i: int, n: Node, widths: list[int]) -> tuple[Node, int]:
        where = f"node {i} ({n.op!r})"
        if not isinstance(n.op, str) or n.op not in SCHEMA:
            raise ValueError(f"node {i}: unknown op {n.op!r}; known: {', '.join(SCHEMA)}")
        arity, attr_names, tensor_names = SCHEMA[n.op]
        inputs = tuple(_int(j, f"{where} input") for j in n.inputs)
        if (arity >= 0 and len(inputs) != arity) or (
            arity < 0 and not 1 <= len(inputs) <= MAX_CAT_INPUTS
        ):
            raise ValueError(f"{where} takes {arity if arity >= 0 else '1 or more'} inputs")
        for j in inputs:
            if not 0 <= j < i:
                raise ValueError(f"{where}: input {j} is not an earlier node")
        if set(n.attrs) != set(attr_names):
            raise ValueError(
                f"{where}: attributes must be {list(attr_names)}, got {sorted(n.attrs)}"
            )
        if set(n.tensors) != set(tensor_names):
            raise ValueError(
                f"{where}: tensors must be {list(tensor_names)}, got {sorted(n.tensors)}"
            )
        win = [widths[j] for j in inputs]
        attrs: dict[str, Any] = {}
        tensors: dict[str, np.ndarray] = {}
        if n.op == "x":
            w = -1  # the caller knows dim
        elif n.op == "sigma":
            w = 1
        elif n.op == "const":
            tensors["value"] = _frozen(n.tensors["value"], f"{where} value", 1)
            w = tensors["value"].shape[0]
        elif n.op == "linear":
            W = _frozen(n.tensors["weight"], f"{where} weight", 2)
            b = _frozen(n.tensors["bias"], f"{where} bias", 1)
            if W.shape[1] != win[0] or b.shape[0] != W.shape[0]:
                raise ValueError(
                    f"{where}: weight {W.shape} and bias {b.shape} do not fit an input of "
                    f"width {win[0]}"
                )
            tensors = {"weight": W, "bias": b}
            w = W.shape[0]
        elif n.op == "scalar":
            attrs["value"] = _float(n.attrs["value"], f"{where} value")
            w = 1
        elif n.op == "act":
            attrs["name"] = _acts.check(n.attrs["name"], hidden_only=True)
            w = win[0]
        elif n.op == "pow":
            attrs["exponent"] = _float(n.attrs["exponent"], f"{where} exponent")
            w = win[0]
        elif n.op in UNARY:
            w = win[0]
        elif n.op in BINARY:
            wa, wb = win
            if wa != wb and 1 not in (wa, wb):
                raise ValueError(f"{where}: widths {wa} and {wb} do not broadcast")
            w = max(wa, wb)
        elif n.op == "cat":
            w = sum(win)
        elif n.op == "slice":
            start = _int(n.attrs["start"], f"{where} start")
            stop = _int(n.attrs["stop"], f"{where} stop")
            if not 0 <= start < stop <= win[0]:
                raise ValueError(f"{where}: [{start}, {stop}) is not a range in 0..{win[0]}")
            attrs = {"start": start, "stop": stop}
            w = stop - start
        else:  # layer_norm
            eps = _float(n.attrs["eps"], f"{where} eps")
            if eps <= 0:
                raise ValueError(f"{where}: eps must be > 0")
            W = _frozen(n.tensors["weight"], f"{where} weight", 1)
            b = _frozen(n.tensors["bias"], f"{where} bias", 1)
            if W.shape != (win[0],) or b.shape != (win[0],):
                raise ValueError(f"{where}: weight and bias must have the input's width {win[0]}")
            attrs["eps"] = eps
            tensors = {"weight": W, "bias": b}
            w = win[0]
        node = Node(n.op, inputs, attrs, tensors)
        if w == -1:
            return node, -1
        if not 1 <= w <= MAX_WIDTH:
            raise ValueError(f"{where}: width {w} is outside 1..{MAX_WIDTH}")
        return node, w

    @property
    def nodes(self) -> tuple[Node, ...]:
        return self._nodes

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def widths(self) -> tuple[int, ...]:
        return self._widths

    @property
    def depends_on_x(self) -> tuple[bool, ...]:
        return self._chain

    @property
    def uses_sigma(self) -> bool:
        """True when the network reads its noise level (a noise-conditional score)."""
        return self._uses_sigma

    def __len__(self) -> int:
        return len(self._nodes)

    def __repr__(self) -> str:
        ops: dict[str, int] = {}
        for n in self._nodes:
            ops[n.op] = ops.get(n.op, 0) + 1
        return f"Graph(dim={self._dim}, nodes={len(self._nodes)}, ops={ops})"

    # ---- the file format's pieces ---------------------------------------------------------
    def to_json(self) -> str:
        """The ``graph`` metadata entry: a JSON list of ``{"op", "in", <attributes>}``."""
        return json.dumps(
            [{"op": n.op, "in": list(n.inputs), **n.attrs} for n in self._nodes],
            separators=(",", ":"),
        )

    def tensors(self) -> dict[str, np.ndarray]:
        """The tensors, named ``graph.{i}.{name}``."""
        return {
            f"graph.{i}.{k}": v for i, n in enumerate(self._nodes) for k, v in n.tensors.items()
        }

    @classmethod
    def from_json(cls, text: str, tensors: Mapping[str, np.ndarray], dim: int) -> Graph:
        """The graph of a file's ``graph`` entry and its ``graph.*`` tensors; every name and
        type is checked (ValueError)."""
        try:
            raw = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise ValueError(f"graph is not valid JSON: {type(exc).__name__}") from None
        if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_NODES:
            raise ValueError(f"graph must be a JSON list of 1 to {MAX_NODES} nodes")
        nodes = []
        names: set[str] = set()
        for i, entry in enumerate(raw):
            if not isinstance(entry, dict) or not isinstance(entry.get("op"), str):
                raise ValueError(f"graph node {i} must be an object with a string 'op'")
            op = entry["op"]
            if op not in SCHEMA:
                raise ValueError(f"graph node {i}: unknown op {op!r}")
            ins = entry.get("in")
            if not isinstance(ins, list):
                raise ValueError(f"graph node {i}: 'in' must be a list of node indices")
            attrs = {k: v for k, v in entry.items() if k not in ("op", "in")}
            own = {
                k: tensors[f"graph.{i}.{k}"] for k in SCHEMA[op][2] if f"graph.{i}.{k}" in tensors
            }
            names |= {f"graph.{i}.{k}" for k in own}
            nodes.append(Node(op, ins, attrs, own))
        extra = sorted(k for k in tensors if k.startswith("graph.") and k not in names)
        if extra:
            raise ValueError(f"tensors {extra[:5]} belong to no graph node")
        return cls(nodes, dim)

    def engine_nodes(self) -> list[tuple[Any, ...]]:
        """The nodes as ``_core.GraphNet`` takes them."""
        out = []
        for n in self._nodes:
            a = n.tensors.get("weight", n.tensors.get("value"))
            out.append(
                (
                    "const" if n.op == "const" else n.op,
                    list(n.inputs),
                    n.attrs.get("name", "identity"),
                    float(n.attrs.get("exponent", n.attrs.get("eps", n.attrs.get("value", 0.0)))),
                    int(n.attrs.get("start", 0)),
                    int(n.attrs.get("stop", 0)),
                    a,
                    n.tensors.get("bias"),
                )
            )
        return out
