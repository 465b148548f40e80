"""Run jobs on a multi-rank ``ParallelEngine`` (this file is rank 0; it starts the others itself).

``python tests/parallel/ranks.py RANKS JOBS.pkl OUT.npz`` with the engine settings in the
environment (``LTXSERVE_*``): rank 0 starts ranks 1..n-1 as this same command
(``parallel.spawn_followers``, the launcher ``ltxserve worker --gpus N`` uses), generates every
job and writes frames and audio per job and seed (or the job's error); the followers run the
leader's jobs. A job whose name starts with ``cancel`` is cancelled by rank 0 after two steps.
"""

from __future__ import annotations

import os
import pickle
import sys
import threading

import numpy as np


def main() -> int:
    from ltxserve.config import Settings
    from ltxserve.engine import GenerationCancelled, parallel

    ranks, jobs_path, out_path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    children = []
    if parallel.RANK_ENV not in os.environ:
        children = parallel.spawn_followers(ranks, [sys.executable, *sys.argv])
    settings = Settings()
    engine = parallel.load_engine(settings)
    assert isinstance(engine, parallel.ParallelEngine)
    if not engine.ranks.leader:
        engine.follow()
        return 0
    with open(jobs_path, "rb") as f:
        jobs = pickle.load(f)
    arrays: dict[str, np.ndarray] = {}
    try:
        for name, job in jobs.items():
            cancel = threading.Event()

            def progress(step: int, _total: int, name: str = name, cancel: threading.Event = cancel) -> None:
                if name.startswith("cancel") and step >= 2:
                    cancel.set()  # rank 0's flag: every rank must stop at this same step

            try:
                results = engine.generate(job, progress, cancel)
            except GenerationCancelled:
                arrays[f"{name}/error"] = np.array("cancelled")
                continue
            except Exception as exc:  # the test reads it; the followers must survive it
                arrays[f"{name}/error"] = np.array(str(exc))
                continue
            for result in results:
                arrays[f"{name}/{result.seed}/frames"] = result.frames
                if result.audio is not None:
                    arrays[f"{name}/{result.seed}/audio"] = result.audio
    finally:
        engine.close()
    np.savez(out_path, **arrays)  # type: ignore[arg-type]
    layout = engine.ranks.layout
    print(f"layout guidance={layout.guidance} ulysses={layout.ulysses} ring={layout.ring}", flush=True)
    return parallel.stop_followers(children)


if __name__ == "__main__":
    sys.exit(main())
