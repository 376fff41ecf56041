"""Comparisons on held-out cases: stage-1 models against the classical baseline (notebook 05)
and stage-1 masks before and after each connector (notebook 06), with per-method means.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from deeptree.evaluation.baselines import region_growing
from deeptree.io import Volume, read_nifti
from deeptree.masks import label_components
from deeptree.metrics import GroundTruth, airway_metrics, prepare_ground_truth
from deeptree.orientation import to_ras
from deeptree.pipeline import repair
from deeptree.progress import progress_bar
from deeptree.stage1.cache import load_stage1_case
from deeptree.stage1.predict import predict_stage1
from deeptree.stage2.predict import Connector

#: The figures of the paper's tables (fractions): branches detected, tree length detected,
#: precision, Dice.
METRIC_KEYS: tuple[str, ...] = ("BD", "TLD", "precision", "DSC")


def score_masks(
    masks: Mapping[str, np.ndarray], reference: GroundTruth, spacing, protocol: str = "paper"
) -> dict[str, dict]:
    """``deeptree.metrics.airway_metrics`` of each method's prediction against one ground truth.

    Parameters
    ----------
    masks : mapping method -> ndarray, shape (I, J, K), binary
        The predictions of one case.
    reference : deeptree.metrics.GroundTruth
        ``prepare_ground_truth`` of the case's label (parsed once for all methods).
    spacing : 3 floats
        Voxel size (mm).
    protocol : {"paper", "atm22"}

    Returns
    -------
    dict method -> dict
        The metrics of each method (fractions, counts), in the order of ``masks``.
    """
    return {
        method: airway_metrics(mask, reference, spacing, protocol) for method, mask in masks.items()
    }


def group_by_method(rows: Sequence[dict]) -> dict[str, list[dict]]:
    """Rows grouped by their ``"method"``, methods in order of first appearance."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["method"], []).append(row)
    return groups


def mean_by_method(
    rows: Sequence[dict], keys: Sequence[str] | None = METRIC_KEYS, *, ignore_nan: bool = True
) -> dict[str, dict]:
    """Mean over the cases of each method's figures.

    Parameters
    ----------
    rows : list of dict
        One per case and method, with ``"method"`` (as :func:`heldout_comparison` and
        :func:`compare_on_stage1` return).
    keys : sequence of str or None
        Columns to average (those a method's rows have); None: every numeric column (bools
        aside) of the method's first row.
    ignore_nan : bool
        Average over the cases with a value (``numpy.nanmean``); False: a NaN makes the mean
        NaN.

    Returns
    -------
    dict method -> dict column -> float
    """
    mean = np.nanmean if ignore_nan else np.mean
    out: dict[str, dict] = {}
    for method, mine in group_by_method(rows).items():
        first = mine[0]
        if keys is None:
            columns = [
                k
                for k, v in first.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)
            ]
        else:
            columns = [k for k in keys if k in first]
        out[method] = {k: float(mean([r[k] for r in mine])) for k in columns}
    return out


def compare_on_stage1(
    cases: Sequence[dict],
    connectors: dict[str, Connector],
    *,
    device=None,
    protocol: str = "paper",
) -> list[dict]:
    """Components, TLD, BD, precision and DSC of stage-1 masks before and after each connector.

    Parameters
    ----------
    cases : list of dict
        Each with ``"id"``, ``"ct"`` (HU), ``"stage1"`` (binary mask), ``"gt"`` (binary GT)
        and ``"spacing"`` (mm).
    connectors : dict
        Name -> ``stage2`` argument of ``deeptree.pipeline.repair`` (network,
        :class:`~deeptree.checkpoints.LoadedModel`, or a
        gap-filler name); ``"stage 1"`` (no connector) is always included first. :func:`mean_by_method` with
        ``keys=None, ignore_nan=False`` averages the rows per method.
    device : optional
    protocol : {"paper", "atm22"}
        ``deeptree.metrics.airway_metrics`` protocol.

    Returns
    -------
    list of dict, one per case and method: ``case``, ``method``, ``n_components`` (of the
    mask the connector starts from, for ``"stage 1"``; of the final mask otherwise: 1),
    ``BD``, ``TLD``, ``precision``, ``DSC``, ``added_voxels``, ``centres``.
    """

    rows = []
    for case in cases:
        reference = prepare_ground_truth(
            np.asarray(case["gt"]) > 0, case["spacing"], name=f"{case['id']} GT"
        )
        methods = {"stage 1": None, **connectors}
        results = {
            method: repair(case["stage1"], case["ct"], connector, device=device)
            for method, connector in methods.items()
        }
        scored = {
            method: result.stage1_mask if methods[method] is None else result.mask
            for method, result in results.items()
        }
        scores = score_masks(scored, reference, case["spacing"], protocol)
        for method, result in results.items():
            rows.append(
                {
                    "case": case["id"],
                    "method": method,
                    "n_components": int(label_components(scored[method])[1]),
                    **{k: scores[method][k] for k in METRIC_KEYS},
                    "added_voxels": int(result.added.sum()),
                    "centres": len(result.centres),
                }
            )
    return rows


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
    progress: bool | None = None,
) -> tuple[list[dict], dict]:
    """Stage 1 against the classical baseline (``deeptree.evaluation.baselines.region_growing``) on
    held-out cases, scored with ``deeptree.metrics.airway_metrics`` (paper protocol).

    Parameters
    ----------
    model : stage-1 network
    cases : list of deeptree.io.CasePaths
        Held-out cases with CT and label.
    patch_size, overlap, device
        As :func:`predict_stage1`.
    cache_dir : optional
        Cache of ``deeptree.stage1.cache.load_stage1_case`` (anatomy labels of the GT).
    progress : bool or None
        A progress bar over the cases; None: unless under the notebook runner
        (:func:`deeptree.progress.enabled`).

    Returns
    -------
    rows : list of dict
        One per case and method (``"method"``: ``"stage 1"`` or ``"region growing"``) with
        ``"case"``, ``"BD"``, ``"TLD"``, ``"precision"``, ``"DSC"`` (fractions) and, for
        stage 1, the :func:`class_scores`.
    masks : dict
        ``case id -> {"ct", "gt", "label", "stage 1", "region growing", "spacing"}`` arrays,
        for figures, in RAS voxel order (as the model saw them).
    """
    rows, masks = [], {}
    for paths in progress_bar(cases, progress=progress, desc="held-out", unit="case"):
        # the CT in the models' voxel order (RAS), on the grid of the prepared label
        volume = read_nifti(paths.image)
        prepared = load_stage1_case(paths, cache_dir)
        array, affine = to_ras(volume.array, volume.affine, str(paths.image))
        ct = Volume(array, affine, tuple(prepared.spacing), volume.path)
        label = np.asarray(prepared.label)
        reference = prepare_ground_truth(
            label > 0, ct.spacing, affine=ct.affine, name=str(paths.label)
        )
        pred = predict_stage1(
            model, ct.array, patch_size, overlap=overlap, device=device, name=str(paths.image)
        )
        baseline = region_growing(ct.array, ct.spacing)
        scores = score_masks(
            {"stage 1": pred.mask, "region growing": baseline}, reference, ct.spacing
        )
        for method, m in scores.items():
            row = {"case": paths.id, "method": method, **{k: m[k] for k in METRIC_KEYS}}
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
