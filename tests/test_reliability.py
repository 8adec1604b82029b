"""Reliability: Ctrl-C, divergence, concurrent calls, fork, memory refusal, torch coexistence.

Scenarios that can hang or kill a process (signals, fork, heap corruption, address-space limits)
run in a subprocess with a time limit, so a failure is reported instead of taking pytest down.
"""

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import warnings

import gensamp
import numpy as np
import pytest
from conftest import random_mlp

TESTS = os.path.dirname(os.path.abspath(__file__))
PYTHON_DIR = os.path.dirname(os.path.dirname(gensamp.__file__))


def run_script(code, timeout=120, env=None):
    """Runs `code` in a fresh interpreter that imports this gensamp; returns (rc, stdout, stderr).

    A hang past `timeout` is a test failure, not a stuck CI job.
    """
    full_env = dict(os.environ, PYTHONPATH=os.pathsep.join([PYTHON_DIR, TESTS]))
    full_env.update(env or {})
    try:
        p = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=full_env,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"subprocess hung for {timeout} s; output so far:\n{exc.stdout}\n{exc.stderr}")
    return p.returncode, p.stdout, p.stderr


def last_json(stdout):
    lines = [ln for ln in stdout.splitlines() if ln.startswith("{")]
    assert lines, f"no result line in output:\n{stdout}"
    return json.loads(lines[-1])


def linear_score(d, a):
    """score(x) = a * x exactly: a one-layer identity network."""
    return gensamp.Weights([(a * np.eye(d, dtype=np.float32), np.zeros(d, np.float32))], [])


# ---- Ctrl-C -------------------------------------------------------------------------------------

INTERRUPT = """
import json, os, signal, sys, threading, time
import numpy as np, gensamp
from conftest import random_mlp

w = gensamp.export(random_mlp(4, 128, "tanh", seed=1))
x0 = np.linspace(-1, 1, 4 * {n}, dtype=np.float32).reshape({n}, 4)
ref = gensamp.langevin(w, 1e-3, 30, x0=x0, seed=5, threads={threads})
t0 = time.perf_counter()
gensamp.langevin(w, 1e-3, 100, n=64, seed=1, threads=1)
step = (time.perf_counter() - t0) / 100          # one step of one 64-chain tile
T = int({tile_seconds} / step)                     # a full tile would take this long
out = []
for trial in range({trials}):
    sent = []
    def fire():
        time.sleep({delay})
        sent.append(time.perf_counter())
        os.kill(os.getpid(), signal.SIGINT)
    timer = threading.Thread(target=fire)
    timer.start()
    start = time.perf_counter()
    try:
        gensamp.langevin(w, 1e-3, T, n={n}, seed=1, threads={threads}, tile={tile})
        latency = None
    except KeyboardInterrupt:
        latency = time.perf_counter() - sent[0]
    timer.join()
    # The process is still usable and gives the same numbers as before the interrupt.
    again = gensamp.langevin(w, 1e-3, 30, x0=x0, seed=5, threads={threads})
    out.append(dict(latency=latency, same=bool(np.array_equal(again, ref)),
                    elapsed=time.perf_counter() - start))
print(json.dumps(dict(trials=out, ref=ref.tolist())))
"""


def _interrupt(threads, n, tile=64, trials=2, delay=0.4, tile_seconds=20.0):
    rc, out, err = run_script(
        INTERRUPT.format(
            threads=threads, n=n, tile=tile, trials=trials, delay=delay, tile_seconds=tile_seconds
        ),
        timeout=180,
    )
    assert rc == 0, err
    return last_json(out)


@pytest.mark.parametrize("threads,n", [(1, 64), (2, 256)])
def test_ctrl_c_stops_a_long_run_within_half_a_second(threads, n):
    res = _interrupt(threads, n)
    for t in res["trials"]:
        assert t["latency"] is not None, "the run was not interrupted"
        assert t["latency"] < 0.5, f"KeyboardInterrupt came {t['latency']:.3f} s after SIGINT"
        assert t["same"], "after the interrupt the same call gives different numbers"
    # ... and the same numbers as a fresh process (this one).
    w = gensamp.export(random_mlp(4, 128, "tanh", seed=1))
    x0 = np.linspace(-1, 1, 4 * n, dtype=np.float32).reshape(n, 4)
    fresh = gensamp.langevin(w, 1e-3, 30, x0=x0, seed=5, threads=threads)
    assert np.array_equal(np.asarray(res["ref"], np.float32), fresh)


