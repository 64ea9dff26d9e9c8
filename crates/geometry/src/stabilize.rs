//! Steady relative depth over a clip: one scale and shift per frame, so that every frame's
//! disparity is in the units of the first.
//!
//! Per-frame relative models (Depth Anything V1/V2) predict affine-invariant disparity whose
//! scale and shift change from frame to frame, so video depth flickers. A [`Stabilizer`]
//! takes the frames one at a time and returns each in the clip's units:
//!
//! 1. **Motion.** The view moves, so pixels correspond only after a global translation:
//!    zero-normalised cross-correlation (NCC) searched coarse to fine over an image pyramid,
//!    then refined to a fraction of a pixel by Gauss-Newton (Lucas-Kanade with a gain and a
//!    bias, so the disparity itself can be the image). The colour image is used when there
//!    is one, else the disparity. [`Motion::Static`] skips this for a fixed camera.
//! 2. **Correspondences.** The current frame's disparity is paired, over the overlap, with
//!    the previous *stabilised* frame and with the keyframes (each keyframe's offset
//!    predicted from the accumulated motion and refined on the images).
//! 3. **Fit.** `stabilised = scale * disparity + shift`, fitted over all pairs at once with
//!    [`crate::align`]'s robust fit (least median of squares, then Tukey IRLS) or least
//!    squares ([`Loss`]).
//! 4. **Keyframes.** Every `keyframe_interval` frames the stabilised frame becomes a
//!    keyframe; the latest `max_keyframes` are kept, so frames are fitted against older
//!    frames too and the scale does not drift as it would from neighbour to neighbour.
//!
//! Memory is bounded: the previous frame and the keyframes are all that is kept. A frame
//! that overlaps none of them (a cut, or motion larger than the search) has its median and
//! spread matched to the previous frame's instead, and starts a new set of keyframes.
//!
//! ```
//! use anydepth_core::{DepthMap, Disparity};
//! use anydepth_geometry::stabilize::{StabilizerOptions, Stabilizer};
//!
//! let (w, h) = (96u32, 72u32);
//! // A textured disparity field (not periodic: a texture that repeats matches at several
//! // shifts) seen through a window that moves `dx` pixels to the right, with the frame's
//! // own scale and shift as a per-frame model would give it.
//! let field = |x: f64, y: f64| {
//!     1.0 + 0.3 * (0.002 * x * x + 0.1 * y).sin() * (0.003 * y * y - 0.1 * x).cos()
//! };
//! let frame = |dx: f64, scale: f32, shift: f32| {
//!     let values = (0..h)
//!         .flat_map(|y| (0..w).map(move |x| field(f64::from(x) + dx, f64::from(y))))
//!         .map(|d| scale * d as f32 + shift)
//!         .collect();
//!     DepthMap::<Disparity>::new(w, h, values).expect("w x h values")
//! };
//! let mut stabilizer = Stabilizer::new(StabilizerOptions::default()).expect("valid options");
//! // The first frame sets the clip's units.
//! let first = stabilizer.push(&frame(0.0, 1.0, 0.0), None).expect("first frame");
//! assert_eq!(first, frame(0.0, 1.0, 0.0));
//! // The next frame moved 3 pixels and came out twice as large, plus 0.5.
//! let second = stabilizer
//!     .push_with_report(&frame(3.0, 2.0, 0.5), None)
//!     .expect("second frame");
//! let motion = second.previous_from_current_px.expect("motion found");
//! assert!((motion.x - 3.0).abs() < 0.05 && motion.y.abs() < 0.05);
//! assert!((second.scale_shift.scale - 0.5).abs() < 1e-3);
//! assert!((second.scale_shift.shift + 0.25).abs() < 1e-3);
//! ```

use std::collections::VecDeque;
use std::sync::Arc;

use anydepth_core::{DepthMap, Disparity, RgbImage};
use nalgebra::{Matrix4, Vector2, Vector4};
use rayon::prelude::*;

use crate::align;
use crate::error::{Error, Result};

/// Half-width of the exhaustive search at the coarsest pyramid level, in that level's pixels.
const COARSE_RADIUS: u32 = 4;
/// Half-width of the search around the doubled estimate at each finer level.
const REFINE_RADIUS: i64 = 2;
/// How far a keyframe's offset, predicted from the accumulated motion, is searched around.
const KEYFRAME_RADIUS_PX: f64 = 2.0;
/// Pyramid levels stop above this many pixels on the shorter side.
const MIN_LEVEL_SIZE: usize = 16;
/// Peaks of the coarsest level followed down to full size.
const COARSE_PEAKS: usize = 3;
/// Below this correlation a match is not trusted (a cut, or a texture that repeats).
const MIN_CORRELATION: f64 = 0.5;
/// Pixels the subpixel refinement samples at most (evenly spaced).
const REFINE_SAMPLES: usize = 50_000;
/// Fewest pairs a scale and shift is fitted from.
const MIN_FIT_SAMPLES: usize = 64;

/// How the frames of a clip move.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Motion {
    /// The view pans: a global translation between consecutive frames, searched up to
    /// `max_shift_px` in x and in y.
    Translation {
        /// The largest motion between two consecutive frames that is searched, in pixels.
        max_shift_px: u32,
    },
    /// The camera does not move (a tripod): each pixel corresponds to the same pixel.
    Static,
}

/// The loss of the scale-and-shift fit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Loss {
    /// [`align::fit_robust`]: least median of squares, then Tukey IRLS; pairs across
    /// moving objects, occlusions and depth edges are left out.
    #[default]
    Robust,
    /// [`align::fit_least_squares`]: every pair counts; for clean data only.
    LeastSquares,
}

