//! Decoding and encoding through FFmpeg: the project's example clip, and small videos
//! written here with `VideoWriter` (round trips, odd sizes, rotation metadata, cut,
//! damaged, trimmed and empty files, variable frame rates, live sources and their drop
//! policy, a FIFO, a libavdevice input). No test needs the `ffmpeg` command.
//!
//! The example clip is read from `$ANYDEPTH_VDA_REFERENCE/assets/example_videos`, else
//! `../shared/reference/video-depth-anything/assets/example_videos` beside the project;
//! when it is missing its test says so and passes, unless `ANYDEPTH_REQUIRE_REFERENCES=1`.

#![cfg(feature = "ffmpeg")]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anydepth_video::{
    Codec, Error, FrameRate, Mode, OpenOptions, Orientation, Pacing, VideoFrame, VideoSource,
    VideoWriter, WriterOptions,
};

/// The Video Depth Anything example clip, or `None` after saying why.
fn example_clip() -> Option<PathBuf> {
    let reference = std::env::var_os("ANYDEPTH_VDA_REFERENCE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../../shared/reference/video-depth-anything")
        });
    let clip = reference.join("assets/example_videos/davis_rollercoaster.mp4");
    if clip.is_file() {
        return Some(clip);
    }
    let what = format!(
        "the example clip {} is missing (set ANYDEPTH_VDA_REFERENCE to the Video Depth \
         Anything checkout)",
        clip.display()
    );
    assert!(
        std::env::var("ANYDEPTH_REQUIRE_REFERENCES").as_deref() != Ok("1"),
        "{what}"
    );
    eprintln!("skipping: {what}");
    None
}

/// Frame `i` of a test video: a gradient that moves by 2 pixels a frame and a red square
/// in the top-left quadrant (so orientation and order can be seen).
fn pattern(width: u32, height: u32, i: u64) -> Vec<[u8; 3]> {
    let mut pixels = Vec::with_capacity(width as usize * height as usize);
    for y in 0..height {
        for x in 0..width {
            let red_square = x < width / 2 && y < height / 2 && x >= 2 && y >= 2;
            pixels.push(if red_square {
                [230, 20, 20]
            } else {
                let shade = ((u64::from(x) * 4 + i * 8) % 200) as u8 + 20;
                [shade / 2, shade, 255 - shade]
            });
        }
    }
    pixels
}

/// Writes `frames` pattern frames at `rate` and returns the path.
fn write_video(path: &Path, (width, height): (u32, u32), frames: u64, rate: FrameRate) -> PathBuf {
    let mut writer =
        VideoWriter::create(path, width, height, &WriterOptions::new(rate)).expect("writer");
    for i in 0..frames {
        writer
            .write(&pattern(width, height, i))
            .expect("frame written");
    }
    writer.finish().expect("video finished");
    path.to_path_buf()
}

/// Every item of a source: the frames, then the error that ended them, if any.
fn read_all(source: VideoSource) -> (Vec<VideoFrame>, Option<Error>) {
    let mut frames = Vec::new();
    let mut items = source.into_iter();
    for item in items.by_ref() {
        match item {
            Ok(frame) => frames.push(frame),
            Err(error) => {
                assert!(items.next().is_none(), "nothing follows the error");
                return (frames, Some(error));
            }
        }
    }
    (frames, None)
}

/// Mean absolute difference of two frames' bytes.
fn mean_abs_diff(a: &[[u8; 3]], b: &[[u8; 3]]) -> f64 {
    assert_eq!(a.len(), b.len());
    let sum: u64 = a
        .iter()
        .flatten()
        .zip(b.iter().flatten())
        .map(|(&x, &y)| u64::from(x.abs_diff(y)))
        .sum();
    sum as f64 / (a.len() * 3) as f64
}

