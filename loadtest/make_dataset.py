"""Make the benchmark data set: photo-like pyramidal TIFFs in the report's three source-size classes.

Run through loadtest/make-dataset (it picks the project's Python venv); `--help` lists the options.

Classes (design report §3.2.4): small < 10 Mpx, medium 10-75 Mpx, large >= 75 Mpx. Image 1 of each class has
the size iipsrv-baseline.md §1 used (2736x1824, 7680x5120, 12288x8192); the others draw an area inside the class
and an aspect ratio (3:2, 2:3, 4:3, 3:4, 1:1, 16:9) from a generator seeded by --seed, class and number, so the
same options always give the same images.

Each source is a mosaic of random crops of real photographs that ship with scikit-image, resized to the target
with Lanczos-3 and given Gaussian grain (sigma 4) so that tiles compress like a photograph rather than a smooth
upscale (the recipe of deploy/local/make-large.py), saved as JPEG Q95, then converted exactly as
iipsrv-baseline.md §1 and deploy/local/make-samples do:

    vips tiffsave SRC OUT --tile --pyramid --compression jpeg --Q 90 --tile-width 256 --tile-height 256

Output: OUT/<class>-NNN (no extension: iipsrv recognises TIFF by its magic bytes, the file name is the IIIF
identifier) and OUT/lists/<class>.txt with one `identifier width height` line per image, the input of
`loadtest --ids`. A TIFF that exists with the expected size is kept (idempotent); intermediate JPEGs are deleted
once converted.
"""

import argparse
import hashlib
import math
import os
import random
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass

from PIL import Image, ImageChops, ImageOps

# Real photographs bundled with scikit-image (colour ones, and grey ones used as RGB for variety).
PHOTOS = [
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "hubble_deep_field.jpg",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "retina.jpg",
    "ihc.png",
    "camera.png",
    "moon.png",
    "grass.png",
    "gravel.png",
]
GRAIN_SIGMA = 4
MOSAIC_LONG_SIDE = 3072  # the mosaic the report-sized images were made from: 3x2 cells of 1024 px
ASPECTS = [(3, 2), (2, 3), (4, 3), (3, 4), (1, 1), (16, 9)]
MEGAPIXEL = 1_000_000


@dataclass(frozen=True)
class SizeClass:
    name: str
    # Areas drawn for images 2, 3, ... (inclusive, megapixels), inside the report's class bounds.
    low_mpx: float
    high_mpx: float
    # Image 1: the size iipsrv-baseline.md used for this class.
    first: tuple


CLASSES = [
    SizeClass("small", 2.0, 9.5, (2736, 1824)),
    SizeClass("medium", 12.0, 70.0, (7680, 5120)),
    SizeClass("large", 78.0, 110.0, (12288, 8192)),
]
# What --full makes: 1,000 images, the size of the report's reference data set (§3.2.1).
FULL_PER_CLASS = {"small": 334, "medium": 333, "large": 333}
# Bytes of pyramidal TIFF per pixel, measured on the baseline images (iipsrv-baseline.md §1: 92.7 MB for
# 100.7 Mpx, 5.93 MB for 5.0 Mpx); used only to estimate disk space before starting.
TIFF_BYTES_PER_PIXEL = 1.2


@dataclass(frozen=True)
class Spec:
    identifier: str
    width: int
    height: int
    seed: int


def spec_for(size_class: SizeClass, number: int, seed: int) -> Spec:
    """The size and content seed of image `number` (1-based) of a class."""
    digest = hashlib.sha256(f"{seed}/{size_class.name}/{number}".encode()).digest()
    image_seed = int.from_bytes(digest[:8], "big")
    identifier = f"{size_class.name}-{number:03d}"
    if number == 1:
        width, height = size_class.first
    else:
        rng = random.Random(image_seed)
        area = rng.uniform(size_class.low_mpx, size_class.high_mpx) * MEGAPIXEL
        across, down = rng.choice(ASPECTS)
        width = round(math.sqrt(area * across / down))
        height = round(area / width)
    return Spec(identifier, width, height, image_seed)


