#!/usr/bin/env python3
"""Open3D's TSDF fusion (VoxelBlockGrid, CPU) of RGB-D frames, as the reference for
`anydepth fuse` and its benchmark.

Usage: open3d_tsdf.py OUT.ply VOXEL_M TRUNC_M DEPTH_MAX_M WEIGHT_THRESHOLD DEPTH_SCALE
                      FX FY CX CY POSES.txt COLOR DEPTH [COLOR DEPTH ...]

POSES.txt holds one world_from_camera 4x4 matrix per frame (16 numbers per line, row
major). Writes the extracted mesh to OUT.ply and prints one JSON line with the time of
integration plus extraction (seconds) and the peak memory it added (bytes)."""
import json
import multiprocessing
import resource
import sys
import time

import numpy as np
import open3d as o3d
import open3d.core as o3c


def peak_rss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main():
    out, voxel, trunc, depth_max, weight, scale = sys.argv[1], *map(float, sys.argv[2:7])
    fx, fy, cx, cy = map(float, sys.argv[7:11])
    poses = np.loadtxt(sys.argv[11], ndmin=2).reshape(-1, 4, 4)
    files = sys.argv[12:]
    pairs = list(zip(files[0::2], files[1::2]))
    if len(poses) < len(pairs):
        sys.exit(f"{len(poses)} poses for {len(pairs)} frames")
    # Open3D allocates its block capacity up front: size it to what these frames need
    # (counted by a first pass in another process, so that its memory is not counted
    # here), the most frugal setting a user could choose.
    settings = (pairs, poses, (fx, fy, cx, cy), voxel, trunc, depth_max, scale)
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        needed = pool.apply(count_blocks, settings)
    intrinsic = o3c.Tensor([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], o3c.float64)
    # Read every frame first, so that the timing covers fusion only.
    frames = [(o3d.t.io.read_image(c), o3d.t.io.read_image(d)) for c, d in pairs]
    before = peak_rss_bytes()
    t0 = time.perf_counter()
    grid = fuse(frames, poses, intrinsic, voxel, trunc, depth_max, scale, needed)[1]
    mesh = grid.extract_triangle_mesh(weight_threshold=weight)
    seconds = time.perf_counter() - t0
    added = peak_rss_bytes() - before
    legacy = mesh.to_legacy()
    o3d.io.write_triangle_mesh(out, legacy, write_ascii=False)
    print(
        json.dumps(
            {
                "seconds": seconds,
                "peak_added_bytes": added,
                "blocks": needed,
                "vertices": len(legacy.vertices),
                "triangles": len(legacy.triangles),
            }
        )
    )


def count_blocks(pairs, poses, camera, voxel, trunc, depth_max, scale):
    fx, fy, cx, cy = camera
    intrinsic = o3c.Tensor([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], o3c.float64)
    frames = [(o3d.t.io.read_image(c), o3d.t.io.read_image(d)) for c, d in pairs]
    return fuse(frames, poses, intrinsic, voxel, trunc, depth_max, scale, 100000)[0]


def fuse(frames, poses, intrinsic, voxel, trunc, depth_max, scale, capacity):
    """Integrates every frame; returns the number of blocks used and the grid."""
    grid = o3d.t.geometry.VoxelBlockGrid(
        attr_names=("tsdf", "weight", "color"),
        attr_dtypes=(o3c.float32, o3c.float32, o3c.float32),
        attr_channels=((1), (1), (3)),
        voxel_size=voxel,
        block_resolution=8,
        block_count=capacity,
        device=o3c.Device("CPU:0"),
    )
    multiplier = trunc / voxel
    for (color, depth), pose in zip(frames, poses):
        extrinsic = o3c.Tensor(np.linalg.inv(pose), o3c.float64)
        blocks = grid.compute_unique_block_coordinates(
            depth, intrinsic, extrinsic, scale, depth_max, multiplier
        )
        grid.integrate(
            blocks, depth, color, intrinsic, extrinsic, scale, depth_max, multiplier
        )
    return grid.hashmap().size(), grid


if __name__ == "__main__":
    main()
