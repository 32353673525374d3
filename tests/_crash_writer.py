"""A writer to kill: forks, on each ``go`` line of stdin, a child that updates a model folder.

Run as ``python tests/_crash_writer.py FOLDER``. It imports protoshot once and forks for each
round (before torch has started a thread, so the children are safe to fork), so a round costs
milliseconds rather than an import. The child loads the folder (replaying its journal), then adds
one shot at a time, shot ``k`` being :func:`shot` ``(k)``, commits it, and prints ``ack k``; when the
journal outgrows the snapshot it writes a new snapshot, commits one more update, then installs the
snapshot (what the service does in the background). The test kills the child with SIGKILL at a
random moment and checks the folder. The parent prints ``pid N`` after each fork and ``done``
when the child is gone.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import torch

from protoshot import store
from protoshot.estimators import load_estimator

N_FEATURES = 8
N_CLASSES = 5


def shot(k: int) -> np.ndarray:
    """The k-th shot: a vector only it has."""
    return np.random.default_rng(k).normal(size=(1, N_FEATURES)).astype(np.float32)


def label(k: int) -> str:
    """The class of the k-th shot (new classes keep appearing)."""
    return f"c{k % N_CLASSES if k % 7 else k}"


def write(folder: str) -> None:
    """Add shots until killed."""
    model = load_estimator(folder)
    k = len(model.support_)
    while True:
        model.partial_fit(shot(k), [label(k)])
        model.commit(folder)
        os.write(1, f"ack {k}\n".encode())
        k += 1
        if store.needs_compaction(folder, model._position):
            compaction = model.write_snapshot(folder)
            model.partial_fit(shot(k), [label(k)])
            model.commit(folder)
            os.write(1, f"ack {k}\n".encode())
            k += 1
            model.install_snapshot(folder, compaction)


def main() -> None:
    folder = sys.argv[1]
    torch.set_num_threads(1)
    store.COMPACT_AFTER_BYTES = 2048  # compaction every few updates: killed in it often
    for line in sys.stdin:
        if line.strip() != "go":
            continue
        pid = os.fork()
        if pid == 0:
            try:
                write(folder)
            finally:
                os._exit(1)
        os.write(1, f"pid {pid}\n".encode())
        os.waitpid(pid, 0)
        os.write(1, b"done\n")


if __name__ == "__main__":
    main()
