"""Is one onnxruntime session with 2 intra-op threads the fastest way to run a bag's patches on
the 2-core CPU? Compares it with two single-threaded sessions, each running half of the patches
at the same time (the trunk runs patch by patch in its Loop, so the halves are independent up to
the MIL head). Random patches; the bundled int8 file. From the repository root:
``python docs/experiments/2026-12-03-parallel-patches/run.py``
"""

from __future__ import annotations

import json
import statistics
import threading
import time

import numpy as np
import onnxruntime as ort

PATH = "resources/models/default-int8.onnx"


def session(threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    return ort.InferenceSession(PATH, options, providers=["CPUExecutionProvider"])


def main() -> None:
    rng = np.random.default_rng(0)
    one, left, right = session(2), session(1), session(1)
    results = {}
    for n in (12, 6):  # capture grid, live grid
        patches = (rng.standard_normal((n, 3, 224, 224)) * 50).astype(np.float32)
        positions = rng.random((n, 2)).astype(np.float32)
        half = n // 2

        def feeds(a: int, b: int) -> dict[str, np.ndarray]:
            return {"patches": patches[a:b], "positions": positions[a:b]}

        def two_halves() -> None:
            threads = [
                threading.Thread(target=left.run, args=(None, feeds(0, half))),
                threading.Thread(target=right.run, args=(None, feeds(half, n))),
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()

        one.run(None, feeds(0, n))
        two_halves()
        single, split = [], []
        for _ in range(8):
            t = time.perf_counter()
            one.run(None, feeds(0, n))
            single.append(time.perf_counter() - t)
            t = time.perf_counter()
            two_halves()
            split.append(time.perf_counter() - t)
        results[f"{n} patches"] = {
            "one session, 2 threads, median ms": round(statistics.median(single) * 1e3),
            "two sessions, 1 thread, half each, median ms": round(statistics.median(split) * 1e3),
        }
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
