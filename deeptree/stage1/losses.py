"""Stage-1 losses: the General Union Loss (GUL), the anatomy-aware multi-class (AMC) loss and
the plain 2-class baseline, with switches for the paper's four stage-1 variants.

The paper (Sec. 2.1 and "Implementation details") trains stage 1 with a multi-class Dice + CE
loss over the three anatomy classes (AMC, Eq. 1) plus the General Union Loss of Zheng et al.
applied to the whole airway. Its ablation (Table 2) compares four variants:

==============  =========================  ============================================
variant         network output channels    loss
==============  =========================  ============================================
``"plain"``     2 (background, airway)     DiceCE (the paper's "nnUNet*")
``"amc"``       4 (background, 3 classes)  DiceCE over the 4-channel softmax
``"gul"``       2                          DiceCE + GUL on the airway channel
``"amc+gul"``   4                          DiceCE over 4 channels + GUL on the union
==============  =========================  ============================================

GUL (Zheng et al., "Alleviating class-wise gradient imbalance for pulmonary airway
segmentation", IEEE TMI 40(9), 2021), as fixed in docs/design.md: with foreground probability
``p``, ground truth ``g`` and weight ``w = d g + (1 - g)``::

    L = 1 - (sum w (p + 1e-4)^0.7 g + 1) / (sum w (a p + (1 - a) g) + 1),   a = 0.1

``d`` in [0, 1] is 1 on the centreline and falls towards the lumen wall, normalised by the
local radius (:func:`gul_distance_weight`); it is computed once per case on the numpy side
(``deeptree.stage1.data``) and reaches the loss as a tensor. For the multi-class variants the
airway probability is the union ``p = 1 - p(background)``.

Deep supervision follows nnU-Net: the network returns logits at full, 1/2 and 1/4
resolution; targets are downsampled by nearest neighbour and the terms are weighted by
:func:`deep_supervision_weights`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from skimage.morphology import skeletonize

from deeptree.config import check_variant, n_output_channels, uses_gul
from deeptree.distributed import batch_sum
from deeptree.io import InputError, check_binary_mask, check_spacing


# --------------------------------------------------------------------------------------------
# GUL distance weight (numpy)
# --------------------------------------------------------------------------------------------
def gul_distance_weight(
    label: np.ndarray, spacing: Sequence[float] = (1.0, 1.0, 1.0), name: str = "label"
) -> np.ndarray:
    """Centreline-emphasising weight ``d`` of the General Union Loss.

    For every airway voxel ``x`` with nearest skeleton voxel ``s`` (Euclidean, in mm)::

        d(x) = clip(e(x) / e(s), 0, 1)

    where ``e`` is the Euclidean distance (mm) to the nearest background voxel (the EDT of
    the lumen) and ``e(s)`` is thus the local lumen radius. So ``d = 1`` on the centreline
    and falls towards the wall, to ``h / r`` at the last lumen voxel (``h`` the voxel size,
    ``r`` the local radius): the profile across the lumen is the same for a thin and a thick
    branch, and no lumen voxel gets weight 0 (a two-voxel-wide branch, whose 3D thinning may
    leave few skeleton voxels, keeps ``d = 1`` on both halves). Outside the airway ``d = 1``,
    so the loss weight ``w = d g + (1 - g)`` is 1 in the background as well.

    Follows the idea of the distance-based weight of Zheng et al. (IEEE TMI 2021); the exact
    normalisation is the one fixed in docs/design.md.

    Parameters
    ----------
    label : ndarray, shape (I, J, K), bool or integer
        Airway mask, or an anatomy label map (any value > 0 is airway). Not modified.
    spacing : 3 floats
        Voxel size in mm.
    name : str
        Name of the array in error messages.

    Returns
    -------
    ndarray of float32, shape (I, J, K)
        ``d`` in [0, 1]; 1 in the background and on the skeleton. An empty label gives all ones.

    Raises
    ------
    InputError
        If ``label`` is not a 3D numeric volume or ``spacing`` is invalid.
    """
    label = np.asarray(label)
    if label.ndim != 3:
        raise InputError(f"{name}: expected a 3D volume, got shape {label.shape}")
    spacing = check_spacing(spacing, name)
    mask = check_binary_mask(label > 0, name, allow_empty=True)
    weight = np.ones(mask.shape, dtype=np.float32)
    if not mask.any():
        return weight
    # work in the bounding box of the airway plus one voxel (the EDTs only need that)
    nonzero = np.nonzero(mask)
    box = tuple(
        slice(max(int(idx.min()) - 1, 0), min(int(idx.max()) + 2, n))
        for idx, n in zip(nonzero, mask.shape, strict=True)
    )
    weight[box] = _distance_weight_in_box(mask[box], spacing)
    return weight


def _distance_weight_in_box(mask: np.ndarray, spacing) -> np.ndarray:
    """:func:`gul_distance_weight` on a crop that holds the whole airway."""
    weight = np.ones(mask.shape, dtype=np.float32)
    skeleton = skeletonize(mask).astype(bool)
    if not skeleton.any():  # a blob too small to thin: its centre voxel is the skeleton
        centre = np.round(ndimage.center_of_mass(mask)).astype(int)
        skeleton[tuple(centre)] = mask[tuple(centre)]
        if not skeleton.any():
            skeleton[tuple(np.argwhere(mask)[0])] = True
    # local radius: distance from a lumen voxel to the background (mm); pad so that airway
    # touching the volume border is treated as open (radius measured to the border + 1).
    radius = ndimage.distance_transform_edt(np.pad(mask, 1), sampling=spacing)[1:-1, 1:-1, 1:-1]
    _, nearest = ndimage.distance_transform_edt(~skeleton, sampling=spacing, return_indices=True)
    # the voxel's own distance to the wall, relative to the local radius (the same distance
    # at its nearest skeleton voxel): 1 on the centreline, h / r at the last lumen voxel,
    # never 0 inside the lumen (a thin branch whose thinning left few skeleton voxels still
    # gets weight everywhere)
    r = radius[nearest[0], nearest[1], nearest[2]]
    d = np.clip(radius / np.maximum(r, 1e-6), 0.0, 1.0)
    weight[mask] = d[mask].astype(np.float32)
    return weight


# --------------------------------------------------------------------------------------------
# losses (torch)
# --------------------------------------------------------------------------------------------
class GeneralUnionLoss(torch.nn.Module):
    """General Union Loss of Zheng et al. (IEEE TMI 2021), a distance-weighted Tversky loss.

    ``L = 1 - (sum w (p + eps)^gamma g + smooth) / (sum w (a p + (1 - a) g) + smooth)`` with
    ``w = d g + (1 - g)``, summed over all voxels of each sample and averaged over the batch.

    Parameters
    ----------
    alpha : float
        ``a``: weight of the predicted volume in the denominator (0.1: false positives cost
        little, missed airway costs much).
    gamma : float
        Exponent on the probability in the numerator (0.7): lifts small probabilities so
        that thin, uncertain branches still get gradient.
    eps : float
        Added to ``p`` before the power (1e-4), keeps the gradient of ``p^gamma`` finite at 0.
    smooth : float
        Added to numerator and denominator (1), so that an empty patch gives a finite loss.
    """

    def __init__(
        self, alpha: float = 0.1, gamma: float = 0.7, eps: float = 1e-4, smooth: float = 1.0
    ):
        super().__init__()
        self.alpha, self.gamma, self.eps, self.smooth = alpha, gamma, eps, smooth

    def forward(
        self, prob: torch.Tensor, target: torch.Tensor, distance: torch.Tensor
    ) -> torch.Tensor:
        """Loss of one batch.

        Parameters
        ----------
        prob : tensor, shape (B, 1, X, Y, Z), float in [0, 1]
            Airway probability.
        target : tensor, shape (B, 1, X, Y, Z), {0, 1}
            Airway ground truth.
        distance : tensor, shape (B, 1, X, Y, Z), float in [0, 1]
            ``d`` of :func:`gul_distance_weight`.

        Returns
        -------
        tensor, scalar float32
            About 0 for a perfect prediction (exactly ``1 - (1 + 1e-4)^0.7`` per airway voxel
            weight, ~-7e-5), at most 1.
        """
        prob = prob.float()
        g = target.float()
        w = distance.float() * g + (1.0 - g)
        dims = tuple(range(1, prob.ndim))
        numerator = (w * (prob + self.eps) ** self.gamma * g).sum(dims) + self.smooth
        denominator = (w * (self.alpha * prob + (1.0 - self.alpha) * g)).sum(dims) + self.smooth
        return (1.0 - numerator / denominator).mean()


class DiceCELoss(torch.nn.Module):
    """Soft Dice + cross-entropy over a softmax, the nnU-Net default segmentation loss.

    Dice is the batch Dice of nnU-Net (sums over batch and voxels per class, background
    excluded, smooth 1e-5), one Dice loss per class, summed as in the paper's Eq. 1 (L_M =
    L_S(class 1) + L_S(class 2) + L_S(class 3)) over the classes *present in the target
    batch*: a class absent from the patch (class 3 in a patch of the trachea, or in phantoms too coarse to
    have bronchi <= 2 mm) would otherwise add a constant ~1 that no prediction can lower; its
    false positives are still penalised by CE. A patch with no foreground at all gets Dice
    loss 0 (CE only). CE is the mean voxel cross-entropy; the loss is their sum. Written out
    rather than MONAI's ``DiceCELoss`` so that each part can be logged. When several processes
    train (``torchrun``), the Dice sums are those of the global batch
    (:func:`deeptree.distributed.batch_sum`), so the loss equals one process's.
    """

    def __init__(self, smooth: float = 1e-5):
        super().__init__()
        self.smooth = smooth

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(dice_loss, ce_loss)``.

        Parameters
        ----------
        logits : tensor, shape (B, C, X, Y, Z)
        target : tensor, shape (B, 1, X, Y, Z), integer class indices in [0, C)
        """
        logits = logits.float()
        index = target[:, 0].long()
        ce = F.cross_entropy(logits, index)
        prob = torch.softmax(logits, dim=1)
        one_hot = F.one_hot(index, logits.shape[1]).movedim(-1, 1).to(prob.dtype)
        dims = (0, *range(2, prob.ndim))
        # the sums run over the global batch: over the ranks too when several processes train
        # (deeptree.distributed.batch_sum; the identity in one process)
        sums = batch_sum(
            torch.stack([(prob * one_hot).sum(dims), prob.sum(dims), one_hot.sum(dims)])[:, 1:]
        )
        intersection, prob_sum, target_sum = sums[0], sums[1], sums[2]
        dice = (2.0 * intersection + self.smooth) / (prob_sum + target_sum + self.smooth)
        present = target_sum > 0
        if not bool(present.any()):
            return torch.zeros((), device=logits.device), ce  # all background: CE only
        # Eq. 1: the class losses are summed (one class for the 2-channel variants)
        return (1.0 - dice[present]).sum(), ce


