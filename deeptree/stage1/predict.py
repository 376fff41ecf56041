"""Stage-1 inference: a whole CT through the network with MONAI sliding-window inference.

The CT is normalised as in training (``deeptree.stage1.data.normalize_ct``), cut into overlapping
patches of the training patch size (overlap 0.5 by default, as nnU-Net), each patch's logits
are weighted by a Gaussian centred on the patch (sigma = 1/8 of the patch, nnU-Net's
choice; ``monai.inferers.sliding_window_inference`` with ``mode="gaussian"``) and averaged,
then turned into class probabilities by a softmax. The airway mask follows one of two output
rules (:data:`OUTPUT_RULES`, :func:`airway_from_probabilities`), restricted to the patient's
body (:func:`body_mask`: air around the patient looks like lumen): ``"argmax"``, nnU-Net's
(the most probable class is not background; the default), or ``"union"``
(``1 - p(background) > 0.5``, the union of the airway classes that GUL trains). With two
classes both are ``p(airway) > 0.5``; with the anatomy classes argmax is the stricter (a voxel
at p = 0.4 / 0.3 / 0.3 / 0 is background for argmax, airway for the union).
:meth:`Stage1Prediction.mask_for` gives either rule's mask from the stored probabilities
without rerunning the network; the reproduction picks the rule on validation
(``deeptree.evaluation.scoring.choose_output_rule``).

A CT smaller than the patch is padded (with air) by the inferer and cropped back, so the
outputs always have the input's shape; the affine is carried unchanged to the written
files. :func:`predict_file` first brings the CT to RAS voxel order (the one every model is
trained in, ``deeptree.orientation``) and resamples it to the spacing the checkpoint was trained
at (divided by its anatomical scale, if it records one: ``deeptree.resample.real_ct_spacing``)
and its result back onto the CT's grid (``deeptree.resample``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from deeptree.checkpoints import LoadedModel, load_model
from deeptree.io import InputError, check_volume, read_nifti, write_nifti
from deeptree.masks import largest_components
from deeptree.networks import choose_device, stage1_network
from deeptree.progress import enabled as progress_enabled
from deeptree.resample import from_model_grid, real_ct_spacing, to_model_grid
from deeptree.stage1.data import CT_WINDOW_HU, normalize_ct

#: nnU-Net's Gaussian importance weighting: sigma = patch size / 8.
GAUSSIAN_SIGMA_SCALE = 0.125


#: Voxels above this HU are tissue; the body is their largest component with holes filled.
BODY_THRESHOLD_HU = -500.0


def body_mask(ct: np.ndarray, threshold_hu: float = BODY_THRESHOLD_HU) -> np.ndarray:
    """The patient's body: everything inside the outer skin, lungs and airways included.

    Air around the patient has the HU of the airway lumen, so a network trained on patches
    may call it airway, and such a false-positive shell can become the largest component
    that the metrics and stage 2 keep. Airway pipelines therefore restrict the airway to the
    body (as nnU-Net crops to the non-zero region). Here: voxels above ``threshold_hu``, their
    largest 26-connected component, with holes filled slice by slice along each axis (the
    union of the three), so that the lungs and the trachea (a hole in every axial slice,
    although it leaves the volume at the top) are inside while outside air, which reaches
    the border of every slice, is not.

    Parameters
    ----------
    ct : ndarray, shape (I, J, K)
        HU. Not modified.
    threshold_hu : float
        Tissue threshold (HU).

    Returns
    -------
    ndarray of bool, shape (I, J, K)
        All True when no voxel is above the threshold (nothing to restrict).
    """
    tissue = np.asarray(ct) > threshold_hu
    if not tissue.any():
        return np.ones(tissue.shape, bool)
    body, _ = largest_components(tissue, 1)
    filled = np.zeros_like(body)
    for axis in range(3):
        structure = np.zeros((3, 3, 3), bool)  # 4-connectivity inside the slices across `axis`
        index = [slice(None)] * 3
        index[axis] = 1
        structure[tuple(index)] = ndimage.generate_binary_structure(2, 1)
        filled |= ndimage.binary_fill_holes(body, structure=structure)
    return filled


#: The output rules of :func:`airway_from_probabilities`; the first is the default.
OUTPUT_RULES: tuple[str, ...] = ("argmax", "union")


def check_rule(rule: str) -> str:
    """``rule`` if it is one of :data:`OUTPUT_RULES`, else ValueError naming the choices."""
    if rule not in OUTPUT_RULES:
        raise ValueError(f"output rule must be one of {', '.join(OUTPUT_RULES)}, got {rule!r}")
    return rule


def airway_from_probabilities(probabilities, rule: str = "argmax"):
    """The airway mask of class probabilities under an output rule.

    Parameters
    ----------
    probabilities : ndarray or torch.Tensor, shape (C, I, J, K)
        Class probabilities (channel 0 background; with ``rule="argmax"`` logits give the
        same mask).
    rule : {"argmax", "union"}
        ``"argmax"`` (nnU-Net's): the most probable class is not background; ties go to the
        lower class index (background first), as ``argmax``. ``"union"``: the airway classes
        together beat background, ``sum(p[1:]) > p[0]``, which for probabilities is
        ``1 - p(background) > 0.5``. With C = 2 both are ``p(airway) > p(background)``,
        voxel for voxel the same mask.

    Returns
    -------
    uint8 (I, J, K) of the input's kind (ndarray or tensor): 1 = airway.
    """
    check_rule(rule)
    if isinstance(probabilities, torch.Tensor):
        if rule == "union":  # written as a comparison of sums so that C = 2 equals argmax
            return (probabilities[1:].sum(dim=0) > probabilities[0]).to(torch.uint8)
        return (probabilities.argmax(dim=0) != 0).to(torch.uint8)
    probabilities = np.asarray(probabilities)
    if rule == "union":
        return (probabilities[1:].sum(axis=0) > probabilities[0]).astype(np.uint8)
    return (probabilities.argmax(axis=0) != 0).astype(np.uint8)


@dataclass
class Stage1Prediction:
    """Output of :func:`predict_stage1`.

    Attributes
    ----------
    probabilities : ndarray of float32, shape (C, I, J, K)
        Softmax class probabilities (C = 4 with AMC: background, classes 1-3; 2 without).
    mask : ndarray of uint8, shape (I, J, K)
        Binary airway mask, :func:`airway_from_probabilities` of ``rule`` inside
        :func:`body_mask` (when ``restrict_to_body``).
    seconds : float
        Wall time of the network part.
    rule : str
        The output rule of ``mask`` (:data:`OUTPUT_RULES`).
    body : ndarray of bool, shape (I, J, K), or None
        The body mask applied (None: not restricted).
    """

    probabilities: np.ndarray
    mask: np.ndarray
    seconds: float
    rule: str = "argmax"
    body: np.ndarray | None = None

    def mask_for(self, rule: str) -> np.ndarray:
        """uint8 (I, J, K): the airway mask of another output rule, from the stored
        probabilities and with the same body mask (no network run)."""
        if check_rule(rule) == self.rule:
            return self.mask
        mask = airway_from_probabilities(self.probabilities, rule)
        return mask if self.body is None else (mask & self.body).astype(np.uint8)

    @property
    def classes(self) -> np.ndarray:
        """uint8 (I, J, K): the most probable class (anatomy classes with AMC)."""
        return self.probabilities.argmax(axis=0).astype(np.uint8)


def predict_stage1(
    model: torch.nn.Module,
    ct: np.ndarray,
    patch_size,
    *,
    overlap: float = 0.5,
    device: str | torch.device | None = None,
    sw_batch_size: int = 2,
    amp: bool = True,
    output_device: str | torch.device | None = None,
    name: str = "CT",
    normalized: bool = False,
    restrict_to_body: bool = True,
    progress: bool | None = False,
    rule: str = "argmax",
) -> Stage1Prediction:
    """Predict the airway of a whole CT.

    Parameters
    ----------
    model : torch.nn.Module
        A stage-1 network (``deeptree.networks.stage1_network``); put in eval mode here.
    ct : ndarray, shape (I, J, K)
        HU (or already normalised with ``normalized=True``). Not modified. Any size: smaller
        than the patch is padded.
    patch_size : 3 ints
        Sliding-window size (the training patch size).
    overlap : float in [0, 1)
        Overlap of neighbouring windows (nnU-Net: 0.5).
    device : str or torch.device, optional
        Where the network runs (default: CUDA if available, else CPU).
    sw_batch_size : int
        Windows per forward pass.
    amp : bool
        bf16 autocast on CUDA.
    output_device : optional
        Where the aggregated logits live (default: ``device``; use "cpu" for very large
        volumes on a small GPU).
    name : str
        Name of the CT in error messages.
    normalized : bool
        ``ct`` is already in [0, 1] (:func:`deeptree.stage1.data.normalize_ct`).
    restrict_to_body : bool
        Keep the mask inside :func:`body_mask` (outside air is never airway).
    progress : bool or None
        A progress bar over the windows (default: none, as in a loop over cases); None:
        unless under the notebook runner (:func:`deeptree.progress.enabled`).
    rule : {"argmax", "union"}
        The output rule of the mask (:func:`airway_from_probabilities`).

    Returns
    -------
    Stage1Prediction
    """
    from monai.inferers import sliding_window_inference

    ct = check_volume(ct, name)
    check_rule(rule)
    if not 0 <= overlap < 1:
        raise InputError(f"overlap must be in [0, 1), got {overlap}")
    device = choose_device(device)
    output_device = torch.device(output_device) if output_device is not None else device
    image = np.asarray(ct, np.float32) if normalized else normalize_ct(ct)
    x = torch.from_numpy(np.ascontiguousarray(image))[None, None]
    model = model.to(device).eval()
    use_amp = bool(amp and device.type == "cuda")
    start = time.perf_counter()
    with (
        torch.no_grad(),
        torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_amp),
    ):
        logits = sliding_window_inference(
            x,
            roi_size=tuple(int(p) for p in patch_size),
            sw_batch_size=sw_batch_size,
            predictor=model,
            overlap=overlap,
            mode="gaussian",
            sigma_scale=GAUSSIAN_SIGMA_SCALE,
            padding_mode="constant",
            cval=0.0,  # air, as in training
            sw_device=device,
            device=output_device,
            progress=progress_enabled(progress),
        )
        probabilities = torch.softmax(logits.float(), dim=1)[0]
        mask = airway_from_probabilities(probabilities, rule)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    probs = probabilities.cpu().numpy()
    mask = mask.cpu().numpy()
    body = None
    if restrict_to_body:
        low, high = CT_WINDOW_HU
        hu = image * (high - low) + low if normalized else ct
        body = body_mask(hu)
        mask = (mask & body).astype(np.uint8)
    return Stage1Prediction(probabilities=probs, mask=mask, seconds=seconds, rule=rule, body=body)


def load_stage1_model(
    checkpoint: str | os.PathLike, device: str | torch.device = "cpu"
) -> LoadedModel:
    """Rebuild a stage-1 network from a training checkpoint.

    Parameters
    ----------
    checkpoint : path-like
        ``last.pt`` of :func:`deeptree.train.train`.

    Returns
    -------
    LoadedModel
        The network (``AirwayUNet`` in eval mode on ``device``) and its metadata:
        ``variant``, ``filters``, ``patch_size``, ``overlap``, ...

    Raises
    ------
    InputError
        Missing, unreadable or non-DeepTree checkpoint, or one of another stage.
    """
    return load_model(checkpoint, 1, lambda net, meta: stage1_network(net, meta["variant"]), device)


def predict_file(
    checkpoint: str | os.PathLike,
    ct_path: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    device: str | torch.device | None = None,
    overlap: float | None = None,
    classes_path: str | os.PathLike | None = None,
    loaded: LoadedModel | None = None,
    spacing: Sequence[float] | None = None,
) -> Path:
    """Predict one CT file and write the airway mask as NIfTI (atomically, input's grid).

    The CT is brought to RAS voxel order (the checkpoint's, ``deeptree.orientation``) and
    resampled to the spacing the checkpoint was trained at, and the result back onto the CT's
    exact grid and voxel order (same shape and affine; ``deeptree.resample``): the output rule of
    :func:`airway_from_probabilities` as the score ``0.5 + (max foreground probability -
    background probability) / 2`` trilinearly, then ``> 0.5`` inside :func:`body_mask` of the
    input CT; the classes by nearest
    neighbour. A CT at the checkpoint's spacing is not resampled (the output is what
    :func:`predict_stage1` gives on it in RAS voxel order, bit for bit, flipped back).

    Parameters
    ----------
    checkpoint : path-like
        Stage-1 checkpoint.
    ct_path : path-like
        CT NIfTI (HU).
    out_path : path-like
        ``.nii.gz`` of the binary mask (uint8).
    device : optional
    overlap : float, optional
        Default: the one stored with the model.
    classes_path : path-like, optional
        Also write the most probable class per voxel (uint8; anatomy classes with AMC) there.
    loaded : LoadedModel, optional
        :func:`load_stage1_model` output, to reuse a loaded model over many files (then
        ``checkpoint`` is not read).
    spacing : 3 floats (mm), optional
        Run the model at this voxel size instead of the checkpoint's
        (:func:`deeptree.resample.real_ct_spacing`).

    Returns
    -------
    Path
        ``out_path``.
    """
    device = choose_device(device)
    model, meta = loaded if loaded is not None else load_stage1_model(checkpoint, device)
    volume = read_nifti(ct_path)
    name = str(checkpoint) if checkpoint is not None else "stage-1 checkpoint"
    ct, grid = to_model_grid(
        volume.array,
        volume.affine,
        real_ct_spacing(meta, name) if spacing is None else spacing,
        str(ct_path),
    )
    pred = predict_stage1(
        model,
        ct,
        meta["patch_size"],
        overlap=overlap if overlap is not None else meta.get("overlap", 0.5),
        device=device,
        name=str(ct_path),
    )
    mask = pred.mask
    classes = pred.classes if classes_path is not None else None
    if grid.resampled:
        # the output rule (argmax is not background) as a score that is linear in the class
        # probabilities, so that it survives trilinear resampling: > 0.5 exactly where the most
        # probable foreground class beats background (2 classes: p(airway) > 0.5)
        probabilities = np.asarray(pred.probabilities, dtype=np.float32)
        score = 0.5 + 0.5 * (probabilities[1:].max(axis=0) - probabilities[0])
        mask = from_model_grid(score, grid, "probability")
        mask &= body_mask(volume.array).astype(np.uint8)
        if classes is not None:
            classes = from_model_grid(classes, grid, "labels")
    else:  # same voxel size: only the voxel order comes back (flips, axis permutations)
        mask = from_model_grid(mask, grid, "mask")
        if classes is not None:
            classes = from_model_grid(classes, grid, "labels")
    if classes is not None:
        write_nifti(classes_path, classes, volume.affine)
    return write_nifti(out_path, mask, volume.affine)
