"""A sketch of the U-Net a :class:`~deeptree.config.NetworkConfig` builds, drawn by matplotlib.

What :func:`deeptree.networks.build_network` makes of the config (MONAI ``DynUNet``): one
level per entry of ``filters``, each two 3x3x3 convolutions with instance norm and leaky ReLU;
a stride-2 convolution halves the patch from one level to the next, a transposed convolution
doubles it back; a skip connection hands each encoder level's features to the decoder level
of the same size (concatenated); 1x1x1 output heads give the logits at full resolution and,
with deep supervision, at 1/2 and 1/4. Every number in the sketch comes from the config.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from deeptree.config import NetworkConfig
from deeptree.io import InputError

#: Deep-supervision heads below full resolution (1/2 and 1/4), as
#: :data:`deeptree.networks.N_DEEP_SUPERVISION` (not imported: that module loads torch).
DEEP_SUPERVISION_HEADS = 2

_ENCODER, _DECODER, _HEAD, _INPUT = "#fde2b0", "#d0f0f6", "#f6d0e4", "#e9ecef"
_W, _H, _DY, _DX = 2.5, 1.05, 1.6, 2.1  # box width and height, step between levels
_INCH = 0.62  # inches per unit of the drawing
_HEAD_W, _HEAD_GAP, _IN_W = 2.2, 1.1, 1.9  # head width, head arrow length, input width


def _size(patch: tuple[int, ...], level: int) -> str:
    return "\u00d7".join(str(p // 2**level) for p in patch)


def _box(ax, x: float, y: float, text: str, colour: str, gid: str, width: float = _W) -> None:
    box = FancyBboxPatch((x - width / 2, y - _H / 2), width, _H, boxstyle="round,pad=0.03",
                         facecolor=colour, edgecolor="0.3", linewidth=1.0)  # fmt: skip
    box.set_gid(gid)
    ax.add_patch(box)
    ax.text(x, y, text, ha="center", va="center", fontsize=9)


def _arrow(ax, start, end, label: str = "", dashed: bool = False, side: str = "above") -> None:
    """An arrow, its label above it or beside it (``side``: "above", "left" or "right")."""
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=13, color="0.25",
                                 linewidth=1.2, linestyle="--" if dashed else "-"))  # fmt: skip
    if label:
        x, y = (start[0] + end[0]) / 2, (start[1] + end[1]) / 2
        shift = {"above": (0, 0.1), "left": (-0.2, 0), "right": (0.2, 0)}[side]
        ha = {"above": "center", "left": "right", "right": "left"}[side]
        ax.text(x + shift[0], y + shift[1], label, ha=ha, va="bottom" if side == "above" else "center",
                fontsize=9, color="0.25")  # fmt: skip


def draw_unet(net: NetworkConfig, in_channels: int = 1, out_channels: int = 2,
              title: str | None = None) -> Figure:  # fmt: skip
    """Sketch the U-Net of a network config: levels, filters, patch sizes, skips, heads.

    Parameters
    ----------
    net : NetworkConfig
        ``filters`` (one width per level), ``patch_size`` (voxels, each divisible by
        ``2 ** (len(filters) - 1)``) and ``deep_supervision``.
    in_channels : int
        Input channels (stage 1: 1, the CT; stage 2: 2, CT and attention).
    out_channels : int
        Output channels of each head (4 with AMC, else 2).
    title : str, optional
        Default: the number of levels and the patch size.

    Returns
    -------
    matplotlib.figure.Figure
        One box per level on the encoder side (gid ``level-<i>``, the deepest one shared by
        both sides), one per decoder level (``decoder-<i>``), the input (``input``) and one
        box per output head (``head-<i>``, level ``i``: full resolution and, with deep
        supervision, the next two levels).

    Raises
    ------
    InputError
        Fewer than 2 levels, a width below 1, or a patch that the levels cannot halve.
    """
    filters, patch = tuple(int(f) for f in net.filters), tuple(int(p) for p in net.patch_size)
    n = len(filters)
    if n < 2 or min(filters) < 1:
        raise InputError(f"network sketch: need at least 2 positive widths, got {filters}")
    if any(p < 2 ** (n - 1) or p % 2 ** (n - 1) for p in patch):
        raise InputError(
            f"network sketch: patch {patch} cannot be halved {n - 1} times (each size must be "
            f"a multiple of {2 ** (n - 1)})"
        )
    heads = 1 + (min(DEEP_SUPERVISION_HEADS, n - 2) if net.deep_supervision else 0)
    mid = 0.0

    def y(level: int) -> float:
        return (n - 1 - level) * _DY

    def x_enc(level: int) -> float:
        return mid - _DX * (n - 1 - level)

    def x_dec(level: int) -> float:
        return mid + _DX * (n - 1 - level)

    x_in = x_enc(0) - _W / 2 - 1.0 - _IN_W / 2
    right = x_dec(0) + _W / 2 + _HEAD_GAP + _HEAD_W + 0.3
    xlim, ylim = (x_in - _IN_W / 2 - 0.3, right), (y(n - 1) - _H - 0.3, y(0) + _H)
    fig, ax = plt.subplots(figsize=(_INCH * (xlim[1] - xlim[0]), _INCH * (ylim[1] - ylim[0]) + 0.5))
    _box(ax, x_in, y(0), f"input\n{in_channels} channel{'s' if in_channels > 1 else ''}\n"
         f"{_size(patch, 0)}", _INPUT, "input", width=_IN_W)  # fmt: skip
    _arrow(ax, (x_in + _IN_W / 2, y(0)), (x_enc(0) - _W / 2, y(0)))
    for level, f in enumerate(filters):
        text = f"level {level}\n{f} filters\n{_size(patch, level)} voxels"
        _box(ax, x_enc(level), y(level), text, _ENCODER, f"level-{level}")
        if level == n - 1:
            continue
        _box(ax, x_dec(level), y(level), text, _DECODER, f"decoder-{level}")
        _arrow(ax, (x_enc(level), y(level) - _H / 2), (x_enc(level + 1), y(level + 1) + _H / 2),
               "stride-2 conv" if level == 0 else "", side="left")  # fmt: skip
        _arrow(ax, (x_dec(level + 1), y(level + 1) + _H / 2), (x_dec(level), y(level) - _H / 2),
               "transposed conv" if level == 0 else "", side="right")  # fmt: skip
        _arrow(ax, (x_enc(level) + _W / 2, y(level)), (x_dec(level) - _W / 2, y(level)),
               "skip connection: features concatenated" if level == 0 else "skip",
               dashed=True)  # fmt: skip
    for level in range(heads):
        x_head = x_dec(level) + _W / 2 + _HEAD_GAP + _HEAD_W / 2
        name = "output" if level == 0 else "deep supervision"
        _box(ax, x_head, y(level), f"{name}\n{out_channels} channels\n{_size(patch, level)}",
             _HEAD, f"head-{level}", width=_HEAD_W)  # fmt: skip
        _arrow(
            ax, (x_dec(level) + _W / 2, y(level)), (x_head - _HEAD_W / 2, y(level)), "1\u00b3 conv"
        )
    ax.text(mid, y(n - 1) - _H / 2 - 0.3,
            "each box: two 3\u00d73\u00d73 convolutions, instance norm, leaky ReLU",
            ha="center", va="top", fontsize=9, color="0.3")  # fmt: skip
    ax.set(xlim=xlim, ylim=ylim)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(title or f"the U-Net: {n} levels, patch {_size(patch, 0)} voxels, "
                 f"{heads} output head{'s' if heads > 1 else ''}", fontsize=11)  # fmt: skip
    fig.tight_layout()
    return fig
