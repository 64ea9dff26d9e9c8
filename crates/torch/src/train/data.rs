//! Training samples to network input: the official recipe's lower-bound resize (cubic for
//! photos, nearest for depth), a random square crop and a random horizontal flip; and the
//! sample set a run draws from, in memory or read from disk one batch ahead.

use std::borrow::Cow;
use std::path::Path;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use tch::{Device, Tensor};

use anydepth_core::depth::Metres;
use anydepth_core::depth_io::read_depth_values;
use anydepth_core::image::load_image;
use anydepth_core::RgbImage;
use anydepth_model::train::TrainSample;

use crate::error::{Error, Result};
use crate::preprocess::preprocess;

/// A sample resized so that its shorter side is the crop size: photo normalised (CHW),
/// target (metres or a teacher's label) with NaN where it does not count.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// Width after the resize.
    pub width: usize,
    /// Height after the resize.
    pub height: usize,
    /// `3 * height * width` normalised values, channel-major.
    pub image: Vec<f32>,
    /// `height * width` target values; NaN where they do not count.
    pub target: Vec<f32>,
    /// How many target values count.
    pub valid: usize,
}

impl Prepared {
    /// The memory the sample holds.
    pub fn bytes(&self) -> usize {
        (self.image.len() + self.target.len()) * std::mem::size_of::<f32>()
    }
}

/// Which depths count: finite, above `min` and below `max` metres.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DepthRange {
    /// Depths at or below this do not count.
    pub min: f64,
    /// Depths at or above this do not count.
    pub max: f64,
}

impl DepthRange {
    fn contains(&self, d: f32) -> bool {
        d.is_finite() && f64::from(d) > self.min && f64::from(d) < self.max
    }
}

/// Reads one sample and resizes it for crops of `size`.
///
/// # Errors
/// When the photo or depth cannot be read or their sizes differ.
pub fn prepare(sample: &TrainSample, size: u32, range: DepthRange) -> Result<Prepared> {
    let photo = load_image(&sample.rgb)?;
    let depth = read_depth_values::<Metres>(&sample.depth, sample.depth_scale)?;
    if (depth.width(), depth.height()) != (photo.width, photo.height) {
        return Err(Error::Invalid(format!(
            "the photo is {}x{} but its depth {} is {}x{}",
            photo.width,
            photo.height,
            sample.depth.display(),
            depth.width(),
            depth.height()
        )));
    }
    let (w, h) = (depth.width() as usize, depth.height() as usize);
    with_target(&photo, size, depth.data(), (w, h), |d| range.contains(d))
}

/// Reads a photo and pairs it with a teacher's `label` (`width x height` values, the
/// photo's size), resized for crops of `size`; non-finite label values do not count.
///
/// # Errors
/// When the photo cannot be read or is not the label's size.
pub fn prepare_labelled(
    photo: &Path,
    label: &[f32],
    (width, height): (usize, usize),
    size: u32,
) -> Result<Prepared> {
    let photo = load_image(photo)?;
    if (photo.width as usize, photo.height as usize) != (width, height) {
        return Err(Error::Invalid(format!(
            "the photo is {}x{} but its label is {width}x{height}",
            photo.width, photo.height
        )));
    }
    with_target(&photo, size, label, (width, height), f32::is_finite)
}

/// The photo resized (cubic, normalised) and `target` resized (nearest) to the
/// lower-bound size for crops of `size`; values failing `counts` become NaN.
fn with_target(
    photo: &RgbImage,
    size: u32,
    target: &[f32],
    (src_w, src_h): (usize, usize),
    counts: impl Fn(f32) -> bool,
) -> Result<Prepared> {
    let resized = preprocess(photo, size)?;
    let (width, height) = (resized.width as usize, resized.height as usize);
    let mut values = Vec::with_capacity(width * height);
    let mut valid = 0;
    for y in 0..height {
        let sy = nearest(y, height, src_h);
        for x in 0..width {
            let d = target[sy * src_w + nearest(x, width, src_w)];
            if counts(d) {
                values.push(d);
                valid += 1;
            } else {
                values.push(f32::NAN);
            }
        }
    }
    Ok(Prepared {
        width,
        height,
        image: resized.data,
        target: values,
        valid,
    })
}

