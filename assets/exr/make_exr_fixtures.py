"""Writes the OpenEXR depth fixtures of `anydepth_core::openexr`'s tests with the
reference OpenEXR library (Python bindings; made with OpenEXR 3.5.3, numpy 2):

    python -m venv /tmp/exr && /tmp/exr/bin/pip install OpenEXR numpy
    /tmp/exr/bin/python assets/exr/make_exr_fixtures.py

Every file holds the 8 x 6 depth map z[i] = 1 + 0.25 * i (row-major), exact in f16 and f32,
in a layout depth files come in:

- blender.exr: multilayer as Blender writes it, half RGBA `ViewLayer.Combined.*` (9, 9, 9, 1)
  and float `ViewLayer.Depth.Z`, ZIP scan lines
- tiled_piz.exr: one float `Z` channel, 4 x 4 tiles, PIZ
- rgb_half.exr: depth repeated in half `R`, `G`, `B`, RLE
- dwaa.exr: one half `depth` channel, DWAA (lossless for channels not named as colours)
- window.exr: one float `Y` channel whose data window (1, 1)-(8, 6) lies inside a 9 x 7
  display window, uncompressed
"""

from pathlib import Path

import numpy as np
import OpenEXR

H, W = 6, 8
OUT = Path(__file__).resolve().parent


def main() -> None:
    z = (np.arange(H * W, dtype=np.float32) * 0.25 + 1.0).reshape(H, W)
    zh = z.astype(np.float16)
    full = lambda v: np.full((H, W), v, np.float16)  # noqa: E731

    OpenEXR.File(
        {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage},
        {
            "ViewLayer.Combined.R": full(9),
            "ViewLayer.Combined.G": full(9),
            "ViewLayer.Combined.B": full(9),
            "ViewLayer.Combined.A": full(1),
            "ViewLayer.Depth.Z": z,
        },
    ).write(str(OUT / "blender.exr"))

    tiles = OpenEXR.TileDescription()
    tiles.xSize, tiles.ySize, tiles.mode = 4, 4, OpenEXR.ONE_LEVEL
    OpenEXR.File(
        {"compression": OpenEXR.PIZ_COMPRESSION, "type": OpenEXR.tiledimage, "tiles": tiles},
        {"Z": z},
    ).write(str(OUT / "tiled_piz.exr"))

    OpenEXR.File({"compression": OpenEXR.RLE_COMPRESSION}, {"R": zh, "G": zh, "B": zh}).write(
        str(OUT / "rgb_half.exr")
    )

    OpenEXR.File({"compression": OpenEXR.DWAA_COMPRESSION}, {"depth": zh}).write(
        str(OUT / "dwaa.exr")
    )

    box = lambda x0, y0, x1, y1: (np.array([x0, y0], np.int32), np.array([x1, y1], np.int32))  # noqa: E731
    OpenEXR.File(
        {
            "compression": OpenEXR.NO_COMPRESSION,
            "displayWindow": box(0, 0, W, H),
            "dataWindow": box(1, 1, W, H),
        },
        {"Y": z},
    ).write(str(OUT / "window.exr"))


if __name__ == "__main__":
    main()