/// How a [`Stabilizer`] places frames; [`StabilizerOptions::default`] suits panning video.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StabilizerOptions {
    /// How the frames move.
    pub motion: Motion,
    /// Every this many frames the stabilised frame becomes a keyframe (at least 1).
    pub keyframe_interval: usize,
    /// Keyframes kept (the latest); 0 fits each frame to the previous one only.
    pub max_keyframes: usize,
    /// The loss of the fit.
    pub loss: Loss,
    /// Fewest pixels two frames must share, as a fraction of the frame, to be fitted
    /// together (in `(0, 1]`).
    pub min_overlap: f64,
    /// Pairs taken from each earlier frame at most (evenly spaced over the overlap).
    pub max_samples: usize,
}

impl Default for StabilizerOptions {
    fn default() -> Self {
        Self {
            motion: Motion::Translation { max_shift_px: 32 },
            keyframe_interval: 10,
            max_keyframes: 3,
            loss: Loss::Robust,
            min_overlap: 0.25,
            max_samples: 20_000,
        }
    }
}

impl StabilizerOptions {
    /// Checks that the options can work.
    ///
    /// # Errors
    /// [`Error::Invalid`] when `keyframe_interval` is 0, `min_overlap` is outside `(0, 1]`
    /// or `max_samples` is below 64.
    pub fn validate(&self) -> Result<()> {
        if self.keyframe_interval == 0 {
            return Err(Error::Invalid(
                "keyframe interval must be at least 1 frame".into(),
            ));
        }
        if !(self.min_overlap > 0.0 && self.min_overlap <= 1.0) {
            return Err(Error::Invalid(format!(
                "minimum overlap must be a fraction in (0, 1], got {}",
                self.min_overlap
            )));
        }
        if self.max_samples < MIN_FIT_SAMPLES {
            return Err(Error::Invalid(format!(
                "at least {MIN_FIT_SAMPLES} samples per frame are needed, got {}",
                self.max_samples
            )));
        }
        Ok(())
    }
}

/// `stabilised = scale * disparity + shift`: one frame's disparity in the clip's units.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScaleShift {
    /// Clip units per unit of the frame's disparity (positive).
    pub scale: f64,
    /// In the clip's units.
    pub shift: f64,
}

impl ScaleShift {
    /// Leaves values as they are (the first frame's).
    pub const IDENTITY: Self = Self {
        scale: 1.0,
        shift: 0.0,
    };

    /// `scale * disparity + shift`; non-finite values stay as they are.
    ///
    /// ```
    /// use anydepth_geometry::stabilize::ScaleShift;
    ///
    /// let to_clip = ScaleShift { scale: 2.0, shift: -1.0 };
    /// assert_eq!(to_clip.apply(1.5), 2.0);
    /// assert!(to_clip.apply(f32::NAN).is_nan());
    /// ```
    pub fn apply(&self, disparity: f32) -> f32 {
        if disparity.is_finite() {
            (self.scale * f64::from(disparity) + self.shift) as f32
        } else {
            disparity
        }
    }
}

/// One frame in the clip's units, and how it got there.
#[derive(Clone, Debug, PartialEq)]
pub struct StabilizedFrame {
    /// The disparity in the clip's units (those of the first frame); non-finite values are
    /// kept where they were.
    pub disparity: DepthMap<Disparity>,
    /// What was applied to the frame's disparity.
    pub scale_shift: ScaleShift,
    /// The translation from this frame to the previous one, in pixels: pixel `p` of this
    /// frame shows what pixel `p + t` of the previous frame showed. `None` for the first
    /// frame and when no motion was found (then the frame was matched by statistics).
    pub previous_from_current_px: Option<Vector2<f64>>,
    /// Earlier frames fitted against (the previous frame and keyframes); 0 for the first
    /// frame and for a frame whose median and spread were matched to the previous one.
    pub anchors: usize,
    /// Pairs of pixels the fit used.
    pub samples: usize,
    /// Whether this frame is now a keyframe.
    pub keyframe: bool,
}

/// Makes relative disparity consistent over a clip, one frame at a time (see the
/// [module](self) docs).
///
/// Keeps only the previous frame and the keyframes, so a video pipeline can stream through
/// it. Frames must all have the first frame's size, and either all come with a colour image
/// (which motion is estimated on) or none.
#[derive(Debug)]
pub struct Stabilizer {
    options: StabilizerOptions,
    /// Frames pushed so far.
    frames: usize,
    /// The size of the clip's frames and whether they come with colour images, from the
    /// first frame.
    layout: Option<(u32, u32, bool)>,
    previous: Option<Arc<Reference>>,
    keyframes: VecDeque<Arc<Reference>>,
}

/// An earlier frame kept to fit later ones against.
#[derive(Debug)]
struct Reference {
    /// Its index in the clip.
    index: usize,
    /// Where the frame lies in the clip's first coordinates (accumulated motion), in pixels.
    position_px: Vector2<f64>,
    /// Its stabilised disparity.
    disparity: Plane,
    /// The image motion is estimated on (none for a static camera).
    guide: Option<Pyramid>,
}

/// A stabiliser with [`StabilizerOptions::default`].
impl Default for Stabilizer {
    fn default() -> Self {
        Self {
            options: StabilizerOptions::default(),
            frames: 0,
            layout: None,
            previous: None,
            keyframes: VecDeque::new(),
        }
    }
}

impl Stabilizer {
    /// A stabiliser for a new clip.
    ///
    /// # Errors
    /// As [`StabilizerOptions::validate`].
    pub fn new(options: StabilizerOptions) -> Result<Self> {
        options.validate()?;
        Ok(Self {
            options,
            ..Self::default()
        })
    }

    /// The options it was made with.
    pub fn options(&self) -> &StabilizerOptions {
        &self.options
    }

    /// Frames pushed so far.
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// Places the next frame of the clip and returns its disparity in the clip's units:
    /// [`Stabilizer::push_with_report`] without the report.
    ///
    /// # Errors
    /// As [`Stabilizer::push_with_report`].
    pub fn push(
        &mut self,
        disparity: &DepthMap<Disparity>,
        color: Option<&RgbImage>,
    ) -> Result<DepthMap<Disparity>> {
        Ok(self.push_with_report(disparity, color)?.disparity)
    }