def deep_supervision_weights(n_outputs: int) -> list[float]:
    """nnU-Net's deep-supervision weights: ``1 / 2^i``, the lowest resolution set to 0,
    normalised to sum 1 (nnU-Net v2, ``nnUNetTrainer._build_loss``).

    Parameters
    ----------
    n_outputs : int
        Number of network outputs, full resolution first.

    Returns
    -------
    list of float, length ``n_outputs``
        E.g. ``[2/3, 1/3, 0]`` for 3 outputs; ``[1.0]`` for 1.
    """
    if n_outputs < 1:
        raise ValueError(f"n_outputs must be >= 1, got {n_outputs}")
    if n_outputs == 1:
        return [1.0]
    weights = np.array([1.0 / 2**i for i in range(n_outputs)])
    weights[-1] = 0.0
    return (weights / weights.sum()).tolist()


def downsample_target(target: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Nearest-neighbour resize of a (B, 1, X, Y, Z) target to ``size`` (as nnU-Net does for
    the deep-supervision targets). Integer and float targets keep their dtype."""
    if tuple(target.shape[2:]) == tuple(size):
        return target
    return F.interpolate(target.float(), size=tuple(size), mode="nearest").to(target.dtype)


class Stage1Loss(torch.nn.Module):
    """The stage-1 loss of one of the paper's four variants, with deep supervision.

    Parameters
    ----------
    variant : str
        One of ``deeptree.config.LOSS_VARIANTS``.
    gul_weight : float
        Factor on the GUL term (1: plain sum as in the paper).

    Notes
    -----
    Call with the network output (one logits tensor, or a sequence of them at decreasing
    resolution when deep supervision is on) and the batch tensors::

        loss, parts = criterion(outputs, label, distance)

    ``label`` (B, 1, X, Y, Z) integer holds the anatomy classes {0, 1, 2, 3}; the 2-channel
    variants use ``label > 0``. ``distance`` is ``d`` of :func:`gul_distance_weight` (ignored
    without GUL; may be None then). ``parts`` holds the full-resolution terms as floats
    (``"dice"``, ``"ce"``, ``"gul"``) for logging.
    """

    def __init__(self, variant: str = "amc+gul", gul_weight: float = 1.0):
        super().__init__()
        self.variant = check_variant(variant)
        self.n_classes = n_output_channels(variant)
        self.use_gul = uses_gul(variant)
        self.gul_weight = gul_weight
        self.dice_ce = DiceCELoss()
        self.gul = GeneralUnionLoss()

    def single(self, logits: torch.Tensor, label: torch.Tensor, distance: torch.Tensor | None):
        """Loss at one resolution: ``(total, parts)`` with ``parts`` of detached tensors."""
        if logits.shape[1] != self.n_classes:
            raise InputError(
                f"variant {self.variant!r} needs {self.n_classes} output channels, "
                f"the network gives {logits.shape[1]}"
            )
        target = label if self.n_classes == 4 else (label > 0).to(label.dtype)
        dice, ce = self.dice_ce(logits, target)
        total = dice + ce
        parts = {"dice": dice.detach(), "ce": ce.detach()}
        # the mean airway probability 1 - p(background) of the batch: near 0 everywhere is the
        # collapsed "no airway" state where the Dice has no gradient left (issue 30)
        with torch.no_grad():
            parts["airway_p"] = 1.0 - torch.softmax(logits.float(), dim=1)[:, 0].mean()
        if self.use_gul:
            if distance is None:
                raise InputError(
                    f"variant {self.variant!r} needs the GUL distance weight 'distance'"
                )
            prob_airway = 1.0 - torch.softmax(logits.float(), dim=1)[:, :1]
            gul = self.gul(prob_airway, (label > 0), distance)
            total = total + self.gul_weight * gul
            parts["gul"] = gul.detach()
        return total, parts

    def forward(self, outputs, label: torch.Tensor, distance: torch.Tensor | None = None):
        """Total loss (scalar tensor) and a dict of float parts at full resolution."""
        outputs = [outputs] if isinstance(outputs, torch.Tensor) else list(outputs)
        weights = deep_supervision_weights(len(outputs))
        total = None
        parts: dict[str, torch.Tensor] = {}
        for i, (logits, weight) in enumerate(zip(outputs, weights, strict=True)):
            if weight == 0.0:
                # nnU-Net drops the lowest resolution. Its head still gets a gradient, of
                # zeros (adding 0.0 changes no other gradient): under DistributedDataParallel
                # every parameter then takes part in each step, so DDP needs no search for
                # unused parameters (nnU-Net v2 gives that head a weight of 1e-6 instead)
                total = total + 0.0 * logits.sum()  # the first output always has a weight
                continue
            size = logits.shape[2:]
            d = downsample_target(distance, size) if distance is not None else None
            loss, p = self.single(logits, downsample_target(label, size), d)
            total = weight * loss if total is None else total + weight * loss
            if i == 0:
                parts = p
        return total, {k: float(v) for k, v in parts.items()}


class DiceCEClDiceLoss(torch.nn.Module):
    """DiceCE (``deeptree.stage1.losses.Stage1Loss("plain")``, with deep supervision) plus the soft
    clDice loss of Shit et al. (CVPR 2021) on the airway probability.

    ``L = DiceCE + weight * clDice(p_airway, g)``, clDice from MONAI
    (``monai.losses.SoftclDiceLoss``, soft skeletons by iterated min/max pooling), computed on
    the full-resolution output only (the deep-supervision heads get DiceCE). Shit et al.
    combine soft Dice and clDice with alpha = 0.5; here clDice is added to nnU-Net's DiceCE
    so that the comparison differs from nnUNet* by the topology term only.

    Parameters
    ----------
    weight : float
        Factor on the clDice term.
    iterations : int
        Soft-skeleton iterations (at least the largest lumen radius in voxels).

    Notes
    -----
    Called like ``Stage1Loss``: ``loss, parts = criterion(outputs, label, distance)`` with
    ``label`` (B, 1, X, Y, Z) integer classes (``> 0`` is airway); ``distance`` is ignored.
    ``parts`` adds ``"cldice"`` to DiceCE's ``"dice"``, ``"ce"``.
    """

    def __init__(self, weight: float = 0.5, iterations: int = 3):
        from monai.losses import SoftclDiceLoss

        super().__init__()
        self.weight = float(weight)
        self.base = Stage1Loss("plain")
        self.cldice = SoftclDiceLoss(iter_=int(iterations))

    def forward(self, outputs, label: torch.Tensor, distance: torch.Tensor | None = None):
        """Total loss (scalar tensor) and a dict of float parts."""
        total, parts = self.base(outputs, label, None)
        full = outputs if isinstance(outputs, torch.Tensor) else outputs[0]
        prob = torch.softmax(full.float(), dim=1)[:, 1:2]
        cl = self.cldice(prob, (label > 0).float())
        return total + self.weight * cl, {**parts, "cldice": float(cl.detach())}
