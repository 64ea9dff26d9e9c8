//! Video jobs: clips in (video files, image sequences, live sources), depth per frame out,
//! as files per frame and as videos.
//!
//! A clip runs through Video Depth Anything (windowed, or streaming for live sources) or,
//! frame by frame, through a V1/V2 model, whose relative depth `stabilize` can make
//! consistent over the clip. Frames are decoded ahead on their own thread into a bounded
//! queue; a clip is never held in memory whole.
//!
//! Outputs, per clip:
//! - per-frame files in `OUT/<clip stem>/`, named by the zero-based frame index with six
//!   digits (`000000.npy`, `000000_depth16.png`, ...); for an image sequence,
//!   `OUT/<frame stem>.npy` and so on;
//! - videos `OUT/<clip stem>_depth.mp4` (colour-mapped depth) and `OUT/<clip stem>_side.mp4`
//!   (the frame beside it), with the clip's frame count and frame rate. Colours use one
//!   range for the whole clip, fixed from its first [`COLOR_RANGE_FRAMES`] frames, so a
//!   depth keeps its colour from frame to frame.
//!
//! When a clip's decoding fails midway (a damaged file), the frames decoded before are
//! written and the clip's videos are finished; the clip's report carries the error, naming
//! the frame.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use anydepth_core::colormap::Colormap;
use anydepth_core::{load_image, Prediction, RgbImage};
use anydepth_geometry::stabilize::{Stabilizer, StabilizerOptions};
use anydepth_model::{ClipDepth, ClipEngine, ClipMode, DepthEngine};
use anydepth_video::{FrameRate, OpenOptions, VideoSource, VideoWriter, WriterOptions};

use crate::error::{bail, chain_text, Context, Result};
use crate::model::ModelRequest;
use crate::output::{self, Format};
use crate::sources;

/// Frames whose depth sets the colour range of a clip's videos.
pub const COLOR_RANGE_FRAMES: usize = 32;

/// Frame rate given to an image sequence's videos and timeline when none is asked for.
pub const DEFAULT_SEQUENCE_FPS: f64 = 30.0;

/// Frames decoded ahead of the network.
const DECODE_AHEAD: usize = 4;

/// What the inputs of a video job are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClipKind {
    /// Each input is a video file (anything FFmpeg decodes), one clip each.
    #[default]
    Files,
    /// The inputs (folders, globs, files) are the frames of one clip, in name order.
    Sequence,
    /// The input is a live source FFmpeg opens (`/dev/video0`, `rtsp://...`, a pipe):
    /// frames are dropped rather than queued when the network falls behind.
    Live,
}

/// What a video job is asked to do.
#[derive(Clone, Debug, PartialEq)]
pub struct VideoJob {
    /// Video files; with [`ClipKind::Sequence`], the frames; with [`ClipKind::Live`], the
    /// source.
    pub inputs: Vec<PathBuf>,
    /// What the inputs are.
    pub kind: ClipKind,
    /// Output folder (created if missing).
    pub out_dir: PathBuf,
    /// The depth model that runs (a Video Depth Anything checkpoint, or any Depth
    /// Anything model run per frame).
    pub model: ModelRequest,
    /// Run a V1/V2 model on each frame rather than Video Depth Anything.
    pub per_frame: bool,
    /// Make a per-frame model's relative depth consistent over the clip.
    pub stabilize: bool,
    /// How Video Depth Anything goes through a clip [default: windowed, streaming for a
    /// live source].
    pub mode: Option<ClipMode>,
    /// Largest depth of a per-frame metric model, in metres.
    pub max_depth_m: Option<f64>,
    /// Outputs: per-frame formats and videos ([`Format::Mp4`], [`Format::SideBySideMp4`]).
    pub formats: Vec<Format>,
    /// Colour map of the colour outputs.
    pub colormap: Colormap,
    /// Frame rate of an image sequence [default: [`DEFAULT_SEQUENCE_FPS`]].
    pub fps: Option<f64>,
    /// Stop each clip after this many frames.
    pub max_frames: Option<u64>,
    /// Replace existing outputs (otherwise a clip with outputs is refused).
    pub force: bool,
}

