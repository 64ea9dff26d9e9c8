#!/usr/bin/env python3
"""Open3D's point cloud of one RGB-D frame, for the geometry parity tests.

Usage: open3d_cloud.py COLOR DEPTH DEPTH_SCALE FX FY CX CY OUT_PREFIX
Writes OUT_PREFIX.points.npy (N x 3 float32, metres, camera coordinates) and
OUT_PREFIX.colors.npy (N x 3 float32 in [0, 1]) from
`PointCloud.create_from_rgbd_image` (depth_trunc far away, colour kept as RGB)."""
import sys

import cv2
import numpy as np
import open3d as o3d


def main():
    color, depth, scale, fx, fy, cx, cy, out = sys.argv[1:9]
    # Open3D reads PNG and JPEG itself but not 16-bit PGM: hand it the same pixels.
    raw = cv2.imread(depth, cv2.IMREAD_UNCHANGED)
    assert raw is not None and raw.dtype == np.uint16 and raw.ndim == 2, depth
    depth_img = o3d.geometry.Image(np.ascontiguousarray(raw))
    color_img = o3d.io.read_image(color)
    if np.asarray(color_img).size == 0:
        color_img = o3d.geometry.Image(np.ascontiguousarray(cv2.imread(color)[..., ::-1]))
    h, w = raw.shape
    rgbd = o3d.geometry.RGBDImage.create_from_color_and_depth(
        color_img, depth_img, depth_scale=float(scale), depth_trunc=1e6,
        convert_rgb_to_intensity=False)
    intrinsic = o3d.camera.PinholeCameraIntrinsic(w, h, float(fx), float(fy), float(cx), float(cy))
    cloud = o3d.geometry.PointCloud.create_from_rgbd_image(rgbd, intrinsic)
    np.save(out + ".points.npy", np.asarray(cloud.points, dtype=np.float32))
    np.save(out + ".colors.npy", np.asarray(cloud.colors, dtype=np.float32))


if __name__ == "__main__":
    main()
