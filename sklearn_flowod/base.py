"""The shared detector base: validation, devices, seeding, thresholds,
batched scoring and persistence.

A concrete detector only says what its paper says: how to build its network,
its training loss, its raw anomaly score and where its natural threshold
lies. Everything else lives here once.

Extension points: every method and class attribute of
:class:`BaseDeepDetector` that a detector of the package overrides, with the
classes that do (``tests/test_base.py`` checks this list against the
code). Nothing else is meant to be overridden.

- ``_parameter_constraints`` (BaseINNDetector, ContrastiveFlowDetector,
  DeepSVDDDetector, InvertibleOneClassDetector, LikelihoodRatioDetector):
  the parameters and their valid values.
- ``_module_config`` (BaseINNDetector, DeepSVDDDetector): the network's
  hyperparameters, stored at fit.
- ``_build_module`` (BaseINNDetector, DeepSVDDDetector): the untrained network.
- ``_loss`` (ContrastiveFlowDetector, DeepSVDDDetector, FlowDetector,
  InvertibleOneClassDetector, LikelihoodRatioDetector): the training loss.
- ``_criterion`` (InvertibleOneClassDetector): the held-out criterion, when
  it is not the loss.
- ``_anomaly_score`` (BaseFlowDetector, DeepSVDDDetector,
  InvertibleOneClassDetector, LikelihoodRatioDetector): the paper's raw score.
- ``_auto_offset`` (BaseFlowDetector, DeepSVDDDetector,
  InvertibleOneClassDetector, LikelihoodRatioDetector): ``offset_`` for
  ``contamination="auto"``.
- ``_use_fit_params`` (ContrastiveFlowDetector, LikelihoodRatioDetector):
  extra data of ``fit`` (``X_aux``).
- ``_fit_temporaries`` (ContrastiveFlowDetector, DeepSVDDDetector,
  LikelihoodRatioDetector): attributes that live for one fit only.
- ``_before_training`` (ContrastiveFlowDetector, DeepSVDDDetector) and
  ``_after_training`` (DeepSVDDDetector, InvertibleOneClassDetector): steps
  around the training loop.
- ``_training_config`` (BaseINNDetector), ``_callbacks`` (BaseINNDetector,
  DeepSVDDDetector) and ``_train`` (BaseINNDetector): the loop's settings.
- ``_finish_module`` (BaseINNDetector) and ``_scoring_module``
  (BaseINNDetector): the trained network as scoring keeps and evaluates it.
- ``_input_divisor`` (InvertibleOneClassDetector) and ``_scoring_constants``
  (BaseFlowDetector): class constants that scoring reads, kept per model.
- ``_fit_scoring``, ``_score_batch``, ``_scoring_overhead``, ``_fit_offset``
  and ``_device_state`` (BaseINNDetector): the default score beside the
  network's, here the nearest-neighbour part of :mod:`sklearn_flowod.neighbours`:
  fitted once the network is, its training rows' scores handed to the
  threshold, nothing being kept on the detector between the two; what
  ``anomaly_score`` returns for a batch, its memory and work per row, and its tensors,
  which follow the model between devices.

``anomaly_score``, ``score_samples``, ``decision_function``, ``predict``,
``pvalues``, ``calibrate`` and ``set_false_alarm_rate`` all read the score
of ``_score_batch``; ``explain`` attributes the network's own
``_anomaly_score`` (its docstring says why).
"""

from __future__ import annotations

import warnings
from abc import ABCMeta, abstractmethod
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, OutlierMixin, _fit_context
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from ._device import resolve_device
from ._engine.batches import scoring_rows
from ._engine.threads import n_threads, product_macs, thread_probes, torch_threads, work_macs
from ._input import check_rows, dense_rows, model_input
from ._persistence import ModulePersistence
from ._random import derive_seed
from .callbacks import Callback, EarlyStopping, ProgressBar
from .conformal import ConformalMixin
from .explanation import ExplanationMixin, feature_quantiles
from .known_anomalies import KnownAnomalySampler, split_known
from .training import TrainingConfig, TrainingHistory, train_module

