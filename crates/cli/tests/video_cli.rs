//! End-to-end tests of `anydepth depth` on clips: video files, `--sequence` folders,
//! damaged and empty videos, the video outputs, and per-frame models with `--stabilize`.
//!
//! They use the random-weight checkpoints of `scripts/reference/make_references.py` and
//! `scripts/reference/video_reference.py` (whose 50-frame clip and official outputs give
//! an end-to-end parity check), and skip with a message when those are absent unless
//! `ANYDEPTH_REQUIRE_REFERENCES=1`. They need the `ffmpeg` feature (on by default).

#![cfg(feature = "ffmpeg")]

use std::path::{Path, PathBuf};

mod common;
use common::{anydepth, assert_code, assert_ok, reference_file, s, stderr};

use anydepth_video::{FrameRate, OpenOptions, VideoSource, VideoWriter, WriterOptions};

fn video_weights() -> Option<PathBuf> {
    reference_file("video/video_depth_anything_vits.pth")
}

/// The official example clip, or `None` after a message.
fn example_clip() -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/reference/video-depth-anything/assets/example_videos/davis_rollercoaster.mp4");
    if path.is_file() {
        Some(path)
    } else {
        common::missing(&format!("example clip not found: {}", path.display()));
        None
    }
}

/// Frames and their times of a video, decoded by the project's own reader.
fn frame_times(path: &Path) -> Vec<f64> {
    VideoSource::open(path, &OpenOptions::default())
        .expect("video opens")
        .map(|f| f.expect("frame decodes").time_secs)
        .collect()
}

/// Writes a `frames`-frame 64 x 48 test video with a moving pattern.
fn write_clip(path: &Path, frames: u32) {
    let mut writer = VideoWriter::create(path, 64, 48, &WriterOptions::new(FrameRate::new(25, 1)))
        .expect("writer opens");
    for f in 0..frames {
        let pixels: Vec<[u8; 3]> = (0..48u32)
            .flat_map(|y| {
                (0..64u32)
                    .map(move |x| [((x + 3 * f) * 4) as u8, (y * 5) as u8, ((x ^ y) * 3) as u8])
            })
            .collect();
        writer.write(&pixels).expect("frame encodes");
    }
    writer.finish().expect("video finishes");
}

fn read_npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    anydepth_core::npy::read_f32(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn a_sequence_through_the_command_line_matches_the_official_windowed_inference() {
    let (Some(weights), Some(reference)) = (video_weights(), reference_file("video/windowed.npy"))
    else {
        return;
    };
    let frames = reference.with_file_name("frames");
    let out = tempfile::tempdir().expect("temp dir");
    let run = anydepth(&[
        "depth",
        "--sequence",
        s(&frames),
        "--weights",
        s(&weights),
        "--input-size",
        "112",
        "--device",
        "cpu",
        "--fps",
        "24",
        "--formats",
        "npy,mp4",
        "--out",
        s(out.path()),
        "--quiet",
    ]);
    assert_ok(&run);
    let (shape, expected) = read_npy(&reference);
    let plane = shape[1] * shape[2];
    let (lo, hi) = expected
        .iter()
        .fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let mut worst = 0.0f32;
    for i in 0..shape[0] {
        // With --sequence, outputs are named after the frames.
        let (frame_shape, values) = read_npy(&out.path().join(format!("{i:06}.npy")));
        assert_eq!(frame_shape, [shape[1], shape[2]]);
        let reference = &expected[i * plane..(i + 1) * plane];
        let diff = values
            .iter()
            .zip(reference)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max)
            / (hi - lo);
        worst = worst.max(diff);
    }
    eprintln!("worst frame through the CLI differs by {worst:.2e} of the range");
    assert!(worst < 1e-3, "{worst}");
    // The video: one frame per frame, at the asked rate.
    let video = out.path().join("frames_depth.mp4");
    let times = frame_times(&video);
    assert_eq!(times.len(), shape[0]);
    assert!((times[1] - times[0] - 1.0 / 24.0).abs() < 1e-3, "{times:?}");
}

