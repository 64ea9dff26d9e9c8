//! Stabilise jobs: a clip's per-frame relative disparity files in, the same frames with one
//! consistent scale and shift out ([`anydepth_geometry::stabilize`]), written as `.npy`
//! under the inputs' names.
//!
//! ```no_run
//! use anydepth_pipeline::stabilize::StabilizeRequest;
//!
//! # fn run() -> anydepth_pipeline::Result<()> {
//! let request = StabilizeRequest {
//!     disparity: vec!["depth/*.npy".into()],
//!     color: vec!["frames/*.jpg".into()],
//!     out: "steady".into(),
//!     ..Default::default()
//! };
//! let report = request.plan()?.run(&())?;
//! println!("{} frames written", report.written);
//! # Ok(())
//! # }
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anydepth_core::colormap::Colormap;
use anydepth_core::depth_io::read_depth_values;
use anydepth_core::{load_image, Disparity};
use anydepth_geometry::stabilize::{Loss, Motion, Stabilizer, StabilizerOptions};

use crate::error::{bail, ensure, Context, Result};
use crate::output::{self, Format};
use crate::sources;

/// What a stabilise job is asked to do.
#[derive(Clone, Debug, Default, PartialEq)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct StabilizeRequest {
    /// Relative disparity maps, one per frame (files, folders or globs, in name order):
    /// .npy as `anydepth depth` writes them, or .pfm/.exr.
    #[cfg_attr(
        feature = "clap",
        arg(long, value_name = "GLOB", num_args = 1.., required = true)
    )]
    pub disparity: Vec<PathBuf>,

    /// Colour images, one per disparity map and of its size (files, folders or globs, in
    /// name order): motion is estimated on them rather than on the disparity.
    #[cfg_attr(feature = "clap", arg(long, value_name = "GLOB", num_args = 1..))]
    pub color: Vec<PathBuf>,

    /// Output folder (created if missing): each frame as float32 .npy, named as its input.
    #[cfg_attr(feature = "clap", arg(short, long, value_name = "DIR"))]
    pub out: PathBuf,

    /// Replace existing outputs.
    #[cfg_attr(feature = "clap", arg(long))]
    pub force: bool,

    /// How frames are placed.
    #[cfg_attr(feature = "clap", command(flatten))]
    pub settings: StabilizeSettings,
}

/// How frames are placed: [`StabilizerOptions`] as flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct StabilizeSettings {
    /// Every N frames the stabilised frame becomes a keyframe, which later frames are
    /// fitted to as well (against drift).
    #[cfg_attr(
        feature = "clap",
        arg(
            long,
            value_name = "N",
            default_value_t = StabilizeSettings::default().keyframe_interval
        )
    )]
    pub keyframe_interval: usize,

    /// Keyframes kept (the latest); 0 fits each frame to the previous one only.
    #[cfg_attr(
        feature = "clap",
        arg(long, value_name = "N", default_value_t = StabilizeSettings::default().keyframes)
    )]
    pub keyframes: usize,

    /// Largest motion between consecutive frames that is searched, in pixels.
    #[cfg_attr(
        feature = "clap",
        arg(
            long = "max-shift",
            value_name = "PX",
            default_value_t = StabilizeSettings::default().max_shift_px
        )
    )]
    pub max_shift_px: u32,

    /// The camera does not move: each pixel corresponds to the same pixel in every frame.
    #[cfg_attr(
        feature = "clap",
        arg(long = "static", conflicts_with = "max_shift_px")
    )]
    pub static_camera: bool,

    /// Loss of each frame's scale-and-shift fit.
    #[cfg_attr(
        feature = "clap",
        arg(long, value_enum, default_value_t = FitLoss::Robust)
    )]
    pub loss: FitLoss,
}

impl Default for StabilizeSettings {
    fn default() -> Self {
        let options = StabilizerOptions::default();
        let max_shift_px = match options.motion {
            Motion::Translation { max_shift_px } => max_shift_px,
            Motion::Static => 0,
        };
        Self {
            keyframe_interval: options.keyframe_interval,
            keyframes: options.max_keyframes,
            max_shift_px,
            static_camera: matches!(options.motion, Motion::Static),
            loss: FitLoss::from(options.loss),
        }
    }
}

impl StabilizeSettings {
    /// The options of the stabiliser.
    pub fn options(&self) -> StabilizerOptions {
        StabilizerOptions {
            motion: if self.static_camera {
                Motion::Static
            } else {
                Motion::Translation {
                    max_shift_px: self.max_shift_px,
                }
            },
            keyframe_interval: self.keyframe_interval,
            max_keyframes: self.keyframes,
            loss: match self.loss {
                FitLoss::Robust => Loss::Robust,
                FitLoss::LeastSquares => Loss::LeastSquares,
            },
            ..StabilizerOptions::default()
        }
    }
}

