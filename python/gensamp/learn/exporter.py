"""Export a trained torch network to :class:`~gensamp.Weights` for the C++ engine."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch.nn as nn

from .. import activations as _acts
from ..graph import Graph
from ..weights import Weights
from . import tracing


def _activation_name(mod: nn.Module) -> str:
    """The engine's name for an activation module of a Sequential, else TypeError."""
    name = tracing.activation_name(mod)
    if name is not None:
        return name
    supported = sorted({c for n, (c, _) in _acts.SPEC.items() if n != "identity"})
    raise TypeError(
        f"cannot export layer {type(mod).__name__}: supported are Linear, "
        f"{', '.join(supported)}, and the no-ops Identity/Dropout"
    )


def _flatten(seq: Any) -> list[Any]:
    out: list[Any] = []
    for m in seq:
        if isinstance(m, nn.Sequential):
            out.extend(_flatten(m))
        elif isinstance(m, (nn.Identity, nn.Dropout)):
            continue  # exact no-ops at inference
        else:
            out.append(m)
    return out


def _plain_mlp(graph: Graph) -> tuple[list[tuple[Any, Any]], list[str]] | None:
    """The layers and activations of a graph that is a plain chain x -> Linear -> act -> ...
    -> Linear without sigma (a Sequential wrapped in a module): the format-1 MLP, which the
    engine runs on its MLP path and every gensamp release reads."""
    nodes = graph.nodes
    if graph.uses_sigma or nodes[0].op != "x":
        return None
    layers: list[tuple[Any, Any]] = []
    acts: list[str] = []
    expect_linear = True
    for i, node in enumerate(nodes[1:], start=1):
        if node.inputs != (i - 1,):
            return None
        if expect_linear and node.op == "linear":
            layers.append((node.tensors["weight"], node.tensors["bias"]))
        elif not expect_linear and node.op == "act":
            acts.append(node.attrs["name"])
        elif not expect_linear and node.op == "linear":
            acts.append("identity")
            layers.append((node.tensors["weight"], node.tensors["bias"]))
            continue
        else:
            return None
        expect_linear = not expect_linear
    return (layers, acts) if layers and nodes[-1].op == "linear" else None


def export(
    model: Any,
    *,
    output: str = "score",
    dim: int | None = None,
    sigma_shape: str | None = None,
    sigma_input: str | None = None,
    divide_by_sigma: bool | None = None,
    shift: Any = None,
    scale: Any = None,
    role: str | None = None,
    sampler: Mapping[str, Any] | None = None,
    info: Mapping[str, Any] | None = None,
) -> Weights:
    """Build :class:`Weights` from a torch network: any ``nn.Module`` whose ``forward(x)``
    (a score) or ``forward(x, sigma)`` (a noise-conditional score; sigma of shape [n] or
    [n, 1]) is built from operations the engine has.

    * A custom module is captured with torch.fx (:mod:`gensamp.learn.tracing`): Linear,
      the activations, + - * / and powers, sin/cos/exp/log/sqrt, concatenation, indexing and
      reshapes, LayerNorm, eval-mode BatchNorm; residual blocks, sinusoidal or Gaussian-Fourier
      embeddings of sigma or log sigma and EDM preconditioning follow from those. It is saved
      as a format-2 graph, unless it is a plain Linear/activation chain (a wrapped
      Sequential), which becomes a format-1 MLP. ``output`` says what forward returns:
      ``"score"``, ``"denoiser"`` (EDM's D(x, sigma)) or ``"noise"`` (eps(x, sigma)).
      ``dim`` and ``sigma_shape`` ("n" or "n1") are found by trial when omitted. What cannot
      be mapped raises :class:`~gensamp.learn.tracing.ExportError` (a TypeError) naming the
      node, its op, the source line and a hint; the captured graph is checked against the
      module before it is returned.
    * A ``nn.Sequential`` (nested ones are flattened) must alternate ``nn.Linear`` and
      supported activation modules and end with a Linear layer. With ``sigma_input`` set,
      the first Linear layer takes d + 1 inputs, the last being sigma or log sigma.
    * gensamp's own model classes carry these settings and export via their
      ``to_weights()``; keyword arguments given here override them.

    ``shift``/``scale``: the data normalisation u = (x - shift) / scale the network works
    in; ``sampler``: stored sampler defaults (sigmas in model coordinates).
    """
    overrides = {
        k: v
        for k, v in dict(
            sigma_input=sigma_input,
            divide_by_sigma=divide_by_sigma,
            shift=shift,
            scale=scale,
            role=role,
            sampler=sampler,
            info=info,
        ).items()
        if v is not None
    }
    if hasattr(model, "to_weights") and callable(model.to_weights):
        return model.to_weights(**overrides)
    tracing._refuse_kind(model)
    if isinstance(model, nn.Linear):
        model = nn.Sequential(model)
    if not isinstance(model, nn.Sequential):
        if sigma_input is not None or divide_by_sigma is not None:
            raise TypeError(
                "sigma_input/divide_by_sigma describe a Sequential's inputs; a module's "
                "forward(x, sigma) says itself how sigma enters"
            )
        check = None if sampler is None else sampler.get("sigmas")
        graph = tracing.capture(
            model, output=output, dim=dim, sigma_shape=sigma_shape, check_sigmas=check
        )
        plain = _plain_mlp(graph)
        common = dict(shift=shift, scale=scale, role=role, sampler=sampler, info=info)
        if plain is not None:
            return Weights(plain[0], plain[1], **common)
        return Weights(graph=graph, **common)
    mods = _flatten(model)
    layers: list[tuple[np.ndarray, np.ndarray]] = []
    acts: list[str] = []
    pending: str | None = None
    for m in mods:
        if isinstance(m, nn.Linear):
            if layers:
                acts.append(pending or "identity")
            pending = None
            W = m.weight.detach().cpu().to(dtype=m.weight.dtype).float().numpy()
            b = (
                m.bias.detach().cpu().float().numpy()
                if m.bias is not None
                else np.zeros(W.shape[0], np.float32)
            )
            layers.append((W, b))
        else:
            name = _activation_name(m)
            if not layers:
                raise TypeError(
                    f"{type(m).__name__} before the first Linear layer cannot be exported"
                )
            if pending is not None:
                raise TypeError("two activations in a row cannot be exported")
            pending = name
    if not layers:
        raise TypeError("the model has no Linear layer")
    if pending is not None:
        raise TypeError(
            "an activation after the last Linear layer is not supported: the output must be linear"
        )
    return Weights(
        layers,
        acts,
        sigma_input=overrides.get("sigma_input", "none"),
        divide_by_sigma=overrides.get("divide_by_sigma", False),
        shift=shift,
        scale=scale,
        role=role,
        sampler=sampler,
        info=info,
    )
