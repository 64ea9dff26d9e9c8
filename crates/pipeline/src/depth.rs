//! Depth jobs: photos, folders and globs in, depth maps out, in batches, with inputs whose
//! outputs exist skipped, failures listed rather than fatal, and every file written
//! atomically.

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use anydepth_core::colormap::Colormap;
use anydepth_core::{load_image, DepthMap, Prediction, RgbImage};
use anydepth_model::da3::{Da3Engine, RefViewStrategy, ViewsInput};
use anydepth_model::{DepthEngine, PhotoStager, StagedPhotos};

use crate::error::{bail, chain_text, Result};
use crate::model::ModelRequest;
use crate::output::{self, Format};
use crate::scene::CameraRequest;
use crate::{sources, Notes};

/// What a depth job is asked to do.
#[derive(Clone, Debug, PartialEq)]
pub struct DepthJob {
    /// Image files, folders (their images) or glob patterns.
    pub inputs: Vec<PathBuf>,
    /// Output folder (created if missing).
    pub out_dir: PathBuf,
    /// The depth model that runs.
    pub model: ModelRequest,
    /// Largest depth of a metric model, in metres (its trained range when `None`).
    pub max_depth_m: Option<f64>,
    /// Images per forward pass.
    pub batch: usize,
    /// Formats each depth map is written in, one file each.
    pub formats: Vec<Format>,
    /// Colormap of the colour and side-by-side formats.
    pub colormap: Colormap,
    /// Replace existing outputs (otherwise inputs whose outputs exist are skipped).
    pub force: bool,
}

/// A validated [`DepthJob`]: the files it reads and the formats it writes.
#[derive(Clone, Debug, PartialEq)]
pub struct DepthPlan {
    /// The images to read, in order.
    pub files: Vec<PathBuf>,
    /// The formats to write, as asked (adjacent repeats dropped).
    pub formats: Vec<Format>,
    /// Files in folders that are not images by their extension.
    pub ignored: Vec<PathBuf>,
}

/// What turns photos into depth for a depth job: any [`DepthEngine`] (V1, V2; a
/// `&dyn DepthEngine` as `&engine`), or [`Da3Photos`] (Depth Anything 3, one photo at a
/// time).
pub trait PhotoDepth {
    /// Depth of `images` (read from `files`), each at its own resolution, in order.
    ///
    /// # Errors
    /// When inference fails.
    fn predict_photos(
        &self,
        files: &[&PathBuf],
        images: &[RgbImage],
    ) -> anydepth_model::Result<Vec<Prediction>>;

    /// Something that prepares photos on the thread that decodes them, while the network
    /// runs on earlier ones (see [`DepthEngine::stager`]); `None` by default.
    fn stager(&self) -> Option<Box<dyn PhotoStager>> {
        None
    }

    /// [`PhotoDepth::predict_photos`] on images that [`PhotoDepth::stager`] made into
    /// `staged`.
    ///
    /// # Errors
    /// As [`PhotoDepth::predict_photos`].
    fn predict_staged(
        &self,
        files: &[&PathBuf],
        images: &[RgbImage],
        staged: StagedPhotos,
    ) -> anydepth_model::Result<Vec<Prediction>> {
        drop(staged);
        self.predict_photos(files, images)
    }
}

impl PhotoDepth for &dyn DepthEngine {
    fn predict_photos(
        &self,
        _files: &[&PathBuf],
        images: &[RgbImage],
    ) -> anydepth_model::Result<Vec<Prediction>> {
        self.predict_batch(images)
    }

    fn stager(&self) -> Option<Box<dyn PhotoStager>> {
        DepthEngine::stager(*self)
    }

    fn predict_staged(
        &self,
        _files: &[&PathBuf],
        images: &[RgbImage],
        staged: StagedPhotos,
    ) -> anydepth_model::Result<Vec<Prediction>> {
        DepthEngine::predict_staged(*self, images, staged)
    }
}

/// Depth Anything 3 on one photo at a time, its depth brought to the photo's resolution:
/// metres from the metric model (with each photo's intrinsics from `camera`: the flags,
/// EXIF or the announced guess), relative depth from the others.
pub struct Da3Photos<'a> {
    /// The loaded network.
    pub engine: &'a dyn Da3Engine,
    /// The long side of the network input.
    pub process_res: u32,
    /// Where the metric model's focal lengths come from.
    pub camera: CameraRequest,
    /// Told about guessed cameras.
    pub notes: Notes<'a>,
}

