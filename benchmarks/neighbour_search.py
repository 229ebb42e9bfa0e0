"""Which engine finds the k-th nearest neighbour of the default score fastest, exactly.

Usage (from the project root)::

    python -m benchmarks.neighbour_search            # the two shapes of the speed page
    python -m benchmarks.neighbour_search --quick    # small shapes, to check that it runs

The default score of the INN detectors takes, for every scored row, the
distance to its 5th nearest reference row, twice (input and latent space).
This times the candidate engines on the same rows, in one process with
torch's default threads: correlated Gaussian reference rows (as many as a
detector keeps from the speed page's training rows) and query rows with 1.5
times their spread. Each engine's distances are compared with exact ones,
computed from coordinate differences in float64 on the first queries.

* ``scikit-learn brute (float64)``: ``NearestNeighbors(algorithm="brute")``,
  PyOD KNN's search for more than 15 features;
* ``faiss IndexFlatL2 (float32)``: faiss's exact flat index, when
  ``faiss-cpu`` is installed (it is no dependency of the package);
* ``torch cdist + topk (float64)``: the package's search before
  :class:`~sklearn_flowod.neighbours.ExactNeighbours`;
* ``package ExactNeighbours``: the package's search (float32 candidates,
  certified, exact float64 distances).

Writes ``benchmarks/results/<name>.csv`` and ``<name>.md``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.neighbors import NearestNeighbors

from sklearn_flowod.neighbours import ExactNeighbours

from . import report

RESULTS_DIR = Path(__file__).resolve().parent / "results"
K = 5
#: (reference rows, features, query rows): 85% of the speed page's training rows.
FULL = [(8_500, 30, 200_000), (4_250, 512, 20_000)]
QUICK = [(500, 8, 2_000), (300, 64, 1_000)]
#: Queries whose distances are checked against exact ones.
CHECKED = 2_000


def _sklearn(reference: np.ndarray):
    search = NearestNeighbors(n_neighbors=K, algorithm="brute").fit(reference)
    return lambda X: search.kneighbors(X)[0][:, -1]


def _faiss(reference: np.ndarray):
    import faiss

    index = faiss.IndexFlatL2(reference.shape[1])
    index.add(np.ascontiguousarray(reference, dtype=np.float32))
    return lambda X: np.sqrt(index.search(np.ascontiguousarray(X, dtype=np.float32), K)[0][:, -1])


def _cdist(reference: np.ndarray, block: int = 4096):
    rows = torch.as_tensor(reference)

    def search(X):
        X = torch.as_tensor(X)
        return torch.cat([torch.cdist(X[i:i + block], rows).topk(K, largest=False).values[:, -1]
                          for i in range(0, X.shape[0], block)]).numpy()
    return search


def _package(reference: np.ndarray):
    index = ExactNeighbours(torch.as_tensor(reference))
    return lambda X: index.kth_distance(torch.as_tensor(X), K).numpy()


ENGINES = {
    "scikit-learn brute (float64)": _sklearn,
    "faiss IndexFlatL2 (float32)": _faiss,
    "torch cdist + topk (float64)": _cdist,
    "package ExactNeighbours": _package,
}


def _exact(reference: np.ndarray, X: np.ndarray) -> np.ndarray:
    out = np.empty(X.shape[0])
    for i, row in enumerate(X):
        squared = ((reference - row) ** 2).sum(axis=1)
        out[i] = np.sqrt(np.partition(squared, K - 1)[K - 1])
    return out


def measure(n_reference: int, n_features: int, n_queries: int, log) -> list[dict]:
    rng = np.random.default_rng(0)
    mixing = rng.standard_normal((n_features, n_features)) / np.sqrt(n_features)
    reference = rng.standard_normal((n_reference, n_features)) @ mixing
    X = 1.5 * rng.standard_normal((n_queries, n_features)) @ mixing
    exact = _exact(reference, X[:CHECKED])
    rows = []
    for name, make in ENGINES.items():
        try:
            search = make(reference)
        except ImportError:
            log(f"{name}: not installed, skipped")
            continue
        search(X[:1000])  # warm-up
        start = time.perf_counter()
        distances = search(X)
        seconds = time.perf_counter() - start
        error = np.abs(distances[:CHECKED] - exact) / exact
        rows.append({"engine": name, "reference_rows": n_reference, "features": n_features,
                     "queries": n_queries, "rows_per_s": n_queries / seconds,
                     "max_relative_error": float(error.max()),
                     "torch_threads": torch.get_num_threads()})
        log(f"{name}, d={n_features}: {rows[-1]['rows_per_s']:,.0f} rows/s, "
            f"max relative error {rows[-1]['max_relative_error']:.1e}")
    return rows


def _tables(results: pd.DataFrame) -> str:
    parts = []
    for (n_reference, d, n_queries), cell in results.groupby(
            ["reference_rows", "features", "queries"]):
        table = cell.set_index("engine")[["rows_per_s", "max_relative_error"]]
        peer = table.loc["scikit-learn brute (float64)", "rows_per_s"]
        table = pd.DataFrame({
            "rows per second": table["rows_per_s"].map("{:,.0f}".format),
            "over scikit-learn": (table["rows_per_s"] / peer).map("{:.2f}".format),
            "max relative error": table["max_relative_error"].map("{:.1e}".format)})
        parts += [f"## {int(d)} features, {int(n_reference):,} reference rows, "
                  f"{int(n_queries):,} queries", "", report.markdown_table(table), ""]
    return "\n".join(parts)


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shapes")
    parser.add_argument("--name", default="neighbour_search", help="stem of the result files")
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    header = report.header("Nearest-neighbour search engines",
                           report.command_line("neighbour_search", argv))
    rows = []
    for shape in QUICK if args.quick else FULL:
        rows += measure(*shape, log=lambda message: print(message, flush=True))
    results = report.stamped(pd.DataFrame(rows))
    text = (header + report.provenance(results, "engine") + "\n"
            + f"faiss-cpu: {report._version('faiss-cpu')}. "
            + f"The distance to the {K}th nearest reference row; rows per second in one "
            "process with torch's default threads; the error against exact distances "
            f"(coordinate differences, float64) on the first {CHECKED:,} queries.\n\n"
            + _tables(results))
    args.out_dir.mkdir(parents=True, exist_ok=True)
    results.to_csv(args.out_dir / f"{args.name}.csv", index=False, float_format="%.6g")
    (args.out_dir / f"{args.name}.md").write_text(text)
    return results


if __name__ == "__main__":
    main()
