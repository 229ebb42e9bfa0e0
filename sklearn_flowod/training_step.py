"""One optimisation step's forward and backward passes, eager or compiled.

A detector's loss is either a plain function ``loss(module, batch, generator)``
or a :class:`SummedLoss`, a sum of terms over different inputs (the
contrastive flow's inlier and contrastive samples). The terms of a summed
loss are backpropagated one after the other: each term's activations are
released before the next term's forward pass, so that one pass's working
set, not two, has to stay in the CPU's caches, and the random inputs are
drawn outside the terms, so that a compiled term is one graph without
breaks. Compiled, the terms of a :class:`SummedLoss`, pure functions of the
network's parameters and their inputs, are differentiated inside the
compiled graph (:mod:`~sklearn_flowod.functional_gradients`); a plain loss,
which may draw random numbers, is compiled and backpropagated by autograd.

A loss whose terms are means over the rows of their inputs (``row_means``)
is evaluated by a compiled step on a CPU in micro-batches of
:data:`MICRO_BATCH_ROWS` rows when the batch is larger (see
:func:`micro_batches`): the gradient is the same, and one micro-batch's
activations, half or less of the batch's, compete less for the caches.

A term clamped from below (:class:`~sklearn_flowod.clamped_terms.ClampedRowMean`)
is backpropagated on a CPU only where its rows can carry a gradient (see
:mod:`~sklearn_flowod.clamped_terms`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import torch
from torch import nn

from .clamped_terms import ClampedRowMean, screen_rows
from .functional_gradients import EvaluatedNetwork, accumulate_gradients, term_gradients

LossFn = Callable[[nn.Module, torch.Tensor, torch.Generator], torch.Tensor]

#: Rows of one micro-batch of a compiled step on a CPU.
MICRO_BATCH_ROWS = 2048
#: Compiled steps that evaluate a clamped term on all rows, without
#: screening, after a screening selected every row (e.g. auxiliary samples
#: that the flow cannot push down): the screening pass would only add work.
#: The pause doubles after every further such screening, up to
#: :data:`MAX_SCREENING_PAUSE` steps.
SCREENING_PAUSE = 16
MAX_SCREENING_PAUSE = 64
#: A batch is split only if a micro-batch of it takes at least this many bytes
#: (2,048 rows of 16 float32 features): with fewer features the added graph
#: call costs as much as the smaller working set saves.
MIN_MICRO_BATCH_BYTES = 128 * 1024


class SummedLoss:
    """A training loss ``sum_i terms[i](module, *inputs[i])``.

    Parameters
    ----------
    inputs : callable
        ``inputs(batch, generator)`` returns one tuple of arguments per term
        (after ``module``). All the randomness of the loss is drawn here,
        from ``generator``.
    terms : sequence of callables
        ``terms[i](module, *args)`` returns a scalar tensor; they must not
        draw random numbers.
    row_means : bool, default=False
        Every term is a mean over rows plus terms that do not depend on
        them: its value on a batch is the average of its values on equal
        parts of the batch, split along the first dimension of every tensor
        argument with as many rows as the batch. A compiled step may then
        evaluate the terms in micro-batches.

    Notes
    -----
    An instance is also a plain loss function: calling it with
    ``(module, batch, generator)`` returns the summed loss (e.g. for a
    validation loss).
    """

    def __init__(
        self,
        inputs: Callable[[torch.Tensor, torch.Generator], Sequence[tuple]],
        terms: Sequence[Callable[..., torch.Tensor]],
        *,
        row_means: bool = False,
    ):
        self.inputs = inputs
        self.terms = tuple(terms)
        self.row_means = row_means

    def __call__(
        self, module: nn.Module, batch: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        arguments = self.inputs(batch, generator)
        return sum(term(module, *args) for term, args in zip(self.terms, arguments, strict=True))


def row_mean_loss(term: Callable[[nn.Module, torch.Tensor], torch.Tensor]) -> SummedLoss:
    """The loss ``term(module, batch)``, a mean over the batch's rows.

    Parameters
    ----------
    term : callable
        ``term(module, batch)`` returns the mean over the rows of ``batch``
        of a per-row quantity (plus, possibly, terms independent of them).

    Returns
    -------
    loss : SummedLoss
        A one-term loss with ``row_means=True``.
    """
    return SummedLoss(lambda batch, generator: ((batch,),), (term,), row_means=True)


def micro_batches(batch: torch.Tensor) -> int:
    """Equal parts a compiled step evaluates ``batch`` of a row-mean loss in.

    On a CPU, a batch with at least twice :data:`MICRO_BATCH_ROWS` rows is
    split into as many equal parts of at least that many rows as divide it,
    provided one part takes :data:`MIN_MICRO_BATCH_BYTES` or more; other
    batches, and every batch on an accelerator, are evaluated whole.

    Parameters
    ----------
    batch : torch.Tensor
        The batch, rows first.

    Returns
    -------
    parts : int
        Number of micro-batches, 1 for the whole batch.
    """
    n_rows = batch.shape[0]
    row_bytes = batch[:1].numel() * batch.element_size()
    if batch.device.type != "cpu" or MICRO_BATCH_ROWS * row_bytes < MIN_MICRO_BATCH_BYTES:
        return 1
    parts = max(1, n_rows // MICRO_BATCH_ROWS)
    while n_rows % parts:
        parts -= 1
    return parts


def as_summed_loss(loss_fn: LossFn | SummedLoss) -> SummedLoss:
    """``loss_fn`` itself if it is a :class:`SummedLoss`, else a one-term sum."""
    if isinstance(loss_fn, SummedLoss):
        return loss_fn
    return SummedLoss(lambda batch, generator: ((batch, generator),), (loss_fn,))


class TrainingStep:
    """Gradients of a loss on one batch, through ``torch.compile`` or eagerly.

    With ``compile=True`` every term of the loss (the whole term, so that the
    reductions that turn the network's outputs into the loss fuse with it) runs
    through ``torch.compile``, on a CPU with a generated C++ wrapper that
    launches the kernels without Python in between. A :class:`SummedLoss`'s
    terms are compiled with their gradients, one graph per term that returns
    the term's value and gradients
    (:func:`~sklearn_flowod.functional_gradients.term_gradients`), and those
    of a loss with ``row_means`` evaluate large CPU batches in micro-batches
    (:func:`micro_batches`); a plain loss function is compiled as it is and
    backpropagated. If compiling fails, a warning is issued and this and every
    later step run eagerly (on whole batches).

    On a CPU, a clamped term
    (:class:`~sklearn_flowod.clamped_terms.ClampedRowMean`) is not
    backpropagated where it has no gradient: an uncompiled step skips its
    backward pass when no row is at or above the floor; a compiled step
    screens its rows first (:func:`~sklearn_flowod.clamped_terms.screen_rows`,
    through ``inference_view``) and evaluates the micro-batches that hold
    the rows above the floor alone; after a screening that selected every
    row, the next :data:`SCREENING_PAUSE` or more steps evaluate all rows
    unscreened.
    ``clamped_rows`` and ``clamped_rows_backpropagated`` count the clamped
    terms' rows and those of them that went through a backward pass.

    Parameters
    ----------
    module : torch.nn.Module
        The trained network.
    loss_fn : callable or SummedLoss
        The training loss.
    compile : bool, default=False
        Compile the loss's terms.
    compiled_view : callable or None, default=None
        ``compiled_view(module)`` returns what the compiled terms evaluate in
        place of ``module``: an equivalent differentiable function of its
        parameters that compiles to faster code (e.g.
        :func:`~sklearn_flowod.padded_coupling.padded_view`). The terms run
        eagerly on ``module`` itself.
    """

    def __init__(
        self,
        module: nn.Module,
        loss_fn: LossFn | SummedLoss,
        *,
        compile: bool = False,
        compiled_view: Callable[[nn.Module], object] | None = None,
        inference_view: Callable[[nn.Module], object] | None = None,
    ):
        self.module = module
        self.inference_view = inference_view
        self.loss = as_summed_loss(loss_fn)
        # a SummedLoss's terms are pure: they can be differentiated in the graph
        self.functional = isinstance(loss_fn, SummedLoss)
        # per term: compiled steps left before its rows are screened again, and
        # the length of the last pause
        self.screening_paused = [0] * len(self.loss.terms)
        self.screening_pause = [0] * len(self.loss.terms)
        self.clamped_rows = self.clamped_rows_backpropagated = 0
        self.compiled = None
        if compile:
            options = _compile_options(module)
            view = module if compiled_view is None else compiled_view(module)
            if self.functional:
                self.evaluated = EvaluatedNetwork(module, view)
                self.trained = self.evaluated.trainable_parameters()
                self.compiled = [torch.compile(term_gradients(term), options=options)
                                 for term in self.loss.terms]
            else:
                self.compiled_module = view
                self.compiled = [torch.compile(term, options=options)
                                 for term in self.loss.terms]

    def __call__(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Accumulate the gradients of the loss of ``batch``; return the (detached) loss."""
        if self.compiled is not None:
            state = generator.get_state()
            try:
                if self.functional:
                    return self._compiled_gradients(batch, generator)
                return self._backward(self.compiled, self.compiled_module, batch, generator)
            except Exception as error:  # noqa: BLE001 - any compiler failure
                self.compiled = None
                self.module.zero_grad(set_to_none=False)
                generator.set_state(state)
                warnings.warn(
                    f"torch.compile failed ({type(error).__name__}: {error}); training "
                    "goes on without compiling.",
                    RuntimeWarning,
                    stacklevel=3,
                )
        return self._backward(self.loss.terms, self.module, batch, generator)

    def _backward(self, terms, module, batch, generator) -> torch.Tensor:
        total = None
        arguments = self.loss.inputs(batch, generator)
        for term, args in zip(terms, arguments, strict=True):
            if isinstance(term, ClampedRowMean):
                value, gradient_rows = term.value_and_gradient_rows(module, *args)
                # checked on a CPU only: on an accelerator the check would make the
                # host wait for the device
                backpropagated = args[0].device.type != "cpu" or bool(gradient_rows.any())
                n_rows = args[0].shape[0]
                self._count_clamped(n_rows, n_rows if backpropagated else 0)
            else:
                value, backpropagated = term(module, *args), True
            if backpropagated:
                value.backward()
            value = value.detach()
            total = value if total is None else total + value
        return total

    def _count_clamped(self, rows: int, backpropagated: int) -> None:
        self.clamped_rows += rows
        self.clamped_rows_backpropagated += backpropagated

    def _compiled_gradients(self, batch, generator) -> torch.Tensor:
        parts = micro_batches(batch) if self.loss.row_means else 1
        parameters = list(self.trained.values())
        total = None
        arguments = self.loss.inputs(batch, generator)
        for index, (gradients_of, term, args) in enumerate(
            zip(self.compiled, self.loss.terms, arguments, strict=True)
        ):
            # a clamped term is evaluated on the micro-batch parts that hold its
            # selected rows, all of the shape of the batch's own parts
            screened = self._screen(index, args, granularity=batch.shape[0] // parts)
            if screened is None:
                calls = _split_rows(args, batch.shape[0], parts)
            else:
                x, floor = args
                selected = x.index_select(0, screened.rows)
                calls = _split_rows((selected, floor), selected.shape[0],
                                    round(screened.fraction * parts))
            value = None
            for part_args in calls:
                with torch.no_grad():
                    gradients, part_value = gradients_of(term, self.evaluated, self.trained,
                                                         *part_args)
                accumulate_gradients(parameters, list(gradients.values()), 1.0 / parts)
                value = part_value / parts if value is None else value + part_value / parts
            if isinstance(term, ClampedRowMean):
                n_rows = args[0].shape[0]
                self._count_clamped(n_rows, n_rows if screened is None else screened.rows.numel())
            if screened is not None:
                value = screened.value
            total = value if total is None else total + value
        return total

    def _screen(self, index: int, args: tuple, granularity: int):
        """Screen the rows of term ``index`` (a clamped term on a CPU), else None.

        Screening pauses for :data:`SCREENING_PAUSE` steps after it selected
        every row, twice as long after every further such screening (at most
        :data:`MAX_SCREENING_PAUSE`), until one selects fewer rows.
        """
        term = self.loss.terms[index]
        if not isinstance(term, ClampedRowMean) or args[0].device.type != "cpu":
            return None
        if self.screening_paused[index]:
            self.screening_paused[index] -= 1
            return None
        view = self.module if self.inference_view is None else self.inference_view(self.module)
        screened = screen_rows(term, view, *args, granularity=granularity)
        if screened.fraction < 1.0:
            self.screening_pause[index] = 0
        else:
            pause = min(2 * self.screening_pause[index] or SCREENING_PAUSE, MAX_SCREENING_PAUSE)
            self.screening_pause[index] = self.screening_paused[index] = pause
        return screened


def _split_rows(args: tuple, n_rows: int, parts: int):
    """``parts`` tuples of ``args`` whose batch-long tensors are cut into equal row blocks."""
    if parts == 0:
        return
    if parts == 1:
        yield args
        return
    size = n_rows // parts
    for start in range(0, n_rows, size):
        yield tuple(
            arg[start : start + size]
            if isinstance(arg, torch.Tensor) and arg.dim() > 0 and arg.shape[0] == n_rows
            else arg
            for arg in args
        )


def _compile_options(module: nn.Module) -> dict:
    """Inductor options for the device of ``module``'s parameters.

    On a CPU, where each kernel of a step runs for microseconds, the compiled
    graphs are driven by a generated C++ wrapper instead of Python code (it
    takes a few seconds longer to compile once).
    """
    parameter = next(module.parameters(), None)
    on_cpu = parameter is None or parameter.device.type == "cpu"
    return {"cpp_wrapper": True} if on_cpu else {}