/// Where a clip's frames come from.
#[derive(Clone, Debug, PartialEq)]
pub enum ClipSource {
    /// A video file.
    File(PathBuf),
    /// Image files, in order, all of one size.
    Sequence(Vec<PathBuf>),
    /// A live source as FFmpeg opens it.
    Live(String),
}

/// One clip of a planned job.
#[derive(Clone, Debug, PartialEq)]
pub struct ClipPlan {
    /// The name outputs are based on (the file's stem, the sequence's folder).
    pub name: String,
    /// Where its frames come from.
    pub source: ClipSource,
    /// The folder its per-frame files go to.
    pub frames_dir: PathBuf,
}

impl ClipPlan {
    /// The file a video format writes for this clip in `out_dir`.
    pub fn video_path(&self, out_dir: &Path, format: Format) -> PathBuf {
        output::output_path(out_dir, &self.name, format)
    }
}

/// A validated [`VideoJob`].
#[derive(Clone, Debug, PartialEq)]
pub struct VideoPlan {
    /// The clips, in order.
    pub clips: Vec<ClipPlan>,
    /// Formats written per frame.
    pub frame_formats: Vec<Format>,
    /// Videos written per clip.
    pub video_formats: Vec<Format>,
    /// How Video Depth Anything goes through the clips.
    pub mode: ClipMode,
}

/// What happened to one clip.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClipReport {
    /// The clip's name.
    pub name: String,
    /// Frames whose outputs were written.
    pub frames: u64,
    /// Frames a live source dropped because the network was behind.
    pub dropped: u64,
    /// Seconds from the first frame decoded to the last output written.
    pub seconds: f64,
    /// Why the clip ended early (the frames before were written).
    pub error: Option<String>,
}

/// What a video job did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VideoReport {
    /// One report per clip, in order.
    pub clips: Vec<ClipReport>,
}

impl VideoReport {
    /// Whether every clip ran to its end.
    pub fn all_ok(&self) -> bool {
        self.clips.iter().all(|c| c.error.is_none())
    }
}

/// Hears of a video job's progress; every method has a default that does nothing.
pub trait VideoObserver: Sync {
    /// A clip starts; `frames` is its length when known.
    fn clip(&self, _name: &str, _frames: Option<u64>) {}

    /// One frame's outputs were written.
    fn frame(&self) {}

    /// Something the user should know.
    fn note(&self, _text: &str) {}

    /// Whether [`VideoObserver::log`] wants the results.
    fn logs(&self) -> bool {
        false
    }

    /// A frame's result at `time_secs` in its clip, while its files are written.
    ///
    /// # Errors
    /// Whatever the observer met; it ends the job.
    fn log(
        &self,
        _clip: &str,
        _index: u64,
        _time_secs: f64,
        _image: &RgbImage,
        _prediction: &Prediction,
    ) -> std::result::Result<(), crate::BoxError> {
        Ok(())
    }
}

/// The video file extensions (lower case) that make an input a clip.
pub const VIDEO_EXTENSIONS: [&str; 12] = [
    "mp4", "mov", "mkv", "webm", "avi", "m4v", "mpg", "mpeg", "ts", "wmv", "flv", "3gp",
];