#[test]
fn a_video_file_gives_numbered_frames_and_videos_with_its_frame_count_and_rate() {
    let (Some(weights), Some(clip)) = (video_weights(), example_clip()) else {
        return;
    };
    let out = tempfile::tempdir().expect("temp dir");
    let run = anydepth(&[
        "depth",
        s(&clip),
        "--weights",
        s(&weights),
        "--input-size",
        "56",
        "--device",
        "cpu",
        "--max-frames",
        "25",
        "--formats",
        "npy,png16,mp4,side-by-side-mp4",
        "--out",
        s(out.path()),
    ]);
    let err = assert_ok(&run);
    assert!(err.contains("25 frames"), "{err}");
    let frames = out.path().join("davis_rollercoaster");
    for i in [0, 24] {
        let (shape, _) = read_npy(&frames.join(format!("{i:06}.npy")));
        assert_eq!(shape, [540, 960], "the video's resolution");
        assert!(frames.join(format!("{i:06}_depth16.png")).is_file());
    }
    assert!(!frames.join("000025.npy").exists());
    let source = frame_times(&clip);
    for name in [
        "davis_rollercoaster_depth.mp4",
        "davis_rollercoaster_side.mp4",
    ] {
        let times = frame_times(&out.path().join(name));
        assert_eq!(times.len(), 25, "{name}");
        for (a, b) in times.iter().zip(&source) {
            assert!((a - (b - source[0])).abs() < 1e-3, "{name}: {a} vs {b}");
        }
    }
    // With --save, every frame and its depth are on the frame timeline and on the time
    // timeline at the video's own timestamps.
    let rrd_path = out.path().join("clip.rrd");
    let saved = anydepth(&[
        "depth",
        s(&clip),
        "--weights",
        s(&weights),
        "--input-size",
        "56",
        "--device",
        "cpu",
        "--max-frames",
        "5",
        "--formats",
        "npy",
        "--out",
        s(&out.path().join("saved")),
        "--save",
        s(&rrd_path),
    ]);
    assert_ok(&saved);
    let rrd = anydepth_viz::rrd::Rrd::read(&rrd_path).expect("a recording");
    // A relative model: disparity, colour-mapped.
    let depth = anydepth_viz::paths::DISPARITY;
    assert_eq!(rrd.row_count(depth, "Image:buffer"), 5);
    assert_eq!(
        rrd.row_count(anydepth_viz::paths::RGB, "Image:buffer"),
        5,
        "the frames"
    );
    assert_eq!(
        rrd.times(depth, anydepth_viz::paths::FRAME_TIMELINE),
        [0, 1, 2, 3, 4]
    );
    let logged = rrd.times(depth, anydepth_viz::paths::TIME_TIMELINE);
    assert_eq!(logged.len(), 5);
    for (ns, frame_s) in logged.iter().zip(&source) {
        let expected_ns = (frame_s - source[0]) * 1e9;
        assert!(
            (*ns as f64 - expected_ns).abs() < 1e6,
            "{ns} ns vs {frame_s} s"
        );
    }

    // A second run refuses to overwrite, naming the output.
    let again = anydepth(&[
        "depth",
        s(&clip),
        "--weights",
        s(&weights),
        "--formats",
        "npy",
        "--out",
        s(out.path()),
    ]);
    assert_code(&again, 2);
    assert!(stderr(&again).contains("--force"), "{}", stderr(&again));
}

#[test]
fn a_damaged_video_keeps_the_frames_before_the_damage_and_names_the_frame() {
    let Some(weights) = video_weights() else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let whole = dir.path().join("whole.mp4");
    write_clip(&whole, 40);
    let bytes = std::fs::read(&whole).expect("read clip");
    let cut = dir.path().join("cut.mp4");
    std::fs::write(&cut, &bytes[..bytes.len() * 6 / 10]).expect("write cut clip");
    let out = dir.path().join("out");
    let run = anydepth(&[
        "depth",
        s(&cut),
        "--weights",
        s(&weights),
        "--input-size",
        "56",
        "--device",
        "cpu",
        "--formats",
        "npy,mp4",
        "--out",
        s(&out),
    ]);
    assert_code(&run, 1);
    let err = stderr(&run);
    assert!(err.contains("frame "), "the error names the frame: {err}");
    let written = std::fs::read_dir(out.join("cut"))
        .expect("frames folder")
        .count();
    assert!(written > 0 && written < 40, "{written} frames written");
    // The depth video holds exactly the frames written, finished.
    assert_eq!(frame_times(&out.join("cut_depth.mp4")).len(), written);
    assert!(
        std::fs::read_dir(&out).expect("out").all(|e| !e
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .starts_with('.')),
        "no temporary file is left"
    );
}