/// OpenCV's `INTER_NEAREST` source index: `floor(dst · src / dst_len)`, clamped.
fn nearest(dst: usize, dst_len: usize, src_len: usize) -> usize {
    ((dst as f64 * src_len as f64 / dst_len as f64).floor() as usize).min(src_len - 1)
}

/// Where a sample is cut and whether it is flipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Crop {
    /// Left column of the crop.
    pub x: usize,
    /// Top row of the crop.
    pub y: usize,
    /// Mirrored left to right.
    pub flip: bool,
}

impl Crop {
    /// The crop of a `width x height` sample for the sample at global position
    /// `position` of a run seeded with `seed`: the same for the same three, so a resumed
    /// run cuts what the uninterrupted one would have.
    pub fn draw(
        seed: u64,
        position: u64,
        (width, height): (usize, usize),
        size: usize,
        flip_p: f64,
    ) -> Self {
        let mut rng = sample_rng(seed, position);
        let x = rng.random_range(0..=width.saturating_sub(size));
        let y = rng.random_range(0..=height.saturating_sub(size));
        let flip = rng.random::<f64>() < flip_p;
        Self { x, y, flip }
    }
}

/// The random stream of one sample position of a seeded run.
pub fn sample_rng(seed: u64, position: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed ^ position.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// The order samples are visited in during epoch `epoch` of a run seeded with `seed`.
pub fn epoch_order(seed: u64, epoch: u64, n: usize) -> Vec<usize> {
    let mut rng =
        ChaCha8Rng::seed_from_u64(seed.rotate_left(17) ^ epoch.wrapping_mul(0xD1B5_4A32_D192_ED03));
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.random_range(0..=i);
        order.swap(i, j);
    }
    order
}

/// Reads sample `i` of a run's sources, resized for its crops.
pub type Loader = dyn Fn(usize) -> Result<Prepared> + Send + Sync;

/// How many samples are read at once while a set is first read.
const READ_CHUNK: usize = 256;

/// The samples a run draws its batches from, resized for the crops. Every source is read
/// once up front, to leave out those that cannot be read or have no pixel that counts and
/// to learn their sizes. The set stays in memory while it fits the budget; beyond it, each
/// batch is read from disk again, the next one on a background thread while a step runs.
pub struct SampleSet {
    /// The source index of each kept sample.
    sources: Vec<usize>,
    /// `(width, height)` of each kept sample after the resize.
    sizes: Vec<(usize, usize)>,
    store: Store,
}

enum Store {
    Memory(Vec<Prepared>),
    Disk(Prefetcher),
}

/// Why a source was left out: it could not be read, or no pixel of it counts.
#[derive(Debug)]
pub enum LeftOut {
    /// Reading or resizing failed.
    Unreadable(Error),
    /// The sample was read, but none of its target values counts.
    NoValidPixel,
}

impl SampleSet {
    /// Reads sources `0..n` through `load`, in parallel chunks, keeping them in memory
    /// while their total size stays within `memory_budget` bytes. Returns the set and the
    /// sources left out, by index.
    pub fn read(
        n: usize,
        load: Arc<Loader>,
        memory_budget: usize,
    ) -> (Self, Vec<(usize, LeftOut)>) {
        let mut sources = Vec::new();
        let mut sizes = Vec::new();
        let mut kept = Vec::new();
        let mut left_out = Vec::new();
        let mut bytes = 0usize;
        let mut in_memory = true;
        for start in (0..n).step_by(READ_CHUNK) {
            let chunk: Vec<(usize, Result<Prepared>)> = (start..n.min(start + READ_CHUNK))
                .into_par_iter()
                .map(|i| (i, load(i)))
                .collect();
            for (i, result) in chunk {
                match result {
                    Ok(p) if p.valid > 0 => {
                        sources.push(i);
                        sizes.push((p.width, p.height));
                        bytes += p.bytes();
                        if in_memory && bytes > memory_budget {
                            in_memory = false;
                            kept = Vec::new();
                        }
                        if in_memory {
                            kept.push(p);
                        }
                    }
                    Ok(_) => left_out.push((i, LeftOut::NoValidPixel)),
                    Err(e) => left_out.push((i, LeftOut::Unreadable(e))),
                }
            }
        }
        let store = if in_memory {
            Store::Memory(kept)
        } else {
            tracing::info!(
                samples = sources.len(),
                gib = bytes as f64 / f64::from(1u32 << 30),
                "the samples exceed the memory budget: each batch is read from disk"
            );
            Store::Disk(Prefetcher::new(load))
        };
        (
            Self {
                sources,
                sizes,
                store,
            },
            left_out,
        )
    }

