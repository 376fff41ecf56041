"""Stage-1 inference: a whole CT through the network with MONAI sliding-window inference.

The CT is normalised as in training (``deeptree.data.normalize_ct``), cut into overlapping
patches of the training patch size (overlap 0.5 by default, as nnU-Net), each patch's logits
are weighted by a Gaussian centred on the patch (sigma = 1/8 of the patch, nnU-Net's
choice; ``monai.inferers.sliding_window_inference`` with ``mode="gaussian"``) and averaged,
then turned into class probabilities by a softmax. The airway mask is the union of the
airway classes: ``1 - p(background) > 0.5``, the same union the GUL trains, restricted to
the patient's body (:func:`body_mask`: air around the patient looks like lumen).

A CT smaller than the patch is padded (with air) by the inferer and cropped back, so the
outputs always have the input's shape; the affine is carried unchanged to the written
files.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from deeptree.io import InputError, check_volume, read_nifti, write_nifti

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
    from scipy import ndimage

    tissue = np.asarray(ct) > threshold_hu
    if not tissue.any():
        return np.ones(tissue.shape, bool)
    labels, n = ndimage.label(tissue, structure=np.ones((3, 3, 3)))
    body = labels == (np.argmax(np.bincount(labels.ravel())[1:]) + 1) if n > 1 else tissue
    filled = np.zeros_like(body)
    for axis in range(3):
        structure = np.zeros((3, 3, 3), bool)  # 4-connectivity inside the slices across `axis`
        index = [slice(None)] * 3
        index[axis] = 1
        structure[tuple(index)] = ndimage.generate_binary_structure(2, 1)
        filled |= ndimage.binary_fill_holes(body, structure=structure)
    return filled


@dataclass
class Stage1Prediction:
    """Output of :func:`predict_stage1`.

    Attributes
    ----------
    probabilities : ndarray of float32, shape (C, I, J, K)
        Softmax class probabilities (C = 4 with AMC: background, classes 1-3; 2 without).
    mask : ndarray of uint8, shape (I, J, K)
        Binary airway mask, ``1 - probabilities[0] > 0.5`` inside :func:`body_mask` (when
        ``restrict_to_body``).
    seconds : float
        Wall time of the network part.
    """

    probabilities: np.ndarray
    mask: np.ndarray
    seconds: float

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
        ``ct`` is already in [0, 1] (:func:`deeptree.data.normalize_ct`).
    restrict_to_body : bool
        Keep the mask inside :func:`body_mask` (outside air is never airway).

    Returns
    -------
    Stage1Prediction
    """
    from monai.inferers import sliding_window_inference

    from deeptree.data import normalize_ct

    ct = check_volume(ct, name)
    if not 0 <= overlap < 1:
        raise InputError(f"overlap must be in [0, 1), got {overlap}")
    device = (
        torch.device(device)
        if device is not None
        else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    )
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
        )
        probabilities = torch.softmax(logits.float(), dim=1)[0]
        mask = (probabilities[0] < 0.5).to(torch.uint8)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    probs = probabilities.cpu().numpy()
    mask = mask.cpu().numpy()
    if restrict_to_body:
        from deeptree.data import CT_WINDOW_HU

        low, high = CT_WINDOW_HU
        hu = image * (high - low) + low if normalized else ct
        mask = (mask & body_mask(hu)).astype(np.uint8)
    return Stage1Prediction(probabilities=probs, mask=mask, seconds=seconds)


def load_stage1_model(checkpoint: str | os.PathLike, device: str | torch.device = "cpu"):
    """Rebuild a stage-1 network from a training checkpoint.

    Parameters
    ----------
    checkpoint : path-like
        ``last.pt`` of :func:`deeptree.train.train`.

    Returns
    -------
    model : AirwayUNet, in eval mode on ``device``
    meta : dict
        ``variant``, ``filters``, ``patch_size``, ``overlap``, ...

    Raises
    ------
    InputError
        Missing, unreadable or non-DeepTree checkpoint, or one of another stage.
    """
    from deeptree.networks import stage1_network
    from deeptree.train import load_model

    return load_model(checkpoint, 1, lambda net, meta: stage1_network(net, meta["variant"]), device)


def predict_file(
    checkpoint: str | os.PathLike,
    ct_path: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    device: str | torch.device | None = None,
    overlap: float | None = None,
    classes_path: str | os.PathLike | None = None,
    model_and_meta=None,
) -> Path:
    """Predict one CT file and write the airway mask as NIfTI (atomically, input's affine).

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
    model_and_meta : tuple, optional
        ``load_stage1_model`` output, to reuse a loaded model over many files.

    Returns
    -------
    Path
        ``out_path``.
    """
    device = (
        torch.device(device)
        if device is not None
        else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    )
    model, meta = (
        model_and_meta if model_and_meta is not None else load_stage1_model(checkpoint, device)
    )
    volume = read_nifti(ct_path)
    pred = predict_stage1(
        model,
        volume.array,
        meta["patch_size"],
        overlap=overlap if overlap is not None else meta.get("overlap", 0.5),
        device=device,
        name=str(ct_path),
    )
    if classes_path is not None:
        write_nifti(classes_path, pred.classes, volume.affine)
    return write_nifti(out_path, pred.mask, volume.affine)