impl PhotoDepth for Da3Photos<'_> {
    fn predict_photos(
        &self,
        files: &[&PathBuf],
        images: &[RgbImage],
    ) -> anydepth_model::Result<Vec<Prediction>> {
        let metric = self.engine.model().is_metric();
        files
            .iter()
            .zip(images)
            .map(|(file, image)| {
                let intrinsics = if metric {
                    let k = self
                        .camera
                        .resolve(Some(file), image.width, image.height, self.notes)
                        .map_err(|e| anydepth_model::Error::Invalid(chain_text(&e)))?;
                    Some(vec![k])
                } else {
                    None
                };
                let output = self.engine.run(&ViewsInput {
                    photos: std::slice::from_ref(image),
                    process_res: self.process_res,
                    strategy: RefViewStrategy::default(),
                    cameras: None,
                    intrinsics: intrinsics.as_deref(),
                })?;
                let (Some(view), Some(placement)) =
                    (output.views.first(), output.placements.first())
                else {
                    return Err(anydepth_model::Error::Invalid("no view returned".into()));
                };
                let depth = crate::views::resize_to_photo(
                    &view.depth,
                    view.width,
                    view.height,
                    placement,
                    image.width,
                    image.height,
                )
                .map_err(|e| anydepth_model::Error::Invalid(chain_text(&e)))?;
                let invalid =
                    |e: anydepth_core::Error| anydepth_model::Error::Invalid(e.to_string());
                Ok(if metric {
                    Prediction::Metric(
                        DepthMap::new(image.width, image.height, depth).map_err(invalid)?,
                    )
                } else {
                    Prediction::RelativeDepth(
                        DepthMap::new(image.width, image.height, depth).map_err(invalid)?,
                    )
                })
            })
            .collect()
    }
}

/// One input whose outputs already exist and that is skipped.
#[derive(Clone, Debug, PartialEq)]
pub struct Kept {
    /// The input skipped.
    pub file: PathBuf,
    /// The first of its outputs found.
    pub existing: PathBuf,
}

/// What one run of the network over the pending inputs did.
#[derive(Debug, Default)]
pub struct DepthReport {
    /// Inputs whose outputs were all written.
    pub written: usize,
    /// Inputs that failed, with the reason.
    pub failures: Vec<(PathBuf, String)>,
}

/// Hears of a depth job's progress; every method has a default that does nothing.
pub trait DepthObserver: Sync {
    /// The input about to be read.
    fn item(&self, _name: &str) {}

    /// One input is done (written or failed); called from the threads that write.
    fn advance(&self) {}

    /// Whether [`DepthObserver::log`] wants the results.
    fn logs(&self) -> bool {
        false
    }

    /// The `frame`-th result, in order, on a second thread while the files of its batch
    /// are written.
    ///
    /// # Errors
    /// Whatever the observer met; it ends the job.
    fn log(
        &self,
        _frame: u64,
        _file: &Path,
        _image: &RgbImage,
        _prediction: &Prediction,
    ) -> std::result::Result<(), crate::BoxError> {
        Ok(())
    }
}

impl DepthJob {
    /// Validates the job and expands its inputs (before any model is loaded).
    ///
    /// # Errors
    /// When the batch size, the model request or the formats are invalid, or the inputs
    /// name nothing or collide.
    pub fn plan(&self) -> Result<DepthPlan> {
        if self.batch == 0 {
            bail!("--batch must be at least 1");
        }
        self.model.spec(self.max_depth_m)?;
        let mut formats = self.formats.clone();
        formats.dedup();
        if formats.is_empty() {
            bail!("--formats lists nothing to write");
        }
        if let Some(video) = formats.iter().find(|f| f.is_video()) {
            bail!(
                "--formats {} writes a video of a clip; the inputs are photos",
                video.name()
            );
        }
        let inputs = sources::expand_images(&self.inputs)?;
        Ok(DepthPlan {
            files: inputs.files,
            formats,
            ignored: inputs.ignored,
        })
    }

    /// The inputs still to do, and those kept because an output exists (all are pending
    /// with `force`).
    pub fn pending(&self, plan: &DepthPlan) -> (Vec<PathBuf>, Vec<Kept>) {
        let mut todo = Vec::new();
        let mut kept = Vec::new();
        for file in &plan.files {
            let stem = sources::stem(file);
            let existing = plan
                .formats
                .iter()
                .map(|&f| output::output_path(&self.out_dir, &stem, f))
                .find(|p| p.exists());
            match existing {
                Some(existing) if !self.force => kept.push(Kept {
                    file: file.clone(),
                    existing,
                }),
                _ => todo.push(file.clone()),
            }
        }
        (todo, kept)
    }

