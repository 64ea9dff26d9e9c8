#!/usr/bin/env bash
# Runs every anydepth command on the shipped data and prints the sha256 of everything they
# write: files, stdout and stderr. Two builds that print the same digests behave the same,
# byte for byte, on these inputs; use it before and after a refactor:
#
#   scripts/output_digest.sh target/release/anydepth /tmp/before > before.txt
#   ...change, rebuild...
#   scripts/output_digest.sh target/release/anydepth /tmp/after > after.txt
#   diff before.txt after.txt
#
# Needs the random-weight checkpoints of scripts/reference/make_references.py in
# .cache/reference (scripts/test.sh writes them) and the data in ../shared/data
# (ANYDEPTH_DATA overrides). OUT_DIR is emptied first.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -ne 2 ]; then
  echo "usage: $0 ANYDEPTH_BINARY OUT_DIR" >&2
  exit 2
fi
bin=$(realpath "$1")
out=$2
data=$(realpath "${ANYDEPTH_DATA:-../shared/data}")
ref=$(realpath .cache/reference)
relative=$ref/v2-vits/depth_anything_v2_vits.pth
metric=$ref/v2-vits-metric-indoor/model.safetensors
v1=$ref/v1-vits/model.safetensors
for f in "$relative" "$metric" "$v1" "$data/redwood-livingroom/odometry.log"; do
  [ -e "$f" ] || { echo "missing $f (run scripts/test.sh once, or set ANYDEPTH_DATA)" >&2; exit 2; }
done
rm -rf "$out"
mkdir -p "$out/logs"
out=$(realpath "$out")
cd "$out"

step=0
# run NAME ARGS...: runs the binary, keeps stdout, stderr and the exit code.
run() {
  local name=$1
  shift
  step=$((step + 1))
  local code=0
  "$bin" "$@" > "logs/$name.stdout" 2> "logs/$name.stderr" || code=$?
  echo "$code" > "logs/$name.code"
}

redwood=$data/redwood-livingroom
office=$data/kinect-office
nyu=$data/nyu-samples
kitti=$data/kitti-samples
k_redwood=525,525,319.5,239.5
k_nyu=518.8579,519.4696,325.5824,253.7362

# depth: every format, three checkpoint layouts, batching, colour maps, skip and force.
run depth-all depth "$data/photos/demo01.jpg" "$data/photos/demo08.jpg" --out depth-all \
  --formats npy,png16,pfm,exr,color,side-by-side --weights "$relative" --device cpu -q
run depth-kept depth "$data/photos/demo01.jpg" --out depth-all --weights "$relative" --device cpu
run depth-force depth "$data/photos/demo01.jpg" --out depth-all --formats npy --force \
  --weights "$relative" --device cpu --input-size 266
run depth-metric depth "$nyu/rgb" --out depth-metric --weights "$metric" --batch 2 \
  --formats npy,color --colormap turbo --device cpu -q
run depth-v1 depth "$data/photos/demo03.jpg" --out depth-v1 --weights "$v1" --formats npy,png16 \
  --colormap gray --input-size 266 --device cpu -q
run depth-nyu-relative depth "$nyu/rgb" --out depth-nyu --weights "$relative" --formats npy \
  --device cpu -q
run depth-kitti-relative depth "$kitti/rgb" --out depth-kitti --weights "$relative" \
  --formats npy --input-size 266 --device cpu -q
run depth-missing depth "$data/photos/demo01.jpg" nothing.jpg --out depth-missing \
  --weights "$relative" --device cpu -q

# cloud: depth files, filters, ASCII, a photo through the model, disparity fitted three ways.
frame0_depth=$redwood/depth/00000.png
frame0_color=$redwood/color/00000.jpg
run cloud cloud --depth "$frame0_depth" --color "$frame0_color" --intrinsics $k_redwood -o cloud.ply
run cloud-filtered cloud --depth "$frame0_depth" --color "$frame0_color" --intrinsics $k_redwood \
  --voxel-size 0.02 --remove-outliers --normals --max-depth 3 -o cloud-filtered.ply
run cloud-ascii cloud --depth "$frame0_depth" --intrinsics $k_redwood --voxel-size 0.05 --ascii \
  -o cloud-ascii.ply