/// [`Loss`] on the command line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum FitLoss {
    /// Least median of squares, then Tukey IRLS: pairs on moving objects and occlusions
    /// are left out.
    #[default]
    #[cfg_attr(feature = "clap", value(name = "robust"))]
    Robust,
    /// Plain least squares: every pair counts.
    #[cfg_attr(feature = "clap", value(name = "least-squares"))]
    LeastSquares,
}

impl From<Loss> for FitLoss {
    fn from(loss: Loss) -> Self {
        match loss {
            Loss::Robust => Self::Robust,
            Loss::LeastSquares => Self::LeastSquares,
        }
    }
}

/// One frame's files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StabilizeFrame {
    /// The relative disparity read.
    pub disparity: PathBuf,
    /// The colour image beside it, if any.
    pub color: Option<PathBuf>,
    /// Where the stabilised disparity goes.
    pub output: PathBuf,
}

/// A validated [`StabilizeRequest`]: every frame's files, and the stabiliser's options.
#[derive(Clone, Debug, PartialEq)]
pub struct StabilizePlan {
    /// The frames, in clip order.
    pub frames: Vec<StabilizeFrame>,
    /// How frames are placed.
    pub options: StabilizerOptions,
    /// Replace existing outputs.
    pub force: bool,
}

/// Hears of a stabilise job's progress; every method has a default that does nothing.
pub trait StabilizeObserver {
    /// The number of frames about to be stabilised.
    fn frames(&self, _count: usize) {}

    /// The frame about to be read.
    fn item(&self, _name: &str) {}

    /// One frame is written.
    fn advance(&self) {}
}

/// Hears nothing.
impl StabilizeObserver for () {}

/// What a stabilise job did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StabilizeReport {
    /// Frames written.
    pub written: usize,
    /// Frames that overlapped no earlier frame (a cut, or motion beyond `--max-shift`):
    /// their median and spread were matched to the previous frame's instead.
    pub unanchored: Vec<PathBuf>,
    /// The smallest and largest scale applied to a frame (1 for the first).
    pub scale_range: (f64, f64),
}

impl StabilizeRequest {
    /// Validates the request and lists its frames (before anything is read).
    ///
    /// # Errors
    /// When the options are invalid, the inputs name nothing, the colour images are not one
    /// per disparity map, two inputs would write the same output, an output would replace
    /// an input, or an output exists and `force` is false.
    pub fn plan(&self) -> Result<StabilizePlan> {
        let options = self.settings.options();
        options.validate()?;
        ensure!(
            !self.disparity.is_empty(),
            "give the disparity maps with --disparity GLOB"
        );
        let disparity = sources::expand_files(&self.disparity)?;
        ensure!(!disparity.is_empty(), "--disparity names no files");
        let color = if self.color.is_empty() {
            Vec::new()
        } else {
            sources::expand_images(&self.color)?.files
        };
        if !color.is_empty() && color.len() != disparity.len() {
            bail!(
                "{} colour images for {} disparity maps: --color and --disparity must name as \
                 many files",
                color.len(),
                disparity.len()
            );
        }
        let mut by_output: BTreeMap<PathBuf, &Path> = BTreeMap::new();
        let mut colors = color.into_iter();
        let mut frames = Vec::with_capacity(disparity.len());
        for file in &disparity {
            let output = output::output_path(&self.out, &sources::stem(file), Format::Npy);
            if let Some(other) = by_output.insert(output.clone(), file) {
                bail!(
                    "two inputs would write the same output {}: {} and {}",
                    output.display(),
                    other.display(),
                    file.display()
                );
            }
            frames.push(StabilizeFrame {
                disparity: file.clone(),
                color: colors.next(),
                output,
            });
        }
        for frame in &frames {
            if same_file(&frame.output, &frame.disparity) {
                bail!(
                    "the output would replace its input (choose another --out): {}",
                    frame.disparity.display()
                );
            }
            if frame.output.exists() && !self.force {
                bail!(
                    "refusing to overwrite an existing output (pass --force to replace it): {}",
                    frame.output.display()
                );
            }
        }
        Ok(StabilizePlan {
            frames,
            options,
            force: self.force,
        })
    }
}

/// Whether two paths name the same existing file.
fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

