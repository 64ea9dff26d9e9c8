//! What logging a frame to Rerun costs next to computing its point cloud, for
//! docs/BENCHMARKS.md: a depth frame (and its colours) resized (nearest) to 1920x1080, then
//! `unproject` against logging the photo, the depth and the full cloud to an `.rrd` file.
//!
//! cargo run --release -p anydepth-viz --example log_bench -- DEPTH.png SCALE FX FY CX CY COLOR.jpg
//!
//! Per run: `unproject`; the log calls (conversion to Arrow, hand-over to Rerun's batcher)
//! with the frame's colours and cloud handed over owned; the flush that follows (Rerun's
//! own threads chunk, LZ4-compress and write the file meanwhile and after); and converting
//! a borrowed cloud and image (the copying path, what the commands do on their logging
//! thread while they write their files).
//!
//! Then where Rerun's encoding spends its time: the same frame logged to a memory sink,
//! each chunk turned into its transport form (Arrow IPC, then LZ4 or not) as the file sink
//! does, and the whole stream encoded into a file with and without compression.

use std::path::Path;
use std::time::Instant;

use anydepth_core::depth_io::read_depth_values;
use anydepth_core::{load_image, DepthMap, Intrinsics, Metres};
use anydepth_geometry::unproject::{unproject, UnprojectOptions};
use anydepth_viz::{convert, paths, PointRadius, Recording};

const WIDTH: u32 = 1920;
const HEIGHT: u32 = 1080;

/// Nearest-neighbour resize of row-major `values` from `w` x `h` to `WIDTH` x `HEIGHT`.
fn resize<T: Copy>(values: &[T], w: u32, h: u32) -> Vec<T> {
    let mut out = Vec::with_capacity((WIDTH * HEIGHT) as usize);
    for y in 0..HEIGHT {
        let sy = (y * h / HEIGHT) as usize;
        for x in 0..WIDTH {
            let sx = (x * w / WIDTH) as usize;
            out.push(values[sy * w as usize + sx]);
        }
    }
    out
}

