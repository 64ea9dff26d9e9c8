#!/usr/bin/env python3
"""Open3D's timings for the operations `crates/geometry/examples/bench.rs` times, on the
same depth frame and parameters (best of 5). Open3D has no depth-grid mesher: its closest
equivalent, `TriangleMesh.create_from_point_cloud_ball_pivoting`, is far slower and not
the same algorithm, so meshing is left out.

Usage: geometry_vs_open3d.py DEPTH SCALE FX FY CX CY"""
import sys
import time

import cv2
import numpy as np
import open3d as o3d


def best_of(runs, f):
    best, out = float("inf"), None
    for _ in range(runs):
        t0 = time.perf_counter()
        out = f()
        best = min(best, time.perf_counter() - t0)
    return best * 1e3, out


def main():
    path, scale, fx, fy, cx, cy = sys.argv[1], *map(float, sys.argv[2:7])
    raw = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    h, w = raw.shape
    depth = o3d.geometry.Image(np.ascontiguousarray(raw))
    K = o3d.camera.PinholeCameraIntrinsic(w, h, fx, fy, cx, cy)
    t, cloud = best_of(5, lambda: o3d.geometry.PointCloud.create_from_depth_image(
        depth, K, depth_scale=scale, depth_trunc=1e6))
    print(f"unproject ({w}x{h}, {len(cloud.points)} points): {t:.2f} ms")
    t, down = best_of(5, lambda: cloud.voxel_down_sample(0.01))
    print(f"voxel_downsample 0.01 m (-> {len(down.points)} points): {t:.2f} ms")
    t, _ = best_of(5, lambda: down.remove_statistical_outlier(20, 2.0))
    print(f"statistical_outliers k=20: {t:.2f} ms")
    t, _ = best_of(5, lambda: down.remove_radius_outlier(16, 0.05))
    print(f"radius_outliers 16 in 0.05 m: {t:.2f} ms")

    def normals():
        c = o3d.geometry.PointCloud(down)
        c.estimate_normals(o3d.geometry.KDTreeSearchParamKNN(20))
        c.orient_normals_towards_camera_location(np.zeros(3))
    t, _ = best_of(5, normals)
    print(f"normals k=20: {t:.2f} ms")


if __name__ == "__main__":
    main()
