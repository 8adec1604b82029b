"""The bench scripts share gensamp.benchmark (also behind `gensamp bench`)."""

from gensamp.benchmark import (  # noqa: F401
    L_LEVELS,
    SIGMAS,
    compare,
    engine,
    export,
    flops_per_step,
    fma_peak,
    machine,
    network,
    sgemm_ceiling,
    steps_for,
    timed,
    torch_peer,
    write_json,
)
