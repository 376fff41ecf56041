"""``deeptree view``: open a case in napari with everything that exists for it.

Case folders and datasets follow the convention of :mod:`deeptree.viz.case_folder` (CT, ground
truth, lung, anatomy, simulated breakages, stage-1 and final predictions, attention map,
breakage centres); missing files are skipped with a message. ``--add KIND=PATH`` adds files
kept elsewhere, e.g. ``deeptree view data/cohort --case PHANTOM_003 --add
stage1=runs/s1/pred --add final=runs/s2/pred``. With breakage centres, a navigator dock and the
keys '.' / ',' step the camera through them. ``--screenshot PATH`` renders headless, writes
a PNG (atomically) and exits instead of opening the window. Both need a display: without one
(no ``DISPLAY`` or ``WAYLAND_DISPLAY``) the command says to run it on a desktop or under
``xvfb-run``, exit status 2.
"""

from __future__ import annotations

from deeptree.extras import require
from deeptree.io import InputError

NAME = "view"
HELP = "open a case (folder, run folder or dataset case) in napari with all its layers"


def add_arguments(parser) -> None:
    parser.add_argument(
        "path",
        metavar="CASE_OR_RUN_DIR",
        help="case folder, run folder of case folders or ATM'22-layout dataset (with --case), "
        "or a NIfTI file",
    )
    parser.add_argument(
        "--case", default=None, help="case id inside a dataset or run folder (default: the first)"
    )
    parser.add_argument(
        "--screenshot",
        default=None,
        metavar="PNG",
        help="render headless, write this PNG and exit (no window)",
    )
    parser.add_argument(
        "--ndisplay",
        type=int,
        choices=(2, 3),
        default=3,
        help="2D slices or 3D rendering (default 3)",
    )
    parser.add_argument(
        "--size",
        type=int,
        nargs=2,
        default=(600, 800),
        metavar=("H", "W"),
        help="screenshot size in pixels (default 600 800)",
    )
    parser.add_argument(
        "--add",
        action="append",
        default=[],
        metavar="KIND=PATH",
        help="more files by kind (stage1, final, attention, centres, anatomy, ...): "
        "a file, or a folder such as the --out of deeptree predict; repeatable",
    )
    parser.add_argument(
        "--breakage",
        type=int,
        default=None,
        metavar="N",
        help="start at breakage centre N (1-based) instead of the whole case",
    )


def run(args) -> int:
    import sys

    napari = require("napari", "napari", "deeptree view")  # before reading any file
    from deeptree.viz import napari_case, napari_layers, napari_navigator

    try:  # without a display Qt aborts the process (exit 134): one line instead
        napari_layers.require_display("deeptree view ...")
    except RuntimeError as err:
        raise InputError(str(err)) from None
    from deeptree.viz.case_folder import load_view_case

    extra = {}
    for item in args.add:
        kind, sep, place = item.partition("=")
        if not sep or not kind or not place:
            raise InputError(f"--add {item}: expected KIND=PATH, e.g. stage1=runs/s1/pred")
        extra[kind.strip()] = place.strip()
    case = load_view_case(args.path, args.case, extra)
    for message in case.messages:
        print(f"deeptree view: {message}", file=sys.stderr)
    shown = ", ".join(sorted(case.paths))
    print(
        f"deeptree view: case {case.id}, spacing {tuple(round(s, 3) for s in case.spacing)} mm: {shown}"
    )

    viewer = napari.Viewer(
        title=f"DeepTree: {case.id}", ndisplay=args.ndisplay, show=args.screenshot is None
    )
    try:
        if args.screenshot is not None:
            napari_layers.fit_window(viewer, tuple(args.size))  # fit the view to the final canvas
        napari_case.show_case(viewer, case)
        navigator = None
        if case.centres is not None:
            navigator = napari_navigator.add_breakage_navigator(
                viewer, case.centres, case.spacing, case.gap_sizes, dock=args.screenshot is None
            )
            if args.breakage is not None:
                navigator.go(args.breakage - 1)
                print(f"deeptree view: {navigator.text()}")
        if args.screenshot is not None:
            picture = napari_layers.screenshot(viewer, tuple(args.size))
            path = napari_layers.save_png(picture, args.screenshot)
            print(f"deeptree view: wrote {path}")
            return 0
        napari.run()
        return 0
    finally:
        viewer.close()
