"""A plain normalizing-flow training loop, written with torch and FrEIA only.

The yardstick of the speed benchmark: the same network as the package's
``FlowDetector`` (FrEIA ``AllInOneBlock`` couplings, one hidden ReLU layer
per subnet with a zero-initialised output layer, soft permutations, clamp
2), trained the way a short script would train it: standardise with NumPy,
shuffle, mini-batches of 256, Adam at 1e-3, maximum likelihood. With
``contrastive=True`` the loss is that of ``ContrastiveFlowDetector`` (eq. 3
of the contrastive-flow paper, with its ``eps = 0``): every batch also
passes a copy of itself whose features are permuted independently through
the flow. No package code is used.
"""

from __future__ import annotations

import math
import time

import FrEIA.framework as Ff
import FrEIA.modules as Fm
import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import nn


def _subnet(hidden_size: int):
    def build(channels_in: int, channels_out: int) -> nn.Module:
        net = nn.Sequential(
            nn.Linear(channels_in, hidden_size), nn.ReLU(), nn.Linear(hidden_size, channels_out)
        )
        nn.init.zeros_(net[-1].weight)
        nn.init.zeros_(net[-1].bias)
        return net

    return build


def build_reference_flow(n_features: int, n_blocks: int = 8, hidden_size: int = 64) -> nn.Module:
    """The FrEIA network of ``FlowDetector``'s defaults, built directly."""
    flow = Ff.SequenceINN(n_features)
    for _ in range(n_blocks):
        flow.append(
            Fm.AllInOneBlock,
            subnet_constructor=_subnet(hidden_size),
            affine_clamping=2.0,
            permute_soft=True,
        )
    return flow


def negative_log_likelihood(flow: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Per-row ``-log p(x)`` of the flow with a standard normal latent."""
    z, log_jac_det = flow(x, jac=True)
    return 0.5 * z.square().sum(dim=1) + 0.5 * x.shape[1] * math.log(2 * math.pi) - log_jac_det


def contrastive_term(flow: nn.Module, batch: torch.Tensor, clamp: float = 0.0) -> torch.Tensor:
    """``mean(max(log p(y), clamp))`` over ``y``, the batch with every feature shuffled."""
    order = torch.argsort(torch.rand(batch.shape), dim=0)
    log_p = -negative_log_likelihood(flow, torch.gather(batch, 0, order))
    return torch.clamp(log_p, min=clamp).mean()


def train_reference_flow(
    X_train: np.ndarray,
    evaluation: tuple[np.ndarray, np.ndarray],
    *,
    epochs: int = 100,
    batch_size: int = 256,
    learning_rate: float = 1e-3,
    contrastive: bool = False,
    seed: int = 0,
) -> list[tuple[int, float, float]]:
    """Train the reference flow; return ``(epoch, training seconds, AUROC)`` per epoch.

    The held-out AUROC (of ``-log p(x)``) is computed after every epoch on
    ``evaluation = (X_test, y_test)``; its time is not counted. With
    ``contrastive=True`` the loss adds :func:`contrastive_term`.
    """
    torch.manual_seed(seed)
    np.random.seed(seed)  # FrEIA draws the blocks' rotations from NumPy's global generator
    mean, std = X_train.mean(axis=0), X_train.std(axis=0) + 1e-12
    X = torch.as_tensor((X_train - mean) / std, dtype=torch.float32)
    X_test = torch.as_tensor((evaluation[0] - mean) / std, dtype=torch.float32)
    flow = build_reference_flow(X.shape[1])
    optimizer = torch.optim.Adam(flow.parameters(), lr=learning_rate)
    curve, elapsed = [], 0.0
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        flow.train()
        order = torch.randperm(X.shape[0])
        for begin in range(0, X.shape[0], batch_size):
            batch = X[order[begin : begin + batch_size]]
            loss = negative_log_likelihood(flow, batch).mean()
            if contrastive:
                loss = loss + contrastive_term(flow, batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        elapsed += time.perf_counter() - start
        flow.eval()
        with torch.inference_mode():
            scores = negative_log_likelihood(flow, X_test).numpy()
        auroc = roc_auc_score(evaluation[1], np.nan_to_num(scores, nan=1e300, posinf=1e300))
        curve.append((epoch, elapsed, float(auroc)))
    return curve


def reference_scoring_rate(n_features: int, n_rows: int = 200_000, batch_size: int = 65_536):
    """Rows per second of the reference flow's ``-log p(x)`` in float32 (untrained weights)."""
    flow = build_reference_flow(n_features).eval()
    X = torch.randn(n_rows, n_features)
    with torch.inference_mode():
        negative_log_likelihood(flow, X[:batch_size])
        start = time.perf_counter()
        for begin in range(0, n_rows, batch_size):
            negative_log_likelihood(flow, X[begin : begin + batch_size])
        return n_rows / (time.perf_counter() - start)