/// Whether `path` is a video file by its extension.
pub fn is_video_name(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| VIDEO_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

impl VideoJob {
    /// Validates the job and lists its clips (before any model is loaded).
    ///
    /// # Errors
    /// When the options contradict each other, an input names nothing, a sequence mixes
    /// frame sizes (naming the first odd file), or outputs exist without `force`.
    pub fn plan(&self) -> Result<VideoPlan> {
        self.model.spec(self.max_depth_m)?;
        if self.stabilize && !self.per_frame && self.model.weights.is_none() {
            bail!(
                "--stabilize steadies a per-frame model's depth; Video Depth Anything is steady \
                 already: add --per-frame to run a V1/V2 model on each frame"
            );
        }
        if self.stabilize && self.model.metric.is_some() {
            bail!("--stabilize is for relative depth; a metric model's depth has its scale");
        }
        if let Some(fps) = self.fps {
            if !(fps.is_finite() && fps > 0.0) {
                bail!("--fps must be a positive number of frames per second, got {fps}");
            }
        }
        if self.max_frames == Some(0) {
            bail!("--max-frames must be at least 1");
        }
        let mut formats = self.formats.clone();
        formats.dedup();
        if formats.is_empty() {
            bail!("--formats lists nothing to write");
        }
        let (video_formats, frame_formats): (Vec<Format>, Vec<Format>) =
            formats.into_iter().partition(|f| f.is_video());
        // Without FFmpeg, said before any frame is read (not after the frames' files).
        let needs_ffmpeg = match self.kind {
            ClipKind::Sequence if video_formats.is_empty() => None,
            ClipKind::Sequence => Some("write videos"),
            ClipKind::Files | ClipKind::Live => Some("read videos"),
        };
        if let Some(what) = needs_ffmpeg.filter(|_| !anydepth_video::HAS_FFMPEG) {
            return Err(anydepth_video::Error::NoFfmpeg(what.into()).into());
        }
        let clips = match self.kind {
            ClipKind::Files => self.plan_files()?,
            ClipKind::Sequence => vec![self.plan_sequence()?],
            ClipKind::Live => {
                let [source] = self.inputs.as_slice() else {
                    bail!("--live takes one source, got {}", self.inputs.len());
                };
                let name = live_name(source);
                vec![ClipPlan {
                    frames_dir: self.out_dir.join(&name),
                    name,
                    source: ClipSource::Live(source.to_string_lossy().into_owned()),
                }]
            }
        };
        let plan = VideoPlan {
            clips,
            frame_formats,
            video_formats,
            mode: self.mode.unwrap_or(if self.kind == ClipKind::Live {
                ClipMode::Streaming
            } else {
                ClipMode::Windowed
            }),
        };
        if !self.force {
            self.refuse_existing(&plan)?;
        }
        Ok(plan)
    }

    fn plan_files(&self) -> Result<Vec<ClipPlan>> {
        let mut clips: Vec<ClipPlan> = Vec::new();
        for file in sources::expand_files(&self.inputs)? {
            if !is_video_name(&file) {
                bail!(
                    "not a video by its extension ({}): {}; pass --sequence for a folder of frames",
                    VIDEO_EXTENSIONS.join(", "),
                    file.display()
                );
            }
            let name = sources::stem(&file);
            if let Some(other) = clips.iter().find(|c| c.name == name) {
                bail!(
                    "two clips would write the same outputs ({name}): {:?} and {}",
                    other.source,
                    file.display()
                );
            }
            clips.push(ClipPlan {
                frames_dir: self.out_dir.join(&name),
                name,
                source: ClipSource::File(file),
            });
        }
        Ok(clips)
    }

    fn plan_sequence(&self) -> Result<ClipPlan> {
        let inputs = sources::expand_images(&self.inputs)?;
        let mut size = None;
        for file in &inputs.files {
            let this = anydepth_core::image::image_size(file)
                .with_context(|| format!("cannot read frame {}", file.display()))?;
            match size {
                None => size = Some((this, file)),
                Some(((w, h), first)) if (w, h) != this => bail!(
                    "frames of a sequence must have one size: {} is {} x {}, but {} is {w} x {h}",
                    file.display(),
                    this.0,
                    this.1,
                    first.display()
                ),
                Some(_) => {}
            }
        }
        let name = self
            .inputs
            .first()
            .map(|p| {
                let p = if p.is_dir() {
                    p.as_path()
                } else {
                    p.parent().unwrap_or(p)
                };
                p.canonicalize()
                    .ok()
                    .and_then(|c| c.file_name().map(|n| n.to_string_lossy().into_owned()))
                    .unwrap_or_else(|| "sequence".into())
            })
            .unwrap_or_else(|| "sequence".into());
        Ok(ClipPlan {
            name,
            frames_dir: self.out_dir.clone(),
            source: ClipSource::Sequence(inputs.files),
        })
    }

    /// Refuses clips whose first frame's outputs or videos exist.
    fn refuse_existing(&self, plan: &VideoPlan) -> Result<()> {
        for clip in &plan.clips {
            let first = match &clip.source {
                ClipSource::Sequence(files) => files.first().map(|f| sources::stem(f)),
                _ => Some(frame_stem(0)),
            };
            let frame_files = first.into_iter().flat_map(|stem| {
                plan.frame_formats
                    .iter()
                    .map(move |&f| output::output_path(&clip.frames_dir, &stem, f))
            });
            let videos = plan
                .video_formats
                .iter()
                .map(|&f| clip.video_path(&self.out_dir, f));
            if let Some(existing) = frame_files.chain(videos).find(|p| p.exists()) {
                bail!(
                    "outputs of {} exist (pass --force to replace them): {}",
                    clip.name,
                    existing.display()
                );
            }
        }
        Ok(())
    }

    /// Runs every clip of `plan` through `engine`. A clip that fails midway keeps what was
    /// written and the next clip runs; `stop` (Ctrl-C) ends the current clip cleanly and
    /// the job.
    ///
    /// # Errors
    /// When the engine does not suit the job (for example `stabilize` with Video Depth
    /// Anything), the output folder cannot be made, or the observer fails.
    pub fn run(
        &self,
        plan: &VideoPlan,
        engine: &ClipEngine,
        observer: &dyn VideoObserver,
        stop: &AtomicBool,
    ) -> Result<VideoReport> {
        match engine {
            ClipEngine::Video(video) if self.stabilize => bail!(
                "--stabilize is for per-frame models; {} is steady already",
                video.config().describe()
            ),
            ClipEngine::PerFrame(e)
                if self.stabilize && e.config().head != anydepth_model::Head::Relative =>
            {
                bail!(
                    "--stabilize is for relative depth; {} gives metres",
                    e.config().describe()
                )
            }
            _ => {}
        }
        std::fs::create_dir_all(&self.out_dir).with_context(|| {
            format!("cannot create the output folder {}", self.out_dir.display())
        })?;
        let mut report = VideoReport::default();
        for clip in &plan.clips {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            report
                .clips
                .push(self.run_clip(plan, clip, engine, observer, stop)?);
        }
        Ok(report)
    }

    fn run_clip(
        &self,
        plan: &VideoPlan,
        clip: &ClipPlan,
        engine: &ClipEngine,
        observer: &dyn VideoObserver,
        stop: &AtomicBool,
    ) -> Result<ClipReport> {
        let start = Instant::now();
        let mut report = ClipReport {
            name: clip.name.clone(),
            ..Default::default()
        };
        let mut source = match self.open(clip) {
            Ok(source) => source,
            Err(e) => {
                report.error = Some(chain_text(&e));
                return Ok(report);
            }
        };
        observer.clip(&clip.name, source.frames);
        if source.variable_rate {
            observer.note(&format!(
                "{}: variable frame rate; its videos keep the frames' own times",
                clip.name
            ));
        }
        let keep_images = observer.logs()
            || plan
                .frame_formats
                .iter()
                .chain(&plan.video_formats)
                .any(|f| matches!(f, Format::SideBySide | Format::SideBySideMp4));
        let mut depth = FrameDepth::start(engine, plan.mode, self.stabilize)?;
        let mut sink = ClipSink {
            job: self,
            plan,
            clip,
            rate: source.rate,
            videos: None,
            color_range: None,
            first_time: None,
            waiting: Vec::new(),
            observer,
        };
        let mut held: VecDeque<SourceFrame> = VecDeque::new();
        let mut failure: Option<String> = None;
        let mut received = 0u64;
        for item in source.by_ref() {
            let mut frame = match item {
                Ok(frame) => frame,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            };
            received += 1;
            let image = if keep_images {
                frame.image.clone()
            } else {
                std::mem::replace(&mut frame.image, empty_image())
            };
            held.push_back(frame);
            match depth.push(&image) {
                Ok(out) => sink.write_all(out, &mut held, &mut report)?,
                Err(e) => {
                    failure = Some(format!("frame {}: {e}", received - 1));
                    break;
                }
            }
            if stop.load(Ordering::Relaxed) || self.max_frames.is_some_and(|m| received >= m) {
                break;
            }
        }
        // Frames decoded before a failure or a stop are still written.
        if received > 0 {
            match depth.finish() {
                Ok(out) => sink.write_all(out, &mut held, &mut report)?,
                Err(e) => failure = failure.or(Some(e.to_string())),
            }
        } else if failure.is_none() {
            failure = Some("the clip has no frames".into());
        }
        sink.finish()?;
        report.dropped = source.dropped();
        report.error = failure;
        report.seconds = start.elapsed().as_secs_f64();
        Ok(report)
    }

    /// Starts decoding a clip on its own thread.
    fn open(&self, clip: &ClipPlan) -> Result<FrameStream> {
        let open = |input: &Path, options: OpenOptions| -> Result<FrameStream> {
            let source = VideoSource::open(input, &options)?;
            let info = source.info();
            Ok(FrameStream {
                frames: info.frame_count,
                variable_rate: info.variable_frame_rate,
                // Without a rate in the container, videos are written at the sequence default.
                rate: info
                    .frame_rate
                    .unwrap_or_else(|| rate_of(DEFAULT_SEQUENCE_FPS)),
                decoded: Frames::Video(source),
            })
        };
        match &clip.source {
            ClipSource::Sequence(files) => Ok(open_sequence(
                files.clone(),
                self.fps.unwrap_or(DEFAULT_SEQUENCE_FPS),
            )),
            ClipSource::File(path) => open(
                path,
                OpenOptions {
                    queue_frames: DECODE_AHEAD,
                    ..OpenOptions::file()
                },
            ),
            // A live source keeps only its newest frames: latency stays bounded.
            ClipSource::Live(source) => open(Path::new(source), OpenOptions::live()),
        }
    }
}

/// The name of a live source's outputs: its last path component (`video0`, a stream
/// name), or `live`.
fn live_name(source: &Path) -> String {
    source
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || "-_.".contains(c)))
        .unwrap_or_else(|| "live".into())
}

