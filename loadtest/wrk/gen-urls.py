#!/usr/bin/env python3
"""Write the request paths for one load-test scenario, one per line.

The paths have no prefix: urls.lua puts /iiif/ (nginx baseline), /iiif/2/ or /iiif/3/
(gateway) in front, so every target gets the same requests in the same order.

  gen-urls.py tiles --width W --height H --id large --form v2|v3 [--seed S] [--count N]
      OpenSeadragon-style tiles (iipsrv-baseline.md §5, scenario b): a level with scale
      factor s = 1, 2, 4, ... (down to the level that fits in one tile) is chosen
      uniformly, then a tile in it uniformly:
        v2: {id}/{x},{y},{w},{h}/{ceil(w/s)},/0/default.jpg
        v3: {id}/{x},{y},{w},{h}/{ceil(w/s)},{ceil(h/s)}/0/default.jpg
  gen-urls.py thumbs --id A --id B ... [--seed S] [--count N]
      {id}/full/!128,128/0/default.jpg over the given (already URL-encoded) identifiers.

The same seed gives the same list; v2 and v3 tile lists with the same seed address
the same tiles.
"""

import argparse
import math
import random
import sys

TILE = 256


def tiles(args: argparse.Namespace, rnd: random.Random) -> list[str]:
    width, height = args.width, args.height
    scales = [1]
    while math.ceil(width / scales[-1]) > TILE or math.ceil(height / scales[-1]) > TILE:
        scales.append(scales[-1] * 2)
    paths = []
    for _ in range(args.count):
        s = rnd.choice(scales)
        span = TILE * s
        col = rnd.randrange(math.ceil(width / span))
        row = rnd.randrange(math.ceil(height / span))
        x, y = col * span, row * span
        w, h = min(span, width - x), min(span, height - y)
        out_w, out_h = math.ceil(w / s), math.ceil(h / s)
        size = f"{out_w}," if args.form == "v2" else f"{out_w},{out_h}"
        paths.append(f"{args.id[0]}/{x},{y},{w},{h}/{size}/0/default.jpg")
    return paths


def thumbs(args: argparse.Namespace, rnd: random.Random) -> list[str]:
    return [f"{rnd.choice(args.id)}/full/!128,128/0/default.jpg" for _ in range(args.count)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scenario", choices=["tiles", "thumbs"])
    p.add_argument("--id", action="append", required=True, help="identifier, URL-encoded (repeatable)")
    p.add_argument("--width", type=int)
    p.add_argument("--height", type=int)
    p.add_argument("--form", choices=["v2", "v3"], default="v2")
    p.add_argument("--seed", type=int, default=20240601)
    p.add_argument("--count", type=int, default=20000)
    args = p.parse_args()
    rnd = random.Random(args.seed)
    if args.scenario == "tiles":
        if not (args.width and args.height):
            p.error("tiles needs --width and --height")
        paths = tiles(args, rnd)
    else:
        paths = thumbs(args, rnd)
    sys.stdout.write("\n".join(paths) + "\n")


if __name__ == "__main__":
    main()