#[test]
fn example_clip_decodes_every_frame_with_its_time() {
    let Some(clip) = example_clip() else { return };
    let source = VideoSource::open(&clip, &OpenOptions::default()).expect("open the clip");
    let info = source.info().clone();
    // What ffprobe reports for this file: MPEG-4 Part 2, 960x540, 24 fps, 70 frames.
    assert_eq!((info.width, info.height), (960, 540));
    assert_eq!(info.codec, "mpeg4");
    assert_eq!(info.frame_rate, Some(FrameRate::new(24, 1)));
    assert!(!info.variable_frame_rate);
    assert_eq!(info.frame_count, Some(70));
    assert_eq!(info.orientation, Orientation::Normal);
    assert_eq!(info.mode, Mode::File);
    let duration = info.duration_secs.expect("a duration");
    assert!((duration - 70.0 / 24.0).abs() < 1e-3, "{duration}");

    let (frames, error) = read_all(source);
    assert!(error.is_none(), "{error:?}");
    assert_eq!(frames.len(), 70);
    for (i, frame) in frames.iter().enumerate() {
        assert_eq!(frame.index, i as u64);
        assert!(
            (frame.time_secs - i as f64 / 24.0).abs() < 1e-9,
            "{}",
            frame.time_secs
        );
        assert_eq!((frame.width, frame.height), (960, 540));
        assert_eq!(frame.pixels.len(), 960 * 540);
    }
    // The first frame's mean bytes, from `ffmpeg -i clip -frames:v 1 -pix_fmt rgb24 -f
    // rawvideo`: the same conversion gives the same bytes, so the means agree to rounding.
    let mean = |c: usize| {
        frames[0]
            .pixels
            .iter()
            .map(|p| f64::from(p[c]))
            .sum::<f64>()
            / (960.0 * 540.0)
    };
    for (c, expected) in FIRST_FRAME_MEAN_RGB.iter().enumerate() {
        assert!(
            (mean(c) - expected).abs() < 1e-6,
            "{c}: {} vs {expected}",
            mean(c)
        );
    }
    let image = frames[0].to_rgb_image();
    assert_eq!(
        (image.width, image.height, image.data.len()),
        (960, 540, 960 * 540 * 3)
    );
}

/// Mean R, G, B of the example clip's first frame as the FFmpeg 5.1 command line converts
/// it (see the test above).
const FIRST_FRAME_MEAN_RGB: [f64; 3] = [
    92.614_201_388_888_89,
    126.859_097_222_222_22,
    164.193_939_043_209_87,
];

#[test]
fn round_trip_keeps_frame_count_rate_and_size() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let rate = FrameRate::new(30000, 1001);
    for codec in [Codec::Auto, Codec::Mpeg4] {
        let path = dir.path().join(format!("{codec:?}.mp4"));
        let mut options = WriterOptions::new(rate);
        options.codec = codec;
        let mut writer = VideoWriter::create(&path, 64, 48, &options).expect("writer");
        let expected_encoder = if codec == Codec::Auto {
            "libx264"
        } else {
            "mpeg4"
        };
        assert_eq!(writer.encoder_name(), expected_encoder);
        for i in 0..30 {
            writer.write(&pattern(64, 48, i)).expect("frame");
        }
        assert_eq!(writer.frames_written(), 30);
        writer.finish().expect("finished");

        let source = VideoSource::open(&path, &OpenOptions::default()).expect("open");
        let info = source.info().clone();
        assert_eq!((info.width, info.height), (64, 48));
        assert_eq!(info.frame_rate, Some(rate), "{codec:?}");
        assert!(!info.variable_frame_rate, "{codec:?}");
        assert_eq!(info.frame_count, Some(30));
        let (frames, error) = read_all(source);
        assert!(error.is_none(), "{error:?}");
        assert_eq!(frames.len(), 30);
        for (i, frame) in frames.iter().enumerate() {
            assert_eq!(frame.index, i as u64);
            let expected_secs = i as f64 * 1001.0 / 30000.0;
            assert!(
                (frame.time_secs - expected_secs).abs() < 1e-6,
                "{codec:?} {i}"
            );
            // Lossy coding and chroma subsampling: a few levels on average.
            let diff = mean_abs_diff(&frame.pixels, &pattern(64, 48, i as u64));
            assert!(diff < 6.0, "{codec:?} frame {i}: {diff}");
        }
    }
}

#[test]
fn odd_sizes_are_padded_by_repeating_the_last_column_and_row() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let path = dir.path().join("odd.mp4");
    let mut writer = VideoWriter::create(&path, 33, 17, &WriterOptions::new(FrameRate::new(25, 1)))
        .expect("writer");
    assert_eq!(writer.encoded_size(), (34, 18));
    for i in 0..5 {
        writer.write(&pattern(33, 17, i)).expect("frame");
    }
    writer.finish().expect("finished");
    let source = VideoSource::open(&path, &OpenOptions::default()).expect("open");
    assert_eq!((source.info().width, source.info().height), (34, 18));
    let (frames, error) = read_all(source);
    assert!(error.is_none(), "{error:?}");
    assert_eq!(frames.len(), 5);
    // The visible 33 x 17 part matches what was written.
    let crop: Vec<[u8; 3]> = (0..17)
        .flat_map(|y| frames[0].pixels[y * 34..y * 34 + 33].to_vec())
        .collect();
    assert!(mean_abs_diff(&crop, &pattern(33, 17, 0)) < 6.0);
}