@pytest.mark.parametrize("threads,n", [(2, 65), (4, 128)])
def test_ctrl_c_while_the_calling_thread_has_no_tile_left(threads, n):
    """n=65: a 64-chain tile (2 s) and a 1-chain tile (done in well under the 0.6 s before the
    signal); threads=4, n=128: two tiles for four threads. Whenever the calling thread, the only
    one that checks for signals, has no tile of its own left, it must keep polling while the
    others work. (Which thread takes which tile varies, hence two trials each.)"""
    res = _interrupt(threads, n, trials=2, delay=0.6, tile_seconds=2.0)
    lat = [t["latency"] for t in res["trials"]]
    assert all(v is not None and v < 0.5 for v in lat), f"latencies {lat} (limit 0.5 s)"
    assert all(t["same"] for t in res["trials"])


# ---- divergence ---------------------------------------------------------------------------------


@pytest.mark.parametrize("threads", [1, 2])
def test_divergence_names_exactly_the_diverged_chains(threads):
    # score = +2x, eps = 1: each step doubles the state. Chains started at 1e30 overflow float32
    # within 60 steps; chains started near 0 reach about 2^60 and stay finite.
    w = linear_score(3, 2.0)
    n = 150
    x0 = np.zeros((n, 3), np.float32)
    bad = np.array([0, 3, 17, 64, 65, 149])
    x0[bad, 1] = 1e30
    with pytest.warns(gensamp.DivergenceWarning) as rec:
        x = gensamp.langevin(w, 1.0, 60, x0=x0, seed=1, threads=threads, tile=16)
    assert len(rec) == 1
    warning = rec[0].message
    assert warning.count == bad.size
    assert np.array_equal(np.sort(warning.indices), bad)
    assert f"{bad.size} of {n} chains diverged" in str(warning)
    assert "reduce eps" in str(warning)
    finite_rows = np.all(np.isfinite(x), axis=1)
    assert np.array_equal(np.flatnonzero(~finite_rows), bad)
    assert np.all(np.abs(x[finite_rows]) < 1e25)


def test_huge_step_size_diverges_every_chain_with_a_warning(seed_mixture):
    with pytest.warns(gensamp.DivergenceWarning) as rec:
        x, traj = gensamp.langevin(seed_mixture, 1e6, 40, n=50, seed=2, record_every=10)
    assert rec[0].message.count == 50
    assert np.array_equal(rec[0].message.indices, np.arange(50))
    assert not np.any(np.isfinite(x))
    assert not np.any(np.isfinite(traj[-1]))


def test_annealed_divergence_is_reported(seed_mixture):
    with pytest.warns(gensamp.DivergenceWarning) as rec:
        gensamp.annealed_langevin(seed_mixture, [10.0, 1.0], 1e4, 30, n=20, seed=1)
    assert rec[0].message.count == 20


def test_vae_divergence_is_reported():
    # log-variance head = 400 in dimension 1: exp(200) overflows float32 for every sample.
    W = np.zeros((4, 3), np.float32)
    b = np.array([0, 0, 0, 400], np.float32)
    dec = gensamp.Weights([(W, b)], [], role="vae_decoder")
    with pytest.warns(gensamp.DivergenceWarning) as rec:
        x = gensamp.vae_sample(dec, 30, seed=1)
    assert rec[0].message.count == 30
    assert np.all(np.isfinite(x[:, 0])) and not np.any(np.isfinite(x[:, 1]))


def test_no_warning_when_nothing_diverges(seed_mixture):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x = gensamp.langevin(seed_mixture, 0.1, 50, n=200, seed=3)
    assert np.all(np.isfinite(x))


# ---- concurrency --------------------------------------------------------------------------------