/// A 0 x 0 image: what is held of a frame whose pixels no output needs.
fn empty_image() -> RgbImage {
    RgbImage {
        width: 0,
        height: 0,
        data: Vec::new(),
    }
}

/// The file stem of frame `index` of a video: six digits.
pub fn frame_stem(index: u64) -> String {
    format!("{index:06}")
}

/// A decoded frame on its way through the job.
#[derive(Debug)]
struct SourceFrame {
    index: u64,
    time_secs: f64,
    /// The stem its per-frame files are named after.
    stem: String,
    image: RgbImage,
}

/// A clip being decoded ahead on a thread of its own.
struct FrameStream {
    decoded: Frames,
    /// The clip's length when known.
    frames: Option<u64>,
    rate: FrameRate,
    /// Whether the container says its frame intervals vary.
    variable_rate: bool,
}

enum Frames {
    Video(VideoSource),
    Sequence(mpsc::Receiver<std::result::Result<SourceFrame, String>>),
}

impl FrameStream {
    /// Frames a live source dropped because the network was behind.
    fn dropped(&self) -> u64 {
        match &self.decoded {
            Frames::Video(source) => source.dropped_frames(),
            Frames::Sequence(_) => 0,
        }
    }
}

impl Iterator for FrameStream {
    type Item = std::result::Result<SourceFrame, String>;

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.decoded {
            Frames::Sequence(rx) => rx.recv().ok(),
            Frames::Video(source) => Some(
                source
                    .next()?
                    .map(|f| SourceFrame {
                        index: f.index,
                        time_secs: f.time_secs,
                        stem: frame_stem(f.index),
                        image: f.to_rgb_image(),
                    })
                    .map_err(|e| match e {
                        anydepth_video::Error::Damaged { frame_index, .. }
                        | anydepth_video::Error::Truncated { frame_index, .. } => {
                            format!("frame {frame_index}: {e}")
                        }
                        e => e.to_string(),
                    }),
            ),
        }
    }
}