    /// Runs `engine` over `todo` in batches and writes every format of each result, the
    /// photos of a batch in parallel; the next batch is decoded (in parallel) and prepared
    /// for the engine where it can be ([`PhotoDepth::stager`]) meanwhile.
    /// Unreadable inputs and failed batches or writes are listed in the report; the others
    /// are processed.
    ///
    /// # Errors
    /// When the output folder cannot be created or the observer fails.
    pub fn run(
        &self,
        plan: &DepthPlan,
        engine: &dyn PhotoDepth,
        todo: &[PathBuf],
        observer: &dyn DepthObserver,
    ) -> Result<DepthReport> {
        let mut report = DepthReport::default();
        let mut frame = 0u64;
        let mut chunks = todo.chunks(self.batch);
        let stager = engine.stager();
        let stager = stager.as_deref();
        // The next batch is decoded and staged on a second thread while this one runs and
        // is written.
        std::thread::scope(|scope| -> Result<()> {
            let mut next = chunks.next().map(|chunk| decode(chunk, stager));
            while let Some(decoded) = next.take() {
                let ahead = chunks
                    .next()
                    .map(|chunk| scope.spawn(move || decode(chunk, stager)));
                self.run_batch(plan, engine, decoded, observer, &mut frame, &mut report)?;
                // A panic while decoding is a bug: carry it on here.
                next = ahead.map(|thread| {
                    thread
                        .join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                });
            }
            Ok(())
        })?;
        Ok(report)
    }

    /// Runs one decoded batch through `engine` and writes its outputs.
    fn run_batch(
        &self,
        plan: &DepthPlan,
        engine: &dyn PhotoDepth,
        decoded: Decoded<'_>,
        observer: &dyn DepthObserver,
        frame: &mut u64,
        report: &mut DepthReport,
    ) -> Result<()> {
        let mut files: Vec<&PathBuf> = Vec::new();
        let mut images: Vec<RgbImage> = Vec::new();
        for (file, image) in decoded.photos {
            observer.item(&sources::stem(file));
            match image {
                Ok(img) => {
                    files.push(file);
                    images.push(img);
                }
                Err(e) => {
                    report.failures.push((file.clone(), e));
                    observer.advance();
                }
            }
        }
        if images.is_empty() {
            return Ok(());
        }
        let predicted = match decoded.staged {
            Some(Ok(staged)) => engine.predict_staged(&files, &images, staged),
            // Staging failed (the device out of memory, a CUDA error); unusable images are
            // reported when the batch runs, staged or not.
            Some(Err(why)) => {
                tracing::warn!("could not prepare a batch ahead ({why}); running it directly");
                engine.predict_photos(&files, &images)
            }
            None => engine.predict_photos(&files, &images),
        };
        match predicted {
            Ok(predictions) => {
                let results: Vec<(&PathBuf, &RgbImage, Prediction)> = files
                    .iter()
                    .zip(&images)
                    .zip(predictions)
                    .map(|((&file, image), prediction)| (file, image, prediction))
                    .collect();
                // The results go to the observer, in order, while the outputs are written,
                // photos in parallel.
                let first = *frame;
                let log = observer.logs().then_some(|| {
                    results.iter().zip(first..).try_for_each(
                        |((file, image, prediction), frame)| {
                            observer.log(frame, file, image, prediction)
                        },
                    )
                });
                let outcomes: Vec<Result<()>> = crate::run_beside(log, || {
                    results
                        .par_iter()
                        .map(|(file, image, prediction)| {
                            let outcome = self.write_all(plan, file, image, prediction);
                            observer.advance();
                            outcome
                        })
                        .collect()
                })?;
                for ((file, _, _), outcome) in results.iter().zip(outcomes) {
                    match outcome {
                        Ok(()) => report.written += 1,
                        Err(e) => report.failures.push(((*file).clone(), chain_text(&e))),
                    }
                }
                *frame += results.len() as u64;
            }
            Err(e) => {
                for file in files {
                    report.failures.push((file.clone(), e.to_string()));
                    observer.advance();
                }
            }
        }
        Ok(())
    }

    fn write_all(
        &self,
        plan: &DepthPlan,
        file: &Path,
        image: &RgbImage,
        prediction: &Prediction,
    ) -> Result<()> {
        output::write_prediction(
            &self.out_dir,
            &sources::stem(file),
            &plan.formats,
            prediction,
            Some(image),
            self.colormap,
            self.force,
        )
    }
}

/// The photos of one batch, decoded, and staged for the engine when it stages them.
struct Decoded<'a> {
    /// Each file with its image, or why it could not be read.
    photos: Vec<(&'a PathBuf, std::result::Result<RgbImage, String>)>,
    /// The images that were read, in order, made ready by the engine's stager.
    staged: Option<anydepth_model::Result<StagedPhotos>>,
}

/// Decodes the photos of one batch, in parallel, and stages those read with `stager`, when
/// given.
fn decode<'a>(files: &'a [PathBuf], stager: Option<&dyn PhotoStager>) -> Decoded<'a> {
    let photos: Vec<_> = files
        .par_iter()
        .map(|file| (file, load_image(file).map_err(|e| e.to_string())))
        .collect();
    let images: Vec<&RgbImage> = photos
        .iter()
        .filter_map(|(_, image)| image.as_ref().ok())
        .collect();
    let staged = stager
        .filter(|_| !images.is_empty())
        .map(|stager| stager.stage(&images));
    Decoded { photos, staged }
}