def make_source(spec: Spec, photos_dir: str, out_jpg: str) -> None:
    """A photo-like JPEG of spec's size: a mosaic of photo crops, Lanczos-3 resize, grain."""
    rng = random.Random(spec.seed)
    Image.MAX_IMAGE_PIXELS = None
    scale = MOSAIC_LONG_SIDE / max(spec.width, spec.height)
    mosaic_w = max(1, round(spec.width * scale))
    mosaic_h = max(1, round(spec.height * scale))
    # About 1024-px cells, as the baseline's 3x2 mosaic.
    columns = max(1, round(mosaic_w / 1024))
    rows = max(1, round(mosaic_h / 1024))
    mosaic = Image.new("RGB", (mosaic_w, mosaic_h))
    for row in range(rows):
        for column in range(columns):
            left, top = column * mosaic_w // columns, row * mosaic_h // rows
            right, bottom = (column + 1) * mosaic_w // columns, (row + 1) * mosaic_h // rows
            name = rng.choice(PHOTOS)
            with Image.open(os.path.join(photos_dir, name)) as photo:
                photo = photo.convert("RGB")
                if rng.random() < 0.5:
                    photo = ImageOps.mirror(photo)
                cell = ImageOps.fit(
                    photo,
                    (right - left, bottom - top),
                    Image.Resampling.LANCZOS,
                    centering=(rng.random(), rng.random()),
                )
            mosaic.paste(cell, (left, top))
    size = (spec.width, spec.height)
    image = mosaic.resize(size, Image.Resampling.LANCZOS)
    del mosaic
    # effect_noise is centred on 128: add(a, noise, offset=-128) = a + noise - 128, clipped.
    grain = Image.merge("RGB", [Image.effect_noise(size, GRAIN_SIGMA) for _ in range(3)])
    image = ImageChops.add(image, grain, scale=1.0, offset=-128)
    del grain
    image.save(out_jpg, "JPEG", quality=95, subsampling=0)


def tiff_size(path: str):
    """(width, height) of a TIFF through vipsheader, or None when it is unreadable."""
    try:
        out = subprocess.run(
            ["vipsheader", "-f", "width", path], capture_output=True, text=True, check=True
        ).stdout.strip()
        width = int(out)
        out = subprocess.run(
            ["vipsheader", "-f", "height", path], capture_output=True, text=True, check=True
        ).stdout.strip()
        return width, int(out)
    except (subprocess.CalledProcessError, ValueError):
        return None


def up_to_date(path: str, spec: Spec) -> bool:
    # The size is the check, not the mtime: editing this script must not silently remake 45 GB of images.
    return os.path.isfile(path) and tiff_size(path) == (spec.width, spec.height)


def make_image(spec: Spec, out_dir: str, photos_dir: str) -> bool:
    """Makes one pyramidal TIFF unless it is up to date; True when it was made."""
    out = os.path.join(out_dir, spec.identifier)
    if up_to_date(out, spec):
        return False
    started = time.monotonic()
    source = os.path.join(out_dir, f".{spec.identifier}.src.jpg")
    part = os.path.join(out_dir, f".{spec.identifier}.part.tif")
    try:
        make_source(spec, photos_dir, source)
        made_source = time.monotonic()
        subprocess.run(
            ["vips", "tiffsave", source, part, "--tile", "--pyramid", "--compression", "jpeg",
             "--Q", "90", "--tile-width", "256", "--tile-height", "256"],
            check=True,
        )
        os.replace(part, out)
    finally:
        for leftover in (source, part):
            if os.path.exists(leftover):
                os.remove(leftover)
    done = time.monotonic()
    print(
        f"made {spec.identifier:<11} {spec.width}x{spec.height} ({spec.width * spec.height / MEGAPIXEL:.1f} Mpx), "
        f"{os.path.getsize(out) / 1e6:.1f} MB, source {made_source - started:.1f}s + tiffsave {done - made_source:.1f}s",
        flush=True,
    )
    return True


