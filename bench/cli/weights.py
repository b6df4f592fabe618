"""`dmlbench weights fetch NAME...`: download backbone weights (torchvision names and timm/<name>) into the
torch hub / Hugging Face caches that runs read, and print where each file is."""

from __future__ import annotations

import argparse
import sys

from dmlbench.errors import DmlbenchError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["fetch"], help="fetch: download into the caches runs read")
    parser.add_argument("names", nargs="+", metavar="NAME", help="backbone names, e.g. resnet50 timm/vit_small_patch16_224.dino")


def run(args: argparse.Namespace) -> int:
    from dmlbench.model import BACKBONES
    from dmlbench.model.fetch import fetch_weights

    for name in args.names:
        BACKBONES.get(name)  # a typo fails before any download, naming the closest backbone
    failed = 0
    for name in args.names:
        try:
            path = fetch_weights(name)
        except DmlbenchError:
            raise
        except Exception as err:  # network errors: say which name failed, go on with the others
            print(f"dmlbench: error: {name}: could not download its weights ({type(err).__name__}: {err})", file=sys.stderr)
            failed += 1
            continue
        print(f"{name}: {path}")
    if failed:
        print(f"dmlbench: {failed} of {len(args.names)} not fetched: this command needs internet access "
              "(run it on a login node); runs read the files printed above", file=sys.stderr)
    return 1 if failed else 0
