//! What `GET /metrics` reports, in the Prometheus text exposition format (0.0.4): requests
//! by route and status, latency per route, the queue's depth, batch sizes, and photos
//! skipped because their client went away.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

/// The content type of the text exposition format.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds of the latency buckets, in seconds.
const LATENCY_BOUNDS_SECS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// Upper bounds of the batch-size buckets, in photos.
const BATCH_BOUNDS: [f64; 8] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];

/// A cumulative histogram with fixed bucket bounds.
#[derive(Clone, Debug)]
struct Histogram {
    bounds: &'static [f64],
    /// Observations at or below each bound (not cumulative here; summed when written).
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, value: f64) {
        if let Some(i) = self.bounds.iter().position(|&b| value <= b) {
            self.counts[i] += 1;
        }
        self.sum += value;
        self.count += 1;
    }

    /// Writes `name_bucket`, `name_sum` and `name_count`, with `labels` (`key="value"`
    /// pairs, maybe empty) before `le`.
    fn write(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            cumulative += count;
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = |s: &str| {
            if s.is_empty() {
                String::new()
            } else {
                format!("{{{s}}}")
            }
        };
        let _ = writeln!(out, "{name}_sum{} {}", braces(labels), self.sum);
        let _ = writeln!(out, "{name}_count{} {}", braces(labels), self.count);
    }
}

/// The service's counters; shared by the HTTP handlers and the model thread.
#[derive(Debug)]
pub(crate) struct Metrics {
    /// Requests by (route, status).
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    /// Latency by route.
    latency: Mutex<BTreeMap<String, Histogram>>,
    batches: Mutex<Histogram>,
    queue_depth: AtomicUsize,
    skipped: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            requests: Mutex::default(),
            latency: Mutex::default(),
            batches: Mutex::new(Histogram::new(&BATCH_BOUNDS)),
            queue_depth: AtomicUsize::new(0),
            skipped: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    /// Counts a finished request of `route` with `status` that took `seconds`.
    pub fn request(&self, route: &str, status: u16, seconds: f64) {
        *self
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((route.to_owned(), status))
            .or_default() += 1;
        self.latency
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(route.to_owned())
            .or_insert_with(|| Histogram::new(&LATENCY_BOUNDS_SECS))
            .observe(seconds);
    }

    /// Counts a model call of `size` photos.
    pub fn batch(&self, size: usize) {
        self.batches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .observe(size as f64);
    }

    /// Sets the number of photos waiting for the model.
    pub fn set_queue_depth(&self, depth: usize) {
        self.queue_depth.store(depth, Ordering::SeqCst);
    }

    /// Counts photos dropped from the queue because their client went away.
    pub fn skipped(&self, count: usize) {
        self.skipped.fetch_add(count as u64, Ordering::SeqCst);
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP anydepth_http_requests_total HTTP requests answered, by route and status.\n\
             # TYPE anydepth_http_requests_total counter\n",
        );
        for ((route, status), count) in self
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            let _ = writeln!(
                out,
                "anydepth_http_requests_total{{route=\"{}\",status=\"{status}\"}} {count}",
                escape(route)
            );
        }
        out.push_str(
            "# HELP anydepth_http_request_duration_seconds Time from request to response, by route.\n\
             # TYPE anydepth_http_request_duration_seconds histogram\n",
        );
        for (route, histogram) in self
            .latency
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            let labels = format!("route=\"{}\"", escape(route));
            histogram.write(&mut out, "anydepth_http_request_duration_seconds", &labels);
        }
        let _ = write!(
            out,
            "# HELP anydepth_queue_depth Photos waiting for the model.\n\
             # TYPE anydepth_queue_depth gauge\n\
             anydepth_queue_depth {}\n",
            self.queue_depth.load(Ordering::SeqCst)
        );
        out.push_str(
            "# HELP anydepth_batch_size Photos per model call.\n\
             # TYPE anydepth_batch_size histogram\n",
        );
        self.batches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .write(&mut out, "anydepth_batch_size", "");
        let _ = write!(
            out,
            "# HELP anydepth_skipped_total Queued photos dropped because their client went away.\n\
             # TYPE anydepth_skipped_total counter\n\
             anydepth_skipped_total {}\n",
            self.skipped.load(Ordering::SeqCst)
        );
        out
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_counters_sorted() {
        let metrics = Metrics::default();
        metrics.request("/v1/depth", 200, 0.02);
        metrics.request("/v1/depth", 200, 3.0);
        metrics.request("/healthz", 200, 0.001);
        metrics.batch(1);
        metrics.batch(3);
        metrics.set_queue_depth(2);
        metrics.skipped(1);
        let text = metrics.render();
        let healthz = text
            .find("route=\"/healthz\",status=\"200\"} 1")
            .expect("healthz counted");
        let depth = text
            .find("route=\"/v1/depth\",status=\"200\"} 2")
            .expect("depth counted");
        assert!(healthz < depth, "{text}");
        for line in [
            "anydepth_http_request_duration_seconds_bucket{route=\"/v1/depth\",le=\"0.01\"} 0",
            "anydepth_http_request_duration_seconds_bucket{route=\"/v1/depth\",le=\"0.025\"} 1",
            "anydepth_http_request_duration_seconds_bucket{route=\"/v1/depth\",le=\"5\"} 2",
            "anydepth_http_request_duration_seconds_bucket{route=\"/v1/depth\",le=\"+Inf\"} 2",
            "anydepth_http_request_duration_seconds_count{route=\"/v1/depth\"} 2",
            "anydepth_batch_size_bucket{le=\"1\"} 1",
            "anydepth_batch_size_bucket{le=\"2\"} 1",
            "anydepth_batch_size_bucket{le=\"4\"} 2",
            "anydepth_batch_size_sum 4",
            "anydepth_batch_size_count 2",
            "anydepth_queue_depth 2",
            "anydepth_skipped_total 1",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
    }
}
