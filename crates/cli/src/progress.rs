//! Progress bars: over the files of `depth`, `fuse` and `eval`, and of a weights download.

use indicatif::{ProgressBar, ProgressStyle};

/// The progress bar over `len` items: hidden when quiet or for a single item.
pub fn progress_bar(len: usize, quiet: bool) -> ProgressBar {
    let bar = if quiet || len < 2 {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(len as u64)
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} {msg} [{elapsed_precise}, eta {eta}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// A bar for weights being downloaded, shown from the first byte (none when quiet).
pub struct DownloadBar {
    bar: Option<ProgressBar>,
    quiet: bool,
}

impl DownloadBar {
    pub fn new(quiet: bool) -> Self {
        Self { bar: None, quiet }
    }

    /// `done` of `total` bytes of `file`.
    pub fn update(&mut self, file: &str, done: u64, total: Option<u64>) {
        let quiet = self.quiet;
        let bar = self.bar.get_or_insert_with(|| {
            let bar = if quiet {
                ProgressBar::hidden()
            } else {
                ProgressBar::new(0)
            };
            bar.set_style(
                ProgressStyle::with_template(
                    "downloading {msg} {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.set_message(file.to_owned());
            bar
        });
        if let Some(total) = total {
            bar.set_length(total);
        }
        bar.set_position(done);
    }
}

impl Drop for DownloadBar {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