/// `best / median` in milliseconds.
fn stats(mut v: Vec<f64>) -> String {
    v.sort_by(f64::total_cmp);
    format!("{:8.2} / {:8.2} ms", v[0] * 1e3, v[v.len() / 2] * 1e3)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 7 {
        return Err("usage: log_bench DEPTH SCALE FX FY CX CY COLOR".into());
    }
    let num = |i: usize| args[i].parse::<f64>();
    let (w, h, depth) = read_depth_values::<Metres>(Path::new(&args[0]), num(1)?)?.into_parts();
    let color = load_image(Path::new(&args[6]))?.to_rgb8();
    let camera =
        Intrinsics::new(num(2)?, num(3)?, num(4)?, num(5)?, w, h)?.scaled(WIDTH, HEIGHT)?;
    let depth = DepthMap::<Metres>::new(WIDTH, HEIGHT, resize(&depth, w, h))?;
    let color = resize(&color, w, h);

    let dir = std::env::temp_dir().join(format!("anydepth-viz-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let runs = 15;
    let (mut t_unproject, mut t_log, mut t_flush) = (Vec::new(), Vec::new(), Vec::new());
    let (mut t_image, mut t_depth, mut t_cloud) = (Vec::new(), Vec::new(), Vec::new());
    let mut t_copying = Vec::new();
    let mut points = 0;
    let mut bytes = 0;
    for run in 0..runs {
        let t0 = Instant::now();
        let cloud = unproject(
            &depth,
            &camera,
            &UnprojectOptions::default(),
            Some(color.as_flattened()),
        )?;
        t_unproject.push(t0.elapsed().as_secs_f64());
        points = cloud.len();

        // The copying variants, for comparison: a borrowed cloud and borrowed pixels.
        let t0 = Instant::now();
        let copied = anydepth_viz::convert::points3d(&cloud, PointRadius::Metres(0.002))?;
        let image = anydepth_viz::convert::rgb_image(WIDTH, HEIGHT, (&color).into())?;
        t_copying.push(t0.elapsed().as_secs_f64());
        drop((copied, image));

        // The frame's colours as a pipeline that no longer needs them owns them, handed to
        // Rerun without a copy; copied here outside the timing.
        let frame_color = color.clone();
        let path = dir.join(format!("frame{run}.rrd"));
        // The stream is kept to log the owned cloud through `convert` directly (the library
        // logs borrowed clouds only).
        let stream = rerun::RecordingStreamBuilder::new("anydepth_bench").save(&path)?;
        let recording = Recording::from_stream(stream.clone());
        recording.log_world_axes()?;
        recording.set_frame(0);
        let t0 = Instant::now();
        recording.log_rgb8(WIDTH, HEIGHT, frame_color)?;
        let t1 = Instant::now();
        recording.log_depth(&depth)?;
        let t2 = Instant::now();
        stream.log(
            paths::CLOUD,
            &convert::points3d_owned(cloud, PointRadius::Metres(0.002))?,
        )?;
        let t3 = Instant::now();
        recording.flush()?;
        drop(recording);
        let t4 = Instant::now();
        t_image.push((t1 - t0).as_secs_f64());
        t_depth.push((t2 - t1).as_secs_f64());
        t_cloud.push((t3 - t2).as_secs_f64());
        t_log.push((t3 - t0).as_secs_f64());
        t_flush.push((t4 - t3).as_secs_f64());
        bytes = std::fs::metadata(&path)?.len();
        std::fs::remove_file(&path)?;
    }
    println!("{WIDTH}x{HEIGHT} frame, {points} points, best / median of {runs} runs");
    println!("unproject (with colours):           {}", stats(t_unproject));
    println!("log image + depth + cloud (calls):  {}", stats(t_log));
    println!("  image (RGB8):                     {}", stats(t_image));
    println!("  depth (f32 metres):               {}", stats(t_depth));
    println!("  cloud (positions, colours):       {}", stats(t_cloud));
    println!("flush to the .rrd file after that:  {}", stats(t_flush));
    println!("(copying cloud + image conversion:  {})", stats(t_copying));
    println!(
        "file size:                          {:8.1} MB",
        bytes as f64 / 1e6
    );

    encoding_breakdown(&depth, &color, &camera, &dir, runs)?;
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

/// Times Rerun's encoding of the frame's chunks (photo, depth, cloud) with and without LZ4.
fn encoding_breakdown(
    depth: &DepthMap<Metres>,
    color: &[[u8; 3]],
    camera: &Intrinsics,
    dir: &Path,
    runs: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    use re_log_encoding::{Compression, Encoder, EncodingOptions, ToTransport};
    use rerun::log::LogMsg;

    let names = ["photo", "depth", "cloud"];
    let mut per_chunk = vec![(Vec::new(), Vec::new()); names.len()];
    let (mut file_lz4, mut file_off) = (Vec::new(), Vec::new());
    let (mut bytes_lz4, mut bytes_off) = (0, 0);
    // The frame's messages, logged once; only their encoding is timed.
    let cloud = unproject(
        depth,
        camera,
        &UnprojectOptions::default(),
        Some(color.as_flattened()),
    )?;
    let (stream, storage) = rerun::RecordingStreamBuilder::new("anydepth_bench").memory()?;
    let recording = Recording::from_stream(stream);
    recording.set_frame(0);
    recording.log_rgb8(WIDTH, HEIGHT, color)?;
    recording.log_depth(depth)?;
    recording.log_cloud(paths::CLOUD, &cloud, PointRadius::Metres(0.002))?;
    recording.flush()?;
    let messages = storage.take();
    // The data chunks, found by entity (the others are a few bytes of metadata).
    let chunk_of = |entity: &str| -> Result<&LogMsg, Box<dyn std::error::Error>> {
        for message in &messages {
            if let LogMsg::ArrowMsg(_, arrow) = message {
                if rerun::log::Chunk::from_arrow_msg(arrow)?
                    .entity_path()
                    .to_string()
                    == format!("/{entity}")
                {
                    return Ok(message);
                }
            }
        }
        Err(format!("no chunk logged at {entity}").into())
    };
    let chunks = [
        chunk_of(paths::RGB)?,
        chunk_of(paths::DEPTH)?,
        chunk_of(paths::CLOUD)?,
    ];
    for _ in 0..runs {
        for (timings, message) in per_chunk.iter_mut().zip(chunks) {
            let t0 = Instant::now();
            drop(message.to_transport(Compression::LZ4)?);
            timings.0.push(t0.elapsed().as_secs_f64());
            let t0 = Instant::now();
            drop(message.to_transport(Compression::Off)?);
            timings.1.push(t0.elapsed().as_secs_f64());
        }
        for (options, times, bytes) in [
            (
                EncodingOptions::PROTOBUF_COMPRESSED,
                &mut file_lz4,
                &mut bytes_lz4,
            ),
            (
                EncodingOptions::PROTOBUF_UNCOMPRESSED,
                &mut file_off,
                &mut bytes_off,
            ),
        ] {
            let path = dir.join("encoded.rrd");
            let t0 = Instant::now();
            let file = std::fs::File::create(&path)?;
            let mut encoder = Encoder::new_eager(
                rerun::external::re_build_info::CrateVersion::LOCAL,
                options,
                file,
            )?;
            for message in &messages {
                encoder.append(message)?;
            }
            encoder.finish()?;
            drop(encoder.into_inner()?);
            times.push(t0.elapsed().as_secs_f64());
            *bytes = std::fs::metadata(&path)?.len();
            std::fs::remove_file(&path)?;
        }
    }
    println!("Rerun's encoding, chunk to transport form (LZ4 | no compression):");
    for (name, (lz4, off)) in names.iter().zip(per_chunk) {
        println!("  {name:34}{} | {}", stats(lz4), stats(off));
    }
    println!(
        "  whole frame into a file:          {} | {}  ({:.1} MB | {:.1} MB)",
        stats(file_lz4),
        stats(file_off),
        bytes_lz4 as f64 / 1e6,
        bytes_off as f64 / 1e6
    );
    Ok(())
}