run cloud-pgm cloud --depth "$office/depth/1.pgm" --color "$office/color/1.png" --fov 60 -o cloud-pgm.ply
run cloud-photo cloud "$data/photos/demo08.jpg" --weights "$metric" --device cpu -o cloud-photo.ply
nyu_stem=$(basename "$(ls "$nyu/rgb" | head -n 1)")
nyu_stem=${nyu_stem%.*}
nyu_rgb=$(ls "$nyu/rgb"/"$nyu_stem".*)
nyu_depth=$(ls "$nyu/depth"/* | head -n 1)
run cloud-align cloud --depth "depth-nyu/$nyu_stem.npy" --disparity --align-depth "$nyu_depth" \
  --color "$nyu_rgb" --intrinsics $k_nyu -o cloud-align.ply
run cloud-scale cloud --depth "depth-nyu/$nyu_stem.npy" --disparity --scale 0.05 --shift 0.1 \
  --intrinsics $k_nyu -o cloud-scale.ply
printf 'u,v,metres\n100,100,2000\n320,240,2500\n500,400,1800\n' > points.csv
run cloud-csv cloud --depth "depth-nyu/$nyu_stem.npy" --disparity --align-depth points.csv \
  --align-depth-scale 1000 --intrinsics $k_nyu -o cloud-csv.ply
run cloud-exists cloud --depth "$frame0_depth" --intrinsics $k_redwood -o cloud.ply
run cloud-bad cloud --depth "$frame0_depth" --intrinsics 525,525 -o cloud-bad.ply

# mesh: PLY, OBJ, ASCII, stride and cuts, a photo.
run mesh mesh --depth "$frame0_depth" --color "$frame0_color" --intrinsics $k_redwood -o mesh.ply
run mesh-obj mesh --depth "$frame0_depth" --color "$frame0_color" --intrinsics $k_redwood -o mesh.obj
run mesh-ascii mesh --depth "$frame0_depth" --intrinsics $k_redwood --stride 4 --max-jump 0.02 \
  --ascii -o mesh-ascii.ply
run mesh-photo mesh "$data/photos/demo08.jpg" --weights "$metric" --device cpu --max-depth 10 \
  -o mesh-photo.ply

# fuse: given poses, cloud, OBJ, tracked frames, photos through a metric model.
run fuse fuse --color "$redwood/color/*.jpg" --depth "$redwood/depth/*.png" --intrinsics $k_redwood \
  --poses "$redwood/odometry.log" --voxel-size 0.02 -o fuse.ply --save-poses fuse-poses.txt -q
run fuse-cloud fuse --depth "$redwood/depth/*.png" --intrinsics $k_redwood \
  --poses "$redwood/odometry.log" --voxel-size 0.03 --cloud -o fuse-cloud.ply
run fuse-obj fuse --depth "$redwood/depth/*.png" --intrinsics $k_redwood \
  --poses "$redwood/odometry.log" --voxel-size 0.03 --refine-poses -o fuse.obj
run fuse-tracked fuse --depth "$office/depth/*.pgm" --intrinsics 518,519,325.5,253.5 \
  --voxel-size 0.03 --max-depth 4 -o fuse-tracked.ply --save-poses fuse-tracked-poses.txt
run fuse-tracked-redwood fuse --depth "$redwood/depth/*.png" --intrinsics $k_redwood \
  --voxel-size 0.02 -o fuse-tracked-redwood.ply --save-poses fuse-tracked-redwood-poses.txt
run fuse-photos fuse "$redwood/color" --weights "$metric" --device cpu --intrinsics $k_redwood \
  --poses "$redwood/odometry.log" --voxel-size 0.03 -o fuse-photos.ply

# eval: predictions on disk, a model, a list file.
run eval-nyu-files eval "$nyu" --dataset nyu --predictions depth-nyu --json eval-nyu.json
run eval-kitti-files eval "$kitti" --dataset kitti --predictions depth-kitti --json eval-kitti.json
run eval-nyu-model eval "$nyu" --dataset nyu --weights "$metric" --device cpu --limit 2 \
  --json eval-nyu-model.json -q
run eval-nyu-median eval "$nyu" --dataset nyu --predictions depth-metric --metric indoor \
  --align median --crop none --max-depth 8
for f in "$nyu"/rgb/rgb_*.jpg; do
  n=$(basename "$f" .jpg)
  echo "$f $nyu/depth/sync_depth_${n#rgb_}.png 1000"
done > list.txt
run eval-list eval list.txt --dataset list --predictions depth-nyu --json eval-list.json

# Everything written, as digests; paths relative to OUT_DIR.
find . -type f ! -name '*.tmp*' -print0 | sort -z | xargs -0 sha256sum
