"""Log-likelihood ratio of two flows (Schirrmeister et al., 2020)."""

from __future__ import annotations

import math
from numbers import Real

import numpy as np
import torch
from sklearn.base import _fit_context, clone
from sklearn.frozen import FrozenEstimator
from sklearn.utils._param_validation import HasMethods, Interval
from sklearn.utils.validation import check_is_fitted

from ..auxiliary import UniformBox
from ..callbacks import progress_description
from ._aux_input import check_aux_data
from .flow import BaseFlowDetector, FlowDetector, flow_log_density, standard_normal_log_density


class LikelihoodRatioDetector(BaseFlowDetector):
    """Log-likelihood ratio of an in-distribution flow and a general flow.

    Two normalizing flows of identical architecture are trained by maximum
    likelihood: ``p_in`` on the training data X and ``p_g`` on a more
    general distribution (``X_aux``, or samples of the ``auxiliary``
    generator). Following the hierarchies-of-distributions method of
    Schirrmeister et al. (2020), the normality score is the log-likelihood
    ratio::

        score_samples(x) = log p_in(x) - log p_g(x)

    Whatever both models learn alike (the "domain prior") cancels, and what
    sets the inliers apart from the general distribution remains. With
    ``contamination="auto"`` the boundary is at log-ratio 0: a sample is an
    inlier when the in-distribution model finds it more likely than the
    general one.

    The general model can be fitted once and reused: pass a fitted
    :class:`~sklearn_flowod.FlowDetector` wrapped in
    :class:`sklearn.frozen.FrozenEstimator` as ``aux_model``, and neither
    ``fit`` nor ``clone`` (hence ``GridSearchCV``) refits it.

    Optionally the in-distribution flow is also trained with the paper's
    outlier loss: on auxiliary samples y, the log-likelihood ratio is read
    as the logit of a classifier and pushed towards "general", i.e.
    ``-log sigmoid((log p_g(y) - log p_in(y)) / T)`` is added with weight
    ``outlier_weight`` (the general model is held fixed).

    Parameters
    ----------
    aux_model : estimator or None, default=None
        The general model. ``None``: a :class:`~sklearn_flowod.FlowDetector`
        with this detector's architecture and training parameters, fitted
        on the auxiliary data. A ``FrozenEstimator`` around a fitted flow
        detector of this package: used as it is (never refitted); when both
        it and X have feature names, they must be the same, in the same
        order. Another (unfitted) flow detector of this package: cloned and
        fitted on the auxiliary data. A ``LikelihoodRatioDetector`` (whose
        score is a ratio, not a density) is refused.
    auxiliary : generator or None, default=None
        Transformer with ``fit``/``transform`` (see
        :mod:`sklearn_flowod.auxiliary`) that makes the auxiliary data from
        X when ``fit`` receives no ``X_aux``: ``auxiliary.fit(X).transform(X)``.
        ``None`` means ``UniformBox(margin=1.0)``: uniform rows in the
        training data's bounding box widened by its range on either side, a
        broad general distribution as the ratio needs (see the notes).
        ``FeaturePermutation()``, the product of the marginals, is the
        narrow alternative that fails here (the notes say how). A generator
        whose ``random_state`` is None is seeded from this detector's
        ``random_state``.
    outlier_weight : float, default=0.0
        Weight ``lambda`` of the outlier loss; 0 trains ``p_in`` by maximum
        likelihood only.
    outlier_temperature : float, default=1.0
        Temperature ``T`` dividing the log-likelihood ratio (in nats) inside
        the outlier loss's sigmoid.
    n_blocks : int, default=8
        Number of ``AllInOneBlock`` couplings of each flow.
    hidden_size : int, default=64
        Width of the single hidden layer of every coupling subnet.
    affine_clamping : float, default=2.0
        FrEIA's soft clamp of each coupling's log-scale.
    global_affine_init : float, default=1.0
        Initial value of every block's global scale.
    soft_permutation : bool, default=True
        Mix the features between blocks with a fixed random rotation
        instead of a random permutation.
    noise_std : float, default=0.05
        Standard deviation of the dequantisation noise added to every
        standardised training batch.
    dequantize_ties : bool, default=False
        On top of ``noise_std``, spread every repeated value of a column
        uniformly over its own bin (:mod:`sklearn_flowod.dequantization`).
    max_grad_norm : float or None, default=1.0
        Clip the gradient norm of every step.
    lr_schedule : {"constant", "cosine"}, default="constant"
        Learning-rate schedule of the in-distribution flow's loss: ``"cosine"`` anneals the step to
        zero at the step budget (``max_epochs`` epochs, or the caps of
        ``"auto"``).
    compile : bool, default=False
        Evaluate the in-distribution flow's loss through ``torch.compile(module)`` in training
        (opt-in: compiling takes a while once per process and data shape and
        needs a C++ compiler on a CPU). Scoring is never compiled.
    n_neighbors : int or None, default=5
        Add to the likelihood ratio the distances to the ``n_neighbors``-th nearest
        training row, in the standardised input and between the network's
        codes, each of the three standardised by its median and
        interquartile range over the training rows (at most
        ``sklearn_flowod.neighbours.MAX_REFERENCE_ROWS`` of them, kept in
        ``neighbours_``; a saved model holds these training rows, see "What a model
        file holds" in the user guide); beyond the reference rows less one, a
        warning and the last one (``n_neighbors_``). See "Nearest neighbours"
        in the notes. ``None``
        scores with the likelihood ratio alone.
    max_epochs : int or "auto", default="auto"
        Passes over the training data. ``"auto"``: until the held-out likelihood of ``p_in``
        stops improving (see ``n_iter_no_change``), within the caps
        ``sklearn_flowod.base.AUTO_MAX_EPOCHS`` and ``AUTO_MAX_STEPS``; an int
        is a fixed budget that early stopping may end sooner.
    batch_size : int, default=256
        Rows per training step.
    learning_rate : float, default=1e-2
        Adam's step size.
    weight_decay : float, default=0.0
        Adam's L2 penalty.
    validation_fraction : float or None, default=0.15
        Fraction of the training rows held out for the held-out likelihood of ``p_in`` (at
        most ``sklearn_flowod.base.MAX_VALIDATION_ROWS`` rows): its curve and,
        with ``n_iter_no_change``, early stopping. ``None`` trains on all rows.
    n_iter_no_change : int or None, default=5
        Checks of the held-out likelihood of ``p_in`` (after every epoch, and every
        ``sklearn_flowod.training.VALIDATION_INTERVAL`` steps within longer
        epochs) without an improvement by ``tol`` before training stops with
        the best check's weights; ``None`` never stops early.
    tol : float, default=1e-2
        Minimum decrease of the held-out loss (negative log-likelihood in
        nats per dimension) that counts as an improvement.
    standardize : bool, default=True
        Standardise every feature with the training mean and standard
        deviation before the in-distribution network (the general model
        standardises with the auxiliary data's own statistics).
    contamination : "auto" or float in (0, 0.5], default="auto"
        ``"auto"``: ``offset_ = 0``, the boundary ``p_in(x) = p_g(x)``. A
        float sets ``offset_`` so that this fraction of the training data
        is flagged.
    device : {"auto", "cpu", "cuda", "cuda:N"} or torch.device, default="auto"
        Where to train and score.
    n_jobs : int or None, default=None
        Torch intra-op threads of ``fit`` (training the in-distribution flow's loss) and of
        scoring: ``None`` chooses them from the size of the work, at most the
        caller's ``torch.get_num_threads()`` (see "Threads" in the user guide);
        an int follows joblib's convention. The caller's setting is restored.
    random_state : int, RandomState instance or None, default=None
        Controls both flows' initialisation, shuffling and noise and the
        auxiliary samples. Global generators are untouched.
    verbose : int, default=0
        0 is silent; 1 prints a line per epoch to standard output (a tqdm
        bar instead, when tqdm is installed) and, at the end of training, one
        line with the epochs run, the epoch kept, why training stopped and
        the time taken; for each flow under its name: "general flow"
        (unless ``aux_model`` is frozen), then "in-distribution flow". A
        given ``aux_model`` keeps its own ``verbose``.
    callbacks : list of Callback or None, default=None
        More :class:`~sklearn_flowod.callbacks.Callback` objects for the
        training loop of the detector's in-distribution flow (not the general
        flow), called at the start and end of training, before every step and
        after every check, before the detector's own (early stopping, the
        progress display; so at the end they see the last weights, before early
        stopping restores the best): to record a metric as training goes, or to
        stop training (``on_check`` returning True; the callback's
        ``stop_reason``, if any, is what ``verbose`` reports). ``clone`` copies
        them.
    known_anomaly_weight : float >= 0 or None, default=None
        ``None`` ignores ``y``. A float makes ``fit`` read ``y`` as scikit-learn's outlier
        labels (-1 a known anomaly, +1 a normal or unlabelled row): the detector learns from
        the normal rows alone, and the known anomalies enter as the weight of the outlier
        loss on them, beside the auxiliary data's (``outlier_weight``). See "Using known
        anomalies" in the user guide and :mod:`sklearn_flowod.known_anomalies`.

    Attributes
    ----------
    module_ : FrEIA.framework.SequenceINN
        The trained in-distribution flow (float64, in evaluation mode).
    aux_model_ : FlowDetector or FrozenEstimator
        The fitted general model.
    auxiliary_ : object or None
        The fitted generator, or None when it was not needed (``X_aux``
        given, or a frozen general model without outlier loss).
    offset_ : float
        Threshold subtracted from ``score_samples`` in ``decision_function``.
    calibration_scores_ : ndarray of shape (n_calibration,) or None
        Sorted anomaly scores of the held-out rows (of :meth:`calibrate`'s
        rows once it is called), against which ``pvalues`` and
        ``set_false_alarm_rate`` rank new rows; None without held-out rows.
    feature_quantiles_ : ndarray of shape (n_values, n_features_in_)
        The values ``explain`` tries for each feature: mid-quantiles of the
        held-out rows (of all training rows without them).
    neighbours_ : NeighbourScore or None
        The reference rows, their codes and the medians and interquartile
        ranges of the three parts of the score; None when ``n_neighbors``
        is None.
    n_neighbors_ : int or None
        The neighbour whose distance the score takes (``n_neighbors``, or
        fewer when the training split has too few rows); None when
        ``n_neighbors`` is None.
    mean_, scale_ : ndarray of shape (n_features_in_,)
        Standardisation applied before the in-distribution network.
    loss_curve_ : list of float
        Mean training loss of the in-distribution flow per epoch
        (negative log-likelihood per dimension, plus the outlier loss).
    validation_loss_curve_ : list of float
        The held-out criterion at every check (after every epoch, and within
        long epochs), only when ``validation_fraction`` is set.
    n_epochs_ : int
        Number of epochs trained.
    best_epoch_ : int
        Epoch whose weights were kept.
    device_ : torch.device
        Device of the in-distribution network.
    n_known_anomalies_ : int
        Known anomalies the fit used (0 when ``y`` is ignored or marks none).
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Column names, when ``X`` was a DataFrame with string column names.

    See Also
    --------
    ContrastiveFlowDetector : One flow for the positive difference (p - q)+.

    Notes
    -----
    **Nearest neighbours.** The default score (``n_neighbors=5``) deviates from
    the paper: the parts, their standardisation, the threshold under
    ``contamination="auto"`` and the cost are described in
    :mod:`sklearn_flowod.neighbours` and on the deviations page.
    ``n_neighbors=None`` gives the paper's score.

    **Where the ratio fails.** ``p_in / p_g`` is a quotient of two small
    numbers wherever both models have little mass, so far from the training
    data and the auxiliary data alike its value says little about
    normality. For inliers N([1, 1], I) and auxiliary data N(0, I) the
    log-ratio is ``x1 + x2 - 1``: it grows without bound along the
    diagonal, so points far beyond the inliers score as more normal than
    the inliers themselves (Schmier et al., 2023, section 5.1, Fig. 4). The
    contrastive flow learns the normalised ``(p - q)+`` instead, which
    vanishes away from the inliers; prefer it when outliers may lie far
    from the auxiliary data. The ratio works when the general distribution
    is broad and covers everywhere an outlier can be.

    **Why the default general distribution is a box.** The product of the
    marginals (``auxiliary=FeaturePermutation()``) is as narrow as the data
    along every axis: an outlier that is extreme in every feature is far
    from both models, and its ratio is then as likely to call it normal as
    not. On 400 standard normal rows in 4-D with 40 rows around 5 in every
    coordinate, ranked by ``score_samples``, it ranks the outliers as the
    *more* normal ones (AUROC far below 0.5; the test suite asserts it),
    while the default box ranks them correctly. The quality tables of
    ``benchmarks/results/quality.md`` show both on real data.

    **Why the box is wide.** The general flow learns the box from samples;
    a flow fits a uniform box best in its middle and rounds it off towards
    its faces, where it puts too little density. With the narrow box
    (``UniformBox()``, 10% margin) the training rows of skewed columns sit
    near a face, so the general model's error, not the data, dominates the
    ratio there. The margin of 1.0 keeps the training rows in the middle
    third of every side: it had the highest mean AUROC of the margins 0.1,
    0.5 and 1.0 on the development sets
    (``benchmarks/results/ablation_likelihood_ratio_margin.md``). The
    wider the box, the closer the ratio comes to the in-distribution
    flow's own likelihood inside it; a general distribution that says
    more than "anywhere" comes from ``X_aux`` or ``aux_model``.

    ``X_aux`` is routed through ``Pipeline`` and ``GridSearchCV`` as for
    :class:`~sklearn_flowod.ContrastiveFlowDetector`, with the same two
    traps (a routed ``X_aux`` is not transformed by earlier pipeline steps;
    cross-validation slices an ``X_aux`` with as many rows as X), and the
    same warnings.

    References
    ----------
    R. T. Schirrmeister, Y. Zhou, T. Ball and D. Zhang. Understanding
    anomaly detection with deep invertible networks through hierarchies of
    distributions and features. NeurIPS 2020.

    R. Schmier, U. Koethe and C.-N. Straehle. Positive difference
    distribution for image outlier detection using normalizing flows and
    contrastive data. TMLR 2023.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_flowod import LikelihoodRatioDetector
    >>> rng = np.random.RandomState(0)
    >>> X = rng.normal(scale=0.3, size=(300, 2))
    >>> X_aux = rng.uniform(-4.0, 4.0, size=(301, 2))
    >>> det = LikelihoodRatioDetector(max_epochs=10, random_state=0)
    >>> det = det.fit(X, X_aux=X_aux)
    >>> det.predict([[0.0, 0.0], [3.0, -3.0]])
    array([ 1, -1])
    """

    _parameter_constraints: dict = {
        **BaseFlowDetector._parameter_constraints,
        "aux_model": [HasMethods(["fit", "score_samples"]), None],
        "auxiliary": [HasMethods(["fit", "transform"]), None],
        "outlier_weight": [Interval(Real, 0, None, closed="left")],
        "outlier_temperature": [Interval(Real, 0, None, closed="neither")],
    }
    _fit_temporaries = ("_outlier_data", "_known_data")

    def __init__(self, *, aux_model=None, auxiliary=None, outlier_weight=0.0,
                 outlier_temperature=1.0, n_blocks=8, hidden_size=64, affine_clamping=2.0,
                 global_affine_init=1.0, soft_permutation=True, noise_std=0.05,
                 dequantize_ties=False, max_grad_norm=1.0,
                 lr_schedule="constant", compile=False,
                 n_neighbors=5, max_epochs="auto", batch_size=256,
                 learning_rate=1e-2, weight_decay=0.0, validation_fraction=0.15,
                 n_iter_no_change=5, tol=1e-2, standardize=True, contamination="auto",
                 device="auto", n_jobs=None, random_state=None, verbose=0,
                 callbacks=None, known_anomaly_weight=None):
        self.aux_model = aux_model
        self.auxiliary = auxiliary
        self.outlier_weight = outlier_weight
        self.outlier_temperature = outlier_temperature
        self.n_blocks = n_blocks
        self.hidden_size = hidden_size
        self.affine_clamping = affine_clamping
        self.global_affine_init = global_affine_init
        self.soft_permutation = soft_permutation
        self.noise_std = noise_std
        self.dequantize_ties = dequantize_ties
        self.max_grad_norm = max_grad_norm
        self.lr_schedule = lr_schedule
        self.compile = compile
        self.n_neighbors = n_neighbors
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

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, *, X_aux=None):
        """Fit the general model (unless frozen) and the in-distribution flow.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data (mostly normal); a sparse matrix is densified for
            training, and at least 6 rows are needed with the default
            ``validation_fraction`` (see :meth:`FlowDetector.fit`).
        y : array-like of shape (n_samples,) or None, default=None
            Ignored with ``known_anomaly_weight=None`` (the default); else -1
            marks the known anomalies among the rows of X and +1 the others.
        X_aux : array-like of shape (n_aux, n_features) or None, default=None
            Samples of the general distribution, in the same feature space
            as X. ``None`` uses the ``auxiliary`` generator.

        Returns
        -------
        self : object
            The fitted detector.
        """
        # verbose=1: one bar (or run of records) per flow, told apart by name
        with progress_description("in-distribution flow"):
            return self._fit(X, y, X_aux=X_aux)

    # ------------------------------------------------------------------ #
    # The general model and the auxiliary data
    # ------------------------------------------------------------------ #
    def _use_fit_params(self, X, generator, *, X_aux=None) -> None:
        """Make the auxiliary data, fit the general model, prepare the outlier loss."""
        seed = int(torch.randint(2**31 - 1, (1,), generator=generator, device=self.device_))
        frozen = isinstance(self.aux_model, FrozenEstimator)
        self.auxiliary_ = None
        if X_aux is not None:
            X_aux = check_aux_data(self, X, X_aux)
        elif not frozen or self.outlier_weight > 0:
            X_aux = self._generate_aux_data(X, seed)
        self.aux_model_ = self._fit_aux_model(X, X_aux, seed)
        # the outlier rows as the in-distribution flow sees them, with their general
        # log-density (the known anomalies' rows are the base class's, standardised once)
        self._outlier_data = None
        if self.outlier_weight > 0:
            log_p_g = self._general_log_density(X_aux)
            self._outlier_data = (self._to_model_input(X_aux, torch.float32, generator), log_p_g)
        self._known_data = None
        if self._known is not None and self.known_anomaly_weight:  # weight 0: one-class
            self._known_data = (self._known.rows, self._general_log_density(self._known_rows))

    def _general_log_density(self, X: np.ndarray) -> torch.Tensor:
        """The general flow's log-density of rows ``X``, on the device (float32)."""
        return torch.as_tensor(self._general_flow().score_samples(X), dtype=torch.float32,
                               device=self.device_)

    def _generate_aux_data(self, X: np.ndarray, seed: int) -> np.ndarray:
        auxiliary = UniformBox(margin=1.0) if self.auxiliary is None else clone(self.auxiliary)
        if auxiliary.get_params().get("random_state", 0) is None:
            auxiliary.set_params(random_state=seed)
        self.auxiliary_ = auxiliary.fit(X)
        return auxiliary.transform(X)

    def _fit_aux_model(self, X: np.ndarray, X_aux, seed: int):
        if isinstance(self.aux_model, FrozenEstimator):
            flow = self.aux_model.estimator
            self._check_flow(flow)
            check_is_fitted(flow)
            if flow.n_features_in_ != X.shape[1]:
                raise ValueError(f"The frozen aux_model was fitted on {flow.n_features_in_} "
                                 f"features, but X has {X.shape[1]}.")
            self._check_feature_names(flow)
            return self.aux_model
        if X_aux.shape[0] < 2:
            raise ValueError(f"X_aux has {X_aux.shape[0]} row(s), but {type(self).__name__} "
                             "fits its general flow on X_aux and needs at least 2.")
        if self.aux_model is None:
            own = self.get_params(deep=False)
            params = {k: own[k] for k in FlowDetector._get_param_names() if k in own}
            # the general flow's log-density is what the ratio reads: no neighbours
            flow = FlowDetector(**{**params, "contamination": "auto", "n_neighbors": None,
                                   "random_state": seed, "callbacks": None,
                                   "known_anomaly_weight": None})
        else:
            flow = clone(self.aux_model)
            self._check_flow(flow)
        with progress_description("general flow"):
            return flow.fit(X_aux)

    def _check_feature_names(self, flow) -> None:
        """The general model reads columns by position: its names must be X's, in order."""
        names = getattr(self, "feature_names_in_", None)
        frozen = getattr(flow, "feature_names_in_", None)
        if names is not None and frozen is not None and not np.array_equal(names, frozen):
            raise ValueError("The feature names should match those that were passed to the "
                             "frozen aux_model's fit (same names, same order): it was fitted "
                             f"on {list(frozen)}, but X has {list(names)}.")

    @staticmethod
    def _check_flow(flow) -> None:
        if isinstance(flow, LikelihoodRatioDetector):
            raise TypeError("aux_model must model a density, not be another "
                            "LikelihoodRatioDetector (whose scores are a log-likelihood "
                            "ratio); use a FlowDetector.")
        if not isinstance(flow, BaseFlowDetector):
            raise TypeError("aux_model must be a flow detector of sklearn_flowod (e.g. "
                            "FlowDetector), possibly wrapped in sklearn.frozen.FrozenEstimator: "
                            f"the ratio needs a normalised density; got {type(flow).__name__}.")

    def _general_flow(self) -> BaseFlowDetector:
        model = self.aux_model_
        return model.estimator if isinstance(model, FrozenEstimator) else model

    # ------------------------------------------------------------------ #
    # Training and scoring
    # ------------------------------------------------------------------ #
    def _log_density_input_space(self, module, batch: torch.Tensor) -> torch.Tensor:
        """Training-time ``log p_in`` over the input features (1-D: padding removed).

        With one feature the network models the feature jointly with a
        standard normal padding column, so the padding's own log-density is
        subtracted instead of integrating it out.
        """
        log_p = flow_log_density(module, batch) + self._input_space_correction()
        if self.n_features_in_ == 1:
            padding = batch[:, 1:] * self._input_divisor_
            log_p = log_p - standard_normal_log_density(padding) + math.log(self._input_divisor_)
        return log_p

    def _loss(self, module, batch, generator):
        """Negative log-likelihood per dimension, plus the weighted outlier loss.

        Known anomalies are outlier samples of their own, with weight
        ``known_anomaly_weight``: the same loss asks the ratio to call them
        anomalous, beside the auxiliary data.
        """
        loss = self._nll(module, batch)
        if not torch.is_grad_enabled():
            return loss
        for pairs, weight in ((self._outlier_data, self.outlier_weight),
                              (self._known_data, self.known_anomaly_weight)):
            if pairs is not None:
                loss = loss + weight * self._outlier_loss(module, pairs, batch,
                                                          generator) / batch.shape[1]
        return loss

    def _outlier_loss(self, module, pairs, batch, generator) -> torch.Tensor:
        """``-log sigmoid((log p_g(y) - log p_in(y)) / T)``, the mean over one
        outlier row ``y`` per training row."""
        aux, log_p_g = pairs
        rows = torch.randint(len(aux), (batch.shape[0],), generator=generator, device=aux.device)
        log_p_in = self._log_density_input_space(module, aux[rows])
        logit = (log_p_g[rows] - log_p_in) / self.outlier_temperature
        return -torch.nn.functional.logsigmoid(logit).mean()

    def _to_general_input(self, batch: torch.Tensor) -> torch.Tensor:
        """Re-standardise a model-space batch for the general flow (on its device)."""
        n_features = self.n_features_in_
        mean = torch.as_tensor(self.mean_, dtype=batch.dtype, device=batch.device)
        scale = torch.as_tensor(self.scale_ * self._input_divisor_, dtype=batch.dtype,
                                device=batch.device)
        raw = batch[:, :n_features] * scale + mean
        general = self._general_flow()
        return general._to_model_input(raw, next(general.module_.parameters()).dtype)

    def _anomaly_score(self, module, batch):
        """``log p_g(x) - log p_in(x)``: the negative log-likelihood ratio."""
        return self._with_general_score(self._negative_log_density(module, batch), batch)

    def _with_general_score(self, negative_log_density, batch):
        general = self._general_flow()
        log_p_g = -general._negative_log_density(general._scoring_module(),
                                                 self._to_general_input(batch))
        return log_p_g.to(device=batch.device, dtype=batch.dtype) + negative_log_density

    def _auto_offset(self, X: np.ndarray) -> float:
        """The natural boundary: equal likelihood under both models."""
        return 0.0

    def log_density(self, X) -> np.ndarray:
        """Log-density of the in-distribution flow, in the input space.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The samples to evaluate.

        Returns
        -------
        log_density : ndarray of shape (n_samples,)
            ``log p_in(x)``; ``score_samples(X)`` subtracts the general
            model's ``log p_g(x)`` from it.
        """
        return super().log_density(X)
