"""bench-dbscan's scikit-learn baseline: the DBSCAN a user would run on their embeddings.

    dbscan_sklearn.py VECTORS.npy EPS MIN_SAMPLES

Loads the (n, dims) float32 array that bench-dbscan wrote, fits
DBSCAN(eps, min_samples, metric="cosine", algorithm="brute", n_jobs=1) on it as given (float32,
as embeddings come), up to MAX_RUNS times within RUN_BUDGET seconds, as bench-dbscan times its
own kernels, and prints one JSON object: versions, the BLAS thread pools, the dtype the distances
are computed in, the fastest fit in ms and the labels of the last fit.

Single thread: the caller sets OMP_NUM_THREADS, OPENBLAS_NUM_THREADS and MKL_NUM_THREADS to 1
(set here too, before numpy loads, when missing); threadpoolctl must then report every pool at
one thread, or the script fails rather than time a multi-threaded fit.
"""

import json
import os
import sys
import time

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import numpy as np  # noqa: E402
import sklearn  # noqa: E402
from sklearn.cluster import DBSCAN  # noqa: E402
from sklearn.metrics._pairwise_distances_reduction import RadiusNeighbors  # noqa: E402
from sklearn.metrics.pairwise import check_pairwise_arrays  # noqa: E402
from threadpoolctl import threadpool_info  # noqa: E402

MAX_RUNS = 5
RUN_BUDGET = 3.0


def main():
    path, eps, min_samples = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    X = np.load(path)
    if X.dtype != np.float32 or X.ndim != 2:
        sys.exit(f"{path}: expected a 2-d float32 array, got {X.ndim}-d {X.dtype}")

    model = DBSCAN(eps=eps, min_samples=min_samples, metric="cosine", algorithm="brute", n_jobs=1)
    # One fit before timing loads BLAS, so that its pools exist for threadpoolctl to check.
    labels = model.fit(X).labels_
    pools = sorted(
        ({"api": p["internal_api"], "version": p.get("version") or "", "num_threads": p["num_threads"]}
         for p in threadpool_info()),
        key=lambda p: (p["api"], p["version"]),
    )
    if not pools or any(p["num_threads"] != 1 for p in pools):
        sys.exit(f"the fit must run on one thread, but the thread pools are {pools}")

    started = time.perf_counter()
    best = float("inf")
    for runs in range(1, MAX_RUNS + 1):
        run = time.perf_counter()
        labels = model.fit(X).labels_
        best = min(best, time.perf_counter() - run)
        if time.perf_counter() - started >= RUN_BUDGET:
            break

    # The path sklearn takes for metric="cosine": its Cython radius search only serves the
    # DistanceMetric metrics; otherwise pairwise_distances_chunked over cosine_distances, whose
    # input check keeps float32 (both arrays float32) or upcasts to float64.
    reduction = RadiusNeighbors.is_usable_for(X, X, "cosine")
    distance_dtype = check_pairwise_arrays(X, X)[0].dtype
    print(json.dumps({
        "sklearn": sklearn.__version__,
        "numpy": np.__version__,
        "thread_pools": pools,
        "input_dtype": str(X.dtype),
        "distance_path": "RadiusNeighbors reduction" if reduction else "pairwise_distances_chunked",
        "distance_dtype": str(distance_dtype),
        "runs": runs,
        "best_ms": best * 1e3,
        "labels": labels.tolist(),
    }))


if __name__ == "__main__":
    main()
