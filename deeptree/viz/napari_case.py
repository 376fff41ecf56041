"""A whole case in napari: consistently named and coloured layers (:func:`show_case`).

What ``deeptree view``, the napari reader (File > Open) and the notebooks show. Reachable as
``deeptree.viz.show_case`` etc.; napari is imported only inside the functions.

Layer names and colours of a case, all with the voxel spacing (mm) as scale:

========================  ===================================================================
``CT``                    image, grey, lung window (-1000, 200) HU; hidden in 3D unless alone
``lung``                  labels, translucent, hidden at first
``ground truth``          labels, :data:`~deeptree.viz.COLORS` ``"airway"``
``anatomy``               labels, classes 1/2/3 in :data:`~deeptree.viz.CLASS_COLORS`
``<name> comparison``     labels per prediction ("broken", "stage1", "final"): true
                          positive red, false negative blue, false positive green (paper
                          Fig. 3); without ground truth the prediction itself, ``<name>``
``breakage (simulated)``  labels, magenta: simulated breakages Y^B
``attention``             image, translucent heat map (additive "magma"), 0..1
``breakage centres``      points, magenta, numbered; feature ``size`` = gap size (voxels)
========================  ===================================================================
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from deeptree.io import InputError, check_spacing
from deeptree.napari_navigator import CENTRES_LAYER
from deeptree.napari_viz import FRONTAL_VIEW, fit_view
from deeptree.viz import CLASS_COLORS, COLORS, COMPARISON_COLORS, LUNG_WINDOW, comparison_labels

#: Layer names of :func:`show_case`, by kind.
LAYER_NAMES: dict[str, str] = {
    "ct": "CT",
    "lung": "lung",
    "gt": "ground truth",
    "anatomy": "anatomy",
    "breakage": "breakage (simulated)",
    "attention": "attention",
    "centres": CENTRES_LAYER,
}

#: Kind of each layer, stored in its ``metadata["deeptree_kind"]``.
KIND_KEY = "deeptree_kind"


def _label_colormap(colors: Mapping[int, str]):
    from napari.utils.colormaps import DirectLabelColormap

    return DirectLabelColormap(color_dict={None: "transparent", 0: "transparent", **dict(colors)})


def _check_grid(arrays: Mapping[str, np.ndarray | None]) -> tuple[int, int, int]:
    shape = None
    for name, array in arrays.items():
        if array is None:
            continue
        array = np.asarray(array)
        if array.ndim != 3:
            raise InputError(f"show_case: {name} must be 3D, got shape {array.shape}")
        if shape is None:
            shape, first = array.shape, name
        elif array.shape != shape:
            raise InputError(
                f"show_case: {name} shape {array.shape} does not match {first} shape {shape}"
            )
    if shape is None:
        raise InputError("show_case: nothing to show (every volume is None)")
    return shape


def case_layer_data(
    ct: np.ndarray | None = None,
    gt: np.ndarray | None = None,
    pred: np.ndarray | Mapping[str, np.ndarray] | None = None,
    anatomy: np.ndarray | None = None,
    attention: np.ndarray | None = None,
    centres: np.ndarray | None = None,
    *,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    lung: np.ndarray | None = None,
    breakage: np.ndarray | None = None,
    gap_sizes: Sequence[int] | None = None,
    ct_visible: bool = True,
) -> list[tuple]:
    """The layers of a case as napari "layer data" tuples ``(data, kwargs, layer_type)``.

    What :func:`show_case` adds and the napari reader returns; see the module docstring for
    names and colours. Parameters as :func:`show_case`.

    Returns
    -------
    list of (ndarray, dict, str)
        In drawing order (CT first, centres last).
    """
    scale = check_spacing(spacing, "show_case spacing")
    if pred is not None and not isinstance(pred, Mapping):
        pred = {"prediction": pred}
    pred = dict(pred or {})
    _check_grid(
        {
            "ct": ct,
            "gt": gt,
            "anatomy": anatomy,
            "attention": attention,
            "lung": lung,
            "breakage": breakage,
            **{f"pred[{k!r}]": v for k, v in pred.items()},
        }
    )

    def meta(kind: str) -> dict:
        return {"scale": scale, "metadata": {KIND_KEY: kind}}

    def labels(array, name, colors, kind, opacity=1.0, visible=True) -> tuple:
        kwargs = {
            **meta(kind),
            "name": name,
            "colormap": _label_colormap(colors),
            "opacity": opacity,
            "visible": visible,
        }
        return np.asarray(array).astype(np.uint8), kwargs, "labels"

    layers: list[tuple] = []
    if ct is not None:
        layers.append(
            (
                np.asarray(ct),
                {
                    **meta("ct"),
                    "name": LAYER_NAMES["ct"],
                    "colormap": "gray",
                    "contrast_limits": LUNG_WINDOW,
                    "visible": ct_visible,
                    "rendering": "attenuated_mip",
                },
                "image",
            )
        )
    if lung is not None:
        # hidden at first: even translucent, the lung surface hides the airway in 3D
        layers.append(labels(lung, LAYER_NAMES["lung"], {1: COLORS["lung"]}, "lung", 0.3, False))
    if gt is not None:
        # with predictions, the comparison layers already show the ground truth (TP + FN)
        layers.append(labels(gt, LAYER_NAMES["gt"], {1: COLORS["airway"]}, "gt", visible=not pred))
    if anatomy is not None:
        layers.append(
            labels(
                anatomy,
                LAYER_NAMES["anatomy"],
                CLASS_COLORS,
                "anatomy",
                visible=gt is None and not pred,
            )
        )
    for i, (name, mask) in enumerate(pred.items()):
        last = i == len(pred) - 1  # show the last stage only; the others are one click away
        if gt is not None:
            layers.append(
                labels(
                    comparison_labels(mask, gt),
                    f"{name} comparison",
                    COMPARISON_COLORS,
                    f"comparison:{name}",
                    visible=last,
                )
            )
        else:
            layers.append(
                labels(mask, name, {1: COLORS["airway"]}, f"prediction:{name}", visible=last)
            )
    if breakage is not None:
        layers.append(labels(breakage, LAYER_NAMES["breakage"], {1: COLORS["gap"]}, "breakage"))
    if attention is not None:
        layers.append(
            (
                np.asarray(attention, dtype=np.float32),
                {
                    **meta("attention"),
                    "name": LAYER_NAMES["attention"],
                    "colormap": COLORS["attention"],
                    "contrast_limits": (0.0, 1.0),
                    "opacity": 0.6,
                    "blending": "additive",
                    "rendering": "mip",
                },
                "image",
            )
        )
    if centres is not None:
        layers.append(_centres_layer_data(centres, gap_sizes, scale))
    return layers


def _centres_layer_data(centres, sizes, scale) -> tuple:
    centres = np.asarray(centres, dtype=np.float64).reshape(-1, 3)
    n = len(centres)
    if sizes is None:
        sizes = np.full(n, -1, dtype=np.int64)  # unknown
    sizes = np.asarray(sizes, dtype=np.int64).reshape(-1)
    if sizes.shape[0] != n:
        raise InputError(f"show_case: {sizes.shape[0]} gap sizes for {n} breakage centres")
    kwargs = {
        "scale": scale,
        "metadata": {KIND_KEY: "centres"},
        "name": LAYER_NAMES["centres"],
        "size": 3.0,
        "face_color": COLORS["gap"],
        "border_color": "white",
        "opacity": 0.8,
        "features": {"index": np.arange(1, n + 1), "size": sizes},
        "text": {"string": "{index}", "color": "white", "size": 10, "anchor": "upper_left"},
    }
    return centres, kwargs, "points"


def add_layer_data(viewer, layer_data: Sequence[tuple]) -> dict[str, object]:
    """Add napari layer data to a viewer.

    Parameters
    ----------
    viewer : napari.Viewer
    layer_data : sequence of (data, kwargs, layer_type)
        As :func:`case_layer_data` returns (``layer_type`` "image", "labels" or "points").

    Returns
    -------
    dict name -> napari layer
    """
    added = {}
    for data, kwargs, layer_type in layer_data:
        layer = getattr(viewer, f"add_{layer_type}")(data, **kwargs)
        added[layer.name] = layer
    return added


def show_case(
    viewer,
    ct: np.ndarray | None = None,
    gt: np.ndarray | None = None,
    pred: np.ndarray | Mapping[str, np.ndarray] | None = None,
    anatomy: np.ndarray | None = None,
    attention: np.ndarray | None = None,
    centres: np.ndarray | None = None,
    *,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    lung: np.ndarray | None = None,
    breakage: np.ndarray | None = None,
    gap_sizes: Sequence[int] | None = None,
    ct_visible: bool | None = None,
    reset_view: bool = True,
) -> dict[str, object]:
    """Add a case to a napari viewer with the project's layer names and colours.

    Parameters
    ----------
    viewer : napari.Viewer
    ct : ndarray, shape (I, J, K), optional
        CT in HU; shown grey in the lung window (-1000, 200) HU.
    gt : ndarray of bool/uint8, shape (I, J, K), optional
        Ground-truth airway mask.
    pred : ndarray or mapping name -> ndarray, optional
        Prediction mask(s), e.g. ``{"stage1": m1, "final": m2}``. With ``gt``, each becomes a
        comparison layer (true positive red, false negative blue, false positive green);
        only the last one is visible at first.
    anatomy : ndarray of uint8 {0, 1, 2, 3}, shape (I, J, K), optional
        Anatomy classes, in :data:`~deeptree.viz.CLASS_COLORS`.
    attention : ndarray of float in [0, 1], shape (I, J, K), optional
        Breakage attention map H_bar, a translucent heat map.
    centres : ndarray, shape (n, 3), optional
        Breakage centres in voxels (i, j, k), shown as numbered points.
    spacing : 3 floats
        Voxel size (mm); the scale of every layer, so that world coordinates are mm.
    lung : ndarray of bool/uint8, shape (I, J, K), optional
        Hidden at first (its surface hides the airway in 3D).
    breakage : ndarray of bool/uint8, shape (I, J, K), optional
        Simulated breakages Y^B (``deeptree simulate``), magenta.
    gap_sizes : sequence of n ints, optional
        Gap size (voxels) of each centre (points feature ``size``; -1 when unknown).
    ct_visible : bool, optional
        Default: visible in 2D display, or when the CT is the only volume (in 3D an opaque
        CT volume hides the masks).
    reset_view : bool
        Fit the view to the new layers, head up: in 3D the frontal view
        (:data:`FRONTAL_VIEW`), in 2D a coronal slice (k upwards, i across; the slider
        moves j); the slices go through the centre of the airway (ground truth, else the
        first prediction, else the anatomy).

    Returns
    -------
    dict name -> napari layer

    Raises
    ------
    deeptree.io.InputError
        Arrays that are not 3D or not on one grid, bad spacing, nothing to show.
    """
    if ct_visible is None:
        others = (gt, pred, anatomy, attention, lung, breakage)
        ct_visible = viewer.dims.ndisplay == 2 or all(v is None for v in others)
    layer_data = case_layer_data(
        ct,
        gt,
        pred,
        anatomy,
        attention,
        centres,
        spacing=spacing,
        lung=lung,
        breakage=breakage,
        gap_sizes=gap_sizes,
        ct_visible=ct_visible,
    )
    added = add_layer_data(viewer, layer_data)
    if reset_view:
        if viewer.dims.ndisplay == 2 and viewer.dims.ndim == 3:
            # a coronal slice with the head up, as in deeptree.viz's figures: k vertical
            # (upwards), i horizontal, the slider moves j
            viewer.dims.order = (1, 2, 0)
            viewer.scene.camera.orientation2d = ("up", "right")
        viewer.reset_view()  # resets the camera angles too: set them afterwards
        if viewer.dims.ndisplay == 3:
            viewer.scene.camera.angles = FRONTAL_VIEW
            fit_view(viewer)
        # the slices go through the airway, as in deeptree.viz.show_planes
        preds = list(pred.values()) if isinstance(pred, Mapping) else [pred]
        airway = next((m for m in (gt, *preds, anatomy) if m is not None), None)
        if airway is not None and np.any(airway):
            centre = np.argwhere(np.asarray(airway)).mean(axis=0).round()
            viewer.dims.point = tuple(float(v) for v in centre * np.asarray(spacing, float))
    return added


def show_view_case(viewer, case, *, ct_visible: bool | None = None) -> dict[str, object]:
    """:func:`show_case` for a case read from disk (what ``deeptree view`` shows).

    Parameters
    ----------
    viewer : napari.Viewer
    case : deeptree.view_case.ViewCase
        From :func:`deeptree.view_case.load_view_case`.
    ct_visible : bool, optional
        As :func:`show_case`.

    Returns
    -------
    dict name -> napari layer
    """
    return show_case(viewer, **case_volumes(case), ct_visible=ct_visible)


def case_volumes(case) -> dict:
    """The arguments of :func:`show_case` / :func:`case_layer_data` held by a
    ``deeptree.view_case.ViewCase`` (volumes, centres, spacing), as keywords."""
    return {
        "ct": case.ct,
        "gt": case.gt,
        "pred": case.predictions or None,
        "anatomy": case.anatomy,
        "attention": case.attention,
        "centres": case.centres,
        "spacing": case.spacing,
        "lung": case.lung,
        "breakage": case.breakage,
        "gap_sizes": case.gap_sizes,
    }
