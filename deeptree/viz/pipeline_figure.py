"""The two-stage DeepTree pipeline as a figure (the paper's Fig. 2), drawn by matplotlib.

The README shows ``docs/figures/pipeline.png``, written by::

    python -m deeptree.viz.pipeline_figure docs/figures/pipeline.png

(``make readme``). Top row, inference: the CT, stage 1 (a 3D U-Net learning three anatomy
classes with Dice + cross-entropy and the General Union Loss), its mask, the breakage
attention map ``sigmoid(alpha - H)``, stage 2 (a patch network on CT + attention at the
attention centres), the merge with the largest connected component kept, the airway tree.
Bottom row, how stage 2 is trained: breakages simulated on the ground truth.

How a test knows the committed PNG is the one this code draws: the PNG carries, in a text
chunk (``Description``), the sha256 of this module's source (:func:`source_digest`), so any
edit of the drawing code without a new PNG is caught everywhere; and a fresh draw is compared
with the committed pixels (same size, mean absolute difference at most
:data:`PIXEL_TOLERANCE` grey levels), which holds exactly with the locked matplotlib (its
wheels bundle their own FreeType and DejaVu fonts, so Agg draws the same pixels on every
machine) and leaves room for a different anti-aliasing of the text elsewhere.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from deeptree.files import atomic_write

#: Figure size (inches) and resolution: the PNG is 1430 x 440 pixels.
FIGSIZE = (13.0, 4.0)
DPI = 110
#: Largest mean absolute difference (grey levels, 0-255) between a fresh draw and the PNG.
PIXEL_TOLERANCE = 0.5
#: PNG text key that carries the source digest.
DIGEST_KEY = "Description"

# (x centre, y centre, title, body, face colour) in the figure's axis units (inches)
_TOP_Y, _BOTTOM_Y, _W, _H = 2.75, 0.8, 1.62, 1.3
_X = [0.95 + 1.85 * k for k in range(7)]
_BOXES = {
    "ct": (_X[0], _TOP_Y, "Chest CT", "Hounsfield units,\nat the model's\nvoxel size, RAS", "#e9ecef"),
    "stage1": (_X[1], _TOP_Y, "Stage 1", "3D U-Net, 3 anatomy\nclasses (AMC):\nDice + CE + GUL",
               "#fde2b0"),
    "mask": (_X[2], _TOP_Y, "Initial mask", "union of the classes;\nthin branches\nbreak apart",
             "#fde2b0"),
    "attention": (_X[3], _TOP_Y, "Breakage attention", "H: distance to the\n2nd-nearest component\n"
                  "sigmoid(\u03b1 \u2212 H), \u03b1 = 5", "#f6d0e4"),
    "stage2": (_X[4], _TOP_Y, "Stage 2", "patch network on\nCT + attention, 64\u00b3\ncrops at the centres",
               "#d0f0f6"),
    "merge": (_X[5], _TOP_Y, "Merge", "union with stage 1,\nlargest connected\ncomponent kept",
              "#d0f0f6"),
    "tree": (_X[6], _TOP_Y, "Airway tree", "one connected\nbinary mask on\nthe CT's grid", "#e9ecef"),
    "gt": (_X[1], _BOTTOM_Y, "Ground truth", "airway masks of\nthe training CTs", "#e9ecef"),
    "simulate": (_X[2], _BOTTOM_Y, "Breakage simulation", "10-30 % of the skeleton\nof 50 % of "
                 "peripheral\nbranches removed", "#f6d0e4"),
    "broken": (_X[3], _BOTTOM_Y, "Broken mask + Y\u1d2e", "training pairs:\nattention of the broken\n"
               "mask, gap labels Y\u1d2e", "#f6d0e4"),
}  # fmt: skip
# (from, to, label, dashed)
_ARROWS = [
    ("ct", "stage1", "", False), ("stage1", "mask", "", False), ("mask", "attention", "", False),
    ("attention", "stage2", "", False), ("stage2", "merge", "", False),
    ("merge", "tree", "", False), ("gt", "simulate", "", True), ("simulate", "broken", "", True),
    ("broken", "stage2", "trains", True),
]  # fmt: skip


def source_digest() -> str:
    """sha256 (hex) of this module's source file: what the committed PNG records."""
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()


def _edge(name: str, towards: str) -> tuple[float, float]:
    """The point where an arrow from box ``name`` to box ``towards`` leaves ``name``."""
    x, y = _BOXES[name][:2]
    tx, ty = _BOXES[towards][:2]
    if abs(ty - y) < 1e-6:
        return (x + np.sign(tx - x) * _W / 2, y)
    return (x, y + np.sign(ty - y) * _H / 2)