#: The budget of ``max_epochs="auto"``: a cap on epochs and on optimiser steps;
#: training ends before, when the held-out loss stops improving.
AUTO_MAX_EPOCHS = 500
AUTO_MAX_STEPS = 2_000
#: A column whose mean exceeds this many standard deviations loses its variation
#: in float32 without standardisation (see ``_warn_float32_offsets``).
FLOAT32_OFFSET_RATIO = 1e3
#: At most this many rows are held out for the validation checks.
MAX_VALIDATION_ROWS = 5_000
#: ``fit`` needs at least this many rows beside the held-out ones: the quartiles
#: of the training rows' scores, which set the default threshold (and
#: standardise the neighbour score's parts), are then order statistics that
#: are not the extremes.
MIN_TRAINING_ROWS = 5


def most_anomalous_if_not_finite(scores: np.ndarray, owner: str) -> np.ndarray:
    """``scores`` with every NaN or infinite anomaly score set to ``+inf``, with a warning."""
    broken = ~np.isfinite(scores)
    if broken.any():
        warnings.warn(f"{int(broken.sum())} of {scores.shape[0]} rows got a non-finite anomaly "
                      f"score from {owner} (values beyond what its network can represent); "
                      "they are scored +inf, the most anomalous.", UserWarning, stacklevel=3)
        scores = np.where(broken, np.inf, scores)
    return scores