impl StabilizePlan {
    /// Reads, stabilises and writes the frames in order, one at a time (the stabiliser keeps
    /// only the previous frame and its keyframes).
    ///
    /// # Errors
    /// When a file cannot be read or written, a disparity map's size differs from the first
    /// one's, or a colour image's from its disparity map's; the message names the file. The
    /// job stops there; the frames before it are written.
    pub fn run(&self, observer: &dyn StabilizeObserver) -> Result<StabilizeReport> {
        let mut stabilizer = Stabilizer::new(self.options)?;
        let mut report = StabilizeReport {
            scale_range: (f64::INFINITY, f64::NEG_INFINITY),
            ..Default::default()
        };
        let mut first_size: Option<(u32, u32)> = None;
        observer.frames(self.frames.len());
        for frame in &self.frames {
            observer.item(&frame.disparity.to_string_lossy());
            let disparity = read_depth_values::<Disparity>(&frame.disparity, 1.0)?;
            let size = (disparity.width(), disparity.height());
            let (w, h) = size;
            let (fw, fh) = *first_size.get_or_insert(size);
            ensure!(
                size == (fw, fh),
                "disparity map is {w} x {h} but the clip's first is {fw} x {fh}: {}",
                frame.disparity.display()
            );
            let color = match &frame.color {
                Some(path) => {
                    let image = load_image(path)?;
                    ensure!(
                        (image.width, image.height) == size,
                        "colour image is {} x {} but its disparity map is {w} x {h}: {}",
                        image.width,
                        image.height,
                        path.display()
                    );
                    Some(image)
                }
                None => None,
            };
            let placed = stabilizer
                .push_with_report(&disparity, color.as_ref())
                .with_context(|| format!("cannot stabilise {}", frame.disparity.display()))?;
            output::write_output(
                &frame.output,
                Format::Npy,
                placed.disparity.data(),
                w,
                h,
                None,
                Colormap::default(),
                self.force,
            )?;
            if placed.anchors == 0 && stabilizer.frames() > 1 {
                report.unanchored.push(frame.disparity.clone());
            }
            let scale = placed.scale_shift.scale;
            report.scale_range = (
                report.scale_range.0.min(scale),
                report.scale_range.1.max(scale),
            );
            report.written += 1;
            observer.advance();
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_npy(path: &Path, w: usize, h: usize, f: impl Fn(f64, f64) -> f64) {
        let values: Vec<f32> = (0..h)
            .flat_map(|y| (0..w).map(move |x| (x as f64, y as f64)))
            .map(|(x, y)| f(x, y) as f32)
            .collect();
        std::fs::write(path, anydepth_core::npy::encode_f32(&values, &[h, w])).expect("write");
    }

    fn field(x: f64, y: f64) -> f64 {
        1.5 + 0.4 * (0.21 * x).sin() * (0.17 * y).cos() + 0.2 * (0.05 * x + 0.09 * y).cos()
    }

    #[test]
    fn stabilize_job_writes_every_frame_in_the_first_frames_units() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (w, h) = (80, 60);
        let frames = [(0.0, 1.0, 0.0), (3.0, 2.0, 0.5), (6.5, 0.5, -0.2)];
        for (i, &(dx, scale, shift)) in frames.iter().enumerate() {
            let path = dir.path().join(format!("f{i}.npy"));
            write_npy(&path, w, h, |x, y| scale * field(x + dx, y) + shift);
        }
        let out = dir.path().join("out");
        let request = StabilizeRequest {
            disparity: vec![dir.path().join("f*.npy")],
            out: out.clone(),
            ..Default::default()
        };
        let plan = request.plan().expect("valid");
        assert_eq!(plan.frames.len(), 3);
        assert_eq!(plan.frames[2].output, out.join("f2.npy"));
        let report = plan.run(&()).expect("runs");
        assert_eq!(report.written, 3);
        assert!(report.unanchored.is_empty());
        let (_, last) = anydepth_core::npy::read_f32(&out.join("f2.npy")).expect("written");
        let expected = field(6.5 + 10.0, 20.0);
        assert!((f64::from(last[20 * w + 10]) - expected).abs() < 1e-3);

        // The outputs exist now: refused without force, replaced with it.
        let message = request.plan().expect_err("exists").to_string();
        assert!(
            message.contains("--force") && message.contains("f0.npy"),
            "{message}"
        );
        let forced = StabilizeRequest {
            force: true,
            ..request.clone()
        };
        forced.plan().expect("force").run(&()).expect("runs again");

        // Writing into the inputs' folder would replace them.
        let into_inputs = StabilizeRequest {
            out: dir.path().to_path_buf(),
            force: true,
            ..request
        };
        let message = into_inputs.plan().expect_err("replaces inputs").to_string();
        assert!(message.contains("replace its input"), "{message}");
    }

    #[test]
    fn stabilize_job_refuses_mismatched_inputs_naming_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        write_npy(&dir.path().join("a.npy"), 40, 30, field);
        write_npy(&dir.path().join("b.npy"), 41, 30, field);
        let request = StabilizeRequest {
            disparity: vec![dir.path().join("*.npy")],
            color: vec![dir.path().join("a.npy")],
            out: dir.path().join("out"),
            ..Default::default()
        };
        let message = request.plan().expect_err("count").to_string();
        assert!(
            message.contains("1 colour images for 2 disparity maps"),
            "{message}"
        );
        let request = StabilizeRequest {
            color: Vec::new(),
            ..request
        };
        let message = request
            .plan()
            .expect("plan")
            .run(&())
            .expect_err("size")
            .to_string();
        assert!(
            message.contains("41 x 30") && message.ends_with("b.npy"),
            "{message}"
        );
        let bad = StabilizeRequest {
            settings: StabilizeSettings {
                keyframe_interval: 0,
                ..Default::default()
            },
            ..request
        };
        assert!(bad.plan().is_err());
    }
}
