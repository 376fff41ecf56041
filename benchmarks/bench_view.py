"""Time ``deeptree view``'s steps headless (under Xvfb): read a case, add its layers, take a
screenshot, for the real samples. Also the share of non-background pixels in the picture.

    xvfb-run -a .venv/bin/python benchmarks/bench_view.py [--size 600 800]

Software OpenGL (llvmpipe) renders the 3D volumes on the CPU: seconds here are for the
named machine only and fall to a fraction on a desktop GPU.
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=2, default=(600, 800))
    args = parser.parse_args()

    import napari

    from deeptree.io import SAMPLES_DIR
    from deeptree.viz import napari_case, napari_layers
    from deeptree.viz.case_folder import load_view_case

    for name in ("cip_ct64", "atm_001"):
        t0 = time.perf_counter()
        case = load_view_case(SAMPLES_DIR / name)
        t1 = time.perf_counter()
        viewer = napari.Viewer(show=False, ndisplay=3)
        try:
            napari_layers.fit_window(viewer, tuple(args.size))
            t2 = time.perf_counter()
            napari_case.show_case(viewer, case)
            t3 = time.perf_counter()
            picture = napari_layers.screenshot(viewer, tuple(args.size))
            t4 = time.perf_counter()
        finally:
            viewer.close()
        shape = "x".join(str(s) for s in case.gt.shape)
        drawn = (picture[..., :3].max(axis=2) > 10).mean()
        print(
            f"{name} ({shape} voxels, {', '.join(sorted(case.paths))}): read {t1 - t0:.1f} s, "
            f"layers {t3 - t2:.1f} s, screenshot {t4 - t3:.1f} s; picture {picture.shape[:2]}, "
            f"{drawn:.1%} pixels drawn, RGB std {picture[..., :3].std():.1f}"
        )


if __name__ == "__main__":
    main()
