"""Synthetic data sets that need no download: a fraud-like table, anomalies with known causes."""

from __future__ import annotations

import numpy as np
from sklearn.utils import check_random_state


def make_fraud_like(
    n_samples: int = 20_000,
    *,
    n_components: int = 10,
    fraud_fraction: float = 0.01,
    random_state: None | int | np.random.RandomState = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Generate a synthetic card-transaction table with rare frauds.

    The table imitates the layout of public card-fraud data: ``n_components``
    anonymised, correlated numeric features (normal transactions come from a
    mixture of three customer segments), the transaction amount (log-normal,
    in currency units), the hour of day, and two binary flags (card present,
    foreign merchant). Frauds differ subtly: a shifted and widened position in
    a few components, larger amounts, night hours, and more often a missing
    card and a foreign merchant. The data are synthetic and say nothing about
    real fraud.

    Parameters
    ----------
    n_samples : int, default=20_000
        Number of transactions.
    n_components : int, default=10
        Number of anonymised numeric features (at least 3).
    fraud_fraction : float, default=0.01
        Expected fraction of frauds, in (0, 0.5).
    random_state : int, RandomState instance or None, default=None
        Seed of the generator.

    Returns
    -------
    X : ndarray of shape (n_samples, n_components + 4)
        Columns: the components, ``amount``, ``hour``, ``card_present``,
        ``foreign``.
    y : ndarray of shape (n_samples,)
        1 for fraud, 0 for a normal transaction.

    Examples
    --------
    >>> from sklearn_flowod.datasets import make_fraud_like
    >>> X, y = make_fraud_like(1000, random_state=0)
    >>> X.shape
    (1000, 14)
    """
    if n_components < 3:
        raise ValueError(f"n_components must be at least 3, got {n_components}.")
    if not 0 < fraud_fraction < 0.5:
        raise ValueError(f"fraud_fraction must be in (0, 0.5), got {fraud_fraction}.")
    rng = check_random_state(random_state)
    y = (rng.uniform(size=n_samples) < fraud_fraction).astype(int)
    mixing = rng.normal(size=(n_components, n_components)) / np.sqrt(n_components)
    centres = rng.normal(scale=1.5, size=(3, n_components))
    segment = rng.choice(3, size=n_samples, p=[0.5, 0.3, 0.2])
    latent = rng.normal(size=(n_samples, n_components))
    fraud_shift = np.zeros(n_components)
    fraud_shift[: 3] = [2.0, -1.5, 1.0]
    latent[y == 1] = latent[y == 1] * 1.5 + fraud_shift
    components = centres[segment] + latent @ mixing
    log_amount = rng.normal(3.5 + 0.4 * segment, 0.8)
    log_amount[y == 1] += rng.normal(1.2, 0.6, size=y.sum())
    hour = np.mod(rng.normal(14.0, 4.0, size=n_samples), 24.0)
    hour[y == 1] = np.mod(rng.normal(2.0, 3.0, size=y.sum()), 24.0)
    card_present = rng.uniform(size=n_samples) < np.where(y == 1, 0.3, 0.8)
    foreign = rng.uniform(size=n_samples) < np.where(y == 1, 0.4, 0.05)
    X = np.column_stack([components, np.exp(log_amount), hour, card_present, foreign])
    return X.astype(np.float64), y


def make_planted_anomalies(
    n_samples: int = 2_000,
    n_anomalies: int = 200,
    *,
    n_features: int = 10,
    correlation: float = 0.8,
    kind: str = "correlation",
    random_state: None | int | np.random.RandomState = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Correlated Gaussian rows, and anomalies each caused by one known feature.

    Normal rows are standard normal with every pairwise correlation equal to
    ``correlation``. Each anomaly is a normal row whose feature ``j`` (its
    cause, drawn uniformly) is changed:

    - ``kind="correlation"``: ``x_j`` is moved against the other features to
      ``-sign(m_j) * u``, ``u`` uniform in [1, 1.5], where ``m_j`` is
      the mean of ``x_j`` given the others. Its own value stays within 1.5
      standard deviations of its mean, so no single column shows it; only the
      broken correlation does.
    - ``kind="extreme"``: ``x_j`` is set to ``+-u``, ``u`` uniform in [4, 6]:
      an extreme marginal value.

    Parameters
    ----------
    n_samples : int, default=2_000
        Number of normal rows.
    n_anomalies : int, default=200
        Number of anomalies.
    n_features : int, default=10
        Number of features (at least 2).
    correlation : float, default=0.8
        The correlation of every pair of features, in [0, 1).
    kind : {"correlation", "extreme"}, default="correlation"
        How a cause makes its row anomalous.
    random_state : int, RandomState instance or None, default=None
        Seed of the generator.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features)
        The normal rows.
    X_anomalies : ndarray of shape (n_anomalies, n_features)
        The anomalies.
    causes : ndarray of shape (n_anomalies,)
        The index of the feature changed in each anomaly.

    Examples
    --------
    >>> from sklearn_flowod.datasets import make_planted_anomalies
    >>> X, X_anomalies, causes = make_planted_anomalies(100, 5, random_state=0)
    >>> X.shape, X_anomalies.shape, causes.shape
    ((100, 10), (5, 10), (5,))
    """
    if n_features < 2:
        raise ValueError(f"n_features must be at least 2, got {n_features}.")
    if not 0 <= correlation < 1:
        raise ValueError(f"correlation must be in [0, 1), got {correlation}.")
    if kind not in ("correlation", "extreme"):
        raise ValueError(f"kind must be 'correlation' or 'extreme', got {kind!r}.")
    rng = check_random_state(random_state)
    covariance = np.full((n_features, n_features), correlation)
    np.fill_diagonal(covariance, 1.0)
    factor = np.linalg.cholesky(covariance)
    X = rng.normal(size=(n_samples, n_features)) @ factor.T
    anomalies = rng.normal(size=(n_anomalies, n_features)) @ factor.T
    causes = rng.randint(n_features, size=n_anomalies)
    rows = np.arange(n_anomalies)
    if kind == "correlation":
        precision = np.linalg.inv(covariance)
        # the conditional mean of x_j given the rest of the row, for a Gaussian
        others = anomalies @ precision.T - anomalies * np.diag(precision)
        mean_j = -others[rows, causes] / precision[causes, causes]
        direction = -np.where(mean_j >= 0, 1.0, -1.0)
        anomalies[rows, causes] = direction * rng.uniform(1.0, 1.5, size=n_anomalies)
    else:
        sign = np.where(rng.uniform(size=n_anomalies) < 0.5, -1.0, 1.0)
        anomalies[rows, causes] = sign * rng.uniform(4.0, 6.0, size=n_anomalies)
    return X, anomalies, causes
