"""Exported network weights (:class:`Weights`) and their file format.

File layout (the one place it is documented)
--------------------------------------------
A gensamp weights file is a `safetensors <https://github.com/huggingface/safetensors>`_ file:
an 8-byte little-endian header length, a JSON header, then raw little-endian tensor bytes.
Loading never executes code.

Tensors (all ``F32``, C order):

=========================  =============  ==============================================
name                       shape          meaning
=========================  =============  ==============================================
``layers.{i}.weight``      [out_i, in_i]  Linear layer i, torch ``nn.Linear`` layout
``layers.{i}.bias``        [out_i]        its bias
``norm.shift``             [d]            optional; data x maps to model space
                                          u = (x - shift) / scale
``norm.scale``             [d]            optional, > 0; present iff ``norm.shift`` is
=========================  =============  ==============================================

Header metadata (string to string):

===================  ==========================================================================
key                  value
===================  ==========================================================================
``format``           ``gensamp.weights``
``format_version``   ``1`` (integer as text); other versions are refused
``n_layers``         number of Linear layers L (integer as text)
``activations``      JSON list of L-1 names from :data:`gensamp.activations.NAMES`, one per
                     hidden layer
``sigma_input``      ``none``, ``sigma`` or ``log_sigma``: whether sigma (or log sigma) is the
                     last input column of layer 0 (then in_0 = d + 1)
``divide_by_sigma``  ``true`` or ``false``: network output divided by sigma (NCSNv2 style)
``role``             ``score`` (output d), ``ncsn`` (noise-conditional score, output d) or
                     ``vae_decoder`` (input: latent z; output 2d = [mean | log-variance] of a
                     Gaussian; other likelihoods: format version 2 below)
``sampler``          JSON object, sampler defaults: ``sigmas`` (list, decreasing), ``eps``, ``T``;
                     ``method`` (string) and ``steps`` (integer): gensamp.sample's default
``info``             JSON object, free-form provenance (training settings, losses, ...)
===================  ==========================================================================

Format version 2: a graph
~~~~~~~~~~~~~~~~~~~~~~~~~
A network that is not a plain MLP (residual blocks, embeddings of sigma, preconditioning,
layer norms; whatever :func:`gensamp.export` captured from a torch module) is stored as a
graph, :class:`gensamp.graph.Graph` (its module docstring defines the ops). The header and
the ``norm.*`` tensors are as in version 1, except:

- ``format_version`` is ``2``; ``n_layers``, ``activations``, ``sigma_input`` and
  ``divide_by_sigma`` are absent (the graph says how sigma enters);
- ``dim``: the data dimension d (integer as text);
- ``graph``: JSON list of nodes in topological order, ``{"op": ..., "in": [indices of earlier
  nodes], <attributes>}``; the last node is the output, the score in model coordinates;
- tensors ``graph.{i}.weight`` / ``graph.{i}.bias`` / ``graph.{i}.value`` (F32) belong to
  node i as the op table says; no other ``graph.*`` or ``layers.*`` tensors may appear;
- ``role`` is ``score`` or ``ncsn`` (a VAE decoder is never a graph).

Format version 2: a VAE decoder beyond version 1
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
A VAE decoder (role ``vae_decoder``) is a plain MLP whose input is the latent z [k]. With a
Gaussian likelihood and the prior N(0, I) it is a version-1 file. A decoder with another
likelihood or a Gaussian-mixture prior is version 2: the version-1 keys and tensors (``role``
``vae_decoder``, ``sigma_input`` ``none``, ``divide_by_sigma`` ``false``) plus

- ``likelihood``: what the output means, p(x | z), with lambda = sigmoid(l):

  ========================  ==================================================================
  ``gaussian``              output 2d = [mean | log-variance] of u (as in version 1)
  ``bernoulli``             output d logits l: prod_i lambda_i^x_i (1 - lambda_i)^(1 - x_i),
                            x_i in {0, 1}
  ``continuous_bernoulli``  output d logits l: prod_i C(lambda_i) lambda_i^x_i
                            (1 - lambda_i)^(1 - x_i), x_i in [0, 1], with C(lambda) =
                            2 atanh(1 - 2 lambda) / (1 - 2 lambda) (2 at lambda = 1/2; Loaiza-
                            Ganem & Cunningham 2019)
  ========================  ==================================================================

  The two Bernoulli likelihoods model data in [0, 1] (pixel intensities) as they are: such a
  file has no ``norm.*`` tensors. A Gaussian decoder whose variance is one shared number
  (``train_vae(variance="shared")``) needs nothing new: the log-variance rows of its last
  layer are zero and their biases hold the value.
- for a mixture prior p(z) = sum_c w_c N(mu_c, L_c L_c^T), all three of (else none of, for
  N(0, I))

  =================  ===========  ==========================================================
  ``prior.weights``  [K]          w_c > 0, summing to 1 within 1e-5
  ``prior.means``    [K, k]       mu_c
  ``prior.chol``     [K, k, k]    L_c: lower-triangular Cholesky factors of the covariances,
                                  diagonal > 0, upper triangle exactly 0
  =================  ===========  ==========================================================

A version-2 file holds either a graph (keys ``dim`` and ``graph``) or such a decoder (key
``likelihood``), never both. A version-2 decoder that version 1 could hold (Gaussian, no
prior) is refused: every model has one file form, and what earlier releases wrote (and read)
stays version 1 with exactly the keys and tensors it always had.

Plain MLPs other than these decoders are still written as version 1, which every gensamp
release reads; this release reads both versions and refuses any other. The loader checks a
graph as strictly as the layer list: every op, attribute, tensor shape and edge (inputs are
earlier nodes, so there are no cycles), at most 10,000 nodes of width at most 65,536, every
node feeding the output.

Units: sigmas, eps and the network itself live in model coordinates u (identity when no
``norm.*`` tensors are present); samplers map x0 into u and their results back to data space.
Activations follow torch defaults exactly: ``leaky_relu`` has slope 0.01, ``elu`` alpha 1,
``softplus`` beta 1 / threshold 20, ``gelu`` is the exact erf form and ``gelu_tanh`` torch's
``approximate="tanh"`` form.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import json
import os
import stat
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from safetensors.numpy import load as load_tensors
from safetensors.numpy import save as save_tensors

from . import _core
from . import activations as _acts
from ._validate import as_bool, as_choice, as_int, as_pos_float, as_rows, as_sigmas
from .graph import Graph

FORMAT_NAME = "gensamp.weights"
FORMAT_VERSION = 2  # the newest this release writes; it reads 1 and 2
ACTIVATIONS = _acts.NAMES
SIGMA_INPUTS = ("none", "sigma", "log_sigma")
ROLES = ("score", "ncsn", "vae_decoder")
LIKELIHOODS = ("gaussian", "bernoulli", "continuous_bernoulli")
_MAX_FILE_BYTES = 2 << 30  # a weights file this package writes is far smaller

PathLike = str | os.PathLike


def _frozen(a: Any, what: str, ndim: int) -> np.ndarray:
    try:
        arr = np.array(a, dtype=np.float32, copy=True, order="C")
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what} must be a real float array: {exc}") from None
    if arr.ndim != ndim:
        raise ValueError(f"{what} must have {ndim} dimension(s), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} contains NaN or Inf")
    # Backed by an immutable bytes object: unlike setflags(write=False), nobody can turn
    # writing back on, so a Weights never changes after validation.
    return np.frombuffer(arr.tobytes(), dtype=np.float32).reshape(arr.shape)


def _check_sampler(sampler: Mapping[str, Any] | None) -> dict[str, Any]:
    if sampler is None:
        return {}
    if not isinstance(sampler, Mapping):
        raise TypeError("sampler defaults must be a dict with keys sigmas, eps, T, method, steps")
    unknown = set(sampler) - {"sigmas", "eps", "T", "method", "steps"}
    if unknown:
        raise ValueError(
            f"unknown sampler default(s) {sorted(unknown)}; allowed: sigmas, eps, T, method, steps"
        )
    out: dict[str, Any] = {}
    if sampler.get("sigmas") is not None:
        out["sigmas"] = as_sigmas(sampler["sigmas"], "stored sigmas", f32=True)
    if sampler.get("eps") is not None:
        out["eps"] = as_pos_float(sampler["eps"], "stored eps", f32=True)
    if sampler.get("T") is not None:
        out["T"] = as_int(sampler["T"], "stored T", 1)
    # gensamp.sample's method and budget; the name is checked against gensamp.methods.METHODS
    # when it is used (this module sits below the samplers and does not know them).
    method = sampler.get("method")
    if method is not None:
        if not (isinstance(method, str) and method.isidentifier()):
            raise ValueError(f"stored method must be a sampler name, got {method!r}")
        out["method"] = method
    if sampler.get("steps") is not None:
        out["steps"] = as_int(sampler["steps"], "stored steps", 1)
    return out


def _check_layers(layers: Sequence[tuple[Any, Any]]) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """Read-only float32 (W, b) pairs whose shapes chain."""
    if isinstance(layers, (str, bytes)) or not isinstance(layers, Sequence) or not layers:
        raise TypeError("layers must be a non-empty list of (W, b) pairs")
    frozen: list[tuple[np.ndarray, np.ndarray]] = []
    for i, pair in enumerate(layers):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise TypeError(f"layers[{i}] must be a (W, b) pair")
        W = _frozen(pair[0], f"layers[{i}] W", 2)
        b = _frozen(pair[1], f"layers[{i}] b", 1)
        if W.shape[0] == 0 or W.shape[1] == 0:
            raise ValueError(f"layers[{i}] W has a zero dimension: {W.shape}")
        if b.shape[0] != W.shape[0]:
            raise ValueError(f"layers[{i}]: b has {b.shape[0]} entries but W has {W.shape[0]} rows")
        if i > 0 and W.shape[1] != frozen[-1][0].shape[0]:
            raise ValueError(
                f"layers[{i}] takes {W.shape[1]} inputs but layers[{i - 1}] gives "
                f"{frozen[-1][0].shape[0]} outputs"
            )
        frozen.append((W, b))
    return tuple(frozen)


def _check_activations(activations: Sequence[str], n_layers: int) -> tuple[str, ...]:
    acts = list(activations) if not isinstance(activations, str) else [activations]
    if len(acts) != n_layers - 1:
        raise ValueError(
            f"need one activation per hidden layer: {n_layers} layers take "
            f"{n_layers - 1} activations, got {len(acts)}"
        )
    return tuple(_acts.check(a) for a in acts)


def _data_dim(
    layers: tuple[tuple[np.ndarray, np.ndarray], ...],
    sigma_input: str,
    divide: bool,
    role: str,
    likelihood: str | None = None,
) -> int:
    """The data dimension d the network's shapes imply for its role, or ValueError."""
    in0 = layers[0][0].shape[1]
    out = layers[-1][0].shape[0]
    extra = 0 if sigma_input == "none" else 1
    if in0 - extra < 1:
        raise ValueError("the first layer needs at least one data input besides sigma")
    if role == "vae_decoder":
        if sigma_input != "none" or divide:
            raise ValueError("a VAE decoder takes no noise level")
        if likelihood != "gaussian":
            return int(out)  # one logit per value
        if out % 2:
            raise ValueError(
                f"a Gaussian VAE decoder outputs [mean | log-variance] (2d values), got {out}"
            )
        return int(out // 2)
    d = int(in0 - extra)
    if out != d:
        raise ValueError(f"a score network maps d={d} inputs to d outputs, got {out} outputs")
    return d


def check_prior(prior: Any, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """A Gaussian-mixture latent prior as read-only float32 (weights [K], means [K, k],
    chol [K, k, k]), each part checked as the file format documents; None stays None."""
    if prior is None:
        return None
    if isinstance(prior, (str, bytes)) or not isinstance(prior, Sequence) or len(prior) != 3:
        raise TypeError(
            "prior must be None or a (weights [K], means [K, k], chol [K, k, k]) triple"
        )
    w = _frozen(prior[0], "prior weights", 1)
    mu = _frozen(prior[1], "prior means", 2)
    L = _frozen(prior[2], "prior chol", 3)
    K = w.shape[0]
    if K < 1:
        raise ValueError("prior weights: the mixture needs at least one component")
    if mu.shape != (K, k):
        raise ValueError(
            f"prior means must have shape [K, latent_dim] = [{K}, {k}], got {list(mu.shape)}"
        )
    if L.shape != (K, k, k):
        raise ValueError(
            f"prior chol must have shape [K, latent_dim, latent_dim] = [{K}, {k}, {k}], "
            f"got {list(L.shape)}"
        )
    if not np.all(w > 0):
        raise ValueError("prior weights must all be > 0")
    total = float(np.sum(w, dtype=np.float64))
    if abs(total - 1.0) > 1e-5:
        raise ValueError(f"prior weights must sum to 1 (within 1e-5), got {total!r}")
    if np.any(np.triu(L, 1) != 0):
        raise ValueError(
            "prior chol must be lower triangular (Cholesky factors): its upper triangle is not 0"
        )
    if not np.all(np.diagonal(L, axis1=1, axis2=2) > 0):
        raise ValueError("prior chol must have a positive diagonal (Cholesky factors)")
    return w, mu, L


def _check_norm(shift: Any, scale: Any, d: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    if (shift is None) != (scale is None):
        raise ValueError("give both shift and scale, or neither")
    if shift is None:
        return None, None
    sh = _frozen(np.reshape(np.asarray(shift, dtype=np.float64), -1), "shift", 1)
    sc = _frozen(np.reshape(np.asarray(scale, dtype=np.float64), -1), "scale", 1)
    for name, v in (("shift", sh), ("scale", sc)):
        if v.shape != (d,):
            raise ValueError(f"{name} must have length d={d}, got {v.shape[0]}")
    if not np.all(sc > 0):
        raise ValueError("scale must be > 0 everywhere")
    return sh, sc


class Weights:
    """An immutable, validated feed-forward network exported for the C++ engine.

    Parameters
    ----------
    layers : sequence of (W, b)
        W float32 [out, in] (torch ``nn.Linear.weight`` layout), b float32 [out].
    activations : sequence of str
        One name from :data:`ACTIVATIONS` per hidden layer (``len(layers) - 1``).
    sigma_input : {"none", "sigma", "log_sigma"}
        How the noise level enters: as an extra last input column of layer 0.
    divide_by_sigma : bool
        Divide the network output by sigma (NCSNv2's s(x, sigma) = f(x) / sigma).
    shift, scale : array [d], optional
        Data normalisation u = (x - shift) / scale; the network works in u.
    role : {"score", "ncsn", "vae_decoder"}, optional
        Default: "ncsn" when noise-conditional, else "score".
    sampler : dict, optional
        Sampler defaults (``sigmas``, ``eps``, ``T``) used when a sampler call omits them.
    info : dict, optional
        JSON-serialisable provenance stored in the file.
    likelihood : {"gaussian", "bernoulli", "continuous_bernoulli"}, optional
        A VAE decoder's p(x | z) (default "gaussian": output [mean | log-variance]; the others
        output one logit per value and take no shift/scale). Only for role "vae_decoder".
    prior : (weights [K], means [K, k], chol [K, k, k]), optional
        A VAE decoder's latent prior as a Gaussian mixture, chol the lower-triangular Cholesky
        factors of the covariances; None (default) is N(0, I). Only for role "vae_decoder".
    """

    __slots__ = (
        "_graph",
        "_layers",
        "_acts",
        "_sigma_input",
        "_divide",
        "_shift",
        "_scale",
        "_role",
        "_sampler",
        "_info",
        "_likelihood",
        "_prior",
        "_engine_cache",
    )

    def __init__(
        self,
        layers: Sequence[tuple[Any, Any]] | None = None,
        activations: Sequence[str] | None = None,
        *,
        graph: Graph | None = None,
        sigma_input: str = "none",
        divide_by_sigma: bool = False,
        shift: Any = None,
        scale: Any = None,
        role: str | None = None,
        sampler: Mapping[str, Any] | None = None,
        info: Mapping[str, Any] | None = None,
        likelihood: str | None = None,
        prior: Any = None,
    ) -> None:
        self._graph = graph
        if graph is not None:
            if layers is not None or activations is not None:
                raise TypeError("give either layers and activations, or a graph")
            if not isinstance(graph, Graph):
                raise TypeError(f"graph must be a gensamp.graph.Graph, got {type(graph).__name__}")
            if sigma_input != "none" or divide_by_sigma:
                raise ValueError(
                    "a graph says itself how sigma enters: no sigma_input/divide_by_sigma"
                )
            layers, activations = [], []
            role = role or ("ncsn" if graph.uses_sigma else "score")
            if role not in ("score", "ncsn"):
                raise ValueError(f"a graph network's role is 'score' or 'ncsn', got {role!r}")
            d = graph.dim
            frozen: tuple[tuple[np.ndarray, np.ndarray], ...] = ()
            acts: tuple[str, ...] = ()
        elif layers is None or activations is None:
            raise TypeError("Weights needs layers and activations, or graph=")
        else:
            frozen = _check_layers(layers)
            acts = _check_activations(activations, len(frozen))
        if sigma_input not in SIGMA_INPUTS:
            raise ValueError(f"sigma_input must be one of {SIGMA_INPUTS}, got {sigma_input!r}")
        divide_by_sigma = as_bool(divide_by_sigma, "divide_by_sigma")
        if role is None:
            role = "ncsn" if sigma_input != "none" else "score"
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {role!r}")
        if role == "vae_decoder":
            likelihood = as_choice(
                "gaussian" if likelihood is None else likelihood, "likelihood", LIKELIHOODS
            )
        elif likelihood is not None or prior is not None:
            raise ValueError(
                f"likelihood and prior belong to a VAE decoder (role 'vae_decoder'), not to "
                f"role {role!r}"
            )
        if graph is None:
            d = _data_dim(frozen, sigma_input, divide_by_sigma, role, likelihood)
        if likelihood not in (None, "gaussian") and (shift is not None or scale is not None):
            raise ValueError(
                f"a {likelihood} decoder models values in [0, 1] as they are: it takes no "
                "shift/scale"
            )
        self._likelihood = likelihood
        self._prior = check_prior(prior, frozen[0][0].shape[1]) if role == "vae_decoder" else None
        self._shift, self._scale = _check_norm(shift, scale, d)
        self._layers = frozen
        self._acts = acts
        self._sigma_input = sigma_input
        self._divide = divide_by_sigma
        self._role = role
        self._sampler = _check_sampler(sampler)
        try:
            self._info = json.loads(json.dumps(dict(info or {})))
        except (TypeError, ValueError) as exc:
            raise TypeError(f"info must be JSON-serialisable: {exc}") from None
        self._engine_cache: _core.Mlp | _core.GraphNet | None = None

    # ---- read-only views -----------------------------------------------------------------
    graph = property(
        lambda self: self._graph, doc="the network's Graph (format 2), or None for a plain MLP"
    )

    @property
    def layers(self) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
        """tuple of (W, b) read-only float32 arrays (a plain MLP only)."""
        self._mlp_only("layers")
        return self._layers

    @property
    def activations(self) -> tuple[str, ...]:
        self._mlp_only("activations")
        return self._acts

    def _mlp_only(self, what: str) -> None:
        if self._graph is not None:
            raise AttributeError(f"a graph network has no {what}; see Weights.graph")

    sigma_input = property(lambda self: self._sigma_input)
    divide_by_sigma = property(lambda self: self._divide)
    shift = property(lambda self: self._shift)
    scale = property(lambda self: self._scale)
    role = property(lambda self: self._role)
    sampler = property(
        lambda self: copy.deepcopy(self._sampler), doc="stored sampler defaults (a copy)"
    )
    info = property(lambda self: json.loads(json.dumps(self._info)))
    likelihood = property(
        lambda self: self._likelihood,
        doc="a VAE decoder's likelihood ('gaussian', 'bernoulli', 'continuous_bernoulli'); "
        "None for other roles",
    )
    prior = property(
        lambda self: self._prior,
        doc="a VAE decoder's Gaussian-mixture latent prior as read-only (weights [K], means "
        "[K, k], chol [K, k, k]); None for N(0, I) and for other roles",
    )

    @property
    def input_dim(self) -> int:
        if self._graph is not None:
            return self._graph.dim
        return int(self._layers[0][0].shape[1])

    @property
    def output_dim(self) -> int:
        if self._graph is not None:
            return self._graph.dim
        return int(self._layers[-1][0].shape[0])

    @property
    def dim(self) -> int:
        """Data dimension d."""
        if self._graph is not None:
            return self._graph.dim
        if self._role == "vae_decoder":
            return self.output_dim // 2 if self._likelihood == "gaussian" else self.output_dim
        return self.input_dim - (0 if self._sigma_input == "none" else 1)

    @property
    def latent_dim(self) -> int:
        if self._role != "vae_decoder":
            raise AttributeError("only a VAE decoder has a latent dimension")
        return self.input_dim

    @property
    def conditioned(self) -> bool:
        """True when the network reads the noise level."""
        if self._graph is not None:
            return self._graph.uses_sigma
        return self._sigma_input != "none"

    def __repr__(self) -> str:
        if self._graph is not None:
            return f"Weights(role={self._role!r}, graph={self._graph!r})"
        widths = [self.input_dim] + [W.shape[0] for W, _ in self._layers]
        vae = ""
        if self._role == "vae_decoder":
            K = 0 if self._prior is None else len(self._prior[0])
            vae = f", likelihood={self._likelihood!r}, prior=" + (
                f"'mixture of {K}'" if K else "'normal'"
            )
        return (
            f"Weights(role={self._role!r}, widths={widths}, activations={list(self._acts)}, "
            f"sigma_input={self._sigma_input!r}, divide_by_sigma={self._divide}{vae})"
        )

    def _engine_bytes(self) -> int:
        """What building :meth:`_engine` allocates: the weights and the packed copies of them
        the engine's kernels read (many times the weights for a narrow layer)."""
        norm = 0 if self._shift is None else len(self._shift)
        if self._graph is not None:
            return _core.graph_bytes(self._graph.dim, self._graph.engine_nodes(), norm)
        return _core.mlp_bytes([W.shape for W, _ in self._layers], self._sigma_input, norm)

    def _engine(self) -> Any:
        if self._engine_cache is None and self._graph is not None:
            self._engine_cache = _core.GraphNet(
                self._graph.dim, self._graph.engine_nodes(), self._shift, self._scale
            )
        if self._engine_cache is None:
            self._engine_cache = _core.Mlp(
                [(W, b) for W, b in self._layers],
                list(self._acts),
                self._sigma_input,
                self._divide,
                self._shift,
                self._scale,
            )
        return self._engine_cache

    def forward(self, inputs: Any) -> np.ndarray:
        """Raw network outputs (C++ engine) for raw inputs [n, input_dim] (the sigma column
        included)."""
        if self._graph is not None:
            raise TypeError("a graph network takes x and sigma: use Weights.score(x, sigma)")
        return self._engine().forward(as_rows(inputs, self.input_dim, "inputs"))

    def score(self, x: Any, sigma: float | None = None) -> np.ndarray:
        """Score in data space, d log p(x) / dx = s_u((x - shift)/scale) / scale (C++ engine)."""
        if self._role == "vae_decoder":
            raise TypeError("a VAE decoder has no score; use gensamp.vae_sample")
        x = as_rows(x, self.dim, "x")
        if self.conditioned or self._divide:
            if sigma is None:
                raise ValueError("this network is noise-conditional: pass sigma > 0")
            sigma = as_pos_float(sigma, "sigma", f32=True)
        else:
            sigma = (
                0.0 if sigma is None else as_pos_float(sigma, "sigma", allow_zero=True, f32=True)
            )
        u = x if self._shift is None else (x - self._shift) / self._scale
        s = _core.score(self._engine(), np.ascontiguousarray(u, dtype=np.float32), sigma)
        return s if self._scale is None else s / self._scale

    # ---- files -------------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """The file's bytes (layout in this module's docstring); :func:`from_bytes` reads them."""
        tensors: dict[str, np.ndarray] = {}
        if self._graph is not None:
            tensors.update(self._graph.tensors())
        for i, (W, b) in enumerate(self._layers):
            tensors[f"layers.{i}.weight"] = np.ascontiguousarray(W)
            tensors[f"layers.{i}.bias"] = np.ascontiguousarray(b)
        if self._shift is not None and self._scale is not None:
            tensors["norm.shift"] = np.ascontiguousarray(self._shift)
            tensors["norm.scale"] = np.ascontiguousarray(self._scale)
        if self._prior is not None:
            for name, a in zip(("weights", "means", "chol"), self._prior):
                tensors[f"prior.{name}"] = np.ascontiguousarray(a)
        meta = {"format": FORMAT_NAME}
        if self._graph is not None:
            meta |= {
                "format_version": "2",
                "dim": str(self._graph.dim),
                "graph": self._graph.to_json(),
            }
        else:
            # What version 1 can hold stays version 1: older releases keep reading it.
            vae2 = self._likelihood not in (None, "gaussian") or self._prior is not None
            meta |= {
                "format_version": "2" if vae2 else "1",
                "n_layers": str(len(self._layers)),
                "activations": json.dumps(list(self._acts)),
                "sigma_input": self._sigma_input,
                "divide_by_sigma": "true" if self._divide else "false",
            }
            if vae2:
                meta["likelihood"] = str(self._likelihood)
        meta |= {
            "role": self._role,
            "sampler": json.dumps(self._sampler),
            "info": json.dumps(self._info),
        }
        return bytes(save_tensors(tensors, metadata=meta))

    def save(self, path: PathLike) -> None:
        """Write the weights file atomically (a temporary file in the same folder, then a
        rename): an interrupted save never leaves a partial file. OSError names the path."""
        _atomic_write(path, self.to_bytes())

    def __reduce__(self) -> tuple[Any, tuple[bytes]]:
        # Pickling (spawn pools, deepcopy, distributed workers) goes through the file format:
        # unpickling parses and validates bytes, never rebuilds arbitrary objects.
        return (from_bytes, (self.to_bytes(),))


def _atomic_write(path: PathLike, data: bytes) -> None:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    target = os.fspath(path)
    if os.path.isdir(target):
        raise IsADirectoryError(errno.EISDIR, "is a directory; give a file name", target)
    folder = os.path.dirname(os.path.abspath(target))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".gensamp-", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot write weights file: {exc.strerror}", target) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise OSError(exc.errno, f"cannot write weights file: {exc.strerror}", target) from None
        raise


def _fail(path: PathLike, why: str) -> ValueError:
    return ValueError(f"{os.fspath(path)}: not a valid gensamp weights file: {why}")


def _plain_int(text: str) -> int | None:
    """A metadata integer in its one canonical spelling: ASCII digits (str.isdigit() alone
    also accepts '²' or '١'), no sign, no leading zeros ("01" is not 1)."""
    ok = text.isascii() and text.isdigit() and len(text) <= 18 and text == str(int(text))
    return int(text) if ok else None


_COMMON_KEYS = frozenset({"format", "format_version", "role", "sampler", "info"})
_META_KEYS = {
    1: _COMMON_KEYS | {"n_layers", "activations", "sigma_input", "divide_by_sigma"},
    2: _COMMON_KEYS | {"dim", "graph"},
}
# Version 2 without a graph: a VAE decoder that version 1 cannot hold.
_VAE_KEYS = _META_KEYS[1] | {"likelihood"}
_PRIOR_TENSORS = frozenset({"prior.weights", "prior.means", "prior.chol"})


def _read_once(path: PathLike) -> bytes:
    """The file's bytes, read once from one descriptor: opened non-blocking (a FIFO swapped in
    cannot block), checked to be a regular file on that descriptor (no stat-then-open race),
    read up to its size (a file that shrinks or grows meanwhile is caught, never mapped, so a
    truncation cannot fault the process)."""
    where = os.fspath(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise ValueError(f"{where}: cannot read weights file: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        # Only regular files: a FIFO would block forever, a device could be endless.
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{where}: cannot read weights file: not a regular file")
        if st.st_size > _MAX_FILE_BYTES:
            raise _fail(path, f"file is {st.st_size} bytes, larger than any gensamp weights file")
        chunks, left = [], st.st_size + 1  # one byte more reveals a file that grew
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 24))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    except OSError as exc:
        raise ValueError(f"{where}: cannot read weights file: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) != st.st_size:
        raise _fail(
            path,
            f"the file changed while it was read ({st.st_size} bytes at open, "
            f"{len(data)}{'+' if len(data) > st.st_size else ''} read)",
        )
    return data


def _check_header(path: PathLike, data: bytes) -> dict[str, str]:
    """Refuse what is not a plausibly-sized safetensors file; return its metadata."""
    size = len(data)
    head = data[:16]
    hlen = int.from_bytes(head[:8], "little") if len(head) >= 8 else -1
    # A safetensors file: 8-byte length, then a JSON header that starts with '{'. Test that
    # first: a valid header length can begin with the bytes b"\x80" or b"PK" too.
    looks_safetensors = hlen >= 2 and 8 + hlen <= size and head[8:9] == b"{"
    if not looks_safetensors and (head[:2] == b"PK" or head[:1] == b"\x80"):
        raise _fail(
            path,
            "this is a pickle/zip (torch.save) checkpoint; gensamp reads only "
            "safetensors files it can load without running code — export the model "
            "with gensamp.export(model).save(path)",
        )
    if size < 8:
        raise _fail(path, f"file is {size} bytes, too short for a safetensors header")
    if size > _MAX_FILE_BYTES:
        raise _fail(path, f"file is {size} bytes, larger than any gensamp weights file")
    if hlen < 2 or 8 + hlen > size:
        raise _fail(path, f"header length {hlen} does not fit in a {size}-byte file (truncated?)")
    if head[8:9] != b"{":
        raise _fail(path, "the header is not a JSON object (not a safetensors file)")
    try:
        header = json.loads(data[8 : 8 + hlen])
    except (ValueError, RecursionError) as exc:
        raise _fail(path, f"the header is not valid JSON: {type(exc).__name__}: {exc}") from None
    meta = header.get("__metadata__", {}) if isinstance(header, dict) else None
    if not isinstance(meta, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in meta.items()
    ):
        raise _fail(path, "the header's __metadata__ must map strings to strings")
    return meta


def _read(path: PathLike, data: bytes) -> dict[str, np.ndarray]:
    try:
        return dict(load_tensors(data))
    except Exception as exc:  # safetensors raises its own error types for malformed files
        raise _fail(path, f"{type(exc).__name__}: {_short(str(exc))}") from None


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


def _check_meta(path: PathLike, meta: Mapping[str, str]) -> tuple[int, int]:
    """Checks the format fields; returns the format version and the number of layers
    (version 1, and version 2 without a graph: a VAE decoder) or the data dimension (a
    version-2 graph)."""
    if meta.get("format") != FORMAT_NAME:
        raise _fail(path, f"metadata 'format' is {meta.get('format')!r}, expected {FORMAT_NAME!r}")
    ver = meta.get("format_version", "")
    version = _plain_int(ver)
    if version not in _META_KEYS:
        raise _fail(
            path,
            f"format_version {ver!r} is not supported (this gensamp reads "
            f"{' and '.join(map(str, _META_KEYS))})",
        )
    keys = _META_KEYS[version]
    vae2 = version == 2 and "graph" not in meta and "likelihood" in meta
    if vae2:
        keys = _VAE_KEYS
    missing = keys - set(meta)
    if missing:
        why = ""
        if vae2:
            why = " (a format-2 VAE decoder has the version-1 keys and likelihood)"
        elif version == 2:
            why = " (format 2 is a graph: dim, graph; or a VAE decoder: likelihood)"
        raise _fail(path, f"metadata lacks {sorted(missing)}{why}")
    extra = set(meta) - keys
    if extra:
        raise _fail(path, f"unexpected metadata keys {sorted(extra)}")
    if vae2:
        if meta["role"] != "vae_decoder":
            raise _fail(
                path,
                f"format 2 without a graph is a VAE decoder, got role {_short(repr(meta['role']))}",
            )
        if meta["likelihood"] not in LIKELIHOODS:
            raise _fail(
                path,
                f"likelihood is {_short(repr(meta['likelihood']))}, expected one of "
                f"{', '.join(LIKELIHOODS)}",
            )
    elif version == 2:
        dim = _plain_int(meta["dim"])
        if dim is None or not 1 <= dim <= 65536:
            raise _fail(path, f"dim {meta['dim']!r} is not an integer in 1..65536")
        if meta["role"] not in ("score", "ncsn"):
            raise _fail(path, f"a graph network's role is score or ncsn, got {meta['role']!r}")
        return version, dim
    nl = meta["n_layers"]
    nl_i = _plain_int(nl)
    if nl_i is None or not 1 <= nl_i <= 1000:
        raise _fail(path, f"n_layers {nl!r} is not an integer in 1..1000")
    if meta["divide_by_sigma"] not in ("true", "false"):
        raise _fail(path, f"divide_by_sigma is {meta['divide_by_sigma']!r}, expected true/false")
    return version, nl_i


def _check_tensors(
    path: PathLike, tensors: Mapping[str, np.ndarray], n_layers: int | None, prior: bool = False
) -> None:
    """Version 1 (n_layers given): exactly the layer tensors. A version-2 VAE decoder
    (``prior``): those and, if any, all three prior.* tensors. A version-2 graph: the graph.*
    tensors, whose names the graph itself checks, and no layers.*."""
    names = set(tensors)
    if n_layers is None:
        expected = {k for k in names if k.startswith("graph.")}
    else:
        expected = {f"layers.{i}.{p}" for i in range(n_layers) for p in ("weight", "bias")}
        if prior and names & _PRIOR_TENSORS:
            expected |= _PRIOR_TENSORS
    if "norm.shift" in names or "norm.scale" in names:
        expected |= {"norm.shift", "norm.scale"}
    if names != expected:
        odd = sorted(names ^ expected)
        shown = ", ".join(repr(k[:60]) for k in odd[:5]) + (
            f" and {len(odd) - 5} more" if len(odd) > 5 else ""
        )
        raise _fail(path, f"tensor names missing or unexpected: {shown}")
    for k in sorted(tensors):
        t = tensors[k]
        if t.dtype != np.float32:
            raise _fail(path, f"tensor {k} has dtype {t.dtype}, expected float32")
        if not np.all(np.isfinite(t)):
            raise _fail(path, f"tensor {k} contains NaN or Inf")


def _json_fields(
    path: PathLike, meta: Mapping[str, str]
) -> tuple[list[str], dict[str, Any], dict[str, Any]]:
    try:
        acts = json.loads(meta.get("activations", "[]"))
        sampler = json.loads(meta["sampler"])
        info = json.loads(meta["info"])
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, over-long ints, deep nesting
        raise _fail(path, f"metadata is not valid JSON: {type(exc).__name__}: {exc}") from None
    if not isinstance(acts, list) or not all(isinstance(a, str) for a in acts):
        raise _fail(path, "activations must be a JSON list of names")
    if not isinstance(sampler, dict) or not isinstance(info, dict):
        raise _fail(path, "sampler and info must be JSON objects")
    _check_sampler_types(path, sampler)
    return acts, sampler, info


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_sampler_types(path: PathLike, sampler: Mapping[str, Any]) -> None:
    """The stored defaults in their documented JSON types, before any conversion: sigmas a
    list of numbers, eps a number, T an integer (no strings, objects or 150.0)."""
    sig = sampler.get("sigmas")
    if sig is not None and not (isinstance(sig, list) and all(_is_number(v) for v in sig)):
        raise _fail(path, f"stored sigmas must be a JSON list of numbers, got {_short(repr(sig))}")
    eps = sampler.get("eps")
    if eps is not None and not _is_number(eps):
        raise _fail(path, f"stored eps must be a JSON number, got {_short(repr(eps))}")
    for key in ("T", "steps"):
        v = sampler.get(key)
        if v is not None and not (isinstance(v, int) and not isinstance(v, bool)):
            raise _fail(path, f"stored {key} must be a JSON integer, got {_short(repr(v))}")
    method = sampler.get("method")
    if method is not None and not isinstance(method, str):
        raise _fail(path, f"stored method must be a JSON string, got {_short(repr(method))}")


def load(path: PathLike) -> Weights:
    """Load and validate a weights file written by :meth:`Weights.save`.

    Only safetensors files are read (no pickle: loading never runs code). The file is read
    once into memory and parsed from there (nothing is memory-mapped, so a file changed
    underneath cannot crash the process). Every tensor name, dtype, shape, metadata field and
    value is checked; anything unexpected raises ValueError (a path of the wrong type raises
    TypeError).
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    return _parse(path, _read_once(path))


def from_bytes(data: bytes) -> Weights:
    """:class:`Weights` from the bytes of a weights file (as :meth:`Weights.to_bytes` gives),
    validated exactly as :func:`load` validates a file."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes, got {type(data).__name__}")
    return _parse("<bytes>", bytes(data))


def _parse(path: PathLike, data: bytes) -> Weights:
    meta = _check_header(path, data)
    version, count = _check_meta(path, meta)
    graph_file = version == 2 and "graph" in meta
    vae2 = version == 2 and not graph_file
    tensors = _read(path, data)
    _check_tensors(path, tensors, None if graph_file else count, prior=vae2)
    acts, sampler, info = _json_fields(path, meta)
    n_layers = count
    prior = None
    if vae2:
        if "prior.weights" in tensors:
            prior = tuple(tensors[f"prior.{k}"] for k in ("weights", "means", "chol"))
        elif meta["likelihood"] == "gaussian":
            raise _fail(
                path,
                "a Gaussian decoder with the N(0, I) prior is a format_version 1 file, not 2",
            )
    try:
        if graph_file:
            graph = Graph.from_json(
                meta["graph"], {k: v for k, v in tensors.items() if k.startswith("graph.")}, count
            )
            return Weights(
                graph=graph,
                shift=tensors.get("norm.shift"),
                scale=tensors.get("norm.scale"),
                role=meta["role"],
                sampler=sampler,
                info=info,
            )
        return Weights(
            [(tensors[f"layers.{i}.weight"], tensors[f"layers.{i}.bias"]) for i in range(n_layers)],
            acts,
            sigma_input=meta["sigma_input"],
            divide_by_sigma=meta["divide_by_sigma"] == "true",
            shift=tensors.get("norm.shift"),
            scale=tensors.get("norm.scale"),
            role=meta["role"],
            sampler=sampler,
            info=info,
            likelihood=meta["likelihood"] if vae2 else None,
            prior=prior,
        )
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        # OverflowError: e.g. a stored T of 1e400 (JSON Infinity); RecursionError: deep info.
        raise _fail(path, f"{type(exc).__name__}: {_short(str(exc))}") from None
