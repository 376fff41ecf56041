"""Stage 2 at inference: the breakage network at every attention centre, and how its crops are
combined.

:func:`predict_breakage` runs the stage-2 network on the (normalised CT, attention) box of the
stage-2 patch size centred on each breakage centre; :func:`paste_patches` averages the
probabilities of overlapping boxes and keeps the mean ``> 0.5``. A :data:`Connector` is what
fills the gaps in :func:`deeptree.pipeline.repair`: a stage-2 network (bare, or a
:class:`~deeptree.checkpoints.LoadedModel` carrying its metadata), the name of a non-learned gap
filler (:data:`GAPFILL_CONNECTORS`, ``deeptree.stage2.gapfill``), or None (no connection).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Union

import numpy as np
import torch

from deeptree.checkpoints import LoadedModel, load_model
from deeptree.io import InputError
from deeptree.networks import choose_device, stage2_network
from deeptree.stage2.data import crop_stage2, crop_start

GAPFILL_CONNECTORS = {
    "gapfill": "straight",
    "gapfill-straight": "straight",
    "gapfill-intensity": "intensity",
}


@dataclass
class Stage2Patch:
    """Stage-2 prediction at one breakage centre.

    Attributes
    ----------
    centre : ndarray of int64, shape (3,)
        The breakage centre (voxels).
    start : ndarray of int64, shape (3,)
        First voxel of the box (may lie outside the volume; the box was padded).
    mask : ndarray of bool, shape (X, Y, Z)
        Predicted breakage in the box on its own (``probability > 0.5``).
    probability : ndarray of float32, shape (X, Y, Z), or None
        Breakage probability in the box; None for a hand-made mask (then the mask counts
        as probability 0 or 1 in :func:`paste_patches`).
    """

    centre: np.ndarray
    start: np.ndarray
    mask: np.ndarray
    probability: np.ndarray | None = None


def load_stage2_model(
    checkpoint: str | os.PathLike, device: str | torch.device = "cpu"
) -> LoadedModel:
    """Rebuild the stage-2 network from a training checkpoint.

    Returns
    -------
    LoadedModel
        The network (``AirwayUNet`` in eval mode on ``device``) and its metadata:
        ``filters``, ``patch_size``, ``alpha``, ``centre_threshold``, ...

    Raises
    ------
    InputError
        Missing, unreadable or non-DeepTree checkpoint, or one of another stage.
    """
    return load_model(checkpoint, 2, lambda net, meta: stage2_network(net), device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def predict_breakage(
    model: torch.nn.Module,
    image: np.ndarray,
    h_bar: np.ndarray,
    centres: np.ndarray,
    patch_size: Sequence[int],
    *,
    device=None,
    batch_size: int = 4,
    amp: bool = True,
) -> list[Stage2Patch]:
    """Stage 2 at every breakage centre.

    Parameters
    ----------
    model : torch.nn.Module
        Stage-2 network (2 input channels, 2 output channels); put in eval mode here.
    image : ndarray of float32, shape (I, J, K)
        Normalised CT (:func:`deeptree.stage1.data.normalize_ct`).
    h_bar : ndarray of float32, shape (I, J, K)
        Breakage attention.
    centres : ndarray of int, shape (n, 3)
        Voxels; each box of ``patch_size`` is centred on one (padded past the border).
    patch_size : 3 ints
        Each a multiple of 8.
    device : optional
        Default: CUDA if available.
    batch_size : int
        Boxes per forward pass.
    amp : bool
        bf16 autocast on CUDA.

    Returns
    -------
    list of Stage2Patch, one per centre, with the box's breakage probability and its own
    mask ``probability > 0.5``.
    """

    device = choose_device(device)
    size = tuple(int(p) for p in patch_size)
    centres = np.asarray(centres, dtype=np.int64).reshape(-1, 3)
    model = model.to(device).eval()
    use_amp = bool(amp and device.type == "cuda")
    patches: list[Stage2Patch] = []
    for first in range(0, len(centres), max(1, int(batch_size))):
        chunk = centres[first : first + batch_size]
        starts = [crop_start(c, size) for c in chunk]
        x = torch.stack([crop_stage2(image, h_bar, None, s, size)["image"] for s in starts])
        with (
            torch.no_grad(),
            torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_amp),
        ):
            logits = model(x.to(device))
            if isinstance(logits, (list, tuple)):
                logits = logits[0]
            probability = torch.softmax(logits.float(), dim=1)[:, 1].cpu().numpy()
        patches += [
            Stage2Patch(c, s, p > 0.5, p.astype(np.float32))
            for c, s, p in zip(chunk, starts, probability, strict=True)
        ]
    return patches


def paste_patches(shape: Sequence[int], patches: Sequence[Stage2Patch]) -> np.ndarray:
    """Combine the patches into one breakage mask of ``shape``: a voxel is breakage when the
    mean breakage probability of the boxes that contain it exceeds 0.5 (parts of a box
    outside the volume are dropped).

    Parameters
    ----------
    shape : 3 ints
    patches : list of Stage2Patch
        A patch without ``probability`` counts with its mask as probability 0 or 1, so a
        voxel that only such patches cover is breakage when more than half of them say so.

    Returns
    -------
    ndarray of bool, shape ``shape``

    Notes
    -----
    Holds two float32 volumes of ``shape`` while it runs (about 670 MB for 512 x 512 x 320).
    """
    shape = tuple(int(n) for n in shape)
    total = np.zeros(shape, dtype=np.float32)
    count = np.zeros(shape, dtype=np.float32)
    for p in patches:
        overlap = box_overlap(p.start, p.mask.shape, shape)
        if overlap is None:
            continue
        dst, src = overlap
        value = p.probability if p.probability is not None else p.mask
        total[dst] += np.asarray(value, dtype=np.float32)[src]
        count[dst] += 1.0
    return total > 0.5 * count


def box_overlap(
    start: Sequence[int], size: Sequence[int], shape: Sequence[int]
) -> tuple[tuple[slice, ...], tuple[slice, ...]] | None:
    """Where the box ``[start, start + size)`` meets a volume of ``shape``.

    Returns
    -------
    (in_volume, in_box) : two tuples of 3 slices, or None when the box lies outside
    """
    in_volume, in_box = [], []
    for s, n, dim in zip(start, size, shape, strict=True):
        lo, hi = max(int(s), 0), min(int(s) + int(n), int(dim))
        if hi <= lo:
            return None
        in_volume.append(slice(lo, hi))
        in_box.append(slice(lo - int(s), hi - int(s)))
    return tuple(in_volume), tuple(in_box)


#: What fills the gaps of a stage-1 mask: a stage-2 network (bare: give its patch size; or a
#: :class:`~deeptree.checkpoints.LoadedModel` carrying patch size, alpha and centre threshold),
#: the name of a non-learned gap filler (a key of :data:`GAPFILL_CONNECTORS`), or None (no
#: connection).
Connector = Union[torch.nn.Module, LoadedModel, str, None]  # noqa: UP007 (a runtime alias)


def split_connector(connector: Connector) -> tuple[torch.nn.Module | str | None, dict]:
    """The network (or gap-filler name, or None) of a :data:`Connector` and its metadata.

    Returns
    -------
    model : torch.nn.Module, str or None
    meta : dict
        A copy of the checkpoint metadata for a :class:`~deeptree.checkpoints.LoadedModel`,
        else empty.

    Raises
    ------
    InputError
        An unknown gap-filler name, or an object that is no connector.
    """
    if connector is None:
        return None, {}
    if isinstance(connector, str):
        if connector not in GAPFILL_CONNECTORS:
            raise InputError(
                f"stage 2: unknown connector {connector!r} (a network, or one of {', '.join(GAPFILL_CONNECTORS)})"
            )
        return connector, {}
    if isinstance(connector, LoadedModel):
        return connector.model, dict(connector.meta)
    if isinstance(connector, torch.nn.Module):
        return connector, {}
    raise InputError(
        f"stage 2: expected a network, a LoadedModel, a connector name or None, got {type(connector).__name__}"
    )