def draw_pipeline() -> Figure:
    """Draw the pipeline (a matplotlib Figure of :data:`FIGSIZE` inches, no pyplot state).

    Returns
    -------
    matplotlib.figure.Figure
        Axes in figure units: x 0-12, y 0-4.4 (inches).
    """
    fig = Figure(figsize=FIGSIZE, dpi=DPI, facecolor="white")
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, FIGSIZE[0])
    ax.set_ylim(0, FIGSIZE[1])
    ax.axis("off")
    for x, y, title, body, face in _BOXES.values():
        ax.add_patch(
            FancyBboxPatch(
                (x - _W / 2, y - _H / 2),
                _W,
                _H,
                boxstyle="round,pad=0.02,rounding_size=0.08",
                facecolor=face,
                edgecolor="#495057",
                linewidth=1.2,
            )
        )
        ax.text(
            x, y + _H / 2 - 0.2, title, ha="center", va="center", fontsize=10, fontweight="bold"
        )
        ax.text(x, y - 0.14, body, ha="center", va="center", fontsize=8.8, linespacing=1.2)
    for start, end, label, dashed in _ARROWS:
        a, b = _edge(start, end), _edge(end, start)
        if start == "broken":  # up and across to stage 2: leave from the box's right side
            a = (_BOXES[start][0] + _W / 2, _BOXES[start][1])
        ax.add_patch(
            FancyArrowPatch(
                a,
                b,
                arrowstyle="-|>",
                mutation_scale=14,
                linewidth=1.4,
                color="#343a40",
                linestyle="--" if dashed else "-",
                connectionstyle="angle,angleA=0,angleB=90,rad=0.1" if start == "broken" else "arc3",
            )
        )
        if label:
            ax.text(b[0] + 0.08, (a[1] + b[1]) / 2, label, fontsize=9, style="italic", va="center")
    # stage 2 sees the CT as well: an arc over the top row from the CT to stage 2
    ct, s2 = _BOXES["ct"], _BOXES["stage2"]
    ax.add_patch(
        FancyArrowPatch(
            (ct[0], ct[1] + _H / 2),
            (s2[0], s2[1] + _H / 2),
            arrowstyle="-|>",
            mutation_scale=14,
            linewidth=1.2,
            color="#6c757d",
            connectionstyle="arc3,rad=-0.1",
        )
    )
    ax.text(
        (ct[0] + s2[0]) / 2,
        FIGSIZE[1] - 0.2,
        "CT crops",
        ha="center",
        va="center",
        fontsize=9,
        color="#6c757d",
        style="italic",
        backgroundcolor="white",
    )
    ax.text(0.1, _TOP_Y - _H / 2 - 0.25, "inference", fontsize=9.5, style="italic", color="#495057")
    ax.text(
        0.1,
        _BOTTOM_Y,
        "training\nstage 2",
        fontsize=9.5,
        style="italic",
        color="#495057",
        va="center",
    )
    return fig


def png_bytes(fig: Figure | None = None) -> bytes:
    """The PNG of ``fig`` (default :func:`draw_pipeline`), with :func:`source_digest` in its
    ``Description`` text chunk."""
    fig = draw_pipeline() if fig is None else fig
    buffer = io.BytesIO()
    fig.savefig(
        buffer,
        format="png",
        dpi=DPI,
        metadata={DIGEST_KEY: f"deeptree.viz.pipeline_figure sha256 {source_digest()}"},
    )
    return buffer.getvalue()


def write_pipeline_figure(path: str | os.PathLike) -> Path:
    """Write the pipeline figure as PNG (atomically: a temporary name, then renamed).

    Parameters
    ----------
    path : path-like
        The PNG to write (its folder is created).

    Returns
    -------
    Path
        ``path``: an RGBA PNG of ``FIGSIZE * DPI`` pixels (1430 x 440).
    """
    data = png_bytes()
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def read_png(path_or_bytes) -> tuple[np.ndarray, dict[str, str]]:
    """Pixels (uint8, (height, width, 4)) and text chunks of a PNG file or its bytes."""
    from PIL import Image

    source = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else path_or_bytes
    with Image.open(source) as image:
        return np.asarray(image.convert("RGBA")), dict(image.text)


def main(argv: list[str] | None = None) -> int:
    """``python -m deeptree.viz.pipeline_figure OUT.png``: write the figure."""
    parser = argparse.ArgumentParser(
        prog="python -m deeptree.viz.pipeline_figure",
        description="Write the DeepTree pipeline figure (PNG).",
    )
    parser.add_argument("out", help="the PNG to write, e.g. docs/figures/pipeline.png")
    args = parser.parse_args(argv)
    path = write_pipeline_figure(args.out)
    print(f"pipeline figure: {path} (matplotlib {matplotlib.__version__})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
