"""Invertible one-class network (Schmier, Koethe and Straehle, 2024)."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, StrOptions

from ..neighbours import tukey_fence
from ._inn import BaseINNDetector


def _pull_max(z: torch.Tensor) -> torch.Tensor:
    return z.abs().amax(dim=1)


def _pull_square(z: torch.Tensor) -> torch.Tensor:
    return z.square().mean(dim=1)


#: How far out known anomalies are pushed, in half-widths of the cube (see ``_loss``).
KNOWN_PUSH = 2.0

#: Pull functions f of eq. (1): convex, increasing away from the origin.
PULL_FUNCTIONS = {"max": _pull_max, "square": _pull_square}


def cube_distance(z: torch.Tensor) -> torch.Tensor:
    """Signed distance of latent codes to the surface of the cube [-1, 1]^D.

    Implements eq. (2)-(4) of the paper: ``s_out = sum_k max(|z_k| - 1, 0)``
    (how far outside the cube), ``s_in = min(max_k |z_k| - 1, 0)`` (how deep
    inside it, negative) and ``s = s_out + s_in``. Positive outside the cube,
    zero on its surface, negative inside.
    """
    magnitude = z.abs()
    s_out = (magnitude - 1.0).clamp(min=0.0).sum(dim=1)
    s_in = (magnitude.amax(dim=1) - 1.0).clamp(max=0.0)
    return s_out + s_in


class InvertibleOneClassDetector(BaseINNDetector):
    """Invertible one-class network: maps inliers onto the cube [-1, 1]^D.

    An invertible network (FrEIA ``AllInOneBlock`` couplings) is trained to
    transport the training data onto the uniform distribution on the cube
    [-1, 1]^D without computing any Jacobian (Schmier et al., 2024). The
    cube's surface, mapped back to the data space, is a natural decision
    boundary: points that land outside the cube are outliers.

    Training minimises eq. (1) of the paper (Algorithm 1): a *pull* term
    ``f(INN(x))`` on data batches and a *push* term ``-f(INN(sg(INN^-1(z))))``
    on uniform samples ``z ~ U[-1, 1]^D`` mapped back through the network
    without gradient (``sg`` = stop-gradient). At the optimum the pull on the
    data and the push on the cube's pre-images balance exactly when the data
    fill the cube uniformly.

    Parameters
    ----------
    n_blocks : int, default=6
        Number of ``AllInOneBlock`` couplings (the paper's A.5 uses 12 blocks
        of width 128).
    hidden_size : int, default=64
        Width of the single hidden layer (ReLU) of every coupling subnet. The
        last layer of every subnet starts at zero, so each coupling starts as
        the identity.
    affine_clamping : float, default=2.0
        FrEIA's soft clamp of each coupling's log-scale (in FrEIA 0.2 the
        log-scale is ``affine_clamping * tanh(0.1 * a)``).
    global_affine_init : float, default=1.0
        Initial value of every block's global scale.
    soft_permutation : bool, default=True
        Mix the features between blocks with a fixed random rotation (FrEIA's
        ``permute_soft``) instead of a random permutation. In few dimensions a
        permutation is often the identity, so consecutive couplings would
        transform the same half; a rotation mixes every feature into both
        halves at the same cost per step.
    pull : {"max", "square"}, default="square"
        The convex pull function f of eq. (1): ``"max"`` is the paper's
        ``max_k |z_k|``; ``"square"`` is the mean of ``z_k**2``, which sends a
        gradient through every coordinate, not only the largest one. The
        square had the higher mean AUROC and average precision on the
        development sets, alone and with every other setting tried (depth,
        width, noise, stopping, schedule; the paper's max with any of them
        stayed below it), so it is the default
        (``benchmarks/results/ablation_invertible_one_class_pull.md``).
    latent_score : {"cube_distance", "pull"}, default="cube_distance"
        The network's part of the anomaly score: ``"cube_distance"`` is the
        paper's signed distance of the code to the cube's surface (eq. 2-4);
        ``"pull"`` is the pull function ``f`` of the (calibrated) code, the
        quantity training keeps small on the data. The max pull's ``f`` has
        the same level sets as the distance inside the cube; the square's
        averages every coordinate instead of following the largest one. With
        the neighbour parts the two had the same mean AUROC on the
        development sets, so the default stays the paper's
        (``benchmarks/results/ablation_invertible_one_class_score.md``).
    n_latent_samples : int, default=2
        Uniform latent samples drawn per data row in every step for the push
        term; more samples make the push less noisy.
    latent_bound : float in (0, 1], default=0.9
        The push samples are drawn from ``U[-latent_bound, latent_bound]^D``,
        so training fills a slightly smaller cube and the unit cube's surface
        keeps a margin around the training data.
    calibration_quantile : float in (0, 1) or None, default=0.95
        After training, the latent space is rescaled by one global factor so
        that this fraction of the validation rows (the training rows if
        ``validation_fraction`` is None) lies inside the unit cube. The map
        stays invertible and the cube stays the boundary; only its size in
        the data space is adjusted to held-out data. ``None`` keeps the
        trained map as it is.
    noise_std : float, default=0.05
        Standard deviation of Gaussian noise added to every standardised
        training batch (dequantisation): discrete and constant columns get a
        density the network can spread over the cube.
    dequantize_ties : bool, default=True
        Also add uniform noise over the bin of every repeated value of a
        column (the distance to the column's nearest other distinct value;
        see :mod:`sklearn_flowod.dequantization`): flags, counts and the mode
        of a nearly constant column are spread over their own bin, whatever
        the column's scale, while values seen once keep ``noise_std`` alone.
        On top of ``noise_std=0.05`` it had the higher mean AUROC and the
        best average rank on the development sets, ahead of the bins alone
        and of the bins with ``noise_std=0.1``
        (``benchmarks/results/ablation_invertible_one_class_ties.md``; with
        the bins capped at ``MAX_WIDTH`` standard deviations:
        ``ablation_invertible_one_class_tie_cap.md``).
    max_grad_norm : float or None, default=1.0
        Clip the gradient norm of every step; this prevents the rare blow-ups
        in which the push term throws every point out of the cube.
    lr_schedule : {"constant", "cosine"}, default="constant"
        Learning-rate schedule of eq. (1): ``"cosine"`` anneals the step to
        zero at the step budget (``max_epochs`` epochs, or the caps of
        ``"auto"``).
    compile : bool, default=False
        Evaluate eq. (1) through ``torch.compile(module)`` in training
        (opt-in: compiling takes a while once per process and data shape and
        needs a C++ compiler on a CPU). Scoring is never compiled.
    n_neighbors : int or None, default=5
        Add to the cube distance the distances to the ``n_neighbors``-th nearest
        training row, in the standardised input and between the network's
        codes, each of the three standardised by its median and
        interquartile range over the training rows (at most
        ``sklearn_flowod.neighbours.MAX_REFERENCE_ROWS`` of them, kept in
        ``neighbours_``; a saved model holds these training rows, see "What a model
        file holds" in the user guide); beyond the reference rows less one, a
        warning and the last one (``n_neighbors_``). See "Nearest neighbours"
        in the notes. ``None``
        scores with the cube distance alone.
    max_epochs : int or "auto", default="auto"
        Passes over the training data. ``"auto"``: until the held-out criterion (see Notes)
        stops improving (see ``n_iter_no_change``), within the caps
        ``sklearn_flowod.base.AUTO_MAX_EPOCHS`` and ``AUTO_MAX_STEPS``; an int
        is a fixed budget that early stopping may end sooner.
    batch_size : int, default=256
        Rows per training step.
    learning_rate : float, default=3e-3
        Adam's step size.
    weight_decay : float, default=0.0
        Adam's L2 penalty.
    validation_fraction : float or None, default=0.15
        Fraction of the training rows held out for the held-out criterion (see Notes) (at
        most ``sklearn_flowod.base.MAX_VALIDATION_ROWS`` rows): its curve and,
        with ``n_iter_no_change``, early stopping. ``None`` trains on all rows.
    n_iter_no_change : int or None, default=10
        Checks of the held-out criterion (see Notes) (after every epoch, and every
        ``sklearn_flowod.training.VALIDATION_INTERVAL`` steps within longer
        epochs) without an improvement by ``tol`` before training stops with
        the best check's weights; ``None`` never stops early. Stopping
        sooner (a patience of 5) did not raise the mean AUROC on the
        development sets, though the best epoch in hindsight often comes
        before the criterion's last improvement
        (``benchmarks/results/ablation_invertible_one_class_early_stop.md``,
        ``training_length.md``).
    tol : float, default=3e-3
        Minimum decrease of the held-out criterion (the distance of the
        held-out codes to the uniform law on the cube, see Notes) that
        counts as an improvement. Of 1e-3 and 3e-3, the larger had the same
        mean AUROC on the development sets with fewer epochs
        (``benchmarks/results/ablation_invertible_one_class_stopping.md``).
    standardize : bool, default=True
        Standardise every feature with the training mean and standard
        deviation (stored in ``mean_`` and ``scale_``) before the network.
    contamination : "auto" or float in (0, 0.5], default="auto"
        ``"auto"``: with ``n_neighbors=None`` and the cube distance the
        cube's surface is the boundary, so ``predict`` returns -1 exactly for
        points mapped outside the cube (``offset_ = 0``); with neighbours or
        ``latent_score="pull"``, Tukey's upper fence of the training scores
        (see Notes). A
        float sets ``offset_`` so that this fraction of the training data is
        flagged.
    device : {"auto", "cpu", "cuda", "cuda:N"} or torch.device, default="auto"
        Where to train and score; ``"auto"`` uses CUDA when available.
    n_jobs : int or None, default=None
        Torch intra-op threads of ``fit`` (training eq. (1)) and of
        scoring: ``None`` chooses them from the size of the work, at most the
        caller's ``torch.get_num_threads()`` (see "Threads" in the user guide);
        an int follows joblib's convention. The caller's setting is restored.
    random_state : int, RandomState instance or None, default=None
        Controls weight initialisation, the block permutations, shuffling and
        the latent samples. The caller's global generators are untouched.
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
        the normal rows alone, and the known anomalies join the push term of eq. (1) as
        samples of this weight, pushed out of the cube up to ``KNOWN_PUSH`` half-widths (see
        ``_loss``). See "Using known anomalies" in the user guide and
        :mod:`sklearn_flowod.known_anomalies`.

    Attributes
    ----------
    module_ : FrEIA.framework.SequenceINN
        The trained invertible network (float64, in evaluation mode).
    offset_ : float
        Threshold subtracted from ``score_samples`` in ``decision_function``.
    calibration_scores_ : ndarray of shape (n_calibration,) or None
        Sorted anomaly scores of the held-out rows (of :meth:`calibrate`'s
        rows once it is called), against which ``pvalues`` and
        ``set_false_alarm_rate`` rank new rows; None without held-out rows.
    feature_quantiles_ : ndarray of shape (n_values, n_features_in_)
        The values ``explain`` tries for each feature: mid-quantiles of the
        held-out rows (of all training rows without them).
    latent_scale_ : float
        Global factor the network's output is divided by (1.0 without
        calibration).
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
        Mean training loss (eq. 1) per epoch.
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
    ``n_neighbors=None`` gives the paper's score, whose threshold is the
    cube's boundary.

    **Training length.** The loss of eq. (1) cannot tell when to stop: the
    value of its push term is ``f`` of uniform samples whatever the weights.
    Early stopping (``max_epochs="auto"``) therefore watches how far the
    held-out rows' codes are from the uniform law on ``[-b, b]^D`` that the
    method transports the data to (``b = latent_bound``): the
    1-Wasserstein distance of every latent coordinate to ``U[-b, b]``,
    averaged over the coordinates. This criterion is the package's, not the
    paper's (which trains for a fixed number of epochs); on the dev tables
    it stopped long before the fixed budget it replaced, which had lowered
    the AUROC on most of them (``benchmarks/results/quality.md``).

    **Input scale.** The network sees the standardised data divided by 3
    (a package choice, not the paper's): almost every standardised value
    then lies in ``[-1, 1]``, so the network, which starts as the identity,
    starts with the data inside the latent cube it is trained to fill and
    the push term is not fighting a start where most rows are outliers.

    With a single feature, the network sees a second column of standard
    normal noise during training and its centre 0 when scoring, because a
    coupling block needs two halves.

    References
    ----------
    R. Schmier, U. Koethe and C.-N. Straehle. Towards reliable outlier
    detection using invertible one-class networks. TPM 2024.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_flowod import InvertibleOneClassDetector
    >>> X = np.random.RandomState(0).normal(size=(200, 2))
    >>> det = InvertibleOneClassDetector(max_epochs=5, random_state=0).fit(X)
    >>> det.predict([[0.0, 0.0], [8.0, 8.0]])
    array([ 1, -1])
    """

    _parameter_constraints: dict = {
        **BaseINNDetector._parameter_constraints,
        "pull": [StrOptions(set(PULL_FUNCTIONS))],
        "latent_score": [StrOptions({"cube_distance", "pull"})],
        "n_latent_samples": [Interval(Integral, 1, None, closed="left")],
        "latent_bound": [Interval(Real, 0, 1, closed="right")],
        "calibration_quantile": [Interval(Real, 0, 1, closed="neither"), None],
    }

    def __init__(self, *, n_blocks=6, hidden_size=64, affine_clamping=2.0, global_affine_init=1.0,
                 soft_permutation=True, pull="square",
                 latent_score="cube_distance", n_latent_samples=2, latent_bound=0.9,
                 calibration_quantile=0.95, noise_std=0.05, dequantize_ties=True,
                 max_grad_norm=1.0, lr_schedule="constant", compile=False,
                 n_neighbors=5, max_epochs="auto", batch_size=256,
                 learning_rate=3e-3, weight_decay=0.0, validation_fraction=0.15,
                 n_iter_no_change=10, tol=3e-3, standardize=True, contamination="auto",
                 device="auto", n_jobs=None, random_state=None, verbose=0,
                 callbacks=None, known_anomaly_weight=None):
        self.n_blocks = n_blocks
        self.hidden_size = hidden_size
        self.affine_clamping = affine_clamping
        self.global_affine_init = global_affine_init
        self.soft_permutation = soft_permutation
        self.pull = pull
        self.latent_score = latent_score
        self.n_latent_samples = n_latent_samples
        self.latent_bound = latent_bound
        self.calibration_quantile = calibration_quantile
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

    #: Standardised data are divided by 3 before the network (see the class notes).
    _input_divisor = 3.0

    def _loss(self, module, batch, generator):
        """Eq. (1): pull the data's codes in, push the cube's pre-images out.

        With known anomalies, their codes join the push term as samples of
        weight ``w = known_anomaly_weight`` beside the cube's pre-images: the
        push is ``(sum f(z_back) + w sum min(f(z_a), f(t))) / (n_back + n_a)``
        with ``t`` the point at :data:`KNOWN_PUSH` half-widths of the cube on
        every axis, so that a known anomaly pushes like a pre-image until it
        is that far out, and no further.
        """
        f = PULL_FUNCTIONS[self.pull]
        n_latent = batch.shape[0] * self.n_latent_samples
        z_cube = torch.rand(
            (n_latent, batch.shape[1]), generator=generator, device=batch.device, dtype=batch.dtype
        ).mul_(2.0 * self.latent_bound).sub_(self.latent_bound)
        # no_grad, not inference mode: torch's module tracker (FlopCounterMode) fails on a
        # trainable parameter passed to a submodule under inference mode
        with torch.no_grad():
            x_cube, _ = module(z_cube, rev=True, jac=False)
        known = self._known_batch(batch.shape[0], generator)
        samples = [batch, x_cube] if known is None else [batch, x_cube, known]
        # the data and the pre-images in one forward pass: half the operations
        z, _ = module(torch.cat(samples), jac=False)
        z_data, z_back, *z_known = z.split([len(s) for s in samples])
        if not z_known:
            return f(z_data).mean() - f(z_back).mean()
        # known anomalies join the push, each as a weighted push sample that stops
        # once f of its code reaches f at KNOWN_PUSH half-widths of the cube
        target = f(torch.full((1, batch.shape[1]), KNOWN_PUSH * self.latent_bound,
                              dtype=z.dtype, device=z.device))
        known = f(z_known[0]).clamp(max=target)
        push = (f(z_back).sum() + self.known_anomaly_weight * known.sum()) / (n_latent
                                                                            + known.shape[0])
        return f(z_data).mean() - push

    def _criterion(self, module, X_val, generator):
        """How far the held-out rows are from filling the cube uniformly.

        The training loss is no held-out criterion: its push term's value is
        ``f`` of uniform samples whatever the weights (only its gradient
        depends on them). At the optimum the held-out codes are uniform on
        ``[-b, b]^D`` (``b = latent_bound``), so every coordinate is uniform
        on ``[-b, b]``; the criterion is the 1-Wasserstein distance of each
        coordinate of the held-out codes to that law (mean absolute gap
        between its sorted values and the law's quantiles), averaged over
        the coordinates. It falls while the network spreads the data over
        the cube and rises once the training rows are fitted at the held-out
        rows' expense.
        """
        codes = module(X_val, jac=False)[0].sort(dim=0).values
        n_rows = X_val.shape[0]
        levels = (torch.arange(n_rows, device=X_val.device, dtype=codes.dtype) + 0.5) / n_rows
        quantiles = self.latent_bound * (2.0 * levels - 1.0)
        return (codes - quantiles[:, None]).abs().mean()

    def _after_training(self, module, X_train, X_val) -> None:
        """Rescale the latent space so that held-out rows fill the cube as asked."""
        self.latent_scale_ = 1.0
        if self.calibration_quantile is None:
            return
        rows = X_train if X_val is None else X_val
        with torch.inference_mode():
            radius = module(rows, jac=False)[0].abs().amax(dim=1)
        self.latent_scale_ = float(np.quantile(radius.cpu().numpy(), self.calibration_quantile))

    def _latent(self, module, batch):
        return module(batch, jac=False)[0] / self.latent_scale_

    def _anomaly_score(self, module, batch):
        return self._scored_codes(module, batch)[0]

    def _scored_codes(self, module, batch):
        """The score is read from the codes: both from one forward pass."""
        codes = module(batch, jac=False)[0]
        z = codes / self.latent_scale_
        if self.latent_score == "pull":
            return PULL_FUNCTIONS[self.pull](z), codes
        return cube_distance(z), codes

    def _auto_offset(self, X: np.ndarray) -> float:
        """The cube's surface for the cube distance; Tukey's upper fence
        (Q3 + 1.5 IQR) of the training scores for the pull."""
        if self.latent_score == "cube_distance":
            return 0.0
        return -tukey_fence(self._apply_in_batches(X, self._anomaly_score, validate=False))

    def latent_codes(self, X) -> np.ndarray:
        """Map samples to the latent space, where inliers fill [-1, 1]^D.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The samples to map.

        Returns
        -------
        Z : ndarray of shape (n_samples, max(n_features_in_, 2))
            Latent codes; with ``n_neighbors=None`` and the cube distance,
            a code lies inside the cube exactly when the sample is predicted
            an inlier under ``contamination="auto"``.
        """
        return self._apply_in_batches(X, self._latent)