    /// How many samples the set holds.
    pub fn len(&self) -> usize {
        self.sources.len()
    }

    /// Whether the set holds no sample.
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// `(width, height)` of every sample after the resize, in set order.
    pub fn sizes(&self) -> &[(usize, usize)] {
        &self.sizes
    }

    /// Whether batches are read from disk rather than kept in memory.
    pub fn streamed(&self) -> bool {
        matches!(self.store, Store::Disk(_))
    }

    /// Samples `indices` of the set; `next` are the indices the following call will ask
    /// for, which a set on disk starts reading now.
    ///
    /// # Errors
    /// When a sample on disk can no longer be read.
    pub fn get(&self, indices: &[usize], next: &[usize]) -> Result<Vec<Cow<'_, Prepared>>> {
        match &self.store {
            Store::Memory(kept) => Ok(indices.iter().map(|&i| Cow::Borrowed(&kept[i])).collect()),
            Store::Disk(prefetcher) => {
                let sources =
                    |of: &[usize]| -> Vec<usize> { of.iter().map(|&i| self.sources[i]).collect() };
                let samples = prefetcher.take(&sources(indices))?;
                if !next.is_empty() {
                    prefetcher.request(sources(next));
                }
                Ok(samples.into_iter().map(Cow::Owned).collect())
            }
        }
    }
}

impl SampleSet {
    /// The crops `picks` of the set, stacked on `device`; `next` as for [`get`](Self::get).
    ///
    /// # Errors
    /// When a sample on disk can no longer be read, or is smaller than the crop.
    pub fn batch(
        &self,
        picks: &[(usize, Crop)],
        next: &[usize],
        crop: usize,
        device: Device,
    ) -> Result<Batch> {
        let indices: Vec<usize> = picks.iter().map(|&(i, _)| i).collect();
        let samples = self.get(&indices, next)?;
        let picked: Vec<(&Prepared, Crop)> = samples
            .iter()
            .zip(picks)
            .map(|(sample, &(_, c))| (sample.as_ref(), c))
            .collect();
        make_batch(&picked, crop, device)
    }
}

/// Reads batches of sources on a background thread, one request ahead.
struct Prefetcher {
    load: Arc<Loader>,
    requests: Sender<Vec<usize>>,
    /// The sources of the request in flight.
    in_flight: Mutex<Option<Vec<usize>>>,
    replies: Mutex<Receiver<Result<Vec<Prepared>>>>,
}

impl Prefetcher {
    fn new(load: Arc<Loader>) -> Self {
        let (requests, incoming) = mpsc::channel::<Vec<usize>>();
        let (reply, replies) = mpsc::channel();
        let reader = Arc::clone(&load);
        // The thread ends when the prefetcher, and with it the request sender, is dropped.
        std::thread::spawn(move || {
            for sources in incoming {
                if reply.send(read_all(reader.as_ref(), &sources)).is_err() {
                    break;
                }
            }
        });
        Self {
            load,
            requests,
            in_flight: Mutex::new(None),
            replies: Mutex::new(replies),
        }
    }

    /// Starts reading `sources`; the next [`take`](Self::take) collects them.
    fn request(&self, sources: Vec<usize>) {
        let Ok(mut in_flight) = self.in_flight.lock() else {
            return;
        };
        if in_flight.is_none() && self.requests.send(sources.clone()).is_ok() {
            *in_flight = Some(sources);
        }
    }

    /// The samples of `sources`: the request in flight if it is for them, else read now.
    fn take(&self, sources: &[usize]) -> Result<Vec<Prepared>> {
        let lost = || Error::Invalid("the background sample reader stopped".into());
        let requested = self.in_flight.lock().map_err(|_| lost())?.take();
        if let Some(requested) = requested {
            let reply = self
                .replies
                .lock()
                .map_err(|_| lost())?
                .recv()
                .map_err(|_| lost())?;
            if requested == sources {
                return reply;
            }
        }
        read_all(self.load.as_ref(), sources)
    }
}