fn open_sequence(files: Vec<PathBuf>, fps: f64) -> FrameStream {
    let (tx, rx) = mpsc::sync_channel(DECODE_AHEAD);
    let frames = files.len() as u64;
    std::thread::spawn(move || {
        for (i, file) in files.iter().enumerate() {
            let frame = load_image(file)
                .map(|image| SourceFrame {
                    index: i as u64,
                    time_secs: i as f64 / fps,
                    stem: sources::stem(file),
                    image,
                })
                .map_err(|e| format!("frame {i} ({}): {e}", file.display()));
            let failed = frame.is_err();
            if tx.send(frame).is_err() || failed {
                return;
            }
        }
    });
    FrameStream {
        decoded: Frames::Sequence(rx),
        frames: Some(frames),
        rate: rate_of(fps),
        variable_rate: false,
    }
}

/// `fps` as a fraction (to a thousandth of a frame per second).
fn rate_of(fps: f64) -> FrameRate {
    let num = (fps * 1000.0).round().clamp(1.0, f64::from(i32::MAX)) as u32;
    FrameRate::new(num, 1000)
}

/// The model a clip runs through.
enum FrameDepth<'e> {
    Video(Box<dyn ClipDepth + 'e>),
    PerFrame {
        engine: &'e dyn DepthEngine,
        stabilizer: Option<Stabilizer>,
    },
}

