#!/usr/bin/env python3
"""Renders assets/example.png: a small ray-traced scene (checkered floor, back wall,
three spheres) with strong depth cues, so the demo needs no downloaded photo.
Usage: python3 assets/make_example.py   (needs numpy and pillow)"""
from pathlib import Path

import numpy as np
from PIL import Image

np.seterr(all="ignore")  # rays that miss give inf and nan, masked below
W, H, F = 640, 448, 520.0
y, x = np.mgrid[0:H, 0:W].astype(np.float64)
dirs = np.stack([(x - W / 2) / F, (y - H / 2) / F, np.ones_like(x)], -1)
dirs /= np.linalg.norm(dirs, axis=-1, keepdims=True)
t_best = np.full((H, W), np.inf)
color = np.zeros((H, W, 3))
light = np.array([-0.5, -1.0, -0.4]) / np.linalg.norm([-0.5, -1.0, -0.4])

# Floor y = 1.2 (y points down), checkered.
t = np.where(dirs[..., 1] > 1e-6, 1.2 / np.maximum(dirs[..., 1], 1e-6), np.inf)
p = dirs * t[..., None]
checker = ((np.floor(p[..., 0] * 1.5) + np.floor(p[..., 2] * 1.5)) % 2)[..., None]
floor = np.where(checker > 0, [0.85, 0.8, 0.7], [0.35, 0.3, 0.28])
hit = (t < t_best) & (p[..., 2] < 12)
t_best = np.where(hit, t, t_best)
color = np.where(hit[..., None], floor * (0.6 + 0.4 * light[1] * -1), color)

# Back wall z = 12.
t = np.where(dirs[..., 2] > 1e-6, 12.0 / dirs[..., 2], np.inf)
hit = t < t_best
t_best = np.where(hit, t, t_best)
color = np.where(hit[..., None], [0.55, 0.65, 0.8], color)

for centre, radius, albedo in [
    ((-1.2, 0.6, 4.0), 0.6, (0.8, 0.2, 0.2)),
    ((0.6, 0.4, 6.0), 0.8, (0.2, 0.6, 0.3)),
    ((2.4, 0.2, 9.0), 1.0, (0.25, 0.3, 0.85)),
]:
    c = np.array(centre)
    b = dirs @ c
    disc = b * b - (c @ c - radius * radius)
    t = np.where(disc > 0, b - np.sqrt(np.maximum(disc, 0)), np.inf)
    hit = (t > 0) & (t < t_best)
    n = dirs * t[..., None] - c
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    shade = np.clip(-(n @ light), 0, 1)[..., None] * 0.8 + 0.2
    t_best = np.where(hit, t, t_best)
    color = np.where(hit[..., None], np.array(albedo) * shade, color)

img = (np.clip(color, 0, 1) * 255).round().astype(np.uint8)
Image.fromarray(img).save(Path(__file__).with_name("example.png"), optimize=True)
