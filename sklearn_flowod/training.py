"""The one training loop shared by every detector.

Mini-batch Adam with an optional cosine learning-rate schedule, per-epoch
loss curves, early stopping on a held-out validation split with the best
weights restored, and a guard against divergence. The loop never
synchronises the host with the device inside an epoch: losses are summed on
the device and read once per epoch. While it runs, the trainable parameters
share one flat buffer (:mod:`sklearn_flowod.flat_parameters`), so that
clearing, clipping and the Adam step are one operation each per step.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from .flat_parameters import flat_parameters
from .training_step import LossFn, SummedLoss, TrainingStep

logger = logging.getLogger("sklearn_flowod")

#: How many times a diverged epoch is retried (each time with a 10x smaller
#: learning rate) before training gives up.
MAX_DIVERGENCE_RETRIES = 3


class TrainingDivergedError(FloatingPointError):
    """Raised when the training loss stays non-finite after every retry."""


@dataclass
class TrainingHistory:
    """What a call to :func:`train_module` did.

    Attributes
    ----------
    loss_curve : list of float
        Mean training loss of every completed epoch.
    validation_loss_curve : list of float
        Validation loss after every epoch (empty without validation data).
    best_epoch : int
        1-based epoch whose weights the module holds at the end.
    n_epochs : int
        Number of completed epochs.
    n_samples_seen : int
        Training rows that went into the optimisation steps of the completed
        epochs (with ``compile=True`` an epoch leaves out the rows beyond its
        last full batch).
    n_lr_reductions : int
        How often a diverged epoch was retried with a smaller step.
    """

    loss_curve: list[float] = field(default_factory=list)
    validation_loss_curve: list[float] = field(default_factory=list)
    best_epoch: int = 0
    n_epochs: int = 0
    n_samples_seen: int = 0
    n_lr_reductions: int = 0


def _snapshot(module: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    """Copies of the weights and of the optimiser's per-parameter state."""
    weights = {k: v.detach().clone() for k, v in module.state_dict().items()}
    state = {
        parameter: {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in s.items()}
        for parameter, s in optimizer.state.items()
    }
    return weights, state


def _schedule(name: str, total_steps: int) -> Callable[[int], float] | None:
    """Multiplicative learning-rate factor per global step, or None if constant."""
    if name == "constant":
        return None
    if name == "cosine":
        return lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))
    raise ValueError(f"Unknown learning-rate schedule {name!r}.")


def _progress(verbose: int, max_epochs: int):
    if not verbose:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        if not logger.hasHandlers():
            logger.addHandler(logging.StreamHandler())
        logger.setLevel(logging.INFO)
        return None
    return tqdm(total=max_epochs, desc="training", unit="epoch", leave=False)