impl<'e> FrameDepth<'e> {
    fn start(engine: &'e ClipEngine, mode: ClipMode, stabilize: bool) -> Result<Self> {
        Ok(match engine {
            ClipEngine::Video(video) => Self::Video(video.start(mode)),
            ClipEngine::PerFrame(engine) => Self::PerFrame {
                engine: engine.as_ref(),
                stabilizer: if stabilize {
                    Some(Stabilizer::new(StabilizerOptions::default())?)
                } else {
                    None
                },
            },
        })
    }

    fn push(&mut self, image: &RgbImage) -> Result<Vec<Prediction>> {
        match self {
            Self::Video(clip) => Ok(clip.push(image)?),
            Self::PerFrame { engine, stabilizer } => {
                let prediction = engine.predict(image)?;
                let Some(stabilizer) = stabilizer else {
                    return Ok(vec![prediction]);
                };
                let Prediction::Disparity(disparity) = prediction else {
                    bail!("only relative depth can be stabilised");
                };
                let steady = stabilizer.push(&disparity, Some(image))?;
                Ok(vec![Prediction::Disparity(steady)])
            }
        }
    }

    fn finish(self) -> Result<Vec<Prediction>> {
        match self {
            Self::Video(clip) => Ok(clip.finish()?),
            Self::PerFrame { .. } => Ok(Vec::new()),
        }
    }
}

/// What the videos still need of a frame whose depth waits for the colour range.
struct WaitingFrame {
    time_secs: f64,
    /// The frame as 8-bit RGB (a quarter of its float size), for [`Format::SideBySideMp4`].
    photo_rgb8: Option<Vec<u8>>,
    prediction: Prediction,
}

/// Writes a clip's outputs as its depth comes out.
struct ClipSink<'a> {
    job: &'a VideoJob,
    plan: &'a VideoPlan,
    clip: &'a ClipPlan,
    rate: FrameRate,
    /// The videos being written, once the colour range is known.
    videos: Option<Vec<(Format, VideoWriter)>>,
    color_range: Option<(f32, f32)>,
    /// Time of the first frame written to the videos, which start at zero.
    first_time: Option<f64>,
    /// Frames waiting for the colour range (at most [`COLOR_RANGE_FRAMES`]).
    waiting: Vec<WaitingFrame>,
    observer: &'a dyn VideoObserver,
}