/// Rewrites the display matrix of the first track header (`tkhd`) of an MP4 to rotate by
/// `degrees` clockwise, as a phone does (and as FFmpeg's muxer writes a `rotate` tag).
fn set_mp4_rotation(bytes: &mut [u8], degrees: u32, (width, height): (u32, u32)) {
    let at = bytes
        .windows(4)
        .position(|w| w == b"tkhd")
        .expect("a track header");
    let version = bytes[at + 4];
    // Version, flags, then times, track id and duration (32 or 64 bit), reserved, layer,
    // group, volume, reserved: then the nine 32-bit big-endian matrix entries.
    let matrix_at = at + 4 + if version == 1 { 52 } else { 40 };
    let one = 1 << 16;
    let (w, h) = (width as i32 * one, height as i32 * one);
    let (a, b, c, d, x, y) = match degrees {
        90 => (0, one, -one, 0, h, 0),
        180 => (-one, 0, 0, -one, w, h),
        270 => (0, -one, one, 0, 0, w),
        _ => panic!("{degrees}"),
    };
    let matrix = [a, b, 0, c, d, 0, x, y, 1 << 30];
    for (i, value) in matrix.iter().enumerate() {
        bytes[matrix_at + 4 * i..matrix_at + 4 * i + 4].copy_from_slice(&value.to_be_bytes());
    }
}

/// The rotated frames were also compared with what FFmpeg 5.1's command line makes of these
/// files (`ffmpeg -i rotated90.mp4 -pix_fmt rgb24 -f rawvideo`, which applies the display
/// matrix): byte for byte equal for all three rotations.
#[test]
fn rotation_metadata_is_applied_to_size_and_pixels() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let plain = write_video(
        &dir.path().join("plain.mp4"),
        (64, 32),
        3,
        FrameRate::new(25, 1),
    );
    let bytes = std::fs::read(&plain).expect("read");
    // Where the red square (top-left when stored) is displayed: a pixel well inside it.
    let red = |frame: &VideoFrame, x: u32, y: u32| {
        let [r, g, b] = frame.pixels[(y * frame.width + x) as usize];
        r > 180 && g < 80 && b < 80
    };
    for (degrees, orientation) in [
        (90, Orientation::Rotate90),
        (180, Orientation::Rotate180),
        (270, Orientation::Rotate270),
    ] {
        let mut rotated = bytes.clone();
        set_mp4_rotation(&mut rotated, degrees, (64, 32));
        let path = dir.path().join(format!("rotated{degrees}.mp4"));
        std::fs::write(&path, rotated).expect("write");
        let source = VideoSource::open(&path, &OpenOptions::default()).expect("open");
        let info = source.info().clone();
        assert_eq!(info.orientation, orientation);
        assert_eq!(info.rotation_deg(), Some(degrees));
        let expected_size = if degrees == 180 { (64, 32) } else { (32, 64) };
        assert_eq!((info.width, info.height), expected_size);
        let (frames, error) = read_all(source);
        assert!(error.is_none(), "{error:?}");
        assert_eq!(frames.len(), 3);
        let frame = &frames[0];
        assert_eq!((frame.width, frame.height), expected_size);
        // Stored top-left quadrant -> clockwise 90: top-right; 180: bottom-right;
        // 270: bottom-left.
        let (w, h) = (frame.width, frame.height);
        let (x, y) = match degrees {
            90 => (w - 8, 8),
            180 => (w - 8, h - 8),
            _ => (8, h - 8),
        };
        assert!(red(frame, x, y), "{degrees}: red square not at ({x}, {y})");
        assert!(!red(frame, 8, 8), "{degrees}: red square still top-left");
    }
}