# --------------------------------------------------------------------------------------------
# evaluation helpers (notebook 05, benchmarks)
# --------------------------------------------------------------------------------------------
def class_scores(pred_classes: np.ndarray, pred_mask: np.ndarray, label: np.ndarray) -> dict:
    """Per-anatomy-class scores of a stage-1 prediction.

    Parameters
    ----------
    pred_classes : ndarray of uint8, shape (I, J, K)
        Most probable class ({0..3} with AMC, {0, 1} without).
    pred_mask : ndarray, shape (I, J, K), binary
        Predicted airway (union of the classes).
    label : ndarray of uint8, shape (I, J, K)
        GT anatomy classes {0, 1, 2, 3}.

    Returns
    -------
    dict
        ``"recall_c"``: share of the GT voxels of class ``c`` inside ``pred_mask`` (any
        class), for c = 1, 2, 3; ``"dice_c"``: Dice of ``pred_classes == c`` against
        ``label == c`` (only meaningful with AMC). NaN where class ``c`` is absent from the GT.
    """
    pred_mask = np.asarray(pred_mask) > 0
    label = np.asarray(label)
    out = {}
    for c in (1, 2, 3):
        gt_c = label == c
        n = int(gt_c.sum())
        out[f"recall_{c}"] = float((pred_mask & gt_c).sum() / n) if n else float("nan")
        pc = np.asarray(pred_classes) == c
        out[f"dice_{c}"] = float(2 * (pc & gt_c).sum() / (pc.sum() + n)) if n else float("nan")
    return out


def heldout_comparison(
    model: torch.nn.Module,
    cases: list,
    patch_size,
    *,
    overlap: float = 0.5,
    device=None,
    cache_dir=None,
    progress: bool = False,
) -> tuple[list[dict], dict]:
    """Stage 1 against the classical baseline (``deeptree.baselines.region_growing``) on
    held-out cases, scored with ``deeptree.metrics.airway_metrics`` (paper protocol).

    Parameters
    ----------
    model : stage-1 network
    cases : list of deeptree.io.CasePaths
        Held-out cases with CT and label.
    patch_size, overlap, device
        As :func:`predict_stage1`.
    cache_dir : optional
        Cache of ``deeptree.data.load_stage1_case`` (anatomy labels of the GT).

    Returns
    -------
    rows : list of dict
        One per case and method (``"method"``: ``"stage 1"`` or ``"region growing"``) with
        ``"case"``, ``"BD"``, ``"TLD"``, ``"precision"``, ``"DSC"`` (fractions) and, for
        stage 1, the :func:`class_scores`.
    masks : dict
        ``case id -> {"ct", "gt", "label", "stage 1", "region growing", "spacing"}`` arrays,
        for figures.
    """
    from tqdm.auto import tqdm

    from deeptree.baselines import region_growing
    from deeptree.data import load_stage1_case
    from deeptree.metrics import airway_metrics, prepare_ground_truth

    rows, masks = [], {}
    for paths in tqdm(cases, desc="held-out", disable=not progress):
        ct = read_nifti(paths.image)
        prepared = load_stage1_case(paths, cache_dir)
        label = np.asarray(prepared.label)
        reference = prepare_ground_truth(label > 0, ct.spacing, name=str(paths.label))
        pred = predict_stage1(
            model, ct.array, patch_size, overlap=overlap, device=device, name=str(paths.image)
        )
        baseline = region_growing(ct.array, ct.spacing)
        for method, mask in (("stage 1", pred.mask), ("region growing", baseline)):
            m = airway_metrics(mask, reference, ct.spacing)
            row = {
                "case": paths.id,
                "method": method,
                **{k: m[k] for k in ("BD", "TLD", "precision", "DSC")},
            }
            if method == "stage 1":
                row.update(class_scores(pred.classes, pred.mask, label))
            rows.append(row)
        masks[paths.id] = {
            "ct": ct.array,
            "gt": label > 0,
            "label": label,
            "stage 1": pred.mask,
            "region growing": np.asarray(baseline),
            "spacing": ct.spacing,
        }
    return rows, masks


def mean_by_method(rows: list[dict], keys=("BD", "TLD", "precision", "DSC")) -> dict:
    """``{method: {key: mean over cases}}`` of :func:`heldout_comparison` rows."""
    out: dict[str, dict] = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        sel = [r for r in rows if r["method"] == method]
        out[method] = {k: float(np.nanmean([r[k] for r in sel])) for k in keys if k in sel[0]}
    return out
