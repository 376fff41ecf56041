"""A whole case in napari: consistently named and coloured layers (:func:`show_case`).

What ``deeptree view``, the napari reader (File > Open) and the notebooks show. Reachable as
``deeptree.viz.napari_case.show_case`` etc.; napari is imported only inside the functions.

Layer names and colours of a case, all with the voxel spacing (mm) as scale:

========================  ===================================================================
``CT``                    image, grey, lung window (-1000, 200) HU; hidden in 3D unless alone
``lung``                  labels, translucent, hidden at first
``ground truth``          labels, :data:`~deeptree.viz.colors.COLORS` ``"airway"``
``anatomy``               labels, classes 1/2/3 in :data:`~deeptree.viz.colors.CLASS_COLORS`
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
from deeptree.viz.case_folder import ViewCase
from deeptree.viz.colors import CLASS_COLORS, COLORS, COMPARISON_COLORS, LUNG_WINDOW
from deeptree.viz.napari_layers import FRONTAL_VIEW, fit_view
from deeptree.viz.napari_navigator import CENTRES_LAYER
from deeptree.viz.planes import comparison_labels

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


def case_layer_data(case: ViewCase, *, ct_visible: bool = True) -> list[tuple]:
    """The layers of a case as napari "layer data" tuples ``(data, kwargs, layer_type)``.

    What :func:`show_case` adds and the napari reader returns; see the module docstring for
    names and colours.

    Parameters
    ----------
    case : ViewCase
        Its volumes (any may be None), ``predictions``, ``centres``, ``gap_sizes`` and
        ``spacing`` (mm, the scale of every layer).
    ct_visible : bool
        Whether the CT layer starts visible.

    Returns
    -------
    list of (ndarray, dict, str)
        In drawing order (CT first, centres last).

    Raises
    ------
    deeptree.io.InputError
        Arrays that are not 3D or not on one grid, bad spacing, nothing to show.
    """
    scale = check_spacing(case.spacing, "show_case spacing")
    pred = dict(case.predictions or {})
    _check_grid(
        {
            "ct": case.ct,
            "gt": case.gt,
            "anatomy": case.anatomy,
            "attention": case.attention,
            "lung": case.lung,
            "breakage": case.breakage,
            **{f"pred[{k!r}]": v for k, v in pred.items()},
        }
    )
    layers: list[tuple] = []
    if case.ct is not None:
        layers.append(_ct_layer_data(case.ct, scale, ct_visible))
    layers += _mask_layers_data(case, pred, scale)
    if case.attention is not None:
        layers.append(_attention_layer_data(case.attention, scale))
    if case.centres is not None:
        layers.append(_centres_layer_data(case.centres, case.gap_sizes, scale))
    return layers


def _meta(kind: str, scale) -> dict:
    return {"scale": scale, "metadata": {KIND_KEY: kind}}


def _labels_layer_data(array, name, colors, kind, scale, opacity=1.0, visible=True) -> tuple:
    kwargs = {
        **_meta(kind, scale),
        "name": name,
        "colormap": _label_colormap(colors),
        "opacity": opacity,
        "visible": visible,
    }
    return np.asarray(array).astype(np.uint8), kwargs, "labels"


def _ct_layer_data(ct, scale, visible: bool) -> tuple:
    kwargs = {
        **_meta("ct", scale),
        "name": LAYER_NAMES["ct"],
        "colormap": "gray",
        "contrast_limits": LUNG_WINDOW,
        "visible": visible,
        "rendering": "attenuated_mip",
    }
    return np.asarray(ct), kwargs, "image"


def _attention_layer_data(attention, scale) -> tuple:
    kwargs = {
        **_meta("attention", scale),
        "name": LAYER_NAMES["attention"],
        "colormap": COLORS["attention"],
        "contrast_limits": (0.0, 1.0),
        "opacity": 0.6,
        "blending": "additive",
        "rendering": "mip",
    }
    return np.asarray(attention, dtype=np.float32), kwargs, "image"


def _mask_layers_data(case: ViewCase, pred: dict, scale) -> list[tuple]:
    """Lung, ground truth, anatomy, one layer per prediction, simulated breakages."""
    gt = case.gt
    layers = []
    if case.lung is not None:
        # hidden at first: even translucent, the lung surface hides the airway in 3D
        layers.append(
            _labels_layer_data(
                case.lung, LAYER_NAMES["lung"], {1: COLORS["lung"]}, "lung", scale, 0.3, False
            )
        )
    if gt is not None:
        # with predictions, the comparison layers already show the ground truth (TP + FN)
        layers.append(
            _labels_layer_data(
                gt, LAYER_NAMES["gt"], {1: COLORS["airway"]}, "gt", scale, visible=not pred
            )
        )
    if case.anatomy is not None:
        layers.append(
            _labels_layer_data(
                case.anatomy,
                LAYER_NAMES["anatomy"],
                CLASS_COLORS,
                "anatomy",
                scale,
                visible=gt is None and not pred,
            )  # fmt: skip
        )
    for i, (name, mask) in enumerate(pred.items()):
        last = i == len(pred) - 1  # show the last stage only; the others are one click away
        if gt is not None:
            layers.append(
                _labels_layer_data(
                    comparison_labels(mask, gt),
                    f"{name} comparison",
                    COMPARISON_COLORS,
                    f"comparison:{name}",
                    scale,
                    visible=last,
                )  # fmt: skip
            )
        else:
            layers.append(
                _labels_layer_data(
                    mask, name, {1: COLORS["airway"]}, f"prediction:{name}", scale, visible=last
                )
            )
    if case.breakage is not None:
        layers.append(
            _labels_layer_data(
                case.breakage, LAYER_NAMES["breakage"], {1: COLORS["gap"]}, "breakage", scale
            )
        )
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
    viewer, case: ViewCase, *, ct_visible: bool | None = None, reset_view: bool = True
) -> dict[str, object]:
    """Add a case to a napari viewer with the project's layer names and colours.

    Parameters
    ----------
    viewer : napari.Viewer
    case : ViewCase
        From :func:`deeptree.viz.case_folder.load_view_case` (what ``deeptree view`` shows),
        or built from arrays, e.g. ``ViewCase(ct=ct, gt=gt, spacing=spacing)``. What it
        holds is shown (see the module docstring):

        * ``ct``: HU, grey in the lung window (-1000, 200) HU;
        * ``gt``: the ground-truth airway mask;
        * ``predictions``: name -> mask, e.g. ``{"stage1": m1, "final": m2}``; with ``gt``,
          each becomes a comparison layer (true positive red, false negative blue, false
          positive green); only the last one is visible at first;
        * ``anatomy``: classes in :data:`~deeptree.viz.colors.CLASS_COLORS`;
        * ``attention``: the breakage attention map H_bar, a translucent heat map;
        * ``centres`` (voxels, (n, 3)) with ``gap_sizes``: numbered points;
        * ``lung`` (hidden at first: its surface hides the airway in 3D) and ``breakage``
          (simulated breakages Y^B, magenta);
        * ``spacing``: voxel size (mm), the scale of every layer, so that world
          coordinates are mm.
    ct_visible : bool, optional
        Default: visible in 2D display, or when the CT is the only volume (in 3D an opaque
        CT volume hides the masks).
    reset_view : bool
        Fit the view to the new layers, head up: in 3D the frontal view
        (:data:`~deeptree.viz.napari_layers.FRONTAL_VIEW`), in 2D a coronal slice (k
        upwards, i across; the slider moves j); the slices go through the centre of the
        airway (ground truth, else the first prediction, else the anatomy).

    Returns
    -------
    dict name -> napari layer

    Raises
    ------
    deeptree.io.InputError
        Arrays that are not 3D or not on one grid, bad spacing, nothing to show.
    """
    if ct_visible is None:
        others = (case.gt, case.anatomy, case.attention, case.lung, case.breakage)
        ct_visible = viewer.dims.ndisplay == 2 or (
            not case.predictions and all(v is None for v in others)
        )
    added = add_layer_data(viewer, case_layer_data(case, ct_visible=ct_visible))
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
        # the slices go through the airway, as in deeptree.viz.planes.show_planes
        airway = next(
            (m for m in (case.gt, *case.predictions.values(), case.anatomy) if m is not None),
            None,
        )
        if airway is not None and np.any(airway):
            centre = np.argwhere(np.asarray(airway)).mean(axis=0).round()
            viewer.dims.point = tuple(float(v) for v in centre * np.asarray(case.spacing, float))
    return added
