"""``deeptree ship``: a reproduction's trained models into a results folder, weights only.

Example::

    deeptree ship runs/reference results/20261208-cpu-reference
    deeptree reproduce --models results/20261208-cpu-reference --out runs/rescore

Writes ``DEST/models/`` (float16 weights, metadata, gzipped training logs, a manifest with
each file's SHA-256; ``--float32`` keeps full precision). ``deeptree reproduce --models DEST``
then re-scores them on the test phantoms, regenerated from their seeds, without training.
See ``deeptree.evaluation.shipped``.
"""

from __future__ import annotations

NAME = "ship"
HELP = "copy a reproduction's trained models (weights only, with checksums) into a results folder"


def add_arguments(parser) -> None:
    parser.add_argument("run", help="a finished `deeptree reproduce` run folder")
    parser.add_argument("dest", help="results folder (its models/ must not exist yet)")
    parser.add_argument(
        "--float32", action="store_true", help="keep float32 weights (default: float16)"
    )


def run(args) -> int:
    import json

    from deeptree.evaluation.shipped import ship_models

    manifest_path = ship_models(args.run, args.dest, half=not args.float32)
    manifest = json.loads(manifest_path.read_text())
    total = sum(f["bytes"] for f in manifest["files"].values())
    print(
        f"{len(manifest['training'])} models, {len(manifest['files'])} files, "
        f"{total / 2**20:.1f} MiB -> {manifest_path.parent}"
    )
    return 0