fn read_all(load: &Loader, sources: &[usize]) -> Result<Vec<Prepared>> {
    sources.par_iter().map(|&i| load(i)).collect()
}

/// Which samples and crops each step of a seeded run takes: every epoch visits each sample
/// once, in an order drawn from the seed and the epoch; crops and flips are drawn per
/// position. The same for the same seed, so a resumed run takes what the uninterrupted one
/// would have.
pub struct Schedule<'a> {
    seed: u64,
    batch: u64,
    crop: usize,
    flip_probability: f64,
    sizes: &'a [(usize, usize)],
    /// The order of the epoch last drawn from: (epoch, order).
    order: (u64, Vec<usize>),
}

impl<'a> Schedule<'a> {
    /// The schedule of `batch` crops of `crop` pixels a step from samples of `sizes`.
    pub fn new(
        seed: u64,
        batch: usize,
        crop: usize,
        flip_probability: f64,
        sizes: &'a [(usize, usize)],
    ) -> Self {
        Self {
            seed,
            batch: batch as u64,
            crop,
            flip_probability,
            sizes,
            order: (u64::MAX, Vec::new()),
        }
    }

    /// The samples of `step` (from 1), by set index.
    pub fn indices(&mut self, step: usize) -> Vec<usize> {
        self.positions(step).map(|p| self.index(p)).collect()
    }

    /// The samples and crops of `step` (from 1).
    pub fn picks(&mut self, step: usize) -> Vec<(usize, Crop)> {
        self.positions(step)
            .map(|position| {
                let index = self.index(position);
                let crop = Crop::draw(
                    self.seed,
                    position,
                    self.sizes[index],
                    self.crop,
                    self.flip_probability,
                );
                (index, crop)
            })
            .collect()
    }

    fn positions(&self, step: usize) -> std::ops::Range<u64> {
        let first = (step as u64).saturating_sub(1) * self.batch;
        first..first + self.batch
    }

    fn index(&mut self, position: u64) -> usize {
        let n = self.sizes.len() as u64;
        let epoch = position / n;
        if self.order.0 != epoch {
            self.order = (epoch, epoch_order(self.seed, epoch, self.sizes.len()));
        }
        self.order.1[(position % n) as usize]
    }
}

/// A batch on the device: `(b, 3, s, s)` input, `(b, s, s)` target, `(b, s, s)` mask.
#[derive(Debug)]
pub struct Batch {
    /// Normalised photos.
    pub input: Tensor,
    /// Ground truth in metres, or a teacher's labels (0 where it does not count).
    pub target: Tensor,
    /// The pixels that count.
    pub mask: Tensor,
}

/// Cuts `crops` out of `samples` and stacks them on `device`.
///
/// # Errors
/// When a sample is smaller than the crop.
pub fn make_batch(samples: &[(&Prepared, Crop)], size: usize, device: Device) -> Result<Batch> {
    let cut: Vec<(Vec<f32>, Vec<f32>)> = samples
        .par_iter()
        .map(|(p, crop)| cut(p, *crop, size))
        .collect::<Result<_>>()?;
    let b = cut.len() as i64;
    let s = size as i64;
    let mut images = Vec::with_capacity(cut.len() * 3 * size * size);
    let mut targets = Vec::with_capacity(cut.len() * size * size);
    for (image, target) in cut {
        images.extend_from_slice(&image);
        targets.extend_from_slice(&target);
    }
    let input = Tensor::from_slice(&images)
        .reshape([b, 3, s, s])
        .to_device(device);
    let target = Tensor::from_slice(&targets)
        .reshape([b, s, s])
        .to_device(device);
    let mask = target.isfinite();
    let target = target.nan_to_num(0.0, 0.0, 0.0);
    Ok(Batch {
        input,
        target,
        mask,
    })
}

