"""Maximum-likelihood normalizing flow: the "Flow" baseline of the flow papers."""

from __future__ import annotations

import math

import numpy as np
import torch

from ..networks import with_min_rows
from ._inn import BaseINNDetector

_LOG_2PI = math.log(2.0 * math.pi)


def standard_normal_log_density(z: torch.Tensor) -> torch.Tensor:
    """Row-wise log-density of a standard normal: ``-|z|^2/2 - D/2 log(2 pi)``."""
    return -0.5 * z.square().sum(dim=1) - 0.5 * z.shape[1] * _LOG_2PI


def flow_log_density(module, batch: torch.Tensor) -> torch.Tensor:
    """Change of variables: ``log p(x) = log N(INN(x); 0, I) + log|det J_INN(x)|``."""
    z, log_jac_det = module(batch, jac=True)
    return standard_normal_log_density(z) + log_jac_det


#: How many nats per dimension less likely than its paired training row the
#: plain flow asks a known anomaly to be (see ``FlowDetector._loss``).
KNOWN_MARGIN = 1.0


class BaseFlowDetector(BaseINNDetector):
    """Shared machinery of the normalizing-flow detectors (not to be used directly).

    Builds the INN, computes log-densities by the change of variables and
    turns them into scores in the space of the input features: the
    standardisation is a fixed affine map, so its log-determinant
    ``-sum(log scale_)`` is added, and for 1-D data the padding column is
    integrated out (Gauss-Hermite quadrature).
    Subclasses only define their training loss.
    """

    @staticmethod
    def _nll(module, batch: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood per dimension of a batch (model space)."""
        return -flow_log_density(module, batch).mean() / batch.shape[1]

    def _input_space_correction(self) -> float:
        """What turns a model-space log-density into one over the input features.

        ``-sum(log scale_)``: the standardisation's log-determinant.
        """
        return -float(np.sum(np.log(self.scale_ * self._input_divisor_)))

    def _anomaly_score(self, module, batch):
        return self._negative_log_density(module, batch)

    def _negative_log_density(self, module, batch: torch.Tensor) -> torch.Tensor:
        """``-log p(x)`` over the input features for a model-space batch."""
        return with_min_rows(lambda rows: self._rows_negative_log_density(module, rows), batch)

    def _rows_negative_log_density(self, module, batch: torch.Tensor) -> torch.Tensor:
        if self.n_features_in_ == 1:
            return -(self._padded_marginal(module, batch) + self._input_space_correction())
        return -(flow_log_density(module, batch) + self._input_space_correction())

    def _scored_codes(self, module, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``-log p(x)`` and the codes from one forward pass (1-D data: two)."""
        if self.n_features_in_ == 1:
            return super()._scored_codes(module, batch)
        z, log_jac_det = with_min_rows(lambda rows: module(rows, jac=True), batch)
        log_p = standard_normal_log_density(z) + log_jac_det + self._input_space_correction()
        return self._with_general_score(-log_p, batch), z

    def _with_general_score(self, negative_log_density: torch.Tensor,
                            batch: torch.Tensor) -> torch.Tensor:
        """The anomaly score from ``-log p(x)`` (the flows: itself)."""
        return negative_log_density

    #: Gauss-Hermite nodes over the padding column of 1-D data (kept in the
    #: fitted state as ``_n_padding_nodes_``).
    _n_padding_nodes = 24
    _scoring_constants = (*BaseINNDetector._scoring_constants, "_n_padding_nodes")

    def _padded_marginal(self, module, batch):
        """Log-density of 1-D data: the learned joint integrated over the padding column.

        ``p(x) = integral p(x, s) ds = sum_i w_i exp(s_i^2 / 2) p(x, s_i)`` with
        Gauss-Hermite nodes ``s_i`` and weights ``w_i`` for the weight
        ``exp(-s^2 / 2)`` (the padding's standard normal, up to its constant).
        """
        nodes, weights = np.polynomial.hermite_e.hermegauss(self._n_padding_nodes_)
        nodes = torch.as_tensor(nodes, dtype=batch.dtype, device=batch.device)
        log_w = torch.as_tensor(np.log(weights) + 0.5 * nodes.cpu().numpy() ** 2,
                                dtype=batch.dtype, device=batch.device)
        n_rows = batch.shape[0]
        x = batch[:, :1].repeat(self._n_padding_nodes_, 1)
        s = nodes.repeat_interleave(n_rows)[:, None] / self._input_divisor_
        log_p = flow_log_density(module, torch.cat([x, s], dim=1))
        log_p = log_p.reshape(self._n_padding_nodes_, n_rows) + log_w[:, None]
        return torch.logsumexp(log_p, dim=0) - math.log(self._input_divisor_)

    def _auto_offset(self, X: np.ndarray) -> float:
        """Tukey's lower fence of the training log-densities: Q1 - 1.5 IQR."""
        log_density = -self._apply_in_batches(X, self._negative_log_density, validate=False)
        q1, q3 = np.percentile(log_density, [25.0, 75.0])
        return float(q1 - 1.5 * (q3 - q1))

    def log_density(self, X) -> np.ndarray:
        """Log-density of the learned model at each sample, in the input space.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The samples to evaluate.

        Returns
        -------
        log_density : ndarray of shape (n_samples,)
            ``log p(x)`` with respect to the Lebesgue measure on the input
            features; for the detectors scored by their likelihood and
            ``n_neighbors=None``, equal to ``score_samples(X)``.
        """
        return -self._apply_in_batches(X, self._negative_log_density)


class FlowDetector(BaseFlowDetector):
    """Normalizing flow trained by maximum likelihood; scores are -log p(x).

    An invertible network of FrEIA ``AllInOneBlock`` couplings maps the data
    to a standard normal latent space. By the change of variables its
    density is ``log p(x) = log N(INN(x); 0, I) + log|det J_INN(x)|``, and
    training maximises it on the training data (minimises the negative
    log-likelihood). The anomaly score is the negative log-likelihood, the
    "Flow" baseline of the contrastive-flow and likelihood-ratio papers.

    Parameters
    ----------
    n_blocks : int, default=8
        Number of ``AllInOneBlock`` couplings (8, as in section 5.2.1 of the
        contrastive-flow paper).
    hidden_size : int, default=64
        Width of the single hidden layer (ReLU) of every coupling subnet. The
        last layer of every subnet starts at zero, so the flow starts as an
        affine map.
    affine_clamping : float, default=2.0
        FrEIA's soft clamp of each coupling's log-scale (in FrEIA 0.2 the
        log-scale is ``affine_clamping * tanh(0.1 * a)``).
    global_affine_init : float, default=1.0
        Initial value of every block's global scale.
    soft_permutation : bool, default=True
        Mix the features between blocks with a fixed random rotation instead
        of a random permutation (in few dimensions a permutation is often the
        identity, so consecutive couplings would transform the same half).
    noise_std : float, default=0.05
        Standard deviation of Gaussian noise added to every standardised
        training batch (dequantisation): discrete and constant columns get a
        smooth density instead of a degenerate one.
    dequantize_ties : bool, default=False
        On top of ``noise_std``, spread every repeated value of a column
        uniformly over its own bin (:mod:`sklearn_flowod.dequantization`).
        Off by default: on the development sets it moved the mean AUROC by
        less than the seeds do and lowered the average rank
        (``benchmarks/results/ablation_ties_FlowDetector.md``).
    max_grad_norm : float or None, default=1.0
        Clip the gradient norm of every step.
    lr_schedule : {"constant", "cosine"}, default="constant"
        Learning-rate schedule of the flow's negative log-likelihood:
        ``"cosine"`` anneals the step to zero at the step budget
        (``max_epochs`` epochs, or the caps of ``"auto"``).
    compile : bool, default=False
        Evaluate the flow's negative log-likelihood through ``torch.compile(module)`` in training
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
        Passes over the training data. ``"auto"``: until the held-out negative log-likelihood
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
        Fraction of the training rows held out for the held-out negative log-likelihood (at
        most ``sklearn_flowod.base.MAX_VALIDATION_ROWS`` rows): its curve and,
        with ``n_iter_no_change``, early stopping. ``None`` trains on all rows.
    n_iter_no_change : int or None, default=10
        Checks of the held-out negative log-likelihood (after every epoch, and every
        ``sklearn_flowod.training.VALIDATION_INTERVAL`` steps within longer
        epochs) without an improvement by ``tol`` before training stops with
        the best check's weights; ``None`` never stops early.
    tol : float, default=1e-2
        Minimum decrease of the held-out negative log-likelihood (nats per
        dimension) that counts as an improvement.
    standardize : bool, default=True
        Standardise every feature with the training mean and standard
        deviation (stored in ``mean_`` and ``scale_``) before the network.
    contamination : "auto" or float in (0, 0.5], default="auto"
        ``"auto"``: a flow has no natural boundary, so ``offset_`` is
        Tukey's lower fence of the training log-densities (first quartile
        minus 1.5 interquartile ranges). A float sets ``offset_`` so that
        this fraction of the training data is flagged.
    device : {"auto", "cpu", "cuda", "cuda:N"} or torch.device, default="auto"
        Where to train and score; ``"auto"`` uses CUDA when available.
    n_jobs : int or None, default=None
        Torch intra-op threads of ``fit`` (training the flow's negative log-likelihood) and of
        scoring: ``None`` chooses them from the size of the work, at most the
        caller's ``torch.get_num_threads()`` (see "Threads" in the user guide);
        an int follows joblib's convention. The caller's setting is restored.
    random_state : int, RandomState instance or None, default=None
        Controls weight initialisation, the block rotations, shuffling and
        the dequantisation noise. The caller's global generators are
        untouched.
    verbose : int, default=0
        0 is silent; 1 prints a line per epoch to standard output (a tqdm
        bar instead, when tqdm is installed) and, at the end of training, one
        line with the epochs run, the epoch kept, why training stopped and
        the time taken.
    callbacks : list of Callback or None, default=None
        More :class:`~sklearn_flowod.callbacks.Callback` objects for the
        training loop of the detector's network, called at the start and end of
        training, before every step and after every check, before the detector's
        own (early stopping, the progress display; so at the end they see the
        last weights, before early stopping restores the best): to record a
        metric as training goes, or to stop training (``on_check`` returning
        True; the callback's ``stop_reason``, if any, is what ``verbose``
        reports). ``clone`` copies them.
    known_anomaly_weight : float >= 0 or None, default=None
        ``None`` ignores ``y``. A float makes ``fit`` read ``y`` as scikit-learn's outlier
        labels (-1 a known anomaly, +1 a normal or unlabelled row): the detector learns from
        the normal rows alone, and the known anomalies enter as an outlier-exposure margin
        in the loss (see ``_loss``): every training row is paired with a known anomaly,
        which must be ``KNOWN_MARGIN`` nats per dimension less likely. See "Using known
        anomalies" in the user guide and :mod:`sklearn_flowod.known_anomalies`.

    Attributes
    ----------
    module_ : FrEIA.framework.SequenceINN
        The trained flow (float64, in evaluation mode).
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
        Standardisation applied before the network.
    loss_curve_ : list of float
        Mean training negative log-likelihood per dimension, per epoch
        (in the standardised space).
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
    **Nearest neighbours.** The default score (``n_neighbors=5``) deviates from
    the paper: the parts, their standardisation, the threshold under
    ``contamination="auto"`` and the cost are described in
    :mod:`sklearn_flowod.neighbours` and on the deviations page.
    ``n_neighbors=None`` gives the paper's score.

    ``log_density`` (and ``score_samples`` with ``n_neighbors=None``) is
    the log-density over the input features: the
    standardisation's log-determinant ``-sum(log scale_)`` is included, so
    densities of models fitted on differently scaled data are comparable
    (the ranking of samples does not depend on it).

    With a single feature, the network sees a second column of standard
    normal noise during training, because a coupling block needs two
    halves; the network then learns the joint density of the feature and
    the noise. Scores integrate the noise column out of that joint by
    Gauss-Hermite quadrature (24 nodes), which leaves the density of the
    single feature (scoring 1-D data costs 24 network evaluations per row).

    References
    ----------
    L. Dinh, J. Sohl-Dickstein and S. Bengio. Density estimation using Real
    NVP. ICLR 2017.

    R. Schmier, U. Koethe and C.-N. Straehle. Positive difference
    distribution for image outlier detection using normalizing flows and
    contrastive data. TMLR 2023.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_flowod import FlowDetector
    >>> X = np.random.RandomState(0).normal(size=(200, 2))
    >>> det = FlowDetector(max_epochs=5, random_state=0).fit(X)
    >>> det.predict([[0.0, 0.0], [8.0, 8.0]])
    array([ 1, -1])
    """

    def __init__(self, *, n_blocks=8, hidden_size=64, affine_clamping=2.0, global_affine_init=1.0,
                 soft_permutation=True, noise_std=0.05, dequantize_ties=False, max_grad_norm=1.0,
                 lr_schedule="constant", compile=False,
                 n_neighbors=5, max_epochs="auto", batch_size=256, learning_rate=1e-2,
                 weight_decay=0.0, validation_fraction=0.15, n_iter_no_change=10, tol=1e-2,
                 standardize=True, contamination="auto", device="auto", n_jobs=None,
                 random_state=None, verbose=0,
                 callbacks=None, known_anomaly_weight=None):
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

    def _loss(self, module, batch, generator):
        """Negative log-likelihood (change of variables), per dimension.

        With known anomalies, plus ``known_anomaly_weight`` times the outlier
        exposure margin of Hendrycks et al. (2019, section 3, the margin
        ranking loss of density models): every training row is paired with a
        known anomaly ``a`` and ``max(0, m + log p(a) / D - log p(x) / D)``
        asks the anomaly to be ``m`` = :data:`KNOWN_MARGIN` nats per
        dimension less likely; past the margin it no longer pushes, so the
        density stays bounded.
        """
        known = self._known_batch(batch.shape[0], generator)
        if known is None:
            return self._nll(module, batch)
        log_p = flow_log_density(module, torch.cat([batch, known])) / batch.shape[1]
        log_p_data, log_p_known = log_p.split([batch.shape[0], known.shape[0]])
        margin = (KNOWN_MARGIN + log_p_known - log_p_data).clamp(min=0.0)
        return -log_p_data.mean() + self.known_anomaly_weight * margin.mean()
