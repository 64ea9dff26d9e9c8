//! The model thread: decoded photos queue up (bounded), and are run on the model in
//! batches of up to `--batch`, waiting at most `--batch-wait-ms` to fill one.
//!
//! [`DepthEngine`] is neither `Send` nor `Sync` (a LibTorch module lives on the thread that
//! made it), so the engine never leaves the thread that loaded it: that thread runs
//! [`run_model`], and the HTTP server runs on threads of its own.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anydepth_core::{Prediction, RgbImage};
use anydepth_model::DepthEngine;
use tokio::sync::oneshot;

use crate::metrics::Metrics;

/// The answer to one queued photo: its prediction and the photo back, or why the model
/// failed.
pub(crate) type Reply = Result<(Prediction, RgbImage), String>;

/// One photo waiting for the model.
pub(crate) struct Job {
    pub image: RgbImage,
    /// Closed when the client went away: the job is then skipped.
    pub reply: oneshot::Sender<Reply>,
}

/// Why a photo was not queued.
#[derive(Debug)]
pub(crate) enum Refused {
    /// The queue holds `--queue` photos already.
    Full,
    /// The model thread has stopped.
    Closed,
}

/// The sending side of the bounded queue; clones share it.
#[derive(Clone)]
pub(crate) struct Queue {
    sender: SyncSender<Job>,
    depth: Arc<AtomicUsize>,
}

impl Queue {
    /// A queue of at most `capacity` photos (at least 1) and its receiving side.
    pub fn bounded(capacity: usize) -> (Queue, Receiver<Job>, Arc<AtomicUsize>) {
        let (sender, receiver) = std::sync::mpsc::sync_channel(capacity.max(1));
        let depth = Arc::new(AtomicUsize::new(0));
        let queue = Queue {
            sender,
            depth: Arc::clone(&depth),
        };
        (queue, receiver, depth)
    }

    /// Photos waiting for the model now.
    pub fn depth(&self) -> usize {
        self.depth.load(Ordering::SeqCst)
    }

    /// Queues `image` without waiting; the reply comes through the returned receiver.
    pub fn submit(&self, image: RgbImage) -> Result<oneshot::Receiver<Reply>, Refused> {
        let (reply, answer) = oneshot::channel();
        // Counted before sending, so the model thread never sees the count below zero.
        self.depth.fetch_add(1, Ordering::SeqCst);
        match self.sender.try_send(Job { image, reply }) {
            Ok(()) => Ok(answer),
            Err(refused) => {
                self.depth.fetch_sub(1, Ordering::SeqCst);
                Err(match refused {
                    TrySendError::Full(_) => Refused::Full,
                    TrySendError::Disconnected(_) => Refused::Closed,
                })
            }
        }
    }
}

/// How photos are grouped into model calls.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Batching {
    /// Most photos per model call (at least 1).
    pub max_images: usize,
    /// Longest wait for more photos once the first of a batch arrived.
    pub max_wait: Duration,
}

/// Runs photos from `jobs` on `engine` in batches until every sender is gone.
pub(crate) fn run_model(
    engine: &dyn DepthEngine,
    jobs: &Receiver<Job>,
    depth: &AtomicUsize,
    batching: Batching,
    metrics: &Metrics,
) {
    let take = |job: Job| {
        depth.fetch_sub(1, Ordering::SeqCst);
        metrics.set_queue_depth(depth.load(Ordering::SeqCst));
        job
    };
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![take(first)];
        let deadline = Instant::now() + batching.max_wait;
        while batch.len() < batching.max_images.max(1) {
            let left = deadline.saturating_duration_since(Instant::now());
            let next = if left.is_zero() {
                jobs.try_recv().map_err(|_| RecvTimeoutError::Timeout)
            } else {
                jobs.recv_timeout(left)
            };
            match next {
                Ok(job) => batch.push(take(job)),
                Err(_) => break,
            }
        }
        // Clients that went away while their photo waited cost nothing further.
        let before = batch.len();
        batch.retain(|job| !job.reply.is_closed());
        metrics.skipped(before - batch.len());
        if batch.is_empty() {
            continue;
        }
        run_batch(engine, batch, metrics);
    }
}

/// Runs one batch and answers each job (in order).
///
/// When a batch of several photos fails (one photo too large for the device's memory, say),
/// each photo is run again on its own, so only the photos that fail alone get an error.
fn run_batch(engine: &dyn DepthEngine, batch: Vec<Job>, metrics: &Metrics) {
    let (images, replies): (Vec<RgbImage>, Vec<_>) =
        batch.into_iter().map(|job| (job.image, job.reply)).unzip();
    metrics.batch(images.len());
    match predict(engine, &images) {
        Ok(predictions) => {
            for ((prediction, image), reply) in predictions.into_iter().zip(images).zip(replies) {
                // A client that left since is no concern of ours.
                let _ = reply.send(Ok((prediction, image)));
            }
        }
        Err(reason) if images.len() == 1 => answer(replies, &reason),
        Err(reason) => {
            tracing::warn!(
                "model call on {} photos failed ({reason}); running each alone",
                images.len()
            );
            for (image, reply) in images.into_iter().zip(replies) {
                if reply.is_closed() {
                    metrics.skipped(1);
                    continue;
                }
                metrics.batch(1);
                let one = std::slice::from_ref(&image);
                match predict(engine, one).map(|mut p| p.pop()) {
                    Ok(Some(prediction)) => {
                        let _ = reply.send(Ok((prediction, image)));
                    }
                    Ok(None) => answer([reply], "the model returned no depth map"),
                    Err(reason) => answer([reply], &reason),
                }
            }
        }
    }
}