fn cut(p: &Prepared, crop: Crop, size: usize) -> Result<(Vec<f32>, Vec<f32>)> {
    if crop.x + size > p.width || crop.y + size > p.height {
        return Err(Error::Invalid(format!(
            "a {size}x{size} crop at ({}, {}) does not fit a {}x{} sample",
            crop.x, crop.y, p.width, p.height
        )));
    }
    let column = |x: usize| {
        if crop.flip {
            crop.x + size - 1 - x
        } else {
            crop.x + x
        }
    };
    let plane = p.width * p.height;
    let mut image = Vec::with_capacity(3 * size * size);
    for c in 0..3 {
        for y in 0..size {
            let row = c * plane + (crop.y + y) * p.width;
            image.extend((0..size).map(|x| p.image[row + column(x)]));
        }
    }
    let mut target = Vec::with_capacity(size * size);
    for y in 0..size {
        let row = (crop.y + y) * p.width;
        target.extend((0..size).map(|x| p.target[row + column(x)]));
    }
    Ok((image, target))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_matches_opencv() {
        // cv2.resize(np.arange(5), (1, 3), interpolation=cv2.INTER_NEAREST) -> 0, 1, 3
        let picks: Vec<usize> = (0..3).map(|i| nearest(i, 3, 5)).collect();
        assert_eq!(picks, [0, 1, 3]);
    }

    /// Sample `i` is `i + 1` pixels wide; 3 cannot be read and 5 has no valid pixel.
    fn synthetic(i: usize) -> Result<Prepared> {
        if i == 3 {
            return Err(Error::Invalid("unreadable".into()));
        }
        let (width, height) = (i + 1, 2);
        let valid = if i == 5 { 0 } else { width * height };
        Ok(Prepared {
            width,
            height,
            image: vec![i as f32; 3 * width * height],
            target: vec![if valid > 0 { i as f32 } else { f32::NAN }; width * height],
            valid,
        })
    }

    #[test]
    fn a_set_read_from_disk_gives_what_one_in_memory_does() {
        let load: Arc<Loader> = Arc::new(synthetic);
        let (memory, left_memory) = SampleSet::read(8, Arc::clone(&load), usize::MAX);
        let (disk, left_disk) = SampleSet::read(8, load, 0);
        assert!(!memory.streamed() && disk.streamed());
        for left in [&left_memory, &left_disk] {
            assert!(matches!(
                left.as_slice(),
                [(3, LeftOut::Unreadable(_)), (5, LeftOut::NoValidPixel)]
            ));
        }
        assert_eq!(memory.len(), 6);
        assert_eq!(memory.sizes(), disk.sizes());
        let widths = |set: &SampleSet, indices: &[usize], next: &[usize]| -> Vec<usize> {
            let got = set.get(indices, next).expect("samples");
            got.iter().map(|p| p.width).collect()
        };
        // The read-ahead is used when the next call asks for it, and discarded otherwise.
        for (indices, next) in [
            (&[0, 1][..], &[2, 3][..]),
            (&[2, 3], &[4, 5]),
            (&[0, 0], &[1]),
            (&[5], &[]),
        ] {
            assert_eq!(widths(&memory, indices, next), widths(&disk, indices, next));
        }
        assert_eq!(widths(&disk, &[4, 5], &[]), [7, 8]);
    }

    #[test]
    fn epoch_order_is_a_permutation_and_seeded() {
        let a = epoch_order(7, 0, 10);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..10).collect::<Vec<_>>());
        assert_eq!(a, epoch_order(7, 0, 10));
        assert_ne!(a, epoch_order(7, 1, 10));
    }

    #[test]
    fn a_flipped_crop_mirrors_columns() {
        let p = Prepared {
            width: 3,
            height: 2,
            image: (0..18).map(|v| v as f32).collect(),
            target: (0..6).map(|v| v as f32 + 1.0).collect(),
            valid: 6,
        };
        let (image, depth) = cut(
            &p,
            Crop {
                x: 1,
                y: 0,
                flip: true,
            },
            2,
        )
        .expect("fits");
        assert_eq!(depth, [3.0, 2.0, 6.0, 5.0]);
        assert_eq!(&image[..4], &[2.0, 1.0, 5.0, 4.0]);
        assert!(cut(
            &p,
            Crop {
                x: 2,
                y: 0,
                flip: false
            },
            2
        )
        .is_err());
    }
}
