//! Training samples to network input: the official recipe's lower-bound resize (cubic for
//! photos, nearest for depth), a random square crop and a random horizontal flip; and the
//! sample set a run draws from, in memory or read from disk one batch ahead.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
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

    /// The sample's sizes and count of valid pixels, without its values.
    fn without_data(self) -> Self {
        Self {
            image: Vec::new(),
            target: Vec::new(),
            ..self
        }
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
    /// Every source, to name it in errors.
    paths: Vec<PathBuf>,
    store: Store,
}

enum Store {
    /// The samples, and the bytes they hold.
    Memory(Vec<Prepared>, usize),
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

impl LeftOut {
    /// Why, in words; `no_valid` says it for a sample without a pixel that counts.
    pub fn reason(self, no_valid: &str) -> String {
        match self {
            Self::Unreadable(e) => e.to_string(),
            Self::NoValidPixel => no_valid.to_owned(),
        }
    }
}

impl SampleSet {
    /// Reads the sources `paths` (by index) through `load`, in parallel chunks, keeping
    /// them in memory while their total size stays within `memory_budget` bytes. Returns
    /// the set and the sources left out, by index.
    pub fn read(
        paths: Vec<PathBuf>,
        load: Arc<Loader>,
        memory_budget: usize,
    ) -> (Self, Vec<(usize, LeftOut)>) {
        let n = paths.len();
        let mut sources = Vec::new();
        let mut sizes = Vec::new();
        let mut kept = Vec::new();
        let mut left_out = Vec::new();
        let mut bytes = 0usize;
        let mut in_memory = true;
        for start in (0..n).step_by(READ_CHUNK) {
            // Once the set is read from disk, only the samples' sizes are kept.
            let keep = in_memory;
            let chunk: Vec<(usize, Result<(Prepared, usize)>)> = (start..n.min(start + READ_CHUNK))
                .into_par_iter()
                .map(|i| {
                    let read = load(i).map(|p| {
                        let bytes = p.bytes();
                        (if keep { p } else { p.without_data() }, bytes)
                    });
                    (i, read)
                })
                .collect();
            for (i, result) in chunk {
                match result {
                    Ok((p, size)) if p.valid > 0 => {
                        sources.push(i);
                        sizes.push((p.width, p.height));
                        bytes += size;
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
            Store::Memory(kept, bytes)
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
                paths,
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

    /// The bytes of samples held in memory (0 when they are read from disk).
    pub fn memory(&self) -> usize {
        match self.store {
            Store::Memory(_, bytes) => bytes,
            Store::Disk(_) => 0,
        }
    }

    /// Samples `indices` of the set: from memory, or from disk (what
    /// [`prefetch`](Self::prefetch) started reading, if it was for these).
    ///
    /// # Errors
    /// When a sample on disk can no longer be read, or no longer is what it was when the
    /// set was read.
    pub fn get(&self, indices: &[usize]) -> Result<Vec<Cow<'_, Prepared>>> {
        match &self.store {
            Store::Memory(kept, _) => {
                Ok(indices.iter().map(|&i| Cow::Borrowed(&kept[i])).collect())
            }
            Store::Disk(prefetcher) => {
                let samples = prefetcher.take(&self.source_indices(indices))?;
                for (&i, sample) in indices.iter().zip(&samples) {
                    if (sample.width, sample.height) != self.sizes[i] || sample.valid == 0 {
                        return Err(Error::Invalid(format!(
                            "{} changed since training started: it is now {}x{} with {} \
                             valid pixels after the resize, it was {}x{}",
                            self.paths[self.sources[i]].display(),
                            sample.width,
                            sample.height,
                            sample.valid,
                            self.sizes[i].0,
                            self.sizes[i].1
                        )));
                    }
                }
                Ok(samples.into_iter().map(Cow::Owned).collect())
            }
        }
    }

    /// Starts reading samples `indices` on the background thread, for the next
    /// [`get`](Self::get); nothing for a set in memory.
    pub fn prefetch(&self, indices: &[usize]) {
        if let Store::Disk(prefetcher) = &self.store {
            if !indices.is_empty() {
                prefetcher.request(self.source_indices(indices));
            }
        }
    }

    /// The crops `picks` of the set, stacked on `device`; then starts reading `next`
    /// (the samples of the following batch).
    ///
    /// # Errors
    /// As [`get`](Self::get), and when a sample is smaller than the crop.
    pub fn batch(
        &self,
        picks: &[(usize, Crop)],
        next: &[usize],
        crop: usize,
        device: Device,
    ) -> Result<Batch> {
        let indices: Vec<usize> = picks.iter().map(|&(i, _)| i).collect();
        let samples = self.get(&indices)?;
        let picked: Vec<(&Prepared, Crop)> = samples
            .iter()
            .zip(picks)
            .map(|(sample, &(_, c))| (sample.as_ref(), c))
            .collect();
        let batch = make_batch(&picked, crop, device)?;
        // Only now, so that the reads do not queue ahead of this batch's crops.
        self.prefetch(next);
        Ok(batch)
    }

    fn source_indices(&self, indices: &[usize]) -> Vec<usize> {
        indices.iter().map(|&i| self.sources[i]).collect()
    }
}

/// Reads batches of sources on a background thread, one request at a time; without the
/// thread (it could not be started), reads when asked.
struct Prefetcher {
    load: Arc<Loader>,
    state: Mutex<PrefetchState>,
}

struct PrefetchState {
    /// Where requests go; `None` without a background thread.
    requests: Option<Sender<Vec<usize>>>,
    replies: Receiver<Result<Vec<Prepared>>>,
    /// The sources of the request in flight, whose reply is the next on `replies`.
    in_flight: Option<Vec<usize>>,
}

impl Prefetcher {
    fn new(load: Arc<Loader>) -> Self {
        let (requests, incoming) = mpsc::channel::<Vec<usize>>();
        let (reply, replies) = mpsc::channel();
        let reader = Arc::clone(&load);
        // The thread ends when the prefetcher, and with it the request sender, is dropped.
        let spawned = std::thread::Builder::new()
            .name("sample-reader".into())
            .spawn(move || {
                for sources in incoming {
                    let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        read_all(reader.as_ref(), &sources)
                    }))
                    .unwrap_or_else(|_| {
                        Err(Error::Invalid("reading training samples panicked".into()))
                    });
                    if reply.send(read).is_err() {
                        break;
                    }
                }
            });
        if let Err(e) = &spawned {
            tracing::warn!("no background sample reader ({e}): batches are read when needed");
        }
        Self {
            load,
            state: Mutex::new(PrefetchState {
                requests: spawned.ok().map(|_| requests),
                replies,
                in_flight: None,
            }),
        }
    }

    /// Starts reading `sources` unless a request is already in flight.
    fn request(&self, sources: Vec<usize>) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        if state.in_flight.is_some() {
            return;
        }
        if let Some(requests) = &state.requests {
            if requests.send(sources.clone()).is_ok() {
                state.in_flight = Some(sources);
            }
        }
    }