    /// Places the next frame of the clip: its relative `disparity` and, where there is one,
    /// the colour image it was predicted from (motion is then estimated on the image, else
    /// on the disparity). The first frame is returned as it is and sets the clip's units.
    ///
    /// # Errors
    /// [`Error::Invalid`] when the frame is empty, its size differs from the first frame's,
    /// the colour image's size differs from the disparity's, or a colour image is given for
    /// some frames but not others. The stabiliser is unchanged then.
    ///
    /// # Performance
    /// A coarse-to-fine search per earlier frame fitted against: a few passes over the
    /// frame's pixels each, plus the robust fit over at most `max_samples` pairs per frame.
    /// About 35 ms for a 640 x 480 frame with the default options (release build, two
    /// cores).
    pub fn push_with_report(
        &mut self,
        disparity: &DepthMap<Disparity>,
        color: Option<&RgbImage>,
    ) -> Result<StabilizedFrame> {
        self.check_frame(disparity, color)?;
        let index = self.frames;
        let (w, h) = (disparity.width() as usize, disparity.height() as usize);
        let guide = match self.options.motion {
            Motion::Static => None,
            Motion::Translation { .. } => Some(Pyramid::new(match color {
                Some(image) => Plane::gray(image),
                None => Plane::new(w, h, disparity.data().to_vec()),
            })),
        };
        let current = Plane::new(w, h, disparity.data().to_vec());
        let placed = match self.previous.clone() {
            None => Placement::first(),
            Some(previous) => self.place(&current, guide.as_ref(), &previous),
        };
        let values: Vec<f32> = current
            .values
            .iter()
            .map(|&d| placed.scale_shift.apply(d))
            .collect();
        let stabilised = DepthMap::new(disparity.width(), disparity.height(), values.clone())
            .map_err(|e| Error::Invalid(e.to_string()))?;

        let reference = Arc::new(Reference {
            index,
            position_px: placed.position_px,
            disparity: Plane::new(w, h, values),
            guide,
        });
        // A frame matched by statistics starts afresh: older keyframes belong to a view
        // that is gone.
        if !placed.anchored {
            self.keyframes.clear();
        }
        let since_keyframe = self.keyframes.back().map(|k| index - k.index);
        let keyframe = self.options.max_keyframes > 0
            && since_keyframe.is_none_or(|n| n >= self.options.keyframe_interval);
        if keyframe {
            self.keyframes.push_back(Arc::clone(&reference));
            while self.keyframes.len() > self.options.max_keyframes {
                self.keyframes.pop_front();
            }
        }
        self.previous = Some(reference);
        self.frames += 1;
        tracing::debug!(
            frame = index,
            scale = placed.scale_shift.scale,
            shift = placed.scale_shift.shift,
            anchors = placed.anchors,
            samples = placed.samples,
            keyframe,
            "stabilised"
        );
        Ok(StabilizedFrame {
            disparity: stabilised,
            scale_shift: placed.scale_shift,
            previous_from_current_px: placed.motion_px,
            anchors: placed.anchors,
            samples: placed.samples,
            keyframe,
        })
    }

    /// Refuses a frame that does not fit the clip (before anything changes).
    fn check_frame(
        &mut self,
        disparity: &DepthMap<Disparity>,
        color: Option<&RgbImage>,
    ) -> Result<()> {
        let (w, h) = (disparity.width(), disparity.height());
        let index = self.frames;
        if w == 0 || h == 0 {
            return Err(Error::Invalid(format!(
                "frame {index} is empty ({w} x {h})"
            )));
        }
        if let Some(image) = color {
            if (image.width, image.height) != (w, h) {
                return Err(Error::Invalid(format!(
                    "frame {index}: the colour image is {} x {} but the disparity is {w} x {h}",
                    image.width, image.height
                )));
            }
        }
        let layout = (w, h, color.is_some());
        match self.layout {
            None => self.layout = Some(layout),
            Some((fw, fh, _)) if (fw, fh) != (w, h) => {
                return Err(Error::Invalid(format!(
                    "frame {index} is {w} x {h} but the clip's first frame is {fw} x {fh}"
                )));
            }
            Some((_, _, with_color)) if with_color != color.is_some() => {
                let (first, this) = if with_color {
                    ("had", "has none")
                } else {
                    ("had none", "has one")
                };
                return Err(Error::Invalid(format!(
                    "the first frame {first} a colour image but frame {index} {this}: give \
                     colour images for every frame or for none"
                )));
            }
            Some(_) => {}
        }
        Ok(())
    }

    /// Fits a frame after the first to the previous frame and the keyframes it overlaps.
    fn place(&self, current: &Plane, guide: Option<&Pyramid>, previous: &Reference) -> Placement {
        let options = &self.options;
        let offset_to = |reference: &Reference, centre: Vector2<f64>, radius_px: f64| match (
            guide,
            &reference.guide,
        ) {
            (Some(current), Some(earlier)) => {
                track(earlier, current, centre, radius_px, options.min_overlap)
            }
            _ => Some(Vector2::zeros()),
        };
        let max_shift_px = match options.motion {
            Motion::Translation { max_shift_px } => f64::from(max_shift_px),
            Motion::Static => 0.0,
        };
        let Some(motion) = offset_to(previous, Vector2::zeros(), max_shift_px) else {
            tracing::debug!(
                frame = previous.index + 1,
                "no motion found to the previous frame"
            );
            return Placement::by_statistics(current, previous);
        };
        // p_in_previous = p_in_current + motion, so the frame lies `motion` further on.
        let mut position_px = previous.position_px + motion;
        let mut pairs = Pairs::default();
        let mut anchors = 0;
        if pairs.gather(current, &previous.disparity, motion, options) {
            anchors += 1;
        }
        let mut position_from_keyframe = None;
        for key in self.keyframes.iter().filter(|k| k.index != previous.index) {
            // p_in_key = p_in_current + (position_current - position_key)
            let predicted = position_px - key.position_px;
            if overlap(current.width, current.height, predicted) < options.min_overlap {
                continue;
            }
            let Some(offset) = offset_to(key, predicted, KEYFRAME_RADIUS_PX) else {
                continue;
            };
            if pairs.gather(current, &key.disparity, offset, options) {
                anchors += 1;
                // The newest keyframe measured wins: positions then follow the keyframes
                // rather than adding up every step's error.
                position_from_keyframe = Some(key.position_px + offset);
            }
        }
        if let Some(position) = position_from_keyframe {
            position_px = position;
        }
        match pairs.fit(options.loss) {
            Some(scale_shift) => Placement {
                scale_shift,
                motion_px: Some(motion),
                position_px,
                anchors,
                samples: pairs.len(),
                anchored: true,
            },
            None => {
                let mut placed = Placement::by_statistics(current, previous);
                placed.motion_px = Some(motion);
                placed.position_px = position_px;
                placed
            }
        }
    }
}