#[test]
fn a_cut_file_delivers_the_frames_before_the_cut_then_names_the_frame() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let whole = write_video(
        &dir.path().join("whole.mp4"),
        (64, 48),
        60,
        FrameRate::new(30, 1),
    );
    let bytes = std::fs::read(&whole).expect("read");
    let cut = dir.path().join("cut.mp4");
    std::fs::write(&cut, &bytes[..bytes.len() * 6 / 10]).expect("write");

    // The writer puts the MP4 index first, so it survives the cut and announces 60 frames.
    let source = VideoSource::open(&cut, &OpenOptions::default()).expect("the index survives");
    assert_eq!(source.info().frame_count, Some(60));
    let (frames, error) = read_all(source);
    let delivered = frames.len() as u64;
    assert!(delivered > 0 && delivered < 60, "{delivered}");
    assert_prefix(&frames, 30.0);
    match error {
        Some(Error::Truncated {
            frame_index,
            announced,
            ..
        }) => assert_eq!((frame_index, announced), (delivered, 60)),
        other => panic!("expected a truncation error, got {other:?}"),
    }
}

#[test]
fn an_edit_list_that_ends_early_is_not_a_truncation() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let whole = write_video(
        &dir.path().join("whole.mp4"),
        (64, 48),
        60,
        FrameRate::new(30, 1),
    );
    // Halve the presented duration in the edit list (`elst`), as a trim without
    // re-encoding does: the container still counts 60 stored frames, and the data of the
    // unshown ones stays in the file.
    let mut bytes = std::fs::read(&whole).expect("read");
    let at = bytes
        .windows(4)
        .position(|w| w == b"elst")
        .expect("an edit list (the writer's B-frame delay)");
    assert_eq!(bytes[at + 4], 0, "version 0: 32-bit durations");
    let entry = at + 12;
    let duration = u32::from_be_bytes(bytes[entry..entry + 4].try_into().expect("4 bytes"));
    bytes[entry..entry + 4].copy_from_slice(&(duration / 2).to_be_bytes());
    let trimmed = dir.path().join("trimmed.mp4");
    std::fs::write(&trimmed, &bytes).expect("write");

    let source = VideoSource::open(&trimmed, &OpenOptions::default()).expect("open");
    assert_eq!(source.info().frame_count, Some(60), "stored frames");
    let (frames, error) = read_all(source);
    assert!(error.is_none(), "{error:?}");
    assert_eq!(frames.len(), 30);
    assert_prefix(&frames, 30.0);
}

/// The frames are the video's first ones, in order and whole: indices, times and pixels.
fn assert_prefix(frames: &[VideoFrame], fps: f64) {
    for (i, frame) in frames.iter().enumerate() {
        assert_eq!(frame.index, i as u64);
        assert!(
            (frame.time_secs - i as f64 / fps).abs() < 1e-3,
            "{i}: {}",
            frame.time_secs
        );
        let diff = mean_abs_diff(&frame.pixels, &pattern(64, 48, i as u64));
        assert!(diff < 6.0, "frame {i}: {diff}");
    }
}

#[test]
fn a_damaged_file_delivers_the_frames_before_the_damage_then_names_the_frame() {
    let dir = tempfile::tempdir().expect("temporary folder");
    // Matroska keeps no index to announce a count: the damage is found by decoding.
    let whole = write_video(
        &dir.path().join("whole.mkv"),
        (64, 48),
        60,
        FrameRate::new(30, 1),
    );
    let mut bytes = std::fs::read(&whole).expect("read");
    let middle = bytes.len() / 2;
    for (i, byte) in bytes[middle..middle + 200].iter_mut().enumerate() {
        *byte = (i * 7919 % 251) as u8;
    }
    let damaged = dir.path().join("damaged.mkv");
    std::fs::write(&damaged, &bytes).expect("write");

    let source = VideoSource::open(&damaged, &OpenOptions::default()).expect("open");
    let (frames, error) = read_all(source);
    let delivered = frames.len() as u64;
    assert!(delivered > 0 && delivered < 60, "{delivered}");
    assert_prefix(&frames, 30.0);
    match error {
        Some(Error::Damaged {
            frame_index, input, ..
        }) => {
            assert_eq!(frame_index, delivered);
            assert!(input.ends_with("damaged.mkv"));
        }
        other => panic!("expected a damage error, got {other:?}"),
    }
}

