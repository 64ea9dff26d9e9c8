//! The bounded queue between the decoding thread and the consumer.
//!
//! Files block the decoder while the queue is full (every frame is delivered, memory stays
//! bounded); live sources drop the oldest queued frame instead (latency stays bounded, the
//! newest frames are delivered) and count the drops.
// Without FFmpeg there is no decoder, so nothing fills a queue.
#![cfg_attr(not(feature = "ffmpeg"), allow(dead_code))]

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use crate::error::Result;
use crate::frame::VideoFrame;

/// What a full queue does with a new frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WhenFull {
    /// The producer waits for the consumer.
    Wait,
    /// The oldest queued frame is dropped.
    DropOldest,
}

pub(crate) struct FrameQueue {
    state: Mutex<State>,
    /// Signalled when an item arrives or the producer finishes.
    filled: Condvar,
    /// Signalled when an item leaves or the consumer goes away.
    emptied: Condvar,
    capacity: usize,
    when_full: WhenFull,
}

struct State {
    items: VecDeque<Result<VideoFrame>>,
    dropped: u64,
    producer_done: bool,
    consumer_gone: bool,
}

impl FrameQueue {
    /// A queue of at most `capacity` (at least 1) items.
    pub(crate) fn new(capacity: usize, when_full: WhenFull) -> Self {
        Self {
            state: Mutex::new(State {
                items: VecDeque::with_capacity(capacity),
                dropped: 0,
                producer_done: false,
                consumer_gone: false,
            }),
            filled: Condvar::new(),
            emptied: Condvar::new(),
            capacity: capacity.max(1),
            when_full,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent whatever panicked while holding the lock.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a frame or the final error; `false` when the consumer has gone (the
    /// producer should stop).
    pub(crate) fn push(&self, item: Result<VideoFrame>) -> bool {
        let mut state = self.lock();
        while state.items.len() >= self.capacity && !state.consumer_gone {
            match self.when_full {
                WhenFull::Wait => {
                    state = self
                        .emptied
                        .wait(state)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                WhenFull::DropOldest => {
                    state.items.pop_front();
                    state.dropped += 1;
                }
            }
        }
        if state.consumer_gone {
            return false;
        }
        state.items.push_back(item);
        self.filled.notify_one();
        true
    }

    /// The next item, waiting for one; `None` once the producer has finished and
    /// everything was taken.
    pub(crate) fn pop(&self) -> Option<Result<VideoFrame>> {
        let mut state = self.lock();
        loop {
            if let Some(item) = state.items.pop_front() {
                self.emptied.notify_one();
                return Some(item);
            }
            if state.producer_done {
                return None;
            }
            state = self
                .filled
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// The producer will push nothing more.
    pub(crate) fn finish(&self) {
        self.lock().producer_done = true;
        self.filled.notify_all();
    }

    /// The consumer will take nothing more: queued frames are freed, the producer stops.
    pub(crate) fn close(&self) {
        let mut state = self.lock();
        state.consumer_gone = true;
        state.items.clear();
        self.emptied.notify_all();
    }

    /// Whether the consumer has gone.
    pub(crate) fn is_closed(&self) -> bool {
        self.lock().consumer_gone
    }

    /// Whether the producer has finished (its last item may still be queued).
    pub(crate) fn is_finished(&self) -> bool {
        self.lock().producer_done
    }

    /// Frames dropped so far because the queue was full.
    pub(crate) fn dropped(&self) -> u64 {
        self.lock().dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn frame(index: u64) -> Result<VideoFrame> {
        Ok(VideoFrame {
            index,
            time_secs: index as f64,
            width: 0,
            height: 0,
            pixels: Vec::new(),
        })
    }

    fn index(item: Option<Result<VideoFrame>>) -> u64 {
        item.expect("an item").expect("a frame").index
    }

    #[test]
    fn dropping_keeps_the_newest_and_counts() {
        let queue = FrameQueue::new(2, WhenFull::DropOldest);
        for i in 0..5 {
            assert!(queue.push(frame(i)));
        }
        queue.finish();
        assert_eq!(queue.dropped(), 3);
        assert_eq!(index(queue.pop()), 3);
        assert_eq!(index(queue.pop()), 4);
        assert!(queue.pop().is_none());
    }

    #[test]
    fn waiting_delivers_everything_in_order() {
        let queue = Arc::new(FrameQueue::new(1, WhenFull::Wait));
        let producer = {
            let queue = Arc::clone(&queue);
            std::thread::spawn(move || {
                for i in 0..50 {
                    assert!(queue.push(frame(i)));
                }
                queue.finish();
            })
        };
        let received: Vec<u64> = std::iter::from_fn(|| queue.pop())
            .map(|f| index(Some(f)))
            .collect();
        producer.join().expect("producer");
        assert_eq!(received, (0..50).collect::<Vec<_>>());
        assert_eq!(queue.dropped(), 0);
    }

    #[test]
    fn closing_releases_a_waiting_producer() {
        let queue = Arc::new(FrameQueue::new(1, WhenFull::Wait));
        let producer = {
            let queue = Arc::clone(&queue);
            std::thread::spawn(move || (0..10).take_while(|&i| queue.push(frame(i))).count())
        };
        assert_eq!(index(queue.pop()), 0);
        queue.close();
        let pushed = producer.join().expect("producer");
        assert!(pushed < 10);
        assert!(queue.is_closed());
    }
}