/// Where a frame went.
struct Placement {
    scale_shift: ScaleShift,
    motion_px: Option<Vector2<f64>>,
    position_px: Vector2<f64>,
    anchors: usize,
    samples: usize,
    /// Fitted to earlier frames (or the first frame).
    anchored: bool,
}

impl Placement {
    fn first() -> Self {
        Self {
            scale_shift: ScaleShift::IDENTITY,
            motion_px: None,
            position_px: Vector2::zeros(),
            anchors: 0,
            samples: 0,
            anchored: true,
        }
    }

    /// The median and the spread (mean absolute deviation from the median) of `current`
    /// matched to the previous frame's: for a frame that shares no pixels with it.
    fn by_statistics(current: &Plane, previous: &Reference) -> Self {
        let (m_cur, s_cur) = median_and_spread(&current.values);
        let (m_prev, s_prev) = median_and_spread(&previous.disparity.values);
        let scale = if s_cur > 0.0 && s_prev > 0.0 {
            s_prev / s_cur
        } else {
            1.0
        };
        Self {
            scale_shift: ScaleShift {
                scale,
                shift: m_prev - scale * m_cur,
            },
            motion_px: None,
            position_px: previous.position_px,
            anchors: 0,
            samples: 0,
            anchored: false,
        }
    }
}

/// Median and mean absolute deviation from it of the finite values; `(0, 0)` without any.
fn median_and_spread(values: &[f32]) -> (f64, f64) {
    let finite: Vec<f64> = values
        .iter()
        .filter(|v| v.is_finite())
        .map(|&v| f64::from(v))
        .collect();
    if finite.is_empty() {
        return (0.0, 0.0);
    }
    let n = finite.len() as f64;
    let median = align::median(finite.clone());
    let spread = finite.iter().map(|v| (v - median).abs()).sum::<f64>() / n;
    (median, spread)
}

/// The fraction of a `w x h` frame that a frame offset by `offset_px` covers.
fn overlap(w: usize, h: usize, offset_px: Vector2<f64>) -> f64 {
    let (w, h) = (w as f64, h as f64);
    let ox = (w - offset_px.x.abs()).max(0.0);
    let oy = (h - offset_px.y.abs()).max(0.0);
    ox * oy / (w * h)
}

/// Pairs of (this frame's disparity, an earlier frame's stabilised disparity) at pixels that
/// correspond.
#[derive(Default)]
struct Pairs {
    current: Vec<f32>,
    target: Vec<f64>,
}

impl Pairs {
    fn len(&self) -> usize {
        self.current.len()
    }

    /// Adds the pairs of `current` at `q` with `earlier` at `q + offset_px`, on an even grid
    /// of at most `max_samples`; whether the overlap was large enough to add any.
    ///
    /// Both are read bilinearly half the fractional offset away from the grid, in opposite
    /// directions: interpolation smooths, and smoothing only one side would shrink its
    /// texture and so bias the scale (by about 1% at half a pixel on fine texture, which
    /// would compound over a clip).
    fn gather(
        &mut self,
        current: &Plane,
        earlier: &Plane,
        offset_px: Vector2<f64>,
        options: &StabilizerOptions,
    ) -> bool {
        let (w, h) = (current.width, current.height);
        let fraction = overlap(w, h, offset_px);
        if fraction < options.min_overlap {
            return false;
        }
        let area = fraction * (w * h) as f64;
        let stride = ((area / options.max_samples as f64).sqrt().ceil() as usize).max(1);
        let fractional = offset_px - offset_px.map(f64::round);
        let half = -0.5 * fractional;
        let before = self.len();
        for y in (0..h).step_by(stride) {
            for x in (0..w).step_by(stride) {
                let (qx, qy) = (x as f64 + half.x, y as f64 + half.y);
                let Some(d) = current.bilinear(qx, qy) else {
                    continue;
                };
                if let Some(target) = earlier.bilinear(qx + offset_px.x, qy + offset_px.y) {
                    self.current.push(d as f32);
                    self.target.push(target);
                }
            }
        }
        self.len() > before
    }

    /// `target ≈ scale * current + shift` with a positive scale; `None` when the pairs are
    /// too few or degenerate.
    fn fit(&self, loss: Loss) -> Option<ScaleShift> {
        if self.len() < MIN_FIT_SAMPLES {
            return None;
        }
        // `align`'s fits are written for `1 / depth ≈ scale * disparity + shift`: the target
        // plays inverse depth once offset to lie in [spread, 2 * spread] (positive and well
        // conditioned); the fits are equivariant to that offset, which comes off the shift.
        let (lo, hi) = self
            .target
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &t| {
                (lo.min(t), hi.max(t))
            });
        let spread = hi - lo;
        if !(spread.is_finite() && spread > 0.0) {
            return None;
        }
        let offset = spread - lo;
        let depth: Vec<f32> = self
            .target
            .iter()
            .map(|t| (1.0 / (t + offset)) as f32)
            .collect();
        let fitted = match loss {
            Loss::Robust => align::fit_robust(&self.current, &depth),
            Loss::LeastSquares => align::fit_least_squares(&self.current, &depth),
        };
        let affine = fitted.ok()?;
        let scale_shift = ScaleShift {
            scale: affine.scale,
            shift: affine.shift - offset,
        };
        (scale_shift.scale.is_finite() && scale_shift.scale > 0.0 && scale_shift.shift.is_finite())
            .then_some(scale_shift)
    }
}