class BaseDeepDetector(ModulePersistence, ExplanationMixin, ConformalMixin, OutlierMixin,
                       BaseEstimator, metaclass=ABCMeta):
    """Base class of the package's detectors (not to be used directly).

    Follows scikit-learn's outlier-detector convention: ``score_samples`` is
    higher for more normal points, ``decision_function`` is
    ``score_samples - offset_`` and negative for outliers, ``predict``
    returns +1 for inliers and -1 for outliers. ``anomaly_score`` returns
    the method's raw score (higher = more anomalous), as PyOD does.
    """

    _parameter_constraints: dict = {
        "max_epochs": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither"), None],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left"), None],
        "tol": [Interval(Real, 0, None, closed="left")],
        "standardize": ["boolean"],
        "contamination": [StrOptions({"auto"}), Interval(Real, 0, 0.5, closed="right")],
        "device": [str, torch.device],
        "n_jobs": [Integral, None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "callbacks": [list, None],
        "known_anomaly_weight": [Interval(Real, 0, None, closed="left"), None],
    }

    # ------------------------------------------------------------------ #
    # What a detector defines
    # ------------------------------------------------------------------ #
    @abstractmethod
    def _module_config(self, n_features: int) -> dict:
        """Hyperparameters from which ``_build_module`` builds the network.

        Stored at fit time so that a pickled model is rebuilt as it was
        trained, even if parameters are changed afterwards.
        """

    @abstractmethod
    def _build_module(self, config: dict, seed: int) -> torch.nn.Module:
        """Build the untrained network from ``config``."""

    @abstractmethod
    def _loss(self, module, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Mean training loss of one batch (also the held-out criterion)."""

    def _criterion(self, module, X_val: torch.Tensor, generator: torch.Generator):
        """The held-out criterion of early stopping (default: ``_loss`` on ``X_val``)."""
        return self._loss(module, X_val, generator)

    @abstractmethod
    def _anomaly_score(self, module, batch: torch.Tensor) -> torch.Tensor:
        """Raw anomaly score of a batch (higher = more anomalous)."""

    def _score_batch(self, module, batch: torch.Tensor) -> torch.Tensor:
        """What ``anomaly_score`` returns for a batch (default: ``_anomaly_score``)."""
        return self._anomaly_score(module, batch)

    def _scoring_overhead(self) -> tuple[int, float]:
        """Working bytes and multiply-adds per scored row beyond the network's
        (default: none); the multiply-adds are taken to be in large matrix
        products, which get threads sooner (see
        :func:`~sklearn_flowod._engine.threads.n_threads`)."""
        return 0, 0.0

    @abstractmethod
    def _auto_offset(self, X: np.ndarray) -> float:
        """``offset_`` for ``contamination="auto"``; ``X`` is the training data."""

    def _before_training(self, module, X_train: torch.Tensor, X_val: torch.Tensor | None,
                         generator: torch.Generator) -> None:
        """Prepare ``module`` before the main training loop (default: nothing).

        ``X_train`` and ``X_val`` are the standardised training and
        validation rows on the device and ``generator`` the fit's seeded
        generator. Used e.g. for pretraining or to fix a centre from the
        initial network's outputs.
        """

    def _after_training(self, module, X_train: torch.Tensor, X_val: torch.Tensor | None) -> None:
        """Finish ``module`` after the main training loop (default: nothing).

        Called with the final (float32) weights, before the module is moved
        to float64 for scoring; ``X_val`` is the validation split or None.
        """

    def _scoring_module(self):
        """What scoring evaluates in place of ``module_`` (default: ``module_``)."""
        return self.module_

    def _finish_module(self, module: torch.nn.Module) -> torch.nn.Module:
        """The trained module as scoring keeps it: float64, in evaluation mode,
        without the last step's gradients."""
        module.zero_grad(set_to_none=True)
        return module.to(torch.float64).eval()

    #: The network sees standardised data divided by this number.
    _input_divisor = 1.0
    #: Class constants that scoring depends on. ``fit`` copies each into the
    #: fitted state as ``name + "_"`` (e.g. ``_input_divisor_``), which is what
    #: training and scoring read, so a pickled model keeps its own values.
    _scoring_constants: tuple[str, ...] = ("_input_divisor",)
    #: Attributes a detector sets for one fit only (auxiliary tensors, references
    #: to the training rows): removed when ``fit`` ends, whether it succeeds or raises.
    _fit_temporaries: tuple[str, ...] = ()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True  # densified for training, batch by batch for scoring
        return tags

    # ------------------------------------------------------------------ #
    # Training
    # ------------------------------------------------------------------ #
    def _training_config(self) -> TrainingConfig:
        """The budget and optimiser settings of the parameters.

        ``max_epochs="auto"`` caps training at :data:`AUTO_MAX_EPOCHS` epochs
        and :data:`AUTO_MAX_STEPS` steps; early stopping on the held-out
        loss (``n_iter_no_change``) ends it sooner.
        """
        auto = self.max_epochs == "auto"
        return TrainingConfig(max_epochs=AUTO_MAX_EPOCHS if auto else self.max_epochs,
                              max_steps=AUTO_MAX_STEPS if auto else None,
                              batch_size=self.batch_size, learning_rate=self.learning_rate,
                              weight_decay=self.weight_decay)

    def _callbacks(self) -> list[Callback]:
        """Early stopping (with ``n_iter_no_change``) and the progress display."""
        callbacks: list[Callback] = []
        if self.n_iter_no_change is not None:
            callbacks.append(EarlyStopping(self.n_iter_no_change, self.tol))
        if self.verbose:
            # the bar shows a total only when no held-out criterion can end training
            stops_early = self.n_iter_no_change is not None and self.validation_fraction is not None
            callbacks.append(ProgressBar(known_length=not stops_early,
                                         fallback=type(self).__name__))
        return callbacks

    def _train(self, module, loss, X_train, X_val, generator, *, config=None,
               callbacks=None, noise_widths=None) -> TrainingHistory:
        """:func:`~sklearn_flowod.training.train_module` with the parameters' settings."""
        return train_module(module, loss, X_train, X_val, generator=generator,
                            config=self._training_config() if config is None else config,
                            callbacks=self._callbacks() if callbacks is None else callbacks,
                            criterion=self._criterion, noise_widths=noise_widths)

    # ------------------------------------------------------------------ #
    # Fitting
    # ------------------------------------------------------------------ #
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Fit the detector on (mostly normal) training data.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data. Pandas DataFrames are accepted; their column names
            are stored in ``feature_names_in_``. A scipy sparse matrix (e.g.
            one-hot encoded columns) is densified here, since the network
            trains on a dense tensor: it needs the memory of the dense
            array. Scoring densifies sparse input one batch at a time.
            At least :data:`MIN_TRAINING_ROWS` (5) rows must remain to train
            on besides those ``validation_fraction`` holds out: 6 rows with
            the default 0.15; fewer raise a ``ValueError`` that names the
            minimum.
        y : array-like of shape (n_samples,) or None, default=None
            Ignored with ``known_anomaly_weight=None`` (the default). Else
            -1 marks a known anomaly and +1 a normal or unlabelled row
            (scikit-learn's outlier labels); see
            :mod:`sklearn_flowod.known_anomalies`.

        Returns
        -------
        self : object
            The fitted detector.
        """
        return self._fit(X, y)

    def _known_batch(self, n_rows: int, generator: torch.Generator) -> torch.Tensor | None:
        """``n_rows`` known anomalies for a training step, or None.

        None without known anomalies, with ``known_anomaly_weight=0`` (the
        training is then the one-class one) and outside training (the
        held-out criterion stays the one-class loss of the held-out normal
        rows).
        """
        known = getattr(self, "_known", None)
        if known is None or not self.known_anomaly_weight or not torch.is_grad_enabled():
            return None
        return known.sample(n_rows, generator)

    def _use_fit_params(self, X: np.ndarray, generator: torch.Generator, **fit_params) -> None:
        """Take in extra keyword arguments of a detector's ``fit`` (default: none).

        Called once the scaler is fitted (``X`` is the validated training
        data), before the network is trained. A detector whose ``fit`` takes
        data-like keywords (e.g. ``X_aux``) validates and stores them here;
        what need not outlive the fit is named in ``_fit_temporaries``.
        """
        if fit_params:
            raise TypeError(f"Unexpected fit parameters: {sorted(fit_params)}.")

    def _fit(self, X, y=None, **fit_params):
        """The body of ``fit``; ``fit_params`` go to :meth:`_use_fit_params`.

        With ``known_anomaly_weight`` set, the rows ``y`` marks -1 leave ``X``
        here: everything below learns from the normal rows, and the known
        anomalies reach the loss through :meth:`_known_batch`.
        """
        X = dense_rows(self._validate_input(X, reset=True))
        X, X_known = split_known(self, X, y)
        self.n_known_anomalies_ = 0 if X_known is None else X_known.shape[0]
        self.device_ = resolve_device(self.device)
        for name in self._scoring_constants:
            setattr(self, name + "_", getattr(type(self), name))
        seed = derive_seed(self.random_state)
        self._fit_scaler(X)
        # a coupling needs two halves: 1-D data get a noise column (see _to_model_input)
        self._module_config_ = self._module_config(max(X.shape[1], 2))
        self._check_enough_rows(X.shape[0])  # after the parameters' own checks
        module = self._build_module(self._module_config_, seed).to(self.device_)
        generator = torch.Generator(device=self.device_)
        generator.manual_seed(seed)
        # forward and backward passes of one batch
        macs = work_macs(module, self.batch_size, passes=3)
        probes = thread_probes(self.n_jobs, macs, self.device_)
        with torch_threads(n_threads(self.n_jobs, macs)):
            try:
                self._known_rows = X_known
                self._known = None if X_known is None else KnownAnomalySampler(
                    self._to_model_input(X_known, torch.float32, generator),
                    getattr(self, "noise_std", 0.0))
                self._use_fit_params(X, generator, **fit_params)
                X_train, X_val = split = self._split_validation(X, seed)
                X_train = self._to_model_input(X_train, torch.float32, generator)
                if X_val is not None:
                    X_val = self._to_model_input(X_val, torch.float32, generator)
                self._before_training(module, X_train, X_val, generator)
                history = self._train(module, self._loss, X_train, X_val, generator,
                                      callbacks=[*probes, *(self.callbacks or []),
                                                 *self._callbacks()])
                self._after_training(module, X_train, X_val)
                self.module_ = self._finish_module(module)
            finally:
                for name in ("_known", "_known_rows", *self._fit_temporaries):
                    self.__dict__.pop(name, None)
        self._store_history(history)
        train_scores = self._fit_scoring(split[0], seed, X_known)
        self._calibrate_on_validation(X, split[1])
        self.offset_ = float(self._fit_offset(X, train_scores))
        return self

    def _fit_scoring(self, X_train: np.ndarray, seed: int,
                     X_known: np.ndarray | None = None) -> np.ndarray | None:
        """Fit what scoring needs beside ``module_`` (default: nothing).

        Called once the module is finished, with the training split (the
        validated rows the network was trained on, without the held-out ones)
        and the known anomalies (None without them).
        Returns those rows' anomaly scores when scoring them differs from
        scoring new rows (None otherwise), for :meth:`_fit_offset`.
        """
        return None

    def _fit_offset(self, X: np.ndarray, train_scores: np.ndarray | None) -> float:
        """``offset_`` from the fit rows ``X``: :meth:`_auto_offset` or the
        ``contamination`` quantile of their normality scores (``train_scores``
        from :meth:`_fit_scoring` are for detectors that override this)."""
        if self.contamination == "auto":
            return self._auto_offset(X)
        # X is validated already: scoring it again through score_samples would
        # warn about feature names whenever fit received a DataFrame.
        scores = -self._apply_in_batches(X, self._score_batch, validate=False)
        return float(np.percentile(scores, 100.0 * self.contamination))

    def _calibrate_on_validation(self, X: np.ndarray, X_val: np.ndarray | None) -> None:
        """``feature_quantiles_`` and ``calibration_scores_`` from the held-out rows.

        Without a validation split the quantiles are the training rows' and
        there are no calibration scores until :meth:`calibrate` is called.
        """
        self.feature_quantiles_ = feature_quantiles(X if X_val is None else X_val)
        self.calibration_scores_ = None if X_val is None else np.sort(
            self._apply_in_batches(X_val, self._score_batch, validate=False))

    def _validate_input(self, X, *, reset: bool) -> np.ndarray:
        return check_rows(self, X, reset=reset, min_samples=2 if reset else 1)

    def _fit_scaler(self, X: np.ndarray) -> None:
        scaler = StandardScaler(with_mean=self.standardize, with_std=self.standardize).fit(X)
        self.mean_ = scaler.mean_ if self.standardize else np.zeros(X.shape[1])
        self.scale_ = scaler.scale_ if self.standardize else np.ones(X.shape[1])
        if not self.standardize:
            self._warn_float32_offsets(X)

    def _warn_float32_offsets(self, X: np.ndarray) -> None:
        """Warn about columns whose offset leaves their variation few float32 bits.

        The network trains in float32 (24 significant bits): a column whose
        mean exceeds :data:`FLOAT32_OFFSET_RATIO` times its standard deviation
        (a timestamp in seconds) keeps at most about 14 bits of its variation.
        ``standardize=True`` centres it in float64 first.
        """
        center, spread = np.abs(X.mean(axis=0)), X.std(axis=0)
        lossy = np.flatnonzero((spread > 0) & (center > FLOAT32_OFFSET_RATIO * spread))
        if lossy.size:
            names = getattr(self, "feature_names_in_", None)
            shown = [str(names[i]) if names is not None else str(i) for i in lossy[:5]]
            warnings.warn(
                f"With standardize=False, {type(self).__name__} trains on column(s) "
                f"{', '.join(shown)}{' ...' if lossy.size > 5 else ''} in float32, where their "
                f"offset is over {FLOAT32_OFFSET_RATIO:g} times their spread and leaves their "
                "variation few significant bits; standardize them first, or set "
                "standardize=True.", UserWarning, stacklevel=4)

    def _n_validation(self, n_rows: int) -> int:
        """Rows held out of ``n_rows``: ``validation_fraction`` of them, at least
        one and at most :data:`MAX_VALIDATION_ROWS` (none without a fraction)."""
        if self.validation_fraction is None:
            return 0
        return min(max(1, int(round(self.validation_fraction * n_rows))), MAX_VALIDATION_ROWS)

    def _check_enough_rows(self, n_rows: int) -> None:
        """Refuse fewer rows than :data:`MIN_TRAINING_ROWS` to train on besides the
        held-out ones."""
        minimum = MIN_TRAINING_ROWS
        while minimum - self._n_validation(minimum) < MIN_TRAINING_ROWS:
            minimum += 1
        if n_rows < minimum:
            held_out = self._n_validation(minimum)
            why = (f"{MIN_TRAINING_ROWS} to train on" if not held_out else
                   f"{MIN_TRAINING_ROWS} to train on and {held_out} held out by "
                   f"validation_fraction={self.validation_fraction}")
            raise ValueError(f"n_samples={n_rows} is too few; {type(self).__name__} needs "
                             f"at least {minimum} ({why}).")

    def _split_validation(self, X: np.ndarray, seed: int):
        """Hold out :meth:`_n_validation` rows (validated: enough remain to train on)."""
        if self.validation_fraction is None:
            return X, None
        return train_test_split(X, test_size=self._n_validation(X.shape[0]), random_state=seed)

    def _to_model_input(self, X, dtype, generator=None) -> torch.Tensor:
        """Standardise rows of ``X`` on the device and pad 1-D data.

        The network sees ``(X - mean_) / (scale_ * _input_divisor_)``; rows
        of a sparse matrix are densified here.

        A single feature is completed with a second, independent column: for
        training, standard normal noise drawn from ``generator`` (the network
        then learns the product of the data's law and a standard normal);
        for scoring (``generator=None``), the noise's centre 0. The padding
        column is documented in the detectors as a property of 1-D data.
        """
        return model_input(X, self.mean_, self.scale_ * self._input_divisor_,
                           self._input_divisor_, self.device_, dtype, generator)

    def _store_history(self, history: TrainingHistory) -> None:
        self.loss_curve_ = history.loss_curve
        if self.validation_fraction is not None:
            self.validation_loss_curve_ = history.validation_loss_curve
        self.n_epochs_ = history.n_epochs
        self.best_epoch_ = history.best_epoch

    # ------------------------------------------------------------------ #
    # Scoring
    # ------------------------------------------------------------------ #
    def _apply_in_batches(self, X, fn, *, validate: bool = True, cost: int = 1) -> np.ndarray:
        """Evaluate ``fn(module, batch)`` over ``X`` in float64 batches.

        ``module`` is :meth:`_scoring_module` (for a coupling flow a folded
        evaluator that computes the same forward pass with fewer
        operations). Rows are validated (unless ``validate=False``, for
        arrays validated already), moved to the device, standardised and
        evaluated under ``torch.inference_mode`` in batches sized by
        scikit-learn's ``working_memory`` (see
        :func:`~sklearn_flowod._engine.batches.scoring_rows`), so memory
        beyond the output array does not grow with the number of rows.
        ``cost`` is how many network rows ``fn`` evaluates per row of ``X``:
        batches are that many times smaller.
        """
        if validate:
            check_is_fitted(self)
            X = self._validate_input(X, reset=False)
        out = None
        module = self._scoring_module()
        extra_bytes, extra_macs = self._scoring_overhead()
        batch_size = scoring_rows(self.module_, X.shape[1], X.shape[0] * cost, self.device_,
                                  extra_row_bytes=extra_bytes * cost)
        products = product_macs(self.module_, batch_size) + extra_macs * batch_size
        threads = n_threads(self.n_jobs, work_macs(self.module_, batch_size),
                            product_macs=products)
        batch_size = max(1, batch_size // cost)
        with torch_threads(threads), torch.inference_mode():
            for start in range(0, X.shape[0], batch_size):
                stop = start + batch_size
                batch = self._to_model_input(X[start:stop], torch.float64)
                result = fn(module, batch).cpu().numpy()
                if out is None:
                    out = np.empty((X.shape[0], *result.shape[1:]), dtype=np.float64)
                out[start:stop] = result
        return out

    def anomaly_score(self, X) -> np.ndarray:
        """Raw anomaly score of the method; higher means more anomalous.

        This is PyOD's sign convention (``decision_function`` there). It equals
        ``-score_samples(X)``, and it is the score that ``decision_function``,
        ``predict``, ``pvalues``, ``calibrate`` and ``set_false_alarm_rate``
        read: for the detectors built on invertible networks with
        ``n_neighbors`` set (the default), the network's score plus the
        standardised nearest-neighbour distances (see ``n_neighbors``).
        ``explain`` attributes the network's own score.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The samples to score.

        Returns
        -------
        scores : ndarray of shape (n_samples,)
            A row whose score is not finite (NaN or infinite, e.g. after an
            overflow on values near the float64 limit) gets ``+inf``, the
            most anomalous score, with a ``UserWarning`` giving the count.
        """
        return most_anomalous_if_not_finite(self._apply_in_batches(X, self._score_batch),
                                            type(self).__name__)

    def score_samples(self, X) -> np.ndarray:
        """Normality score; the lower, the more abnormal.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The samples to score.

        Returns
        -------
        scores : ndarray of shape (n_samples,)
            ``-anomaly_score(X)``.
        """
        return -self.anomaly_score(X)

    def decision_function(self, X) -> np.ndarray:
        """Shifted normality score: negative for outliers, positive for inliers.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The samples to score.

        Returns
        -------
        scores : ndarray of shape (n_samples,)
            ``score_samples(X) - offset_``.
        """
        return self.score_samples(X) - self.offset_

    def predict(self, X) -> np.ndarray:
        """Predict whether each sample is an inlier (+1) or an outlier (-1).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The samples to classify.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            +1 where ``decision_function(X) >= 0``, -1 elsewhere.
        """
        decision = self.decision_function(X)
        labels = np.ones(decision.shape[0], dtype=int)
        labels[decision < 0] = -1
        return labels