#[test]
fn a_video_without_frames_is_an_error() {
    let dir = tempfile::tempdir().expect("temporary folder");
    // A Matroska file cut right after the header of its first cluster (a recording that
    // stopped at once): header and track, not one frame.
    let mkv = write_video(
        &dir.path().join("clip.mkv"),
        (64, 48),
        10,
        FrameRate::new(25, 1),
    );
    let bytes = std::fs::read(&mkv).expect("read");
    let cluster = bytes
        .windows(4)
        .position(|w| w == [0x1F, 0x43, 0xB6, 0x75])
        .expect("a cluster");
    // The cluster's ID, then its size: an EBML number, as long as its first byte's
    // leading zeros plus one.
    let size_len = bytes[cluster + 4].leading_zeros() as usize + 1;
    let empty = dir.path().join("empty.mkv");
    std::fs::write(&empty, &bytes[..cluster + 4 + size_len]).expect("write");
    let source = VideoSource::open(&empty, &OpenOptions::default()).expect("the header reads");
    let (frames, error) = read_all(source);
    assert!(frames.is_empty());
    assert!(
        matches!(&error, Some(Error::NoFrames { input }) if input.ends_with("empty.mkv")),
        "{error:?}"
    );

    // The writer refuses to finish an empty video and leaves nothing behind.
    let path = dir.path().join("nothing.mp4");
    let writer = VideoWriter::create(&path, 8, 8, &WriterOptions::new(FrameRate::new(25, 1)))
        .expect("writer");
    assert!(matches!(writer.finish(), Err(Error::Invalid(_))));
    assert!(!path.exists());
}

#[test]
fn variable_frame_rate_timestamps_are_kept() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let path = dir.path().join("vfr.mp4");
    // Intervals of 1/30, 1/10, 1/60, 1/5 s and a pause; nominal rate 30 fps.
    let times = [
        0.0,
        1.0 / 30.0,
        0.1 + 1.0 / 30.0,
        0.15,
        0.35,
        0.4,
        1.0,
        1.0 + 1.0 / 30.0,
    ];
    let mut writer = VideoWriter::create(&path, 64, 48, &WriterOptions::new(FrameRate::new(30, 1)))
        .expect("writer");
    for (i, &t) in times.iter().enumerate() {
        writer
            .write_at(&pattern(64, 48, i as u64), t)
            .expect("frame");
    }
    // Times must increase.
    assert!(matches!(
        writer.write_at(&pattern(64, 48, 0), 0.5),
        Err(Error::Invalid(_))
    ));
    writer.finish().expect("finished");

    let source = VideoSource::open(&path, &OpenOptions::default()).expect("open");
    assert!(source.info().variable_frame_rate, "{:?}", source.info());
    let (frames, error) = read_all(source);
    assert!(error.is_none(), "{error:?}");
    assert_eq!(frames.len(), times.len());
    for (frame, &t) in frames.iter().zip(&times) {
        // Rounded to the writer's 90 kHz clock.
        assert!(
            (frame.time_secs - t).abs() <= 0.5 / 90_000.0 + 1e-9,
            "{} vs {t}",
            frame.time_secs
        );
    }
}

/// Waits until the decoder has finished, failing after a minute (a hang, not a timing).
fn wait_for_decoder(source: &VideoSource) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !source.is_decoding_finished() {
        assert!(Instant::now() < deadline, "the decoder never finished");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_live_source_keeps_the_newest_frames_and_counts_the_dropped() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let path = write_video(
        &dir.path().join("live.mp4"),
        (64, 48),
        40,
        FrameRate::new(30, 1),
    );
    let options = OpenOptions {
        queue_frames: 3,
        ..OpenOptions::live()
    };
    let source = VideoSource::open(&path, &options).expect("open");
    assert_eq!(source.info().mode, Mode::Live);
    assert_eq!(source.info().frame_count, None);
    // A consumer that takes nothing until the source has produced everything.
    wait_for_decoder(&source);
    assert_eq!(source.dropped_frames(), 37);
    let counter = source.drop_counter();
    let (frames, error) = read_all(source);
    assert_eq!(counter.get(), 37, "readable after the source is gone");
    assert!(
        error.is_none(),
        "a live stream ends without error: {error:?}"
    );
    let indices: Vec<u64> = frames.iter().map(|f| f.index).collect();
    assert_eq!(indices, vec![37, 38, 39]);

    // A file (blocking queue) loses nothing with the same consumer.
    let options = OpenOptions {
        queue_frames: 3,
        ..OpenOptions::file()
    };
    let source = VideoSource::open(&path, &options).expect("open");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(source.dropped_frames(), 0);
    assert_eq!(read_all(source).0.len(), 40);
}

