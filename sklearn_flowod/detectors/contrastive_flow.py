"""Contrastive normalizing flow (Schmier, Koethe and Straehle, 2023)."""

from __future__ import annotations

import math
from numbers import Real

import numpy as np
import torch
from sklearn.base import _fit_context, clone
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions

from ..auxiliary import FeaturePermutation
from ..callbacks import CosineSchedule, progress_description
from ..dequantization import add_uniform_noise, tie_widths
from ._aux_input import check_aux_data
from .flow import BaseFlowDetector, flow_log_density

#: ``ln 10``, the offset of section 5.2.1's automatic clamp.
LN_10 = math.log(10.0)


class ContrastiveFlowDetector(BaseFlowDetector):
    """Normalizing flow that learns the positive difference (p - q)+ of inliers
    and auxiliary data.

    A flow ``p_theta`` (FrEIA ``AllInOneBlock`` couplings, standard normal
    latent) is trained to raise the log-likelihood of the inliers x ~ p and
    to lower that of auxiliary samples y ~ q, eq. (3) of the paper::

        L = E_x[-log p_theta(x)] + E_y[max(log p_theta(y), eps)]

    By eq. (4)-(9) its optimum is the normalised positive difference
    ``C (p - q) 1{p > q}`` on the region where p exceeds q; where q exceeds
    p the second term pushes the density down. Without a bound that term
    diverges (log 0), so it is clamped at ``eps`` (section 5.2.1): once
    ``log p_theta(y) < eps`` an auxiliary sample no longer pushes. The
    anomaly score is the negative log-likelihood under the learned density.

    Auxiliary samples come from ``fit(X, X_aux=...)`` when given, else from
    the ``auxiliary`` generator applied to every standardised training batch
    (by default :class:`~sklearn_flowod.FeaturePermutation`: the product of
    the marginals, as in the paper's section 5.4).

    Parameters
    ----------
    clamp : float or "auto", default="auto"
        Threshold ``eps`` on the auxiliary samples' log-density (of the
        standardised data the network sees, per sample). ``"auto"``
        follows the recipe of section 5.2.1: the flow is first trained by
        maximum likelihood (the warm-up, see ``warm_up_fraction``), then
        ``eps`` is the 10% quantile of the training rows' log-density plus
        ``clamp_offset``. The paper's own experiments use ``eps = 0``.
    clamp_offset : float, default=-ln 10
        With ``clamp="auto"``: added to the 10% quantile. The paper suggests
        ``+ln 10`` (the push stops once auxiliary samples are ten times more
        likely than the least likely tenth of the inliers); the default
        ``-ln 10`` pushes on until they are ten times less likely (a
        deviation, measured on the deviations page of the user guide).
    warm_up_fraction : float in (0, 1), default=0.25
        With ``clamp="auto"`` and an int ``max_epochs``: length of the
        maximum-likelihood warm-up as a fraction of ``max_epochs``; the
        contrastive training then runs ``max_epochs`` further epochs from the
        warmed-up weights. With ``max_epochs="auto"`` the warm-up stops when
        the held-out likelihood stops improving.
    auxiliary : generator or None, default=None
        Object with ``fit(X)`` and ``sample(batch, generator)`` (see
        :mod:`sklearn_flowod.auxiliary`), fitted on the standardised
        training data and asked for one auxiliary sample per row of every
        training batch. ``None`` means ``FeaturePermutation()``. Ignored
        when ``fit`` receives ``X_aux``.
    aux_weight : float, default=1.0
        Weight of the (clamped) auxiliary term; eq. (3) is ``1.0``.
    n_blocks : int, default=8
        Number of ``AllInOneBlock`` couplings (8, as in section 5.2.1).
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
        Standard deviation of Gaussian noise added to every standardised
        training batch (dequantisation), of inliers and of ``X_aux`` alike
        (generated samples are made from the noisy batch).
    dequantize_ties : bool, default=False
        On top of ``noise_std``, spread every repeated value of a column
        uniformly over its own bin (:mod:`sklearn_flowod.dequantization`).
        Off by default: on the development sets it moved the mean AUROC by
        less than the seeds do and lowered the average rank
        (``benchmarks/results/ablation_ties_ContrastiveFlowDetector.md``).
        Rows of ``X_aux`` get the same noise, with the bins of ``X_aux``.
    max_grad_norm : float or None, default=1.0
        Clip the gradient norm of every step.
    lr_schedule : {"constant", "cosine"}, default="constant"
        Learning-rate schedule of eq. (3): ``"cosine"`` anneals the step to
        zero at the step budget (``max_epochs`` epochs, or the caps of
        ``"auto"``).
    compile : bool, default=False
        Evaluate eq. (3) through ``torch.compile(module)`` in training
        (opt-in: compiling takes a while once per process and data shape and
        needs a C++ compiler on a CPU). Scoring is never compiled.
    n_neighbors : int or None, default=5
        Add to the negative log-likelihood the distances to the ``n_neighbors``-th nearest
        training row, in the standardised input and between the network's
        codes, each of the three standardised by its median and
        interquartile range over the training rows (at most
        ``sklearn_flowod.neighbours.MAX_REFERENCE_ROWS`` of them, kept in
        ``neighbours_``; a saved model holds these training rows, see "What a model
        file holds" in the user guide); beyond the reference rows less one, a
        warning and the last one (``n_neighbors_``). See "Nearest neighbours"
        in the notes. ``None``
        scores with the negative log-likelihood alone.
    max_epochs : int or "auto", default="auto"
        Passes over the training data. ``"auto"``: until the held-out loss (eq. 3)
        stops improving (see ``n_iter_no_change``), within the caps
        ``sklearn_flowod.base.AUTO_MAX_EPOCHS`` and ``AUTO_MAX_STEPS``; an int
        is a fixed budget that early stopping may end sooner.
    batch_size : int, default=256
        Inlier rows (and as many auxiliary samples) per training step.
    learning_rate : float, default=1e-2
        Adam's step size (of the warm-up too: the plain flow's default).
    weight_decay : float, default=0.0
        Adam's L2 penalty.
    validation_fraction : float or None, default=0.15
        Fraction of the training rows held out for the held-out loss (eq. 3) (at
        most ``sklearn_flowod.base.MAX_VALIDATION_ROWS`` rows): its curve and,
        with ``n_iter_no_change``, early stopping. ``None`` trains on all rows.
    n_iter_no_change : int or None, default=5
        Checks of the held-out loss (eq. 3) (after every epoch, and every
        ``sklearn_flowod.training.VALIDATION_INTERVAL`` steps within longer
        epochs) without an improvement by ``tol`` before training stops with
        the best check's weights; ``None`` never stops early.
    tol : float, default=1e-2
        Minimum decrease of the held-out loss (eq. 3 per dimension, on the
        held-out rows and their auxiliary samples) that counts as an
        improvement.
    standardize : bool, default=True
        Standardise every feature with the training mean and standard
        deviation before the network; ``X_aux`` is standardised with the
        same statistics.
    contamination : "auto" or float in (0, 0.5], default="auto"
        ``"auto"``: ``offset_`` is Tukey's lower fence of the training
        log-densities (first quartile minus 1.5 interquartile ranges). A
        float sets ``offset_`` so that this fraction of the training data is
        flagged.
    device : {"auto", "cpu", "cuda", "cuda:N"} or torch.device, default="auto"
        Where to train and score.
    n_jobs : int or None, default=None
        Torch intra-op threads of ``fit`` (training eq. (3)) and of
        scoring: ``None`` chooses them from the size of the work, at most the
        caller's ``torch.get_num_threads()`` (see "Threads" in the user guide);
        an int follows joblib's convention. The caller's setting is restored.
    random_state : int, RandomState instance or None, default=None
        Controls weight initialisation, the block rotations, shuffling, the
        noise and the auxiliary samples. Global generators are untouched.
    verbose : int, default=0
        0 is silent; 1 prints a line per epoch to standard output (a tqdm
        bar instead, when tqdm is installed) and, at the end of training, one
        line with the epochs run, the epoch kept, why training stopped and
        the time taken.
        The maximum-likelihood warm-up has its own lines.
    callbacks : list of Callback or None, default=None
        More :class:`~sklearn_flowod.callbacks.Callback` objects for the
        training loop of the detector's network (not its maximum-likelihood
        warm-up), called at the start and end of training, before every step and
        after every check, before the detector's own (early stopping, the
        progress display; so at the end they see the last weights, before early
        stopping restores the best): to record a metric as training goes, or to
        stop training (``on_check`` returning True; the callback's
        ``stop_reason``, if any, is what ``verbose`` reports). ``clone`` copies
        them.
    known_anomaly_weight : float >= 0 or None, default=None
        ``None`` ignores ``y``. A float makes ``fit`` read ``y`` as scikit-learn's outlier
        labels (-1 a known anomaly, +1 a normal or unlabelled row): the detector learns from
        the normal rows alone, and the known anomalies enter as contrastive samples beside
        the auxiliary ones, their clamped log-density weighted by it (eq. 3 with a second
        ``q``; see ``_loss``). See "Using known anomalies" in the user guide and
        :mod:`sklearn_flowod.known_anomalies`.

    Attributes
    ----------
    module_ : FrEIA.framework.SequenceINN
        The trained flow (float64, in evaluation mode).
    clamp_ : float
        The threshold ``eps`` used (the automatic one with ``clamp="auto"``).
    auxiliary_ : object or None
        The fitted generator, or None when ``X_aux`` was given.
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
        Standardisation applied before the network (and to ``X_aux``).
    loss_curve_ : list of float
        Mean training loss (eq. 3 with the clamp, per dimension) per epoch
        of the contrastive training.
    validation_loss_curve_ : list of float
        The held-out criterion at every check (after every epoch, and within
        long epochs), only when ``validation_fraction`` is set.
    n_epochs_ : int
        Number of contrastive epochs trained.
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
    **Nearest neighbours.** The default score (``n_neighbors=5``) deviates from
    the paper: the parts, their standardisation, the threshold under
    ``contamination="auto"`` and the cost are described in
    :mod:`sklearn_flowod.neighbours` and on the deviations page.
    ``n_neighbors=None`` gives the paper's score; ``log_density`` returns
    the log-density in either case.

    **Routing X_aux.** ``fit`` accepts ``X_aux``; inside a ``Pipeline`` or
    ``GridSearchCV`` it is routed with scikit-learn's metadata routing
    (``sklearn.set_config(enable_metadata_routing=True)`` and
    ``detector.set_fit_request(X_aux=True)``). Two traps:

    * A routed ``X_aux`` is **not transformed by the earlier steps of a
      pipeline**: it reaches the detector in the raw feature space while X
      arrives transformed. Pass an ``X_aux`` already transformed like X, or
      use the ``auxiliary`` generator, which works on the transformed
      batches. The detector warns when ``X_aux``, standardised with the
      training statistics, has a mean or spread on a very different scale.
    * **Cross-validation slices every fit parameter that has as many rows
      as X** into the training fold, as if it were sample-aligned. An
      ``X_aux`` with exactly ``len(X)`` rows is therefore cut to the fold;
      give it a different number of rows (e.g. drop one) to keep it whole.
      The detector warns when ``X_aux`` has as many rows as X.

    Contamination of ``X_aux`` with inliers barely matters (section 5.3.1,
    eq. 10-14): with ``q_new = D p + (1 - D) q`` the positive difference
    ``(p - q_new)+`` is proportional to ``(p - q)+``, so the normalised
    target is unchanged.

    **Training length.** With ``max_epochs="auto"`` both the warm-up and the
    contrastive training stop when their held-out loss (the likelihood, then
    eq. 3 on the held-out rows and their auxiliary samples) stops improving.

    Scores are log-densities over the input features, as in
    :class:`~sklearn_flowod.FlowDetector` (including its handling of 1-D
    data: the padding column is integrated out).

    References
    ----------
    R. Schmier, U. Koethe and C.-N. Straehle. Positive difference
    distribution for image outlier detection using normalizing flows and
    contrastive data. TMLR 2023.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_flowod import ContrastiveFlowDetector
    >>> X = np.random.RandomState(0).normal(size=(200, 2))
    >>> det = ContrastiveFlowDetector(max_epochs=5, random_state=0).fit(X)
    >>> det.predict([[0.0, 0.0], [8.0, 8.0]])
    array([ 1, -1])
    """

    _parameter_constraints: dict = {
        **BaseFlowDetector._parameter_constraints,
        # a finite threshold: NaN or an infinity would make the loss non-finite
        "clamp": [Interval(Real, None, None, closed="neither"), StrOptions({"auto"})],
        "clamp_offset": [Interval(Real, None, None, closed="neither")],
        "warm_up_fraction": [Interval(Real, 0, 1, closed="neither")],
        "auxiliary": [HasMethods(["fit", "sample"]), None],
        "aux_weight": [Interval(Real, 0, None, closed="left")],
    }
    _fit_temporaries = ("_aux_data", "_aux_widths", "_clamp")

    def __init__(self, *, clamp="auto", clamp_offset=-LN_10, warm_up_fraction=0.25, auxiliary=None,
                 aux_weight=1.0, n_blocks=8, hidden_size=64, affine_clamping=2.0,
                 global_affine_init=1.0, soft_permutation=True, noise_std=0.05,
                 dequantize_ties=False, max_grad_norm=1.0, lr_schedule="constant", compile=False,
                 n_neighbors=5, max_epochs="auto",
                 batch_size=256, learning_rate=1e-2, weight_decay=0.0, validation_fraction=0.15,
                 n_iter_no_change=5, tol=1e-2, standardize=True, contamination="auto",
                 device="auto", n_jobs=None, random_state=None, verbose=0,
                 callbacks=None, known_anomaly_weight=None):
        self.clamp = clamp
        self.clamp_offset = clamp_offset
        self.warm_up_fraction = warm_up_fraction
        self.auxiliary = auxiliary
        self.aux_weight = aux_weight
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
        """Fit the flow on inliers X against auxiliary samples.

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
            Auxiliary (contrastive) samples, in the same feature space as X.
            ``None`` uses the ``auxiliary`` generator. See the class notes
            for routing it through a Pipeline or GridSearchCV.

        Returns
        -------
        self : object
            The fitted detector.
        """
        return self._fit(X, y, X_aux=X_aux)

    def _use_fit_params(self, X, generator, *, X_aux=None) -> None:
        """Standardise ``X_aux`` like X (or prepare the generator) for the loss."""
        self._aux_data = None
        self.auxiliary_ = None
        if X_aux is None:
            return
        X_aux = check_aux_data(self, X, X_aux)
        self._aux_data = self._to_model_input(X_aux, torch.float32, generator)
        self._aux_widths = tie_widths(self._aux_data) if self.dequantize_ties else None

    def _auxiliary_batch(self, batch: torch.Tensor, generator: torch.Generator):
        if self._aux_data is not None:
            rows = torch.randint(self._aux_data.shape[0], (batch.shape[0],), generator=generator,
                                 device=batch.device)
            aux = self._aux_data[rows]
            if not torch.is_grad_enabled():
                return aux
            # the inlier batch carries the training noise: so does X_aux, and
            # the flow learns (p * k - q * k)+ for one smoothing kernel k
            if self._aux_widths is not None:
                add_uniform_noise(aux, self._aux_widths[rows], generator)
            if self.noise_std > 0:
                noise = torch.randn(aux.shape, generator=generator, device=aux.device)
                aux = aux + self.noise_std * noise
            return aux
        return self.auxiliary_.sample(batch, generator)

    def _loss(self, module, batch, generator):
        """Eq. (3) with the clamp of section 5.2.1, per dimension.

        ``mean(-log p(x)) / D + aux_weight * mean(max(log p(y), eps)) / D``;
        an auxiliary sample below the clamp has no gradient. Known anomalies
        ``a`` are contrastive samples of their own (one per training row,
        with the training noise), beside the auxiliary ones:
        ``+ known_anomaly_weight * mean(max(log p(a), eps)) / D``: the
        contrastive data are a mixture of a broad distribution and known
        anomalies, as in the paper's section 5.3.3 (informed anomaly
        detection). By eq. (10)-(14) adding them to ``q`` only removes their
        region from the learned ``(p - q)+``; the generator's samples still
        shape the rest of it, so anomalies unlike the known ones keep a low
        density.
        """
        if self._clamp is None:  # the maximum-likelihood warm-up
            return self._nll(module, batch)
        samples = [batch, self._auxiliary_batch(batch, generator)]
        known = self._known_batch(batch.shape[0], generator)
        if known is not None:
            samples.append(known)
        # one pass over all samples: fewer operations than a pass each
        log_p = flow_log_density(module, torch.cat(samples)) / batch.shape[1]
        log_p_data, log_p_aux, *log_p_known = log_p.split([len(s) for s in samples])
        floor = self._clamp / batch.shape[1]
        loss = -log_p_data.mean() + self.aux_weight * log_p_aux.clamp(min=floor).mean()
        if log_p_known:
            loss = loss + self.known_anomaly_weight * log_p_known[0].clamp(min=floor).mean()
        return loss

    def _before_training(self, module, X_train, X_val, generator) -> None:
        """Fit the generator; with ``clamp="auto"``, warm up and set ``eps``."""
        if self._aux_data is None:
            auxiliary = FeaturePermutation() if self.auxiliary is None else self.auxiliary
            self.auxiliary_ = clone(auxiliary).fit(X_train.cpu().numpy())
        self._clamp = None  # the warm-up of clamp="auto" trains by maximum likelihood
        self.clamp_ = (self._auto_clamp(module, X_train, X_val, generator) if self.clamp == "auto"
                       else float(self.clamp))
        self._clamp = self.clamp_

    def _auto_clamp(self, module, X_train, X_val, generator) -> float:
        """Warm up on the likelihood; ``eps`` from the training log-densities.

        The warm-up is a maximum-likelihood fit: with ``max_epochs="auto"``
        until the held-out likelihood stops improving, else for
        ``warm_up_fraction`` of ``max_epochs``.
        """
        config = self._training_config()
        if self.max_epochs != "auto":
            config.max_epochs = max(1, math.ceil(self.warm_up_fraction * self.max_epochs))
        callbacks = [c for c in self._callbacks() if not isinstance(c, CosineSchedule)]
        with progress_description(f"{type(self).__name__}, maximum-likelihood warm-up"):
            self._train(module, self._loss, X_train, X_val, generator, config=config,
                        callbacks=callbacks)
        with torch.inference_mode():
            log_p = flow_log_density(module, X_train)
        return float(np.quantile(log_p.cpu().numpy(), 0.1)) + self.clamp_offset
