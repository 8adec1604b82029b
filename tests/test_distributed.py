"""gensamp.distributed on a real (local, loopback-only) Dask cluster: any chunking, any worker,
a worker killed mid-run -- the same bits as the single-process call.

The cluster is started by this module (two worker processes with one thread each, behind
nannies, everything bound to 127.0.0.1) and shut down at its end; the last test checks that no
process it started is left. Models are built with numpy: the workers never import torch.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import gensamp
import numpy as np
import pytest

da = pytest.importorskip("dask.array")
dd = pytest.importorskip("distributed")
zarr = pytest.importorskip("zarr")
psutil = pytest.importorskip("psutil")

from gensamp import distributed as D  # noqa: E402

N = 100_003  # not a multiple of anything the engine or the chunkings use
UNEVEN = (1, 63, 4_000, 17, 30_000, 922, 65_000)  # sums to N: ragged starts and sizes
TILE = 1_024  # "one chunk per chain block": chunks of exactly one engine tile
CHUNKINGS = {"uneven": UNEVEN, "per-block": TILE, "one": N}
assert sum(UNEVEN) == N

# Warnings the cluster itself may give while it starts, stops or loses a worker (the tests check
# outcomes, not the cluster's logging).
pytestmark = [
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore:.*[Pp]ort.*:UserWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]


def _mlp(rng, sizes, act):
    layers = [
        (rng.normal(size=(o, i)) / np.sqrt(i), rng.normal(size=o) * 0.1)
        for i, o in zip(sizes[:-1], sizes[1:])
    ]
    return layers, [act] * (len(layers) - 1)


def _models():
    rng = np.random.default_rng(17)
    layers, acts = _mlp(rng, [3, 32, 32, 2], "silu")
    norm = dict(shift=[1.0, -2.0], scale=[0.5, 3.0])
    stored = {"sigmas": [2.0, 0.7, 0.2], "eps": 2e-3, "T": 4}
    ncsn = gensamp.Weights(
        layers, acts, sigma_input="log_sigma", divide_by_sigma=True, sampler=stored, **norm
    )
    layers, acts = _mlp(rng, [2, 32, 2], "tanh")
    score = gensamp.Weights(layers, acts, sampler={"eps": 0.01, "T": 6})
    layers, acts = _mlp(rng, [3, 32, 8], "relu")
    vae = gensamp.Weights(layers, acts, role="vae_decoder", shift=[0, 1, 2, 3], scale=[1, 2, 3, 4])
    mixture = gensamp.GaussianMixture([1, 3], [[-4.0, 0.0], [3.0, 1.0]], stds=[0.5, 1.5])
    return {"ncsn": ncsn, "score": score, "vae": vae, "mixture": mixture}


MODELS = _models()
MIX = dict(sigmas=[5.0, 1.0, 0.2], eps=0.01, T=4)


def _local(kind, n=N, **kw):
    m = MODELS[kind]
    if kind == "ncsn":
        return gensamp.annealed_langevin(m, n=n, seed=11, **kw)
    if kind == "score":
        return gensamp.langevin(m, n=n, seed=11, **kw)
    if kind == "vae":
        return gensamp.vae_sample(m, n, seed=11, **kw)
    return gensamp.annealed_langevin(m, n=n, seed=11, **MIX, **kw)


def _dist(kind, chunks, n=N, **kw):
    m = MODELS[kind]
    if kind == "ncsn":
        return D.annealed_langevin(m, n=n, seed=11, chunks=chunks, **kw)
    if kind == "score":
        return D.langevin(m, n=n, seed=11, chunks=chunks, **kw)
    if kind == "vae":
        return D.vae_sample(m, n, seed=11, chunks=chunks, **kw)
    return D.annealed_langevin(m, n=n, seed=11, chunks=chunks, **MIX, **kw)


@pytest.fixture(scope="module")
def local_results():
    return {k: _local(k, threads=2) for k in MODELS}


def _descendants():
    # multiprocessing's resource tracker is started once per parent process, serves every pool
    # and exits with it: not a process the cluster owns
    return {
        p.pid
        for p in psutil.Process().children(recursive=True)
        if "resource_tracker" not in " ".join(p.cmdline())
    }


@pytest.fixture(scope="module")
def cluster():
    before = _descendants()
    with (
        dd.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            worker_dashboard_address=None,
        ) as cl,
        dd.Client(cl) as client,
    ):
        started = _descendants() - before
        assert len(started) >= 2  # the worker processes (and their nannies' children)
        yield cl, client
    # every process started since, the worker a nanny restarted after the kill test included
    deadline = time.monotonic() + 20
    while (left := _descendants() - before) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"processes left after the cluster closed: {left}"


@pytest.fixture
def client(cluster):
    return cluster[1]


def test_everything_listens_on_loopback_only(cluster):
    cl, client = cluster
    addrs = [cl.scheduler_address, *client.scheduler_info()["workers"]]
    assert all(a.startswith("tcp://127.0.0.1:") for a in addrs), addrs
    for pid in [*client.run(os.getpid).values(), os.getpid()]:
        for c in psutil.Process(pid).net_connections(kind="inet"):
            if c.status == psutil.CONN_LISTEN:
                assert c.laddr.ip in ("127.0.0.1", "::1"), (pid, c.laddr)


@pytest.mark.parametrize("kind", list(MODELS))
@pytest.mark.parametrize("chunking", list(CHUNKINGS))
def test_any_chunking_equals_the_single_process_call(client, local_results, kind, chunking):
    chunks = CHUNKINGS[chunking]
    x = _dist(kind, chunks, tile=TILE if chunking == "per-block" else None)
    assert isinstance(x, da.Array) and x.shape == local_results[kind].shape
    assert x.dtype == np.float32
    want = (len(UNEVEN),) if chunking == "uneven" else (-(-N // chunks),)
    assert x.numblocks[:1] == want
    got = x.compute()
    assert np.array_equal(got, local_results[kind]), f"{kind}/{chunking}"


def test_workers_never_import_torch(client):
    def torch_loaded():
        return "torch" in sys.modules

    _dist("ncsn", 10_000, n=20_000).compute()  # every worker has run shards
    assert not any(client.run(torch_loaded).values())


def test_a_shard_uses_the_threads_it_is_given(client, local_results):
    # threads is an engine setting like any other: it changes nothing in the result
    x = _dist("mixture", UNEVEN, threads=2).compute()
    assert np.array_equal(x, local_results["mixture"])


def test_trajectory_x0_and_offset(client):
    m = MODELS["ncsn"]
    x, traj = D.annealed_langevin(m, n=5_001, seed=3, chunks=700, record_every=5, chain_offset=9)
    lx, ltraj = gensamp.annealed_langevin(m, n=5_001, seed=3, record_every=5, chain_offset=9)
    assert traj.shape == ltraj.shape == (2, 5_001, 2)
    assert np.array_equal(x.compute(), lx) and np.array_equal(traj.compute(), ltraj)
    x0 = np.random.default_rng(1).normal(size=(5_001, 2)).astype(np.float32)
    want = gensamp.langevin(MODELS["score"], x0=x0, seed=4)
    for x0_in in (x0, da.from_array(x0, chunks=1_000)):
        got = D.langevin(MODELS["score"], x0=x0_in, seed=4, chunks=(1, 2_500, 2_500)).compute()
        assert np.array_equal(got, want)


def test_sample_dispatches_by_role(client, local_results):
    for kind in ("score", "vae"):
        x = D.sample(MODELS[kind], N, chunks=40_000, seed=11)
        assert np.array_equal(x.compute(), local_results[kind]), kind
    # an NCSN given any part of a Langevin schedule: annealed Langevin, the rest stored
    x = D.sample(MODELS["ncsn"], N, chunks=40_000, seed=11, T=MODELS["ncsn"].sampler["T"])
    assert np.array_equal(x.compute(), local_results["ncsn"])
    x = D.sample(MODELS["mixture"], N, chunks=40_000, seed=11, **MIX)
    assert np.array_equal(x.compute(), local_results["mixture"])
    # gensamp.sample's few-step samplers: the stored (or default) method, or one asked for
    for kind, kw in (("ncsn", {}), ("mixture", {}), ("ncsn", {"method": "edm", "steps": 21})):
        x = D.sample(MODELS[kind], N, chunks=UNEVEN, seed=11, **kw)
        want = gensamp.sample(MODELS[kind], N, seed=11, threads=2, **kw)
        assert np.array_equal(x.compute(), want), (kind, kw)
    with pytest.raises(ValueError, match="one or the other"):
        D.sample(MODELS["ncsn"], N, chunks=1000, method="heun", eps=0.1)
    with pytest.raises(ValueError, match="sigmas does not apply"):
        D.sample(MODELS["vae"], N, chunks=1000, sigmas=[1.0])


def test_arguments_are_checked_on_the_client():
    m = MODELS["ncsn"]
    with pytest.raises(ValueError, match="chunks must sum to n=10"):
        D.annealed_langevin(m, n=10, chunks=(3, 3))
    with pytest.raises(ValueError, match=r"chunks\[1\] must be >= 1"):
        D.annealed_langevin(m, n=10, chunks=(10, 0))
    with pytest.raises(TypeError, match="chunks must be"):
        D.annealed_langevin(m, n=10, chunks="5")
    with pytest.raises(ValueError, match="chunks must be >= 1"):
        D.vae_sample(MODELS["vae"], 10, chunks=0)
    with pytest.raises(ValueError, match="more than 1000000 shards"):
        D.vae_sample(MODELS["vae"], 10**7, chunks=1)
    with pytest.raises(ValueError, match="eps must be finite"):
        D.annealed_langevin(m, eps=-1.0, n=10, chunks=5)
    with pytest.raises(ValueError, match=r"chain_offset \+ n must be"):
        D.langevin(MODELS["score"], n=10, chunks=5, chain_offset=2**64 - 5)
    with pytest.raises(TypeError, match="vae_decoder"):
        D.vae_sample(m, 10, chunks=5)
    with pytest.raises(TypeError, match="dask.distributed.Client"):
        D.vae_sample(MODELS["vae"], 10, chunks=5, client="tcp://127.0.0.1:1")
    with pytest.raises(ValueError, match="x0 has 4 rows but n=5"):
        D.langevin(MODELS["score"], x0=da.zeros((4, 2), chunks=2), n=5, chunks=2)


def test_killed_worker_gives_the_same_bits(cluster, local_results):
    """SIGKILL one worker process while shards run, with finished shards in its memory: the
    scheduler reassigns (and recomputes) them, the nanny restarts the process, and the result
    is still the single-process one."""
    _, client = cluster
    # 21 shards of ~0.15 s: time to kill a worker in the middle of the run
    x = _dist("ncsn", 5_000, T=40)
    want = _local("ncsn", T=40, threads=2)
    pids = client.run(os.getpid)
    fut = client.compute(x)
    victim = None
    deadline = time.monotonic() + 60
    while victim is None and time.monotonic() < deadline:
        held = client.has_what()
        busy = client.processing()
        for addr, keys in held.items():
            if any(isinstance(k, tuple) and k[0] == x.name for k in keys) and busy.get(addr):
                victim = addr
                break
        time.sleep(0.02)
    assert victim is not None, "no worker was seen holding and running shards"
    assert not fut.done()
    os.kill(pids[victim], signal.SIGKILL)
    got = fut.result(timeout=240)
    assert np.array_equal(got, want)
    # the process was really killed: the worker now running there is a new one
    client.wait_for_workers(2, timeout=60)
    assert pids[victim] not in client.run(os.getpid).values()
    assert not psutil.pid_exists(pids[victim]) or psutil.Process(pids[victim]).status() in (
        psutil.STATUS_ZOMBIE,
        psutil.STATUS_DEAD,
    )


def test_zarr_round_trip_and_overwrite_refusal(client, local_results, tmp_path):
    store = str(tmp_path / "x.zarr")
    x = _dist("ncsn", 25_000)
    x.to_zarr(store)
    assert np.array_equal(da.from_zarr(store).compute(), local_results["ncsn"])
    with pytest.raises(ValueError):  # zarr's ContainsArrayError: the store holds an array
        _dist("ncsn", 25_000).to_zarr(store)
    _dist("mixture", 25_000).to_zarr(store, overwrite=True)
    assert np.array_equal(da.from_zarr(store).compute(), local_results["mixture"])
    # the helper the CLI uses: same refusal, attributes recorded, unequal chunks accepted
    store2 = str(tmp_path / "y.zarr")
    D.to_zarr(_dist("vae", UNEVEN), store2, attrs={"seed": 11})
    arr = zarr.open_array(store2, mode="r")
    assert arr.attrs["seed"] == 11 and arr.attrs["gensamp_version"] == gensamp.__version__
    assert np.array_equal(arr[:], local_results["vae"])
    with pytest.raises(ValueError):
        D.to_zarr(_dist("vae", 50_000), store2)


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "gensamp", *args], capture_output=True, text=True, timeout=300
    )


def test_cli_writes_zarr_on_the_cluster_and_locally(cluster, tmp_path, local_results):
    cl, _ = cluster
    model = tmp_path / "ncsn.safetensors"
    MODELS["ncsn"].save(model)
    out = str(tmp_path / "s.zarr")
    args = ["sample", str(model), "--n", str(N), "--seed", "11", "--chunks", "30000"]
    r = _cli(*args, "--scheduler", cl.scheduler_address, "--out", out)
    assert r.returncode == 0, r.stderr
    assert "4 shards on tcp://127.0.0.1" in r.stdout
    want = gensamp.sample(MODELS["ncsn"], N, seed=11, threads=2)  # the CLI's default sampler
    assert np.array_equal(da.from_zarr(out).compute(), want)
    r = _cli(*args, "--scheduler", cl.scheduler_address, "--out", out)
    assert r.returncode == 2 and "already exists: pass --overwrite" in r.stderr
    r = _cli(*args, "--out", out, "--overwrite")  # no scheduler: this machine's cores
    assert r.returncode == 0, r.stderr
    assert "locally" in r.stdout
    assert np.array_equal(da.from_zarr(out).compute(), want)
    r = _cli(*args, "--scheduler", cl.scheduler_address, "--out", str(tmp_path / "s.npy"))
    assert r.returncode == 2 and ".zarr" in r.stderr


def test_import_gensamp_does_not_import_dask():
    code = "import sys, gensamp; assert not [m for m in sys.modules if m.startswith('dask')]"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