    /// The samples of `sources`: the request in flight if it is for them, else read now
    /// (a read-ahead for other sources is dropped).
    fn take(&self, sources: &[usize]) -> Result<Vec<Prepared>> {
        let lost = || Error::Invalid("the background sample reader stopped".into());
        let mut state = self.state.lock().map_err(|_| lost())?;
        if let Some(requested) = state.in_flight.take() {
            let reply = state.replies.recv().map_err(|_| lost())?;
            if requested == sources {
                return reply;
            }
        }
        drop(state);
        read_all(self.load.as_ref(), sources)
    }
}

fn read_all(load: &Loader, sources: &[usize]) -> Result<Vec<Prepared>> {
    sources.par_iter().map(|&i| load(i)).collect()
}

/// The global sample positions of `step` (from 1) of a run of `batch` samples a step.
pub fn step_positions(step: usize, batch: usize) -> std::ops::Range<u64> {
    debug_assert!(step >= 1, "steps count from 1");
    let first = (step as u64).saturating_sub(1) * batch as u64;
    first..first + batch as u64
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
        step_positions(step, self.batch as usize)
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
        use std::sync::atomic::{AtomicUsize, Ordering};
        let reads = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&reads);
        let load: Arc<Loader> = Arc::new(move |i| {
            counter.fetch_add(1, Ordering::SeqCst);
            synthetic(i)
        });
        let paths: Vec<PathBuf> = (0..8).map(|i| PathBuf::from(format!("{i}.png"))).collect();
        let (memory, left_memory) = SampleSet::read(paths.clone(), Arc::clone(&load), usize::MAX);
        let (disk, left_disk) = SampleSet::read(paths, load, 0);
        assert!(!memory.streamed() && disk.streamed());
        assert_eq!((memory.memory() > 0, disk.memory()), (true, 0));
        for left in [&left_memory, &left_disk] {
            assert!(matches!(
                left.as_slice(),
                [(3, LeftOut::Unreadable(_)), (5, LeftOut::NoValidPixel)]
            ));
        }
        assert_eq!(memory.len(), 6);
        assert_eq!(memory.sizes(), disk.sizes());
        let widths = |set: &SampleSet, indices: &[usize]| -> Vec<usize> {
            let got = set.get(indices).expect("samples");
            got.iter().map(|p| p.width).collect()
        };
        // Set index 4 is source 6 (7 wide), 5 is source 7.
        assert_eq!(widths(&disk, &[4, 5]), [7, 8]);
        // A read-ahead is used when the next call asks for its samples (no read then) and
        // dropped otherwise; either way the samples are those in memory.
        for (indices, ahead, reads_in_get) in [
            (&[0, 1][..], &[0, 1][..], 0),
            (&[2, 3], &[4, 5], 2),
            (&[0, 0], &[0, 0], 0),
            (&[5], &[], 1),
        ] {
            let start = reads.load(Ordering::SeqCst);
            disk.prefetch(ahead);
            // Let the read-ahead run, so that the count below is only `get`'s.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while reads.load(Ordering::SeqCst) < start + ahead.len() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the read-ahead never ran"
                );
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            let before = reads.load(Ordering::SeqCst);
            assert_eq!(widths(&disk, indices), widths(&memory, indices));
            let read_now = reads.load(Ordering::SeqCst) - before;
            assert_eq!(
                read_now, reads_in_get,
                "{indices:?} after a read-ahead of {ahead:?}"
            );
        }
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