#[test]
fn a_paced_live_replay_accounts_for_every_frame() {
    let dir = tempfile::tempdir().expect("temporary folder");
    // 24 frames at 120 fps: 0.2 s of real time.
    let path = write_video(
        &dir.path().join("paced.mp4"),
        (32, 32),
        24,
        FrameRate::new(120, 1),
    );
    let options = OpenOptions {
        mode: Some(Mode::Live),
        queue_frames: 2,
        pacing: Pacing::RealTime,
        ..OpenOptions::default()
    };
    let mut source = VideoSource::open(&path, &options).expect("open");
    let mut indices = Vec::new();
    for frame in source.by_ref() {
        indices.push(frame.expect("a frame").index);
        // A consumer slower than the source.
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(indices.windows(2).all(|w| w[0] < w[1]), "{indices:?}");
    assert_eq!(
        indices.last(),
        Some(&23),
        "the newest frame is always delivered"
    );
    assert_eq!(indices.len() as u64 + source.dropped_frames(), 24);
}

#[cfg(unix)]
#[test]
fn a_fifo_is_a_live_source_whose_end_ends_the_frames() {
    let dir = tempfile::tempdir().expect("temporary folder");
    // Matroska needs no seeking, so it can be read from a pipe.
    let clip = write_video(
        &dir.path().join("clip.mkv"),
        (64, 48),
        20,
        FrameRate::new(25, 1),
    );
    let fifo = dir.path().join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo runs");
    assert!(made.success());
    let feeder = {
        let (clip, fifo) = (clip.clone(), fifo.clone());
        std::thread::spawn(move || {
            let bytes = std::fs::read(clip).expect("read");
            std::fs::write(fifo, bytes).expect("write into the FIFO");
        })
    };
    let source = VideoSource::open(&fifo, &OpenOptions::default()).expect("open the FIFO");
    assert_eq!(source.info().mode, Mode::Live);
    let dropped = source.dropped_frames();
    let mut delivered = 0;
    let mut last = None;
    let mut source = source;
    for frame in source.by_ref() {
        let frame = frame.expect("no error at the end of a live stream");
        assert!(last.is_none_or(|l| frame.index > l));
        last = Some(frame.index);
        delivered += 1;
    }
    feeder.join().expect("feeder");
    assert!(dropped <= source.dropped_frames());
    assert_eq!(delivered + source.dropped_frames(), 20);
    assert_eq!(last, Some(19));
}

#[test]
fn an_unfinished_writer_leaves_nothing_behind() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let path = dir.path().join("out.mp4");
    std::fs::write(&path, b"an older file").expect("write");
    {
        let options = WriterOptions {
            overwrite: true,
            ..WriterOptions::new(FrameRate::new(10, 1))
        };
        let mut writer = VideoWriter::create(&path, 16, 16, &options).expect("writer");
        writer.write(&pattern(16, 16, 0)).expect("frame");
        let names: Vec<_> = std::fs::read_dir(dir.path()).expect("list").collect();
        assert_eq!(
            names.len(),
            2,
            "the temporary file is beside the destination"
        );
    }
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["out.mp4".to_string()]);
    assert_eq!(std::fs::read(&path).expect("read"), b"an older file");

    // Without `overwrite` the existing file is refused at once; with it, finishing
    // replaces the file.
    let options = WriterOptions::new(FrameRate::new(10, 1));
    assert!(matches!(
        VideoWriter::create(&path, 16, 16, &options),
        Err(Error::Write { .. })
    ));
    let options = WriterOptions {
        overwrite: true,
        ..options
    };
    let mut writer = VideoWriter::create(&path, 16, 16, &options).expect("writer");
    for i in 0..2 {
        writer.write(&pattern(16, 16, i)).expect("frame");
    }
    writer.finish().expect("finished");
    let source = VideoSource::open(&path, &OpenOptions::default()).expect("open");
    assert_eq!(read_all(source).0.len(), 2);
    assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 1);
}

#[test]
fn an_input_device_of_libavdevice_is_a_live_source() {
    // libavdevice's `lavfi` device plays a filter graph: a stand-in for a camera.
    let options = OpenOptions {
        device: Some("lavfi".into()),
        ..OpenOptions::live()
    };
    let source = VideoSource::open("testsrc=size=64x48:rate=25:duration=1", &options)
        .expect("the lavfi device");
    assert_eq!((source.info().width, source.info().height), (64, 48));
    assert_eq!(source.info().frame_rate, Some(FrameRate::new(25, 1)));
    let counter = source.drop_counter();
    let mut indices = Vec::new();
    for frame in source {
        let frame = frame.expect("a frame");
        assert!((frame.time_secs - frame.index as f64 / 25.0).abs() < 1e-9);
        indices.push(frame.index);
    }
    assert!(indices.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(indices.last(), Some(&24));
    assert_eq!(indices.len() as u64 + counter.get(), 25);
}
