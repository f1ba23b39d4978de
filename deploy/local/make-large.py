"""Make the 100 Mpx benchmark source image (iipsrv-baseline.md §1).

Usage: make-large.py SKIMAGE_DATA_DIR OUT.jpg

A 3x2 mosaic of six real photographs from scikit-image's bundled data, each
cropped to a square and resized to 1024x1024, upscaled x4 with Lanczos-3 to
12288x8192, plus Gaussian grain (sigma 4) on each channel so that tiles compress
like a real photograph rather than like a smooth upscale. Saved as JPEG Q95
without chroma subsampling (what vips does at Q >= 90).
"""

import os
import sys
import time

from PIL import Image, ImageChops, ImageOps

PHOTOS = [
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "hubble_deep_field.jpg",
    "motorcycle_left.png",
]
CELL = 1024
ACROSS, DOWN = 3, 2
SCALE = 4
GRAIN_SIGMA = 4


def main() -> None:
    data_dir, out = sys.argv[1], sys.argv[2]
    started = time.monotonic()
    # The mosaic is made at 8-bit RGB; the upscale is a separable Lanczos-3 filter.
    Image.MAX_IMAGE_PIXELS = None
    mosaic = Image.new("RGB", (CELL * ACROSS, CELL * DOWN))
    for i, name in enumerate(PHOTOS):
        with Image.open(os.path.join(data_dir, name)) as photo:
            cell = ImageOps.fit(photo.convert("RGB"), (CELL, CELL), Image.Resampling.LANCZOS)
        mosaic.paste(cell, ((i % ACROSS) * CELL, (i // ACROSS) * CELL))
    size = (mosaic.width * SCALE, mosaic.height * SCALE)
    large = mosaic.resize(size, Image.Resampling.LANCZOS)
    del mosaic
    # effect_noise is centred on 128; add(a, b, scale=1, offset=-128) = a + noise - 128, clipped.
    grain = Image.merge("RGB", [Image.effect_noise(size, GRAIN_SIGMA) for _ in range(3)])
    large = ImageChops.add(large, grain, scale=1.0, offset=-128)
    del grain
    large.save(out, "JPEG", quality=95, subsampling=0)
    print(
        f"made {out}: {large.width}x{large.height}, {os.path.getsize(out)} bytes, "
        f"{time.monotonic() - started:.1f}s",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
