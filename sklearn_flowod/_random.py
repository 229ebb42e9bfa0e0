"""Seeding that never disturbs the caller's global random number generators."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch
from sklearn.utils import check_random_state

_MAX_SEED = 2**31 - 1


def derive_seed(random_state: None | int | np.random.RandomState) -> int:
    """Turn a scikit-learn ``random_state`` into one integer seed.

    Parameters
    ----------
    random_state : None, int or numpy.random.RandomState
        ``None`` draws fresh entropy from the operating system (the global
        NumPy generator is left untouched), an int is used as it is, a
        ``RandomState`` instance is advanced by one draw.

    Returns
    -------
    seed : int
        A seed in ``[0, 2**31 - 1)``.
    """
    if random_state is None:
        return int(np.random.SeedSequence().generate_state(1)[0] % _MAX_SEED)
    return int(check_random_state(random_state).randint(_MAX_SEED))


@contextlib.contextmanager
def isolated_rng(seed: int) -> Iterator[None]:
    """Seed NumPy's and torch's global generators, restoring them on exit.

    FrEIA 0.2 draws its block permutations from ``np.random`` and torch
    initialises layer weights from its global generator. Building a network
    inside this context makes the build reproducible from ``seed`` while the
    caller's generator states are the same before and after.
    """
    numpy_state = np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        np.random.seed(seed)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            np.random.set_state(numpy_state)