/// A row-major `f32` image; non-finite values mean "no value".
#[derive(Clone, Debug)]
struct Plane {
    width: usize,
    height: usize,
    values: Vec<f32>,
}

impl Plane {
    fn new(width: usize, height: usize, values: Vec<f32>) -> Self {
        Self {
            width,
            height,
            values,
        }
    }

    /// Luma (Rec. 601 weights) of an RGB image.
    fn gray(image: &RgbImage) -> Self {
        let values = image
            .data
            .chunks_exact(3)
            .map(|c| 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2])
            .collect();
        Self::new(image.width as usize, image.height as usize, values)
    }

    fn at(&self, x: usize, y: usize) -> f32 {
        self.values[y * self.width + x]
    }

    /// Half the size: the mean of the finite values of each 2 x 2 block (NaN without any).
    fn downsample(&self) -> Self {
        let (w, h) = (self.width / 2, self.height / 2);
        let mut values = Vec::with_capacity(w * h);
        for y in 0..h {
            for x in 0..w {
                let (mut sum, mut n) = (0.0f32, 0u8);
                for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                    let v = self.at(2 * x + dx, 2 * y + dy);
                    if v.is_finite() {
                        sum += v;
                        n += 1;
                    }
                }
                values.push(if n > 0 { sum / f32::from(n) } else { f32::NAN });
            }
        }
        Self::new(w, h, values)
    }

    /// Bilinear value at `(u, v)` (pixel centres at integers); `None` outside the pixel
    /// centres' hull or next to a missing value.
    fn bilinear(&self, u: f64, v: f64) -> Option<f64> {
        let (wf, hf) = ((self.width - 1) as f64, (self.height - 1) as f64);
        if !(u >= 0.0 && v >= 0.0 && u <= wf && v <= hf) {
            return None;
        }
        let (x0, y0) = (u.floor() as usize, v.floor() as usize);
        let (x1, y1) = ((x0 + 1).min(self.width - 1), (y0 + 1).min(self.height - 1));
        let (ax, ay) = (u - x0 as f64, v - y0 as f64);
        let at = |x, y| f64::from(self.at(x, y));
        let (a, b, c, d) = (at(x0, y0), at(x1, y0), at(x0, y1), at(x1, y1));
        if !(a.is_finite() && b.is_finite() && c.is_finite() && d.is_finite()) {
            return None;
        }
        let top = a + (b - a) * ax;
        let bottom = c + (d - c) * ax;
        Some(top + (bottom - top) * ay)
    }
}

/// An image and its halvings, finest first.
#[derive(Clone, Debug)]
struct Pyramid {
    levels: Vec<Plane>,
}

impl Pyramid {
    fn new(base: Plane) -> Self {
        let mut levels = vec![base];
        while let Some(last) = levels.last() {
            if last.width.min(last.height) / 2 < MIN_LEVEL_SIZE {
                break;
            }
            let next = last.downsample();
            levels.push(next);
        }
        Self { levels }
    }
}

/// The global translation `t` with `current(p) ≈ gain * reference(p + t) + bias`, searched
/// within `radius_px` of `centre_px` (in x and in y): NCC coarse to fine, then subpixel
/// Gauss-Newton. `None` when the best correlation is below [`MIN_CORRELATION`] or no
/// candidate overlaps by `min_overlap`.
fn track(
    reference: &Pyramid,
    current: &Pyramid,
    centre_px: Vector2<f64>,
    radius_px: f64,
    min_overlap: f64,
) -> Option<Vector2<f64>> {
    let levels = reference.levels.len().min(current.levels.len());
    let mut level = 0;
    while level + 1 < levels && radius_px / f64::from(1u32 << level) > f64::from(COARSE_RADIUS) {
        level += 1;
    }
    let factor = f64::from(1u32 << level);
    let (ref_level, cur_level) = (&reference.levels[level], &current.levels[level]);
    // Beyond the image's size nothing overlaps.
    let size = cur_level.width.max(cur_level.height) as f64;
    let radius = (radius_px / factor).ceil().min(size) as i64;
    let centre = (
        (centre_px.x / factor).round() as i64,
        (centre_px.y / factor).round() as i64,
    );
    let coarse = scores(ref_level, cur_level, centre, radius, min_overlap);
    // A texture that repeats correlates at several shifts, and the coarse level may not
    // tell them apart: the best few peaks are followed down and compared at full size.
    let descend = |(mut t, mut score): ((i64, i64), f64)| {
        for l in (0..level).rev() {
            let doubled = (2 * t.0, 2 * t.1);
            (t, score) = best_shift(
                &reference.levels[l],
                &current.levels[l],
                doubled,
                REFINE_RADIUS,
                min_overlap,
            )?;
        }
        Some((t, score))
    };
    let ((tx, ty), score) = peaks(&coarse, (2 * radius + 1) as usize, COARSE_PEAKS)
        .into_iter()
        .filter_map(descend)
        .fold(None, |best: Option<((i64, i64), f64)>, (t, s)| match best {
            Some((_, b)) if b >= s => best,
            _ => Some((t, s)),
        })?;
    if score < MIN_CORRELATION {
        return None;
    }
    let start = Vector2::new(tx as f64, ty as f64);
    let (ref0, cur0) = (&reference.levels[0], &current.levels[0]);
    Some(refine_subpixel(ref0, cur0, start, min_overlap).unwrap_or(start))
}

