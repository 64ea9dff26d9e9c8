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
fn run_batch(engine: &dyn DepthEngine, batch: Vec<Job>, metrics: &Metrics) {
    let (images, replies): (Vec<RgbImage>, Vec<_>) =
        batch.into_iter().map(|job| (job.image, job.reply)).unzip();
    metrics.batch(images.len());
    // An engine should not panic, but one bad photo must not take the service down.
    let outcome = catch_unwind(AssertUnwindSafe(|| engine.predict_batch(&images)));
    let predictions = match outcome {
        Ok(Ok(predictions)) if predictions.len() == images.len() => predictions,
        Ok(Ok(predictions)) => {
            let reason = format!(
                "the model returned {} depth maps for {} photos",
                predictions.len(),
                images.len()
            );
            return answer_all(replies, &reason);
        }
        Ok(Err(err)) => return answer_all(replies, &anydepth_pipeline::chain_text(&err)),
        Err(_) => return answer_all(replies, "the model failed (it panicked)"),
    };
    for ((prediction, image), reply) in predictions.into_iter().zip(images).zip(replies) {
        // A client that left since is no concern of ours.
        let _ = reply.send(Ok((prediction, image)));
    }
}

fn answer_all(replies: Vec<oneshot::Sender<Reply>>, reason: &str) {
    tracing::warn!("model call failed: {reason}");
    for reply in replies {
        let _ = reply.send(Err(reason.to_owned()));
    }
}