def write_list(path: str, specs: list) -> None:
    part = path + ".part"
    with open(part, "w", encoding="utf-8") as f:
        f.write("# identifier width height (loadtest --ids); made by loadtest/make-dataset\n")
        for spec in specs:
            f.write(f"{spec.identifier} {spec.width} {spec.height}\n")
    os.replace(part, path)


def upload_to_s3(out_dir: str, bucket: str) -> None:
    """Hook for issue 6 part 2: upload the TIFFs to the S3 bucket lazyfetch reads from.

    Not implemented yet: lazyfetch (the S3 source of the gateway) is being written. When it lands, upload every
    OUT/<class>-NNN object under its identifier (the key layout lazyfetch expects) with the same idempotence rule
    (skip objects whose size and ETag match), and keep the lists unchanged: identifiers do not depend on where
    the masters live.
    """
    sys.exit(
        f"make-dataset: --s3 {bucket}: uploading to S3 is not available yet (it needs lazyfetch's key layout); "
        f"the images are in {out_dir}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="loadtest/make-dataset",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", default=None, help="output directory (default: var/bench-images)")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--per-class", type=int, default=4, help="images per class (default 4)")
    size.add_argument(
        "--full",
        action="store_true",
        help="1,000 images like the report (334 small, 333 medium, 333 large): about 45 GB and hours",
    )
    parser.add_argument("--classes", default="small,medium,large", help="comma-separated classes to make")
    parser.add_argument("--seed", type=int, default=20240601, help="seed of sizes and content")
    parser.add_argument("--photos", required=True, help="scikit-image's data directory (set by the wrapper)")
    parser.add_argument("--s3", metavar="BUCKET", help="also upload to S3 (hook: not available yet)")
    args = parser.parse_args()

    out_dir = os.path.abspath(args.out)
    wanted = [name.strip() for name in args.classes.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in {c.name for c in CLASSES}]
    if unknown:
        parser.error(f"unknown class(es) {', '.join(unknown)}: use small, medium, large")
    if not args.full and args.per_class < 1:
        parser.error("--per-class must be at least 1")
    if shutil.which("vips") is None or shutil.which("vipsheader") is None:
        sys.exit("make-dataset: vips not found (run deploy/local/install-deps)")

    plan = {}
    for size_class in CLASSES:
        if size_class.name in wanted:
            count = FULL_PER_CLASS[size_class.name] if args.full else args.per_class
            plan[size_class.name] = [spec_for(size_class, n, args.seed) for n in range(1, count + 1)]

    os.makedirs(os.path.join(out_dir, "lists"), exist_ok=True)
    missing = [spec for specs in plan.values() for spec in specs
               if not up_to_date(os.path.join(out_dir, spec.identifier), spec)]
    needed_bytes = sum(spec.width * spec.height * TIFF_BYTES_PER_PIXEL for spec in missing)
    free_bytes = shutil.disk_usage(out_dir).free
    total = sum(len(specs) for specs in plan.values())
    print(
        f"make-dataset: {total} images in {out_dir} ({len(missing)} to make, about {needed_bytes / 1e9:.1f} GB)",
        flush=True,
    )
    # Keep a margin: the intermediate JPEG and the .part TIFF exist next to the output while one image is made.
    if needed_bytes * 1.1 + 2e9 > free_bytes:
        sys.exit(f"make-dataset: not enough disk: about {needed_bytes / 1e9:.1f} GB needed, "
                 f"{free_bytes / 1e9:.1f} GB free in {out_dir}")

    started = time.monotonic()
    made = 0
    for name, specs in plan.items():
        for index, spec in enumerate(specs, start=1):
            if make_image(spec, out_dir, args.photos):
                made += 1
                print(f"  {name}: {index}/{len(specs)}, {time.monotonic() - started:.0f}s so far", flush=True)
        write_list(os.path.join(out_dir, "lists", f"{name}.txt"), specs)
    print(f"make-dataset: {made} made, {total - made} up to date, lists in {os.path.join(out_dir, 'lists')}",
          flush=True)
    if args.s3:
        upload_to_s3(out_dir, args.s3)


if __name__ == "__main__":
    main()