/// The NCC of every integer shift within `radius` of `centre` (a square grid, row order).
fn scores(
    reference: &Plane,
    current: &Plane,
    centre: (i64, i64),
    radius: i64,
    min_overlap: f64,
) -> Vec<((i64, i64), Option<f64>)> {
    let min_pixels = (min_overlap * (current.width * current.height) as f64).ceil() as usize;
    let candidates: Vec<(i64, i64)> = (-radius..=radius)
        .flat_map(|dy| (-radius..=radius).map(move |dx| (centre.0 + dx, centre.1 + dy)))
        .collect();
    let scores: Vec<Option<f64>> = candidates
        .par_iter()
        .map(|&t| ncc(reference, current, t, min_pixels.max(1)))
        .collect();
    candidates.into_iter().zip(scores).collect()
}

/// The integer shift within `radius` of `centre` with the highest NCC, and that NCC; ties go
/// to the first in row order.
fn best_shift(
    reference: &Plane,
    current: &Plane,
    centre: (i64, i64),
    radius: i64,
    min_overlap: f64,
) -> Option<((i64, i64), f64)> {
    scores(reference, current, centre, radius, min_overlap)
        .into_iter()
        .filter_map(|(t, s)| s.map(|s| (t, s)))
        .fold(None, |best: Option<((i64, i64), f64)>, (t, s)| match best {
            Some((_, b)) if b >= s => best,
            _ => Some((t, s)),
        })
}

/// Up to `count` local maxima (no neighbour scores higher) of a `side x side` grid of
/// scores, best first.
fn peaks(grid: &[((i64, i64), Option<f64>)], side: usize, count: usize) -> Vec<((i64, i64), f64)> {
    let at = |row: usize, col: usize| grid.get(row * side + col).and_then(|&(_, s)| s);
    let mut found: Vec<((i64, i64), f64)> = Vec::new();
    for (i, &(t, score)) in grid.iter().enumerate() {
        let Some(score) = score else {
            continue;
        };
        let (row, col) = (i / side, i % side);
        let higher_beside = (row.saturating_sub(1)..=(row + 1).min(side - 1))
            .flat_map(|r| (col.saturating_sub(1)..=(col + 1).min(side - 1)).map(move |c| (r, c)))
            .filter(|&rc| rc != (row, col))
            .any(|(r, c)| at(r, c).is_some_and(|s| s > score));
        if !higher_beside {
            found.push((t, score));
        }
    }
    found.sort_by(|a, b| b.1.total_cmp(&a.1));
    found.truncate(count);
    found
}

/// Zero-normalised cross-correlation of `current(p)` with `reference(p + t)` over the pixels
/// where both have values; `None` when fewer than `min_pixels` or either has no spread.
fn ncc(reference: &Plane, current: &Plane, t: (i64, i64), min_pixels: usize) -> Option<f64> {
    let (w, h) = (current.width as i64, current.height as i64);
    let (x0, x1) = ((-t.0).max(0), (w - t.0).min(w));
    let (y0, y1) = ((-t.1).max(0), (h - t.1).min(h));
    if x1 <= x0 || y1 <= y0 || ((x1 - x0) * (y1 - y0)) < min_pixels as i64 {
        return None;
    }
    let (mut n, mut sa, mut sb, mut saa, mut sbb, mut sab) = (0usize, 0.0, 0.0, 0.0, 0.0, 0.0);
    for y in y0..y1 {
        let row_c = &current.values[(y * w) as usize..((y + 1) * w) as usize];
        let yr = y + t.1;
        let row_r = &reference.values[(yr * w) as usize..((yr + 1) * w) as usize];
        let cs = &row_c[x0 as usize..x1 as usize];
        let rs = &row_r[(x0 + t.0) as usize..(x1 + t.0) as usize];
        for (&a, &b) in cs.iter().zip(rs) {
            if a.is_finite() && b.is_finite() {
                let (a, b) = (f64::from(a), f64::from(b));
                n += 1;
                sa += a;
                sb += b;
                saa += a * a;
                sbb += b * b;
                sab += a * b;
            }
        }
    }
    if n < min_pixels {
        return None;
    }
    let nf = n as f64;
    let va = saa - sa * sa / nf;
    let vb = sbb - sb * sb / nf;
    if !(va > 1e-12 * saa.max(f64::MIN_POSITIVE) && vb > 1e-12 * sbb.max(f64::MIN_POSITIVE)) {
        return None;
    }
    Some((sab - sa * sb / nf) / (va * vb).sqrt())
}

/// Gauss-Newton on `reference(p + t) ≈ gain * current(p) + bias` from `start`, linearising
/// the reference in `t` (gradients by central differences of bilinear reads). `None` when it
/// leaves the pixel around `start`, too few pixels overlap, or the system is singular.
fn refine_subpixel(
    reference: &Plane,
    current: &Plane,
    start: Vector2<f64>,
    min_overlap: f64,
) -> Option<Vector2<f64>> {
    let (w, h) = (current.width, current.height);
    let stride = (((w * h) as f64 / REFINE_SAMPLES as f64).sqrt().ceil() as usize).max(1);
    let min_pixels = (min_overlap * (w * h) as f64 / (stride * stride) as f64) as usize;
    let mut t = start;
    for _ in 0..10 {
        let mut ata = Matrix4::<f64>::zeros();
        let mut atb = Vector4::<f64>::zeros();
        let mut n = 0usize;
        for y in (0..h).step_by(stride) {
            for x in (0..w).step_by(stride) {
                let c = f64::from(current.at(x, y));
                let (u, v) = (x as f64 + t.x, y as f64 + t.y);
                let read = |du: f64, dv: f64| reference.bilinear(u + du, v + dv);
                let (Some(r), Some(r_left), Some(r_right), Some(r_up), Some(r_down)) = (
                    read(0.0, 0.0),
                    read(-1.0, 0.0),
                    read(1.0, 0.0),
                    read(0.0, -1.0),
                    read(0.0, 1.0),
                ) else {
                    continue;
                };
                if !c.is_finite() {
                    continue;
                }
                let row = Vector4::new(0.5 * (r_right - r_left), 0.5 * (r_down - r_up), -c, -1.0);
                ata += row * row.transpose();
                atb -= row * r;
                n += 1;
            }
        }
        if n < min_pixels.max(MIN_FIT_SAMPLES) {
            return None;
        }
        let step = ata.cholesky()?.solve(&atb);
        let delta = Vector2::new(step[0], step[1]);
        if !(delta.x.is_finite() && delta.y.is_finite()) {
            return None;
        }
        t += delta;
        if (t - start).amax() > 1.0 {
            return None;
        }
        if delta.amax() < 1e-3 {
            break;
        }
    }
    Some(t)
}