def _in_threads(fns):
    results = [None] * len(fns)
    errors = []

    def call(i, f):
        try:
            results[i] = f()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(i, f)) for i, f in enumerate(fns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return results


def _ncsn():
    return gensamp.export(
        random_mlp(2, 32, "silu", "log_sigma", seed=1),
        sigma_input="log_sigma",
        divide_by_sigma=True,
    )


@pytest.mark.parametrize("model", ["mlp", "mixture"])
def test_concurrent_identical_calls_match_serial(model):
    w = _ncsn() if model == "mlp" else gensamp.GaussianMixture([1, 2], [[-2, 0], [2, 1]])
    sig = [2.0, 0.7, 0.2]

    def call(threads):
        return lambda: gensamp.annealed_langevin(
            w, sig, 2e-3, 60, n=300, seed=11, threads=threads, record_every=30
        )

    serial = call(1)()
    for x, traj in _in_threads([call(t) for t in (1, 2, 1, 2)]):
        assert np.array_equal(x, serial[0]) and np.array_equal(traj, serial[1])


@pytest.mark.parametrize("model", ["mlp", "mixture"])
def test_concurrent_calls_with_different_noise_levels_match_serial(model):
    """Two threads sample the same model object with different sigmas at the same time."""
    w = _ncsn() if model == "mlp" else gensamp.GaussianMixture([1, 2], [[-2, 0], [2, 1]])
    sa, sb = list(np.geomspace(3, 0.1, 6)), [0.7, 0.05]

    def a():
        return gensamp.annealed_langevin(w, sa, 1e-3, 100, n=256, seed=5, threads=1)

    def b():
        return gensamp.annealed_langevin(w, sb, 1e-3, 100, n=256, seed=5, threads=1)

    ra, rb = a(), b()
    mismatches = 0
    for _ in range(4):
        xa, xb = _in_threads([a, b])
        mismatches += (not np.array_equal(xa, ra)) + (not np.array_equal(xb, rb))
    assert mismatches == 0, f"{mismatches} of 8 concurrent runs differ from the serial result"


def test_score_during_a_run_on_the_same_weights_does_not_corrupt_it():
    """Weights.score from one thread while another samples the same Weights: it crashed the
    process (heap corruption) when the engine kept per-call noise-level tables in the model."""
    code = """
    import json, threading, numpy as np, gensamp
    from conftest import random_mlp
    w = gensamp.export(random_mlp(2, 32, "silu", "log_sigma", seed=1), sigma_input="log_sigma",
                       divide_by_sigma=True)
    sig = list(np.geomspace(3, 0.1, 20))
    ref = gensamp.annealed_langevin(w, sig, 1e-3, 50, n=256, seed=5, threads=1)
    x = np.zeros((4, 2))
    stop = False
    def scorer():
        while not stop:
            w.score(x, 0.3)
    t = threading.Thread(target=scorer)
    t.start()
    bad = 0
    for _ in range(10):
        bad += not np.array_equal(
            gensamp.annealed_langevin(w, sig, 1e-3, 50, n=256, seed=5, threads=1), ref)
    stop = True
    t.join()
    print(json.dumps(dict(bad=bad)))
    """
    rc, out, err = run_script(code, timeout=120)
    assert rc == 0, f"process died with status {rc}: {err[-2000:]}"
    assert last_json(out)["bad"] == 0


def test_runs_release_the_gil():
    """A Python thread keeps running while another thread is inside a long C++ run."""
    w = gensamp.export(random_mlp(4, 128, "tanh", seed=1))
    t0 = time.perf_counter()
    gensamp.langevin(w, 1e-3, 200, n=128, seed=1, threads=1)
    T = max(200, int(200 * 1.0 / (time.perf_counter() - t0)))  # a run of about 1 s
    ticks = []
    done = threading.Event()

    def ticker():
        while not done.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.005)

    t = threading.Thread(target=ticker)
    t.start()
    time.sleep(0.05)
    start = time.perf_counter()
    gensamp.langevin(w, 1e-3, T, n=128, seed=1, threads=1)
    end = time.perf_counter()
    done.set()
    t.join()
    during = np.array([x for x in ticks if start <= x <= end])
    assert end - start > 0.3, "run too short to tell"
    gaps = np.diff(np.concatenate([[start], during, [end]]))
    assert gaps.max() < 0.25, f"the ticker thread stalled for {gaps.max():.2f} s during the run"


