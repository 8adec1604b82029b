"""Sampler arguments shared by the engine samplers and the numpy reference: which model a
``weights`` argument names, the default chain count, and the stored sampler defaults."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .mixture import GaussianMixture
from .weights import Weights, load

DEFAULT_N = 1000


def as_model(weights: Any) -> Weights | GaussianMixture:
    """The model a sampler's ``weights`` argument names: Weights, a GaussianMixture, or a path
    to a weights file (loaded)."""
    if isinstance(weights, (Weights, GaussianMixture)):
        return weights
    if isinstance(weights, (str, os.PathLike)):
        return load(weights)
    hint = ""
    if hasattr(weights, "parameters"):
        hint = " (a torch module: export it first with gensamp.export(model))"
    raise TypeError(
        f"weights must be gensamp.Weights, a path to a weights file or a GaussianMixture, "
        f"got {type(weights).__name__}{hint}"
    )


def with_defaults(
    stored: Mapping[str, Any], given: dict[str, Any], kind: str, example: str
) -> list[Any]:
    """The given values, with those left as None taken from the model's stored sampler
    defaults; ValueError naming every one that is neither given nor stored."""
    missing = [k for k, v in given.items() if v is None and k not in stored]
    if missing:
        raise ValueError(
            f"{', '.join(missing)} not given and the model stores no {kind}default "
            f"for it; pass e.g. {example}"
        )
    return [stored[k] if v is None else v for k, v in given.items()]