/// The global translation `t` (in pixels) with `current(p) ≈ gain * reference(p + t) + bias`,
/// searched up to `max_shift_px` in x and in y, to a fraction of a pixel: what
/// [`Stabilizer`] uses between consecutive frames. Works on any single-channel images of
/// the same size (grey levels, or disparity: the gain and bias make it affine-invariant);
/// non-finite values are left out.
///
/// Returns `None` when no shift correlates well (NCC below 0.5), e.g. between unrelated
/// images, or none overlaps by a quarter of the image.
///
/// ```
/// use anydepth_geometry::stabilize::estimate_translation;
///
/// let (w, h) = (80u32, 60u32);
/// // Not periodic: a texture that repeats has several right answers.
/// let texture = |x: f64, y: f64| {
///     ((0.004 * x * x + 0.2 * y).sin() + (0.005 * y * y - 0.15 * x).cos()) as f32
/// };
/// let image = |dx: f64, dy: f64| -> Vec<f32> {
///     (0..h)
///         .flat_map(|y| (0..w).map(move |x| texture(f64::from(x) + dx, f64::from(y) + dy)))
///         .collect()
/// };
/// let (reference, current) = (image(0.0, 0.0), image(4.25, -2.5));
/// let t = estimate_translation(w, h, &reference, &current, 16)
///     .expect("same sizes")
///     .expect("found");
/// assert!((t.x - 4.25).abs() < 0.02 && (t.y + 2.5).abs() < 0.02, "{t}");
/// ```
///
/// # Errors
/// [`Error::Invalid`] when a slice does not hold `width * height` values or the images are
/// empty.
pub fn estimate_translation(
    width: u32,
    height: u32,
    reference: &[f32],
    current: &[f32],
    max_shift_px: u32,
) -> Result<Option<Vector2<f64>>> {
    let (w, h) = (width as usize, height as usize);
    if w == 0 || h == 0 {
        return Err(Error::Invalid(format!(
            "cannot estimate motion in an empty image ({width} x {height})"
        )));
    }
    for (what, values) in [("reference", reference), ("current", current)] {
        if values.len() != w * h {
            return Err(Error::Invalid(format!(
                "{what} image has {} values, expected {width} x {height} = {}",
                values.len(),
                w * h
            )));
        }
    }
    let reference = Pyramid::new(Plane::new(w, h, reference.to_vec()));
    let current = Pyramid::new(Plane::new(w, h, current.to_vec()));
    let min_overlap = StabilizerOptions::default().min_overlap;
    Ok(track(
        &reference,
        &current,
        Vector2::zeros(),
        f64::from(max_shift_px),
        min_overlap,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Smooth value noise plus a few sinusoids: texture with structure at several scales.
    fn texture(x: f64, y: f64) -> f64 {
        let hash = |i: i64, j: i64| {
            let mut z = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
                ^ (j as u64).wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
            z = (z ^ (z >> 31)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            (z >> 11) as f64 / (1u64 << 53) as f64
        };
        let noise = |x: f64, y: f64| {
            let (i, j) = (x.floor() as i64, y.floor() as i64);
            let (fx, fy) = (x - x.floor(), y - y.floor());
            let (sx, sy) = (fx * fx * (3.0 - 2.0 * fx), fy * fy * (3.0 - 2.0 * fy));
            let top = hash(i, j) + (hash(i + 1, j) - hash(i, j)) * sx;
            let bottom = hash(i, j + 1) + (hash(i + 1, j + 1) - hash(i, j + 1)) * sx;
            top + (bottom - top) * sy
        };
        noise(x / 9.0, y / 9.0) + 0.5 * noise(x / 4.0, y / 4.0) + 0.2 * (0.05 * x + 0.03 * y).sin()
    }

    fn sampled(w: u32, h: u32, f: impl Fn(f64, f64) -> f64) -> Vec<f32> {
        (0..h)
            .flat_map(|y| (0..w).map(move |x| (f64::from(x), f64::from(y))))
            .map(|(x, y)| f(x, y) as f32)
            .collect()
    }

    #[test]
    fn stabilize_translation_matches_the_oracle_to_subpixel() {
        let (w, h) = (160u32, 120u32);
        let reference = sampled(w, h, texture);
        for (tx, ty) in [
            (0.0, 0.0),
            (7.0, -3.0),
            (-9.5, 4.25),
            (12.3, 8.7),
            (-0.4, -10.0),
        ] {
            // Contrast and brightness change too: the estimate is affine-invariant.
            let current = sampled(w, h, |x, y| 3.0 * texture(x + tx, y + ty) - 1.0);
            let t = estimate_translation(w, h, &reference, &current, 16)
                .expect("valid")
                .expect("found");
            assert!(
                (t.x - tx).abs() < 0.05 && (t.y - ty).abs() < 0.05,
                "expected ({tx}, {ty}), found {t}"
            );
        }
        // Unrelated images: nothing correlates.
        let other = sampled(w, h, |x, y| texture(y + 500.0, x + 300.0));
        assert_eq!(
            estimate_translation(w, h, &reference, &other, 16).expect("valid"),
            None
        );
        assert!(estimate_translation(w, h, &reference, &other[1..], 16).is_err());
    }

    fn frame(w: u32, h: u32, dx: f64, dy: f64, scale_shift: ScaleShift) -> DepthMap<Disparity> {
        let values = sampled(w, h, |x, y| {
            let truth = 1.0 + texture(x + dx, y + dy) + 0.003 * (y + dy);
            scale_shift.scale * truth + scale_shift.shift
        });
        DepthMap::new(w, h, values).expect("w x h")
    }

    #[test]
    fn stabilize_two_frames_recovers_scale_and_shift_and_keeps_nan() {
        let (w, h) = (120u32, 90u32);
        let mut stabilizer = Stabilizer::new(StabilizerOptions::default()).expect("valid");
        let first = stabilizer
            .push_with_report(&frame(w, h, 0.0, 0.0, ScaleShift::IDENTITY), None)
            .expect("first");
        assert_eq!(first.scale_shift, ScaleShift::IDENTITY);
        assert_eq!((first.anchors, first.keyframe), (0, true));
        let distortion = ScaleShift {
            scale: 0.4,
            shift: 2.0,
        };
        let mut second = frame(w, h, -5.5, 3.0, distortion).into_data();
        second[7] = f32::NAN;
        let second = DepthMap::new(w, h, second).expect("w x h");
        let placed = stabilizer.push_with_report(&second, None).expect("second");
        let t = placed.previous_from_current_px.expect("motion");
        assert!((t.x + 5.5).abs() < 0.05 && (t.y - 3.0).abs() < 0.05, "{t}");
        assert!((placed.scale_shift.scale - 2.5).abs() < 1e-3, "{placed:?}");
        assert!((placed.scale_shift.shift + 5.0).abs() < 5e-3, "{placed:?}");
        assert!(placed.disparity.data()[7].is_nan());
        assert_eq!((placed.anchors, placed.keyframe), (1, false));
        assert_eq!(stabilizer.frames(), 2);
    }

    #[test]
    fn stabilize_cut_is_matched_by_statistics_and_starts_new_keyframes() {
        let (w, h) = (100u32, 80u32);
        let options = StabilizerOptions {
            keyframe_interval: 2,
            max_keyframes: 2,
            ..Default::default()
        };
        let mut stabilizer = Stabilizer::new(options).expect("valid");
        for i in 0..5 {
            let placed = stabilizer
                .push_with_report(
                    &frame(w, h, f64::from(i) * 2.0, 0.0, ScaleShift::IDENTITY),
                    None,
                )
                .expect("frame");
            assert_eq!(placed.keyframe, i % 2 == 0, "frame {i}");
            assert!(stabilizer.keyframes.len() <= 2);
            if i > 0 {
                assert!(placed.anchors >= 1);
            }
        }
        // A different view: no motion found, median and spread matched.
        let cut =
            DepthMap::new(w, h, sampled(w, h, |x, y| 5.0 + texture(y + 900.0, x))).expect("w x h");
        let placed = stabilizer.push_with_report(&cut, None).expect("cut");
        assert_eq!((placed.anchors, placed.keyframe), (0, true));
        assert_eq!(placed.previous_from_current_px, None);
        assert_eq!(stabilizer.keyframes.len(), 1);
        let (m_prev, _) = median_and_spread(
            &stabilizer
                .push_with_report(&cut, None)
                .expect("same view again")
                .disparity
                .into_data(),
        );
        let (m_cut, _) = median_and_spread(placed.disparity.data());
        assert!((m_prev - m_cut).abs() < 1e-3);
    }

    #[test]
    fn stabilize_static_camera_fits_pixel_to_pixel() {
        let (w, h) = (64u32, 48u32);
        let options = StabilizerOptions {
            motion: Motion::Static,
            loss: Loss::LeastSquares,
            ..Default::default()
        };
        let mut stabilizer = Stabilizer::new(options).expect("valid");
        stabilizer
            .push_with_report(&frame(w, h, 0.0, 0.0, ScaleShift::IDENTITY), None)
            .expect("first");
        let placed = stabilizer
            .push_with_report(
                &frame(
                    w,
                    h,
                    0.0,
                    0.0,
                    ScaleShift {
                        scale: 2.0,
                        shift: 1.0,
                    },
                ),
                None,
            )
            .expect("second");
        assert_eq!(placed.previous_from_current_px, Some(Vector2::zeros()));
        assert!((placed.scale_shift.scale - 0.5).abs() < 1e-5);
        assert!((placed.scale_shift.shift + 0.5).abs() < 1e-5);
    }

    #[test]
    fn stabilize_refuses_frames_that_do_not_fit_the_clip() {
        let (w, h) = (40u32, 30u32);
        let message = |r: Result<StabilizedFrame>| match r {
            Err(Error::Invalid(m)) => m,
            other => panic!("expected Error::Invalid, got {other:?}"),
        };
        let mut stabilizer = Stabilizer::new(StabilizerOptions::default()).expect("valid");
        let gray = RgbImage::new(w, h, vec![0.5; (w * h * 3) as usize]).expect("w x h");
        let small = RgbImage::new(w - 1, h, vec![0.5; ((w - 1) * h * 3) as usize]).expect("size");
        let first = frame(w, h, 0.0, 0.0, ScaleShift::IDENTITY);
        assert!(message(stabilizer.push_with_report(&first, Some(&small))).contains("39 x 30"));
        assert_eq!(stabilizer.frames(), 0);
        stabilizer
            .push_with_report(&first, Some(&gray))
            .expect("first");
        assert!(message(stabilizer.push_with_report(&first, None))
            .contains("colour images for every frame"));
        let other = frame(w + 1, h, 0.0, 0.0, ScaleShift::IDENTITY);
        assert!(message(stabilizer.push_with_report(&other, Some(&gray))).contains("41 x 30"));
        let empty = DepthMap::<Disparity>::new(0, 0, Vec::new()).expect("empty");
        assert!(message(stabilizer.push_with_report(&empty, None)).contains("empty"));
        assert_eq!(stabilizer.frames(), 1);
        for bad in [
            StabilizerOptions {
                keyframe_interval: 0,
                ..Default::default()
            },
            StabilizerOptions {
                min_overlap: 0.0,
                ..Default::default()
            },
            StabilizerOptions {
                max_samples: 10,
                ..Default::default()
            },
        ] {
            assert!(Stabilizer::new(bad).is_err(), "{bad:?}");
        }
    }
}