# ---- threads, environment, oversubscription ----------------------------------------------------

THREAD_COUNT = """
import json, os, numpy as np, gensamp
gm = gensamp.GaussianMixture([1, 1], [[-1.0, 0.0], [1.0, 0.0]])
def nthreads():
    return len(os.listdir("/proc/self/task"))
before = nthreads()
x = gensamp.langevin(gm, 0.1, 20, n=2000, seed=3, tile=16, **{kwargs})
print(json.dumps(dict(before=before, after=nthreads(), x=float(x.sum()))))
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux /proc")
@pytest.mark.parametrize(
    "kwargs,env,extra",
    [
        ("dict(threads=1)", {"OMP_NUM_THREADS": "8"}, 0),  # explicit threads= wins
        ("dict()", {"GENSAMP_NUM_THREADS": "1", "OMP_NUM_THREADS": "8"}, 0),  # env var wins
        ("dict(threads=3)", {}, 2),
        ("dict()", {"GENSAMP_NUM_THREADS": "2"}, 1),
    ],
)
def test_thread_count_is_respected(kwargs, env, extra):
    rc, out, err = run_script(THREAD_COUNT.format(kwargs=kwargs), env=env, timeout=60)
    assert rc == 0, err
    r = last_json(out)
    assert r["after"] - r["before"] == extra, r


@pytest.mark.parametrize(
    "value,match",
    [("abc", "not an integer"), ("0", r"in \[1, 4096\]"), ("200000", r"in \[1, 4096\]")],
)
def test_bad_thread_env_var_is_a_clear_error(monkeypatch, seed_mixture, value, match):
    # 200000 used to reach OpenMP and kill the process (segfault while creating threads).
    monkeypatch.setenv("GENSAMP_NUM_THREADS", value)
    with pytest.raises(ValueError, match="GENSAMP_NUM_THREADS"):
        gensamp.langevin(seed_mixture, 0.1, 5, n=10)
    with pytest.raises(ValueError, match=match):
        gensamp.langevin(seed_mixture, 0.1, 5, n=10)


def test_env_var_threads_give_identical_results(monkeypatch, seed_mixture):
    base = gensamp.langevin(seed_mixture, 0.1, 30, n=500, seed=4, threads=1)
    for v in ("1", "2", "3"):
        monkeypatch.setenv("GENSAMP_NUM_THREADS", v)
        assert np.array_equal(gensamp.langevin(seed_mixture, 0.1, 30, n=500, seed=4), base)


# ---- fork ---------------------------------------------------------------------------------------

FORK = """
import json, multiprocessing as mp, sys, warnings
import numpy as np
{imports}

def train_torch():
    torch.manual_seed(0)
    torch.set_num_threads(2)
    net = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 64))
    opt = torch.optim.SGD(net.parameters(), lr=1e-3)
    data = torch.randn(2048, 64)
    for _ in range(5):
        opt.zero_grad()
        loss = ((net(data) - data) ** 2).mean()
        loss.backward()
        opt.step()
    return float(loss)

gm = gensamp.GaussianMixture([1, 3], [[-3.0, 0.0], [2.0, 1.0]])
def sample():
    return gensamp.langevin(gm, 0.05, 60, n=600, seed=9, threads=2, tile=16)

def child(q):
    q.put(sample().tobytes())

{before_fork}
ctx = mp.get_context("fork")
q = ctx.Queue()
p = ctx.Process(target=child, args=(q,))
p.start()
p.join({limit})
hung = p.is_alive()
if hung:
    p.kill()
    p.join()
got = None if hung else np.frombuffer(q.get(timeout=10), np.float32).reshape(600, 2)
print(json.dumps(dict(hung=hung, exitcode=p.exitcode,
                      same=bool(got is not None and np.array_equal(got, sample())))))
