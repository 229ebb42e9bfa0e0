"""Deep Support Vector Data Description (Ruff et al., 2018)."""

from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, StrOptions
from torch import nn

from .._engine.batches import scoring_rows
from ..base import BaseDeepDetector
from ..callbacks import Callback, ProgressBar
from ..networks import build_bias_free_mlp, with_min_rows


class SVDDNetwork(nn.Module):
    """A bias-free encoder with the hypersphere's centre and radius.

    The centre ``c`` and the radius ``R`` are fitted state, not trained by
    gradient descent: they are buffers, so they travel with the weights in
    ``state_dict`` (persistence, early stopping) and with ``.to(...)``.
    """

    def __init__(self, n_features: int, hidden_sizes, representation_size: int, seed: int = 0):
        super().__init__()
        self.encoder = build_bias_free_mlp(n_features, hidden_sizes, representation_size, seed=seed)
        self.register_buffer("center", torch.zeros(representation_size))
        self.register_buffer("radius", torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def squared_distance(self, x: torch.Tensor, *, rowwise: bool = False) -> torch.Tensor:
        """``||phi(x) - c||^2`` of every row.

        ``rowwise=True`` (scoring) makes every row's result independent of
        the batch it is evaluated in (see :func:`with_min_rows`).
        """
        z = with_min_rows(self.encoder, x) if rowwise else self.encoder(x)
        return (z - self.center).square().sum(dim=1)


#: Deep SAD's ``eps`` in the inverse distance of a known anomaly (its value in
#: the authors' code).
DEEP_SAD_EPS = 1e-6


def _upper_quantile(dist: torch.Tensor, fraction: float) -> torch.Tensor:
    """The ``ceil((1 - fraction) n)``-th smallest of ``dist``: at most ``fraction`` lie above."""
    return dist.kthvalue(max(1, math.ceil((1.0 - fraction) * dist.shape[0] - 1e-9))).values


def _chunks(module: nn.Module, X: torch.Tensor):
    size = scoring_rows(module, X.shape[1], X.shape[0], X.device)
    return (X[start : start + size] for start in range(0, X.shape[0], size))


class _EpochEnd(Callback):
    """Call ``update(module)`` after every epoch from epoch ``first``."""

    def __init__(self, update, first: int = 1):
        self.update, self.first = update, first

    def on_check(self, state) -> None:
        if state.epoch_ended and state.epoch >= self.first:
            self.update(state.module)


class DeepSVDDDetector(BaseDeepDetector):
    """Deep SVDD: a bias-free network pulls the normal data towards a centre.

    A neural network ``phi`` without bias terms maps the data into a
    representation space in which the normal data are enclosed by a small
    hypersphere of centre ``c`` (Ruff et al., 2018). The centre is fixed
    before training to the mean of the initial network's outputs on the
    training data; coordinates closer to 0 than ``center_eps`` are pushed to
    ``+-center_eps``, since a zero centre could be reached by a network that
    maps everything to 0. Together with the absence of bias terms and of
    bounded activations (the hidden layers use leaky ReLUs) this prevents the
    trivial collapsed solution ``phi = c``.

    Two objectives are available:

    - ``"one-class"`` minimises the mean squared distance
      ``mean ||phi(x) - c||^2`` (Ruff et al., Eq. 4); the anomaly score is
      ``||phi(x) - c||^2``. With ``trim_fraction = q > 0`` the mean runs
      only over the rows within the ``(1 - q)`` quantile of the training
      rows' distances, set from the initial network and again after every
      epoch from the distances its steps computed (a trimmed mean, as in
      least trimmed squares): outliers among the training rows, as long as
      they are fewer than ``q``, are not pulled to the centre.
    - ``"soft-boundary"`` minimises
      ``R^2 + 1/nu * mean max(0, ||phi(x) - c||^2 - R^2)``. As in Ruff et al.,
      ``R`` is not trained by gradient descent: after ``warm_up_epochs``
      epochs it is set after every epoch to the ``(1 - nu)`` quantile of the
      training distances (the optimal ``R`` for the current network), and
      once more from the final network. The anomaly score is
      ``||phi(x) - c||^2 - R^2``, positive outside the sphere.

    In both objectives the weight-decay term ``lambda/2 ||theta||^2`` is
    Adam's L2 penalty, ``weight_decay = lambda``.

    Optionally (``pretrain_epochs > 0``) the encoder is first trained as the
    encoder half of an autoencoder whose decoder mirrors it (also without
    bias terms) on the mean squared reconstruction error; the decoder is
    then discarded, the encoder weights are kept and ``c`` is computed from
    the pretrained encoder.

    Parameters
    ----------
    objective : {"one-class", "soft-boundary"}, default="one-class"
        Which Deep SVDD objective to minimise.
    nu : float in (0, 1], default=0.1
        Soft-boundary: the fraction of training points allowed outside the
        sphere (an upper bound on the training outliers and a lower bound on
        the support vectors). Both objectives: the fraction of training
        points outside the sphere of radius ``R``, which
        ``contamination="auto"`` uses as the boundary.
    hidden_sizes : tuple of int, default=(256,)
        Widths of the encoder's hidden layers (leaky ReLU, no bias).
    representation_size : int, default=128
        Dimension of the representation space in which the sphere lies.
    center_eps : float, default=0.1
        Coordinates of the initial centre with absolute value below this are
        set to ``+center_eps`` or ``-center_eps`` (by their sign; 0 goes to
        ``+center_eps``).
    trim_fraction : float in [0, 0.5), default=0.1
        ``"one-class"``: the share of the training rows farthest from ``c``
        left out of the mean; 0 is Ruff et al.'s objective. Without it,
        training pulls whatever the training rows hold towards ``c``, a
        cluster of contaminating outliers included: in a grid search over
        folds with 9% clustered outliers (``benchmarks/ablation.py``'s
        contaminated search) 100 epochs ranked the outliers about as normal
        as the inliers, and trimming 10% of the rows ranked them apart again;
        it also raised the mean AUROC on the ADBench development sets
        (``benchmarks/results/ablation_deep_svdd_trimming.md``). Trimming 5%
        did not keep 9% of outliers out; trimming each batch's farthest rows
        instead of the training set's was not robust either
        (``ablation_deep_svdd_batch_trimming.md``).
    warm_up_epochs : int, default=10
        Soft-boundary: epochs trained with ``R = 0`` before the radius is
        updated.
    pretrain_epochs : int, default=0
        Epochs of autoencoder pretraining of the encoder; 0 skips it.
        Pretraining (10 or 30 epochs) did not raise the mean AUROC on the
        tabular ADBench data sets when this default was chosen, hence 0;
        that comparison is not among the generated results, the default's
        own are in ``benchmarks/results/deep_svdd.md``.
    max_epochs : int, default=100
        Maximum number of passes over the training data. With the trimmed
        objective, 100 epochs had a higher mean AUROC on the ADBench
        development sets than 50 and than 20 untrimmed epochs (the default
        before trimming, ``benchmarks/results/ablation_deep_svdd_epochs.md``,
        which scored lower on Wilt, fault and mammography).
    batch_size : int, default=128
        Rows per training step (pretraining too).
    learning_rate : float, default=1e-4
        Adam's step size (pretraining too), as in Ruff et al. Larger steps
        pulled the representation in further and lowered the mean AUROC on
        ADBench when this default was chosen (not among the generated
        results; the default's are in ``benchmarks/results/deep_svdd.md``).
    weight_decay : float, default=1e-6
        The ``lambda`` of the objective: Adam's L2 penalty.
    validation_fraction : float or None, default=0.15
        Fraction of the training rows held out (at most
        ``sklearn_flowod.base.MAX_VALIDATION_ROWS`` rows): the calibration
        rows of ``pvalues`` and ``set_false_alarm_rate``, the held-out
        objective's curve and, with ``n_iter_no_change``, early stopping.
        ``None`` trains on all rows. Holding out 15% left the mean AUROC on
        the development sets about where training on all rows had it
        (``benchmarks/results/ablation_deep_svdd_calibration_split.md``).
    n_iter_no_change : int or None, default=None
        Epochs without improvement of the validation loss before stopping;
        ``None`` trains the ``max_epochs`` of the paper's fixed budget.
    tol : float, default=1e-4
        Minimum improvement of the validation loss.
    standardize : bool, default=True
        Standardise every feature with the training mean and standard
        deviation (stored in ``mean_`` and ``scale_``) before the network.
    contamination : "auto" or float in (0, 0.5], default="auto"
        ``"auto"``: the sphere of radius ``R`` is the boundary and
        ``predict`` returns -1 exactly for points outside it. For
        ``"soft-boundary"`` this is the objective's own sphere
        (``offset_ = 0``). ``"one-class"`` has no radius in its objective;
        there ``R`` is, by the same rule, the ``(1 - nu)`` quantile of the
        final training distances (``offset_ = -R^2``), so that ``nu`` means
        the same for both objectives: about a fraction ``nu`` of the
        training data is flagged. A float sets ``offset_`` so that this
        fraction of the training data is flagged.
    device : {"auto", "cpu", "cuda", "cuda:N"} or torch.device, default="auto"
        Where to train and score; ``"auto"`` uses CUDA when available.
    n_jobs : int or None, default=None
        Torch intra-op threads of ``fit`` (training the Deep SVDD objective) and of
        scoring: ``None`` chooses them from the size of the work, at most the
        caller's ``torch.get_num_threads()`` (see "Threads" in the user guide);
        an int follows joblib's convention. The caller's setting is restored.
    random_state : int, RandomState instance or None, default=None
        Controls weight initialisation, pretraining and shuffling. The
        caller's global generators are untouched.
    verbose : int, default=0
        0 is silent; 1 prints a line per epoch to standard output (a tqdm
        bar instead, when tqdm is installed) and, at the end of training, one
        line with the epochs run, the epoch kept, why training stopped and
        the time taken.
        The autoencoder pretraining (``pretrain_epochs``) has its own lines.
    callbacks : list of Callback or None, default=None
        More :class:`~sklearn_flowod.callbacks.Callback` objects for the
        training loop of the detector's network (not the autoencoder
        pretraining), called at the start and end of training, before every step
        and after every check, before the detector's own (early stopping, the
        progress display; so at the end they see the last weights, before early
        stopping restores the best): to record a metric as training goes, or to
        stop training (``on_check`` returning True; the callback's
        ``stop_reason``, if any, is what ``verbose`` reports). ``clone`` copies
        them.
    known_anomaly_weight : float >= 0 or None, default=None
        ``None`` ignores ``y``. A float makes ``fit`` read ``y`` as scikit-learn's outlier
        labels (-1 a known anomaly, +1 a normal or unlabelled row): the detector learns from
        the normal rows alone, and the known anomalies enter as Deep SAD's ``eta`` (Ruff et
        al. 2020, eq. 4): the weight of the inverse squared distance that pushes them away
        from the centre. See "Using known anomalies" in the user guide and
        :mod:`sklearn_flowod.known_anomalies`.

    Attributes
    ----------
    module_ : SVDDNetwork
        The trained encoder (float64, in evaluation mode) with the buffers
        ``center`` (c) and ``radius`` (R).
    center_ : ndarray of shape (representation_size,)
        The hypersphere's centre c.
    radius_ : float
        The hypersphere's radius R.
    offset_ : float
        Threshold subtracted from ``score_samples`` in ``decision_function``.
    calibration_scores_ : ndarray of shape (n_calibration,) or None
        Sorted anomaly scores of the held-out rows (of :meth:`calibrate`'s
        rows once it is called), against which ``pvalues`` and
        ``set_false_alarm_rate`` rank new rows; None without held-out rows.
    feature_quantiles_ : ndarray of shape (n_values, n_features_in_)
        The values ``explain`` tries for each feature: mid-quantiles of the
        held-out rows (of all training rows without them).
    mean_, scale_ : ndarray of shape (n_features_in_,)
        Standardisation applied before the network.
    pretrain_loss_curve_ : list of float
        Mean reconstruction error per pretraining epoch (empty without
        pretraining).
    loss_curve_ : list of float
        Mean training loss (the objective without weight decay) per epoch.
    validation_loss_curve_ : list of float
        The held-out criterion at every check (after every epoch, and within
        long epochs), only when ``validation_fraction`` is set.
    n_epochs_ : int
        Number of epochs trained.
    best_epoch_ : int
        Epoch whose weights were kept.
    device_ : torch.device
        Device the network lives on.
    n_known_anomalies_ : int
        Known anomalies the fit used (0 when ``y`` is ignored or marks none).
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Column names, when ``X`` was a DataFrame with string column names.

    Notes
    -----
    With a single feature, the network sees a second column of standard
    normal noise during training and its centre 0 when scoring, like the
    package's other detectors.

    A bias-free network maps the origin to 0, so the (standardised) training
    mean always scores ``||c||^2``; it is not necessarily the most normal
    point. This is a property of Deep SVDD's architecture, not of the data.

    References
    ----------
    L. Ruff, R. Vandermeulen, N. Goernitz, L. Deecke, S. A. Siddiqui,
    A. Binder, E. Mueller and M. Kloft. Deep one-class classification.
    ICML 2018.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_flowod import DeepSVDDDetector
    >>> X = np.random.RandomState(0).normal(size=(200, 2))
    >>> det = DeepSVDDDetector(max_epochs=20, random_state=0).fit(X)
    >>> float(np.mean(det.predict(X) == -1))  # a fraction nu of the training data
    0.1
    >>> det.predict([[8.0, 8.0]])
    array([-1])
    """

    _parameter_constraints: dict = {
        **BaseDeepDetector._parameter_constraints,
        "objective": [StrOptions({"one-class", "soft-boundary"})],
        "nu": [Interval(Real, 0, 1, closed="right")],
        "hidden_sizes": ["array-like"],
        "representation_size": [Interval(Integral, 1, None, closed="left")],
        "center_eps": [Interval(Real, 0, None, closed="left")],
        "trim_fraction": [Interval(Real, 0, 0.5, closed="left")],
        "warm_up_epochs": [Interval(Integral, 0, None, closed="left")],
        "pretrain_epochs": [Interval(Integral, 0, None, closed="left")],
    }
    _fit_temporaries = ("_radius_data", "_trim_radius", "_epoch_distances")

    def __init__(self, *, objective="one-class", nu=0.1, hidden_sizes=(256,),
                 representation_size=128, center_eps=0.1, trim_fraction=0.1, warm_up_epochs=10,
                 pretrain_epochs=0, max_epochs=100, batch_size=128, learning_rate=1e-4,
                 weight_decay=1e-6, validation_fraction=0.15, n_iter_no_change=None, tol=1e-4,
                 standardize=True, contamination="auto", device="auto", n_jobs=None,
                 random_state=None, verbose=0,
                 callbacks=None, known_anomaly_weight=None):
        self.objective = objective
        self.nu = nu
        self.hidden_sizes = hidden_sizes
        self.representation_size = representation_size
        self.center_eps = center_eps
        self.trim_fraction = trim_fraction
        self.warm_up_epochs = warm_up_epochs
        self.pretrain_epochs = pretrain_epochs
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.standardize = standardize
        self.contamination = contamination
        self.device = device
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose
        self.callbacks = callbacks
        self.known_anomaly_weight = known_anomaly_weight

    # ------------------------------------------------------------------ #
    # The network
    # ------------------------------------------------------------------ #
    def _module_config(self, n_features: int) -> dict:
        sizes = np.asarray(self.hidden_sizes)
        if sizes.ndim != 1 or (sizes.size and not (np.issubdtype(sizes.dtype, np.integer)
                                                   and sizes.min() >= 1)):
            raise ValueError("hidden_sizes must be a sequence of positive integers, got "
                             f"{self.hidden_sizes!r}.")
        return {"n_features": n_features, "hidden_sizes": tuple(int(h) for h in sizes),
                "representation_size": int(self.representation_size)}

    def _build_module(self, config: dict, seed: int) -> torch.nn.Module:
        return SVDDNetwork(**config, seed=seed)

    # ------------------------------------------------------------------ #
    # Pretraining, centre and radius
    # ------------------------------------------------------------------ #
    def _before_training(self, module, X_train, X_val, generator):
        self.pretrain_loss_curve_ = []
        if self.pretrain_epochs > 0:
            self._pretrain(module, X_train, generator)
        module.center.copy_(self._initial_center(module, X_train))
        self._radius_data = X_train
        self._trim_radius = None  # the trimmed objective's squared radius, on the device
        self._epoch_distances = []  # the training steps' distances since the last update
        if self.objective == "one-class" and self.trim_fraction > 0:
            self._trim_radius = self._distance_quantile(module, X_train, self.trim_fraction)

    def _pretrain(self, module, X_train, generator):
        """Train the encoder with a mirrored bias-free decoder on reconstruction."""
        config = self._module_config_
        seed = int(torch.randint(2**31 - 1, (1,), generator=generator, device=X_train.device))
        decoder = build_bias_free_mlp(config["representation_size"], config["hidden_sizes"][::-1],
                                      config["n_features"], seed=seed).to(X_train.device)
        autoencoder = nn.Sequential(module.encoder, decoder)
        config = self._training_config()
        config.max_epochs, config.max_steps = self.pretrain_epochs, None
        progress = [ProgressBar(known_length=True, fallback="DeepSVDDDetector pretraining")]
        history = self._train(autoencoder, _reconstruction_loss, X_train, None, generator,
                              config=config, callbacks=progress if self.verbose else [])
        self.pretrain_loss_curve_ = history.loss_curve

    def _initial_center(self, module, X_train) -> torch.Tensor:
        """Mean output, with coordinates near 0 pushed to +-center_eps."""
        module.eval()
        with torch.no_grad():
            total = sum(module(chunk).to(torch.float64).sum(dim=0)
                        for chunk in _chunks(module, X_train))
        center = (total / X_train.shape[0]).to(X_train.dtype)
        sign = torch.where(center < 0, -1.0, 1.0).to(center.dtype)
        return torch.where(center.abs() < self.center_eps, sign * self.center_eps, center)

    def _distance_quantile(self, module, X, fraction: float) -> torch.Tensor:
        """The ``ceil((1 - fraction) n)``-th smallest squared distance of ``X``'s rows.

        At most a ``fraction`` of the rows lies strictly farther from ``c``.
        """
        module.eval()
        with torch.no_grad():
            dist = torch.cat([module.squared_distance(chunk) for chunk in _chunks(module, X)])
        return _upper_quantile(dist, fraction)

    def _set_radius(self, module, X_train) -> None:
        """R^2 = the (1 - nu) quantile of the training distances."""
        module.radius.copy_(self._distance_quantile(module, X_train, self.nu).sqrt())

    def _update_trim_radius(self, module) -> None:
        """The trim radius from the distances of the epoch's steps (no extra pass)."""
        dist = torch.cat(self._epoch_distances)[-self._radius_data.shape[0]:]
        self._epoch_distances.clear()  # (a retried epoch's are the last ones kept)
        self._trim_radius = _upper_quantile(dist, self.trim_fraction)

    def _callbacks(self) -> list[Callback]:
        callbacks = super()._callbacks()
        if self.objective == "soft-boundary":
            # R is updated from the epoch when the warm-up is over (at the latest
            # after the last epoch), so that the loss sees a sphere early on.
            first = max(1, min(self.warm_up_epochs, self._training_config().max_epochs))
            callbacks.append(_EpochEnd(lambda module: self._set_radius(module, self._radius_data),
                                       first))
        elif self.trim_fraction > 0:
            callbacks.append(_EpochEnd(self._update_trim_radius))
        return callbacks

    def _after_training(self, module, X_train, X_val):
        # Both objectives: R from the final network (the objective's own
        # sphere for soft-boundary, the "auto" boundary for one-class).
        # (in float64, as scoring compares float64 distances with it), over
        # every row of fit's X: the held-out rows count as training data here
        rows = X_train if X_val is None else torch.cat([X_train, X_val])
        self._set_radius(module.to(torch.float64), rows.to(torch.float64))
        self.center_ = module.center.detach().cpu().numpy().astype(np.float64)
        self.radius_ = float(module.radius)

    # ------------------------------------------------------------------ #
    # Loss and score
    # ------------------------------------------------------------------ #
    def _loss(self, module, batch, generator):
        """The objective of eq. (3) (one-class) or (2) (soft-boundary).

        With known anomalies, plus Deep SAD's term (Ruff et al. 2020, eq. 4
        with ``y = -1``): ``known_anomaly_weight`` (its ``eta``) times the
        mean of ``1 / (||phi(a) - c||^2 + eps)`` over a known anomaly per
        training row, which pushes them away from the centre.
        """
        loss = self._one_class_loss(module, batch)
        known = self._known_batch(batch.shape[0], generator)
        if known is None:
            return loss
        inverse = 1.0 / (module.squared_distance(known) + DEEP_SAD_EPS)
        return loss + self.known_anomaly_weight * inverse.mean()

    def _one_class_loss(self, module, batch):
        dist = module.squared_distance(batch)
        if self.objective == "soft-boundary":
            r2 = module.radius.square()
            return r2 + (dist - r2).clamp(min=0.0).mean() / self.nu
        if self._trim_radius is None:
            return dist.mean()
        if torch.is_grad_enabled():
            self._epoch_distances.append(dist.detach())
        kept = (dist <= self._trim_radius).to(dist.dtype)
        return (dist * kept).sum() / kept.sum().clamp(min=1.0)

    def _anomaly_score(self, module, batch):
        dist = module.squared_distance(batch, rowwise=True)
        return dist - module.radius.square() if self.objective == "soft-boundary" else dist

    def _auto_offset(self, X: np.ndarray) -> float:
        if self.objective == "soft-boundary":
            return 0.0
        # -R^2 from the training rows scored as score_samples scores them (not from
        # their float32 training copy): exactly a fraction nu lies beyond it
        scores = self._apply_in_batches(X, self._anomaly_score, validate=False)
        return -float(_upper_quantile(torch.as_tensor(scores), self.nu))

    def representation(self, X) -> np.ndarray:
        """Map samples to the representation space of the hypersphere.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The samples to map.

        Returns
        -------
        Z : ndarray of shape (n_samples, representation_size)
            ``phi(X)``; ``anomaly_score`` is derived from ``||Z - center_||^2``.
        """
        return self._apply_in_batches(X, lambda module, x: with_min_rows(module.encoder, x))


def _reconstruction_loss(autoencoder: nn.Module, batch: torch.Tensor, generator) -> torch.Tensor:
    return (autoencoder(batch) - batch).square().mean()