impl ClipSink<'_> {
    /// Writes `predictions`, the depth of the oldest `held` frames, in order.
    fn write_all(
        &mut self,
        predictions: Vec<Prediction>,
        held: &mut VecDeque<SourceFrame>,
        report: &mut ClipReport,
    ) -> Result<()> {
        for prediction in predictions {
            let frame = held
                .pop_front()
                .context("the model returned more frames than it was given")?;
            self.write_frame(&frame, &prediction)?;
            report.frames += 1;
            self.observer.frame();
            if self.plan.video_formats.is_empty() {
                continue;
            }
            let side_by_side = self.plan.video_formats.contains(&Format::SideBySideMp4);
            self.waiting.push(WaitingFrame {
                time_secs: frame.time_secs,
                photo_rgb8: side_by_side.then(|| frame.image.to_rgb8().into_flattened()),
                prediction,
            });
            if self.color_range.is_none() && self.waiting.len() >= COLOR_RANGE_FRAMES {
                self.fix_color_range();
            }
            if self.color_range.is_some() {
                self.flush_videos()?;
            }
        }
        Ok(())
    }

    /// Per-frame files, with the result logged beside.
    fn write_frame(&self, frame: &SourceFrame, prediction: &Prediction) -> Result<()> {
        let log = self.observer.logs().then_some(|| {
            self.observer.log(
                &self.clip.name,
                frame.index,
                frame.time_secs,
                &frame.image,
                prediction,
            )
        });
        crate::run_beside(log, || {
            output::write_prediction(
                &self.clip.frames_dir,
                &frame.stem,
                &self.plan.frame_formats,
                prediction,
                Some(&frame.image),
                self.job.colormap,
                self.job.force,
            )
        })?
    }

    fn fix_color_range(&mut self) {
        let (lo, hi) = self
            .waiting
            .iter()
            .flat_map(|f| f.prediction.values().iter().copied())
            .filter(|v| v.is_finite())
            .fold((f32::MAX, f32::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
        self.color_range = Some(if lo <= hi { (lo, hi) } else { (0.0, 1.0) });
    }

    /// Encodes the waiting frames into the videos (opened at the first frame).
    fn flush_videos(&mut self) -> Result<()> {
        let Some((lo, hi)) = self.color_range else {
            return Ok(());
        };
        for frame in std::mem::take(&mut self.waiting) {
            let prediction = &frame.prediction;
            let (w, h) = (prediction.width(), prediction.height());
            if self.videos.is_none() {
                let mut videos = Vec::new();
                for &format in &self.plan.video_formats {
                    let width = if format == Format::SideBySideMp4 {
                        2 * w + output::SIDE_BY_SIDE_GAP_PX
                    } else {
                        w
                    };
                    let path = self.clip.video_path(&self.job.out_dir, format);
                    let options = WriterOptions {
                        overwrite: self.job.force,
                        ..WriterOptions::new(self.rate)
                    };
                    let writer = VideoWriter::create(&path, width, h, &options)?;
                    videos.push((format, writer));
                }
                self.videos = Some(videos);
            }
            let colors = self
                .job
                .colormap
                .apply_in_range(prediction.values(), lo, hi);
            let start = *self.first_time.get_or_insert(frame.time_secs);
            for (format, writer) in self.videos.iter_mut().flatten() {
                let rgb = match (*format, &frame.photo_rgb8) {
                    (Format::SideBySideMp4, Some(photo)) => {
                        output::side_by_side_rgb(photo, w, h, &colors)?
                    }
                    (Format::SideBySideMp4, None) => bail!("a side-by-side video needs the frames"),
                    _ => colors.clone(),
                };
                // The frames' own times: a variable frame rate is kept.
                writer.write_at(bytemuck::cast_slice(&rgb), frame.time_secs - start)?;
            }
        }
        Ok(())
    }

    /// Encodes what waits and finishes the videos.
    fn finish(mut self) -> Result<()> {
        if !self.waiting.is_empty() {
            if self.color_range.is_none() {
                self.fix_color_range();
            }
            self.flush_videos()?;
        }
        for (_, writer) in self.videos.take().into_iter().flatten() {
            writer.finish()?;
        }
        Ok(())
    }
}