"""


@pytest.mark.parametrize(
    "before_fork",
    [
        "sample()",  # gensamp ran its own parallel region in the parent
        "train_torch()",  # torch ran parallel regions on the shared libgomp pool
        "train_torch(); sample()",
    ],
)
def test_forked_child_samples_with_threads_and_does_not_hang(before_fork):
    imports = "import torch, gensamp" if "torch" in before_fork else "import gensamp"
    rc, out, err = run_script(
        FORK.format(imports=imports, before_fork=before_fork, limit=10), timeout=120
    )
    assert rc == 0, err
    r = last_json(out)
    assert not r["hung"], "the forked child hung in its first parallel run (libgomp after fork)"
    assert r["exitcode"] == 0 and r["same"], r


def test_fork_in_this_process_after_a_parallel_run(seed_mixture):
    import multiprocessing as mp

    parent = gensamp.langevin(seed_mixture, 0.05, 40, n=400, seed=2, threads=2, tile=16)
    ctx = mp.get_context("fork")
    q = ctx.Queue()

    def child(q):
        q.put(gensamp.langevin(seed_mixture, 0.05, 40, n=400, seed=2, threads=2, tile=16))

    with warnings.catch_warnings():
        # Python >= 3.12 warns about fork() in a process with threads; that is the point here.
        warnings.filterwarnings(
            "ignore", message=r".*fork\(\) may lead to deadlocks", category=DeprecationWarning
        )
        p = ctx.Process(target=child, args=(q,))
        p.start()
    p.join(30)
    if p.is_alive():
        p.kill()
        pytest.fail("forked child hung")
    assert p.exitcode == 0
    assert np.array_equal(q.get(timeout=10), parent)


# ---- torch coexistence --------------------------------------------------------------------------

COEXIST = """
import json
import numpy as np
{imports}
torch.manual_seed(0)
torch.set_num_threads(2)
gm = gensamp.GaussianMixture([1, 3], [[-3.0, 0.0], [2.0, 1.0]])
w = gensamp.export(torch.nn.Sequential(torch.nn.Linear(2, 32), torch.nn.SiLU(),
                                       torch.nn.Linear(32, 2)))
losses, sums = [], []
net = torch.nn.Sequential(torch.nn.Linear(2, 64), torch.nn.Tanh(), torch.nn.Linear(64, 2))
opt = torch.optim.Adam(net.parameters(), lr=1e-3)
data = torch.randn(4096, 2)
for rnd in range(3):
    for _ in range(20):                      # torch training ...
        opt.zero_grad()
        loss = ((net(data) + data) ** 2).mean()
        loss.backward()
        opt.step()
    losses.append(float(loss))
    a = gensamp.langevin(gm, 0.05, 50, n=800, seed=1, threads=2)   # ... then C++ sampling
    b = gensamp.langevin(w, 0.01, 50, n=800, seed=1, threads=2)
    sums.append([a.tobytes().hex()[:64], b.tobytes().hex()[:64], float(np.abs(a).sum())])
    trained = gensamp.export(net)                                  # a net fresh from training
    c = gensamp.langevin(trained, 0.01, 20, n=100, seed=2, threads=2)
    assert np.all(np.isfinite(c))
