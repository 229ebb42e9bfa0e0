"""Resolution of the ``device`` parameter shared by every detector."""

from __future__ import annotations

import socket
import warnings

import torch


def resolve_device(device: str | torch.device) -> torch.device:
    """Turn a ``device`` parameter into a ``torch.device`` usable here.

    Parameters
    ----------
    device : {"auto", "cpu", "cuda", "cuda:N"} or torch.device
        ``"auto"`` picks the current CUDA device when one is available and
        the CPU otherwise. Resolution happens in the process that fits, so
        under joblib or dask it reflects the worker's hardware, not the
        driver's; the error names the host for that reason.

    Returns
    -------
    device : torch.device

    Raises
    ------
    ValueError
        If the string is not a device name, or names a CUDA device that this
        machine does not have.
    """
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device={device!r} is not a device name; use 'auto', 'cpu', 'cuda' or 'cuda:N'."
        ) from exc
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={device!r} was requested but CUDA is not available on this "
                f"machine (host {socket.gethostname()!r}, torch {torch.__version__}); "
                "use device='auto' or device='cpu'."
            )
        index = resolved.index if resolved.index is not None else 0
        if index >= torch.cuda.device_count():
            raise ValueError(
                f"device={device!r} was requested but this machine (host "
                f"{socket.gethostname()!r}) has only {torch.cuda.device_count()} CUDA device(s)."
            )
    elif resolved.type != "cpu":
        raise ValueError(
            f"device={device!r} is not supported; use 'auto', 'cpu', 'cuda' or 'cuda:N'."
        )
    return resolved


def loadable_device(device: torch.device) -> torch.device:
    """The device a model saved on ``device`` is loaded onto on this machine.

    ``device`` itself when this machine has it; else, with a warning,
    ``cuda:0`` for a CUDA device whose index this machine lacks (a model
    fitted on ``cuda:1`` loaded where there is one GPU), or the CPU when
    CUDA is not available at all.

    Parameters
    ----------
    device : torch.device
        The device the model was fitted on.

    Returns
    -------
    device : torch.device
    """
    try:
        return resolve_device(device)
    except ValueError as reason:  # a CUDA device this machine does not have
        fallback = torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
        warnings.warn(f"This detector was fitted on {device}, which cannot be used here "
                      f"({reason}); it is loaded on {fallback}.", UserWarning, stacklevel=3)
    return fallback