def train_module(
    module: nn.Module,
    loss_fn: LossFn | SummedLoss,
    X_train: torch.Tensor,
    X_val: torch.Tensor | None = None,
    *,
    max_epochs: int,
    batch_size: int,
    learning_rate: float,
    weight_decay: float = 0.0,
    lr_schedule: str = "constant",
    n_iter_no_change: int | None = 10,
    tol: float = 1e-4,
    max_grad_norm: float | None = None,
    noise_std: float = 0.0,
    generator: torch.Generator,
    validation_loss_fn: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None,
    validation_view: Callable[[nn.Module], Callable] | None = None,
    compiled_view: Callable[[nn.Module], Callable] | None = None,
    epoch_callback: Callable[[nn.Module, int], None] | None = None,
    compile: bool = False,
    verbose: int = 0,
) -> TrainingHistory:
    """Train ``module`` in place by minimising ``loss_fn`` over mini-batches.

    Parameters
    ----------
    module : torch.nn.Module
        The network, already on the training device.
    loss_fn : callable or SummedLoss
        ``loss_fn(module, batch, generator)`` returns the scalar mean loss of a
        batch. ``generator`` lives on the training device and is the only
        source of randomness the loss may use. A
        :class:`~sklearn_flowod.training_step.SummedLoss` is backpropagated
        one term at a time.
    X_train : torch.Tensor of shape (n_samples, n_features)
        Training data on the training device.
    X_val : torch.Tensor or None, default=None
        Validation data. When given, the validation loss is recorded after
        every epoch, the best epoch's weights are restored at the end, and
        training stops once it has not improved by ``tol`` for
        ``n_iter_no_change`` epochs (early stopping; off when
        ``n_iter_no_change`` is None, and then the last weights are kept).
    max_epochs, batch_size, learning_rate, weight_decay : see the detectors.
    lr_schedule : {"constant", "cosine"}, default="constant"
        ``"cosine"`` anneals the learning rate per step to zero at
        ``max_epochs``.
    n_iter_no_change : int or None, default=10
        Patience of early stopping; ``None`` trains all ``max_epochs``.
    tol : float, default=1e-4
        Minimum decrease of the validation loss that counts as improvement.
    max_grad_norm : float or None, default=None
        Clip the global gradient norm to this value.
    noise_std : float, default=0.0
        Standard deviation of Gaussian noise added to every training batch
        (dequantisation: it gives discrete or constant columns a density).
    generator : torch.Generator
        Seeded generator on the training device (shuffling and the loss).
    validation_loss_fn : callable or None, default=None
        ``validation_loss_fn(module, X_val)``; defaults to ``loss_fn`` with a
        generator re-seeded identically at every epoch, so that the curve is
        comparable across epochs.
    validation_view : callable or None, default=None
        ``validation_view(module)`` returns what the default validation loss
        evaluates in place of ``module`` (in inference mode), e.g. a faster
        inference-only equivalent of the network; None evaluates ``module``.
        Compiled training steps screen the rows of a clamped loss term
        (:class:`~sklearn_flowod.clamped_terms.ClampedRowMean`) through it too.
    compiled_view : callable or None, default=None
        ``compiled_view(module)`` returns what the compiled loss evaluates
        in place of ``module`` (only with ``compile=True``), e.g. an
        equivalent forward pass that compiles to faster code; None
        evaluates ``module``.
    epoch_callback : callable or None, default=None
        ``epoch_callback(module, epoch)`` is called after every completed
        epoch (``epoch`` is 1-based), before the validation loss is computed,
        e.g. to update state that the loss depends on (kept in buffers of
        ``module`` so that early stopping restores it with the weights).
    compile : bool, default=False
        Run the loss's forward (and backward) passes through
        ``torch.compile``, which fuses the element-wise work of the coupling
        blocks. Every step then sees a full batch (the rows left over by
        the last full batch of an epoch wait for a later epoch's shuffle),
        so that one compiled graph serves the whole training. If compiling
        fails (e.g. no C++ compiler for a CPU), a warning is issued and
        training goes on without it.
    verbose : int, default=0
        0 is silent; 1 shows a progress bar (tqdm) or logs one line per epoch.

    Returns
    -------
    history : TrainingHistory

    Raises
    ------
    TrainingDivergedError
        If the loss is still non-finite after the learning rate was lowered
        ``MAX_DIVERGENCE_RETRIES`` times.
    """
    device = X_train.device
    n_samples = X_train.shape[0]
    steps_per_epoch = max(1, math.ceil(n_samples / batch_size))
    if compile:
        steps_per_epoch = max(1, n_samples // batch_size)
    rows_per_epoch = min(n_samples, steps_per_epoch * batch_size)
    with flat_parameters(module) as parameters:
        training_step = TrainingStep(module, loss_fn, compile=compile,
                                     compiled_view=compiled_view,
                                     inference_view=validation_view)
        optimizer = _adam(parameters, learning_rate, weight_decay)
        schedule = _schedule(lr_schedule, max_epochs * steps_per_epoch)
        val_seed = int(torch.randint(2**31 - 1, (1,), generator=generator, device=device))
        if validation_loss_fn is None:
            val_generator = torch.Generator(device=device)

            def validation_loss_fn(m, x):
                val_generator.manual_seed(val_seed)
                return loss_fn(m if validation_view is None else validation_view(m), x,
                               val_generator)

        history = TrainingHistory()
        best_loss, best_weights, patience = math.inf, None, 0
        bar = _progress(verbose, max_epochs)
        epoch = 0
        while epoch < max_epochs:
            snapshot = _snapshot(module, optimizer)
            module.train()
            order = torch.randperm(n_samples, generator=generator, device=device)
            total = torch.zeros((), device=device)
            for step in range(steps_per_epoch):
                start = step * batch_size
                if schedule is not None:
                    lr = learning_rate * schedule(epoch * steps_per_epoch + step)
                    for group in optimizer.param_groups:
                        group["lr"] = lr
                batch = X_train.index_select(0, order[start : start + batch_size])
                if noise_std > 0:  # the gathered batch is a copy: add the noise in place
                    batch += torch.empty_like(batch).normal_(0.0, noise_std, generator=generator)
                _zero_grad(parameters)
                loss = training_step(batch, generator)
                if max_grad_norm is not None:
                    _clip_grad_norm(parameters, max_grad_norm)
                optimizer.step()
                total += loss * batch.shape[0]
            epoch_loss = float(total) / rows_per_epoch
            if not math.isfinite(epoch_loss) or not _finite_weights(parameters):
                learning_rate = _recover(module, optimizer, snapshot, history, epoch, learning_rate)
                continue
            epoch += 1
            if epoch_callback is not None:
                epoch_callback(module, epoch)
            history.loss_curve.append(epoch_loss)
            history.n_epochs = epoch
            history.n_samples_seen += rows_per_epoch
            message = f"epoch {epoch}/{max_epochs}: loss {epoch_loss:.5g}"
            if X_val is not None:
                module.eval()
                with torch.inference_mode():
                    val_loss = float(validation_loss_fn(module, X_val))
                history.validation_loss_curve.append(val_loss)
                message += f", validation loss {val_loss:.5g}"
                if n_iter_no_change is None:
                    pass  # no early stopping: the last weights are kept
                elif val_loss < best_loss - tol or best_weights is None:
                    best_loss, patience, history.best_epoch = val_loss, 0, epoch
                    best_weights = {k: v.detach().clone() for k, v in module.state_dict().items()}
                else:
                    patience += 1
            _report(bar, message, epoch_loss)
            if X_val is not None and n_iter_no_change is not None and patience >= n_iter_no_change:
                break
    if bar is not None:
        bar.close()
    if best_weights is not None:
        module.load_state_dict(best_weights)
    else:
        history.best_epoch = history.n_epochs
    module.eval()
    return history


def _adam(
    parameters: list[nn.Parameter], learning_rate: float, weight_decay: float
) -> torch.optim.Adam:
    """Adam over ``parameters``, fused into one kernel per step where torch can.

    The fused implementation updates all parameters together instead of
    running a dozen small operations per parameter tensor (torch >= 2.4 on
    CPUs, CUDA); elsewhere the default implementation is used.
    """
    options = {"lr": learning_rate, "weight_decay": weight_decay}
    try:
        return torch.optim.Adam(parameters, fused=True, **options)
    except RuntimeError:  # fused Adam does not support this device or torch version
        return torch.optim.Adam(parameters, **options)


def _zero_grad(parameters: list[nn.Parameter]) -> None:
    """Clear the gradients in place (the flat parameters' views must stay)."""
    for parameter in parameters:
        if parameter.grad is not None:
            parameter.grad.zero_()


def _clip_grad_norm(parameters: list[nn.Parameter], max_norm: float) -> None:
    """``torch.nn.utils.clip_grad_norm_``, in three operations for one flat gradient.

    The gradients are scaled by ``min(1, max_norm / (norm + 1e-6))``, the
    factor torch uses.
    """
    grads = [p.grad for p in parameters if p.grad is not None]
    if len(grads) != 1:
        nn.utils.clip_grad_norm_(parameters, max_norm)
        return
    factor = max_norm / (torch.linalg.vector_norm(grads[0]) + 1e-6)
    grads[0].mul_(factor.clamp_(max=1.0))


def _finite_weights(parameters: list[nn.Parameter]) -> bool:
    flat = torch.cat([p.detach().reshape(-1) for p in parameters])
    return bool(torch.isfinite(flat).all())


def _recover(
    module, optimizer, snapshot, history: TrainingHistory, epoch: int, learning_rate: float
) -> float:
    """Restore the weights of the last good epoch; return the 10x lower base step."""
    if history.n_lr_reductions >= MAX_DIVERGENCE_RETRIES:
        raise TrainingDivergedError(
            f"The training loss became non-finite in epoch {epoch + 1} and stayed so "
            f"after lowering the learning rate {MAX_DIVERGENCE_RETRIES} times. Lower "
            "`learning_rate`, keep `standardize=True`, or check the input for extreme "
            "values."
        )
    weights, opt_state = snapshot
    module.load_state_dict(weights)
    optimizer.state.clear()
    optimizer.state.update(opt_state)  # the next epoch snapshots it anew
    learning_rate *= 0.1
    for group in optimizer.param_groups:
        group["lr"] = learning_rate
    history.n_lr_reductions += 1
    logger.warning(
        "Non-finite training loss in epoch %d: restored the previous weights and "
        "lowered the learning rate to %.3g.",
        epoch + 1,
        learning_rate,
    )
    return learning_rate


def _report(bar, message: str, epoch_loss: float) -> None:
    if bar is not None:
        bar.update(1)
        bar.set_postfix_str(message.split(": ", 1)[1])
    elif logger.isEnabledFor(logging.INFO):
        logger.info(message)