print(json.dumps(dict(losses=losses, sums=sums, torch_threads=torch.get_num_threads())))
"""


def test_torch_and_gensamp_in_either_import_order():
    results = []
    for imports in ("import torch\nimport gensamp", "import gensamp\nimport torch"):
        rc, out, err = run_script(COEXIST.format(imports=imports), timeout=180)
        assert rc == 0, err
        results.append(last_json(out))
    a, b = results
    assert a["losses"] == b["losses"], "torch training depends on the import order"
    assert a["sums"] == b["sums"], "sampling depends on the import order"
    # Sampling between training rounds is deterministic: the same each round.
    assert all(s[:2] == a["sums"][0][:2] for s in a["sums"])
    assert a["torch_threads"] == 2, "gensamp changed torch's thread setting"
    # And equal to this process's result.
    gm = gensamp.GaussianMixture([1, 3], [[-3.0, 0.0], [2.0, 1.0]])
    here = gensamp.langevin(gm, 0.05, 50, n=800, seed=1, threads=1)
    assert here.tobytes().hex()[:64] == a["sums"][0][0]


# ---- memory -------------------------------------------------------------------------------------


def _maxrss_mib():
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.parametrize(
    "call",
    [
        lambda gm: gensamp.langevin(gm, 0.1, 10**6, n=10**6, record_every=1),
        lambda gm: gensamp.annealed_langevin(gm, [1.0, 0.5], 0.1, 10**5, n=10**6, record_every=10),
        lambda gm: gensamp.langevin(gm, 0.1, 10, n=10**13),
        lambda gm: gensamp.langevin(gm, 0.1, 10, n=2**62),
    ],
    ids=["trajectory", "annealed-trajectory", "chains", "chains-2^62"],
)
def test_oversized_requests_are_refused_up_front(seed_mixture, call):
    rss = _maxrss_mib()
    start = time.perf_counter()
    refusal = r"would need [0-9.]+ GiB but only [0-9.]+ GiB is available"
    with pytest.raises(MemoryError, match=refusal):
        call(seed_mixture)
    assert time.perf_counter() - start < 1.0
    assert _maxrss_mib() - rss < 100, "memory was allocated before the refusal"


def test_oversized_vae_request_is_refused():
    dec = gensamp.Weights(
        [(np.zeros((4, 3), np.float32), np.zeros(4, np.float32))], [], role="vae_decoder"
    )
    with pytest.raises(MemoryError, match="would need"):
        gensamp.vae_sample(dec, 10**13)


ADDRESS_LIMIT = """
import json, resource
import numpy as np, gensamp
from gensamp import _core
def vm():
    with open("/proc/self/status") as fh:
        return next(int(l.split()[1]) * 1024 for l in fh if l.startswith("VmSize:"))
gm = gensamp.GaussianMixture([1, 1], [[-1.0], [1.0]])
small = gensamp.langevin(gm, 0.1, 10, n=1000, seed=1, threads=2)  # threads exist before the limit
resource.setrlimit(resource.RLIMIT_AS, (vm() + (1 << 30), resource.RLIM_INFINITY))
out = {{}}
# 1) A 2 GiB trajectory under a 1 GiB address-space budget: refused with the size, up front.
try:
    gensamp.langevin(gm, 0.1, 512, n=2**20, record_every=1, threads=2)
    out["refused"] = None
except MemoryError as exc:
    out["refused"] = str(exc)
# 2) An allocation failing inside the OpenMP region (the engine's per-tile buffers; called
#    below the Python checks on purpose) comes out as MemoryError; the process lives on.
W0 = np.full((1 << 16, 1), 1e-3, np.float32)
W1 = np.full((1, 1 << 16), 1e-3, np.float32)
net = gensamp.Weights([(W0, np.zeros(1 << 16, np.float32)), (W1, np.zeros(1, np.float32))],
                      ["relu"])
try:
    _core.run(net._engine(), _core.plain_schedule(0.0, 0.1, 2), 2 << 16, None, 1.0,
              _core.RunOptions(seed=1, threads={threads}, tile=1 << 16))
    out["in_region"] = None
except MemoryError as exc:
    out["in_region"] = type(exc).__name__ + ": " + str(exc)
out["after"] = bool(np.array_equal(gensamp.langevin(gm, 0.1, 10, n=1000, seed=1, threads=2), small))
print(json.dumps(out))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc are Linux")
@pytest.mark.parametrize("threads", [1, 2])
def test_memory_limits_are_respected_and_allocation_failures_are_exceptions(threads):
    rc, out, err = run_script(ADDRESS_LIMIT.format(threads=threads), timeout=120)
    assert rc == 0, f"process died with status {rc}: {err[-2000:]}"
    r = last_json(out)
    assert r["refused"] and "would need 2.00 GiB" in r["refused"], r
    assert r["in_region"] and r["in_region"].startswith("MemoryError"), r
    assert r["after"], "sampling after the failures gave different numbers"
