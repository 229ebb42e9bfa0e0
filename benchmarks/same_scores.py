"""Whether a change of the package code leaves every default score bit for bit as it was.

Usage (from the project root, on a clean tree)::

    python -m benchmarks.same_scores                 # HEAD against its parent
    python -m benchmarks.same_scores --against 1a2b3c4  # e.g. the commit of the pages

Fits every package detector with its defaults (and the variants the
benchmarks name, and each detector with known anomalies as
``semi_supervised.py`` fits it) on the splits of :data:`SPLITS`, once with the package code
of HEAD and once with that of ``--against`` (checked out in a temporary git
worktree), each in a fresh process with torch's default threads, and
compares a SHA-256 of each model's ``score_samples`` on the test rows and its
``offset_``. Appends one row to ``benchmarks/results/same_scores.csv``: the
two commits, whether the tree was dirty, how many models were compared and
whether all were equal (and which were not).

A result page made with the package code of ``--against`` then stays current
while the package code is HEAD's (:mod:`benchmarks.page_state`, from a row of
a clean tree that found every score equal): its numbers are what that code
computes. It certifies scores, not timings: a change meant to alter speed is
measured by the speed benchmarks instead.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from . import adbench, report

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "same_scores.csv"
#: (data set, seed) pairs the scores are compared on: the package's own table and two
#: ADBench sets (a continuous and a partly discrete one).
SPLITS = [(adbench.SYNTHETIC, 0), ("6_cardio", 0), ("29_Pima", 0)]
#: Known anomalies of each detector's labelled fit (``known_anomaly_weight=1.0``),
#: as ``benchmarks/semi_supervised.py`` fits them.
KNOWN = 5


def fingerprints(data_dir: Path = adbench.DEFAULT_DATA_DIR) -> dict[str, str]:
    """``"<data set>/<model>"`` -> SHA-256 of its test scores and ``offset_``."""
    from . import registry

    models = {**registry.package_detectors(), **registry.package_variants()}
    out = {}
    for dataset, seed in SPLITS:
        split = adbench.load_split(dataset, seed, data_dir)
        # the known anomalies of the labelled fits: the test set's first five
        known = split.X_test[np.flatnonzero(split.y_test == 1)[:KNOWN]]
        X_labelled = np.vstack([split.X_train, known])
        y_labelled = np.r_[np.ones(len(split.X_train), int), -np.ones(len(known), int)]
        for name, entry in models.items():
            fits = [(name, {}, (split.X_train,))]
            if name in registry.package_detectors():
                fits.append((f"{name}(labels)", {"known_anomaly_weight": 1.0},
                             (X_labelled, y_labelled)))
            for label, params, data in fits:
                model = entry.make(seed).set_params(**params).fit(*data)
                digest = hashlib.sha256(np.ascontiguousarray(
                    model.score_samples(split.X_test), dtype=np.float64).tobytes())
                digest.update(np.float64(model.offset_).tobytes())
                out[f"{dataset}/{label}"] = digest.hexdigest()
    return out


def fingerprints_of(package_root: Path, data_dir: Path) -> dict[str, str]:
    """:func:`fingerprints` with the package imported from ``package_root`` (a folder
    holding ``sklearn_flowod``) and the benchmarks of this tree, in a new process."""
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); import sklearn_flowod; "
            "from pathlib import Path; "
            "assert Path(sklearn_flowod.__file__).resolve().parent == "
            "(Path(sys.argv[1]) / 'sklearn_flowod').resolve(), sklearn_flowod.__file__; "
            "from benchmarks.same_scores import fingerprints; "
            "print(json.dumps(fingerprints(Path(sys.argv[2]))))")
    out = subprocess.run([sys.executable, "-c", code, str(package_root), str(data_dir)],
                         cwd=ROOT, capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONWARNINGS": "ignore"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                          check=True).stdout.strip()


def compare(against: str, data_dir: Path) -> dict:
    """The row of one comparison of HEAD's package code with ``against``'s."""
    commit, dirty = report.this_run()
    with tempfile.TemporaryDirectory() as tmp:
        old, package = Path(tmp) / "old", Path(tmp) / "package"
        _git("worktree", "add", "--detach", str(old), against)
        # the old package alone on the path: the benchmarks stay this tree's
        package.mkdir()
        (package / "sklearn_flowod").symlink_to(old / "sklearn_flowod")
        try:
            before = fingerprints_of(package, data_dir)
        finally:
            _git("worktree", "remove", "--force", str(old))
    now = fingerprints_of(ROOT, data_dir)
    differing = sorted(key for key in now.keys() | before.keys()
                       if now.get(key) != before.get(key))
    return {"commit": commit, "against": _git("rev-parse", "--short", against),
            "dirty": dirty, "models": len(now), "equal": not differing,
            "differing": " ".join(differing)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", default="HEAD^", help="the commit to compare with")
    parser.add_argument("--data-dir", type=Path, default=adbench.DEFAULT_DATA_DIR)
    args = parser.parse_args(argv)
    row = compare(args.against, args.data_dir)
    rows = pd.read_csv(RESULTS, dtype=str) if RESULTS.exists() else pd.DataFrame()
    pd.concat([rows, pd.DataFrame([row]).astype(str)]).to_csv(RESULTS, index=False)
    print(f"{row['commit']} against {row['against']}: {row['models']} models, "
          f"{'all scores equal' if row['equal'] else 'different: ' + row['differing']}")
    return row


if __name__ == "__main__":
    main()