#[test]
fn empty_videos_and_mixed_sequences_are_refused_clearly() {
    let Some(weights) = video_weights() else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let empty = dir.path().join("empty.mp4");
    std::fs::write(&empty, b"").expect("write");
    let run = anydepth(&[
        "depth",
        s(&empty),
        "--weights",
        s(&weights),
        "--device",
        "cpu",
        "--out",
        s(&dir.path().join("out")),
    ]);
    assert_code(&run, 1);
    assert!(stderr(&run).contains("empty.mp4"), "{}", stderr(&run));

    let frames = dir.path().join("frames");
    std::fs::create_dir(&frames).expect("mkdir");
    for (name, w) in [("a.png", 32), ("b.png", 32), ("c.png", 40), ("d.png", 32)] {
        image::RgbImage::new(w, 24)
            .save(frames.join(name))
            .expect("save");
    }
    let run = anydepth(&[
        "depth",
        "--sequence",
        s(&frames),
        "--weights",
        s(&weights),
        "--out",
        s(&dir.path().join("out")),
    ]);
    assert_code(&run, 2);
    let err = stderr(&run);
    assert!(err.contains("c.png") && !err.contains("d.png"), "{err}");

    // Video outputs are for clips.
    let run = anydepth(&[
        "depth",
        s(&frames.join("a.png")),
        "--formats",
        "mp4",
        "--out",
        s(&dir.path().join("out")),
    ]);
    assert_code(&run, 2);
    assert!(stderr(&run).contains("mp4"), "{}", stderr(&run));
}

#[test]
fn a_per_frame_model_runs_on_a_clip_and_stabilizes_it() {
    let (Some(video), Some(image_model)) = (
        video_weights(),
        reference_file("v2-vits/depth_anything_v2_vits.pth"),
    ) else {
        return;
    };
    let frames = video.with_file_name("frames");
    let out = tempfile::tempdir().expect("temp dir");
    let run = anydepth(&[
        "depth",
        "--sequence",
        &format!("{}/00000*.png", s(&frames)),
        "--weights",
        s(&image_model),
        "--per-frame",
        "--stabilize",
        "--input-size",
        "70",
        "--device",
        "cpu",
        "--formats",
        "npy",
        "--out",
        s(out.path()),
        "--quiet",
    ]);
    assert_ok(&run);
    assert_eq!(std::fs::read_dir(out.path()).expect("out").count(), 10);
    // A Video Depth Anything checkpoint is not a per-frame model.
    let run = anydepth(&[
        "depth",
        "--sequence",
        s(&frames),
        "--weights",
        s(&video),
        "--per-frame",
        "--out",
        s(&out.path().join("x")),
    ]);
    assert_code(&run, 2);
    assert!(
        stderr(&run).contains("Video Depth Anything"),
        "{}",
        stderr(&run)
    );
}

#[test]
fn a_live_source_that_ends_leaves_its_outputs_finished() {
    let Some(weights) = video_weights() else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    // A FIFO is a live source: what a camera pipe or `ffmpeg ... -f matroska -` gives.
    let clip = dir.path().join("clip.mkv");
    write_clip(&clip, 30);
    let fifo = dir.path().join("camera");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo runs");
    assert!(made.success());
    let bytes = std::fs::read(&clip).expect("read clip");
    let feeder = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::write(&fifo, bytes))
    };
    let out = dir.path().join("out");
    let run = anydepth(&[
        "depth",
        "--live",
        s(&fifo),
        "--weights",
        s(&weights),
        "--input-size",
        "56",
        "--device",
        "cpu",
        "--formats",
        "npy,mp4",
        "--out",
        s(&out),
    ]);
    feeder.join().expect("feeder").expect("clip fed");
    let err = assert_ok(&run);
    assert!(err.contains("Streaming"), "live sources stream: {err}");
    let written = std::fs::read_dir(out.join("camera"))
        .expect("frames")
        .count();
    assert!((1..=30).contains(&written), "{written} frames");
    // The video is finished and holds the frames written, whatever was dropped.
    assert_eq!(frame_times(&out.join("camera_depth.mp4")).len(), written);
}
