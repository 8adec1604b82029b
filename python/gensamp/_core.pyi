# Type stub for the compiled engine (cpp/bindings/). The Python wrappers in samplers.py /
# weights.py / mixture.py are the public API and validate every argument; the binding checks
# only what memory safety needs (the rule is in cpp/bindings/module.cpp).
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

__version__: str  # pyproject.toml's version
have_openmp: bool
init_step: int  # the noise-stream step reserved for the chains' starting points

class ScoreModel:
    @property
    def dim(self) -> int: ...

class Mlp(ScoreModel):
    def __init__(
        self,
        layers: Sequence[tuple[npt.ArrayLike, npt.ArrayLike]],
        activations: Sequence[str],
        sigma_input: str = "none",
        divide_by_sigma: bool = False,
        shift: npt.ArrayLike | None = None,
        scale: npt.ArrayLike | None = None,
    ) -> None: ...
    @property
    def input_dim(self) -> int: ...
    @property
    def output_dim(self) -> int: ...
    def forward(self, inputs: npt.ArrayLike) -> npt.NDArray[np.float32]: ...

# One graph node: (op, inputs, activation, p, start, stop, a, b); see gensamp.graph.
GraphNode = tuple[
    str, Sequence[int], str, float, int, int, npt.ArrayLike | None, npt.ArrayLike | None
]

class GraphNet(ScoreModel):
    def __init__(
        self,
        dim: int,
        nodes: Sequence[GraphNode],
        shift: npt.ArrayLike | None = None,
        scale: npt.ArrayLike | None = None,
    ) -> None: ...

class Mixture(ScoreModel):
    def __init__(
        self,
        weights: npt.ArrayLike,
        means: npt.ArrayLike,
        variances: npt.ArrayLike | None = None,
        covs: npt.ArrayLike | None = None,
    ) -> None: ...

def max_threads() -> int: ...
def simd_level() -> str: ...
def simd_levels() -> dict[str, str]: ...  # kernel family -> the level it runs at
def philox4x32_10(counter: Sequence[int], key: Sequence[int]) -> list[int]: ...
def normals(seed: int, chain: int, step: int, d: int) -> npt.NDArray[np.float32]: ...
def uniforms(seed: int, chain: int, step: int, d: int) -> npt.NDArray[np.float64]: ...
def score(model: ScoreModel, u: npt.ArrayLike, sigma: float) -> npt.NDArray[np.float32]: ...

class RunOptions:
    seed: int
    threads: int
    tile: int
    record_every: int  # 0: no trajectory
    denoise: bool
    chain_offset: int  # global index of row 0's chain (noise and default start)
    def __init__(
        self,
        *,
        seed: int = 0,
        threads: int = 1,
        tile: int = 64,
        record_every: int = 0,
        denoise: bool = False,
        chain_offset: int = 0,
    ) -> None: ...

class Schedule:  # built by the *_schedule functions only (cpp/include/gensamp/sampler.hpp)
    @property
    def sigmas(self) -> list[float]: ...  # the levels the model prepares
    @property
    def alphas(self) -> list[float]: ...  # Langevin schedules: step per level
    @property
    def T(self) -> int: ...
    @property
    def total_steps(self) -> int: ...  # the trajectory's clock
    @property
    def score_evals(self) -> int: ...  # per chain, without RunOptions.denoise's one

def annealed_schedule(sigmas: Sequence[float], eps: float, T: int) -> Schedule: ...
def plain_schedule(sigma: float, eps: float, T: int) -> Schedule: ...
def pc_schedule(sigmas: Sequence[float], snr: float, corrector: int) -> Schedule: ...
def cas_schedule(sigmas: Sequence[float], refresh: float) -> Schedule: ...
def ode_schedule(
    sigmas: Sequence[float],
    heun: bool,
    churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = 1e300,
    s_noise: float = 1.0,
) -> Schedule: ...
def run(
    model: ScoreModel,
    schedule: Schedule,
    n: int,
    x0: npt.ArrayLike | None,
    init_std: float,
    options: RunOptions,
    progress: Callable[[float], object] | None = None,  # fraction done, every 50 ms at most
    init_mean: npt.ArrayLike | None = None,  # [d], model coordinates
) -> tuple[
    npt.NDArray[np.float32], npt.NDArray[np.float32] | None, npt.NDArray[np.int64], float
]: ...

# (x, trajectory, diverged rows: local indices 0..n-1, not offset by chain_offset, score
# evaluations per chain as counted)
def vae_run(
    decoder: Mlp,
    n: int,
    seed: int,
    threads: int,
    tile: int,
    chain_offset: int = 0,
    progress: Callable[[float], object] | None = None,
    likelihood: str = "gaussian",
    noise: bool = True,
    prior: tuple[npt.ArrayLike, npt.ArrayLike, npt.ArrayLike] | None = None,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]: ...  # diverged: local rows

# What the engine allocates, in bytes (each heap block with a 16-byte header), so the Python
# layer can refuse what cannot fit before anything is allocated.
def run_bytes(
    model: ScoreModel, schedule: Schedule, n: int, options: RunOptions
) -> dict[str, int]: ...  # "levels": noise-level tables, "tiles": per-thread buffers
def vae_run_bytes(
    decoder: Mlp,
    n: int,
    threads: int,
    tile: int,
    likelihood: str = "gaussian",
    noise: bool = True,
    components: int = 0,
) -> dict[str, int]: ...  # "levels": the mixture prior's table, "tiles": per-thread buffers
def mlp_bytes(
    shapes: Sequence[tuple[int, int]], sigma_input: str, norm: int
) -> int: ...  # an Mlp with these [out, in] layer shapes and normalisation length
def graph_bytes(
    dim: int, nodes: Sequence[GraphNode], norm: int
) -> int: ...  # a GraphNet of these nodes and normalisation length
def mixture_bytes(K: int, d: int, full: bool) -> int: ...

# Log-densities (bind_density.cpp): the probability-flow ODE from sigma_0 to sigma_N on `grid`
# (ascending) with RK4, in the model's coordinates. u: [n, d] points at sigma_0. Returns (their
# trajectories' ends at sigma_N [n, d], int sigma tr grad s dsigma [n], rows that ended
# non-finite). probes 0: the exact trace; > 0: Hutchinson with that many Rademacher directions.
def log_density_ode(
    model: ScoreModel, grid: Sequence[float], u: npt.ArrayLike, probes: int, options: RunOptions
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.int64]]: ...
def log_density_ode_bytes(
    model: ScoreModel, grid_points: int, probes: int, n: int, options: RunOptions
) -> dict[str, int]: ...  # as run_bytes
def divergence(
    model: ScoreModel, u: npt.ArrayLike, sigma: float, probes: int = 0, seed: int = 0, step: int = 0
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float64]]: ...  # (score, divergence)
def ode_levels(grid: Sequence[float]) -> list[float]: ...  # the sigmas RK4 evaluates