/// One model call: a depth map per image, or why there is none. A panicking engine (it
/// should not panic, but one bad photo must not take the service down) is an error too.
fn predict(engine: &dyn DepthEngine, images: &[RgbImage]) -> Result<Vec<Prediction>, String> {
    match catch_unwind(AssertUnwindSafe(|| engine.predict_batch(images))) {
        Ok(Ok(predictions)) if predictions.len() == images.len() => Ok(predictions),
        Ok(Ok(predictions)) => Err(format!(
            "the model returned {} depth maps for {} photos",
            predictions.len(),
            images.len()
        )),
        Ok(Err(err)) => Err(anydepth_pipeline::chain_text(&err)),
        Err(_) => Err("the model failed (it panicked)".to_owned()),
    }
}

fn answer(replies: impl IntoIterator<Item = oneshot::Sender<Reply>>, reason: &str) {
    tracing::warn!("model call failed: {reason}");
    for reply in replies {
        let _ = reply.send(Err(reason.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use anydepth_core::DepthMap;
    use anydepth_model::config::{Encoder, ModelConfig};
    use anydepth_model::{EstimatorOptions, ForwardTimings, StageTimings};

    use super::*;

    /// Fails every call holding a photo 13 pixels wide: with an error in a batch, and by
    /// panicking when that photo runs alone. Records the size of each call.
    struct PickyEngine {
        config: ModelConfig,
        options: EstimatorOptions,
        calls: Mutex<Vec<usize>>,
    }

    impl DepthEngine for PickyEngine {
        fn config(&self) -> &ModelConfig {
            &self.config
        }

        fn device_name(&self) -> String {
            "Picky".into()
        }

        fn options(&self) -> &EstimatorOptions {
            &self.options
        }

        fn predict_batch(&self, images: &[RgbImage]) -> anydepth_model::Result<Vec<Prediction>> {
            self.calls.lock().expect("lock").push(images.len());
            if images.iter().any(|image| image.width == 13) {
                assert!(images.len() > 1, "a 13-pixel photo alone");
                return Err(anydepth_model::Error::Invalid("out of memory".into()));
            }
            Ok(images
                .iter()
                .map(|image| {
                    let values = vec![image.width as f32; (image.width * image.height) as usize];
                    let map = DepthMap::new(image.width, image.height, values).expect("sized");
                    Prediction::Disparity(map)
                })
                .collect())
        }

        fn predict_batch_timed(
            &self,
            images: &[RgbImage],
        ) -> anydepth_model::Result<(Vec<Prediction>, StageTimings)> {
            Ok((self.predict_batch(images)?, StageTimings::default()))
        }

        fn time_forward(
            &self,
            _batch: usize,
            _size: (u32, u32),
            _warmup: usize,
            _iters: usize,
        ) -> anydepth_model::Result<ForwardTimings> {
            Ok(ForwardTimings {
                seconds: vec![],
                memory: None,
            })
        }
    }

    #[test]
    fn a_failed_batch_runs_each_photo_alone_and_fails_only_the_bad_one() {
        let engine = PickyEngine {
            config: ModelConfig::v2(Encoder::Vits),
            options: EstimatorOptions::default(),
            calls: Mutex::new(Vec::new()),
        };
        let widths = [8, 13, 9];
        let (jobs, answers): (Vec<Job>, Vec<_>) = widths
            .iter()
            .map(|&width| {
                let image =
                    RgbImage::new(width, 2, vec![0.5; (width * 2 * 3) as usize]).expect("sized");
                let (reply, answer) = oneshot::channel();
                (Job { image, reply }, answer)
            })
            .unzip();
        let metrics = Metrics::default();
        run_batch(&engine, jobs, &metrics);

        assert_eq!(*engine.calls.lock().expect("lock"), vec![3, 1, 1, 1]);
        for (answer, width) in answers.into_iter().zip(widths) {
            let reply = answer.blocking_recv().expect("answered");
            if width == 13 {
                let why = reply.expect_err("the bad photo fails");
                assert!(why.contains("panicked"), "{why}");
            } else {
                let (prediction, image) = reply.expect("a good photo is answered");
                assert_eq!(image.width, width);
                assert_eq!(prediction.values()[0], width as f32);
            }
        }
    }
}
