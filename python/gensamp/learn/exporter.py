"""Export a trained torch network to :class:`~gensamp.Weights` for the C++ engine."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch.nn as nn

from .. import activations as _acts
from ..weights import Weights


def _activation_name(mod: nn.Module) -> str:
    """The engine's name for a torch activation module whose parameters are the ones the
    engine implements (:data:`gensamp.activations.SPEC`), else TypeError."""
    for name, (cls_name, params) in _acts.SPEC.items():
        if name == "identity" or type(mod).__name__ != cls_name:
            continue
        if all(getattr(mod, k, None) == v for k, v in params.items()):
            return name
    candidates = [(n, p) for n, (c, p) in _acts.SPEC.items() if c == type(mod).__name__]
    if candidates:
        fixed = " or ".join(", ".join(f"{k}={v!r}" for k, v in p.items()) for _, p in candidates)
        raise TypeError(
            f"{type(mod).__name__} is supported only with {fixed}: the engine "
            "implements torch's default parameters"
        )
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


def export(
    model: Any,
    *,
    sigma_input: str | None = None,
    divide_by_sigma: bool | None = None,
    shift: Any = None,
    scale: Any = None,
    role: str | None = None,
    sampler: Mapping[str, Any] | None = None,
    info: Mapping[str, Any] | None = None,
) -> Weights:
    """Build :class:`Weights` from a torch ``nn.Sequential`` or a gensamp model.

    A ``nn.Sequential`` (nested ones are flattened) must alternate ``nn.Linear`` and supported
    activation modules and end with a Linear layer; anything else raises TypeError. With
    ``sigma_input`` set, the first Linear layer takes d + 1 inputs, the last being sigma or
    log sigma. gensamp's own model classes (``gensamp.models``) carry these settings and
    export via their ``to_weights()``; keyword arguments given here override them.
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
    if isinstance(model, nn.Linear):
        model = nn.Sequential(model)
    if not isinstance(model, nn.Sequential):
        raise TypeError(
            f"export needs a torch nn.Sequential or a gensamp model, got {type(model).__name__}"
        )
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
