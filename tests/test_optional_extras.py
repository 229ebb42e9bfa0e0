"""The package works without its optional extras."""

import subprocess
import sys

import numpy as np
import pytest

from .conftest import small_detectors


def test_package_import_does_not_import_dask():
    code = (
        "import sys, sklearn_flowod, sklearn_flowod.distributed; "
        "print(sorted(m for m in sys.modules if m == 'dask' or m.startswith('dask.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_scoring_helper_without_dask_says_what_to_install(monkeypatch, blobs):
    from sklearn_flowod.distributed import score_partitions

    detector = small_detectors()[0].fit(blobs[0])
    for name in ("dask", "dask.array"):
        monkeypatch.setitem(sys.modules, name, None)  # as if dask were not installed
    with pytest.raises(ImportError, match=r"sklearn-flowod\[distributed\]"):
        score_partitions(detector, np.zeros((2, 4)))
