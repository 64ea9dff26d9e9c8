//! Matching a trajectory's poses to frames: by order, by time (TUM) or by file name
//! (COLMAP, NeRF).

use std::collections::HashMap;
use std::path::Path;

use super::{PoseEntry, PoseKey, Trajectory, DEFAULT_TIME_TOLERANCE_S};
use crate::error::{Error, Result};

impl Trajectory {
    /// The first `frame_count` poses, for frames taken in the trajectory's order.
    ///
    /// # Errors
    /// [`Error::TooFewPoses`] giving both counts when the trajectory is shorter.
    pub fn poses_for_frames(&self, frame_count: usize) -> Result<Vec<&PoseEntry>> {
        if self.poses.len() < frame_count {
            return Err(Error::TooFewPoses {
                poses: self.poses.len(),
                frames: frame_count,
                path: self.path.clone(),
            });
        }
        if self.poses.len() > frame_count {
            tracing::debug!(
                "{} poses for {frame_count} frames; using the first {frame_count}: {}",
                self.poses.len(),
                self.path.display()
            );
        }
        Ok(self.poses.iter().take(frame_count).collect())
    }

    /// For each time (seconds), the pose with the nearest [`PoseKey::Timestamp`], which must
    /// be at most `tolerance_s` away (see [`DEFAULT_TIME_TOLERANCE_S`]).
    ///
    /// # Errors
    /// [`Error::NoPose`] when the trajectory has no timestamps, a time is not finite, or no
    /// pose lies within `tolerance_s`; [`Error::Format`] when `tolerance_s` is negative or
    /// not finite.
    pub fn poses_for_timestamps(
        &self,
        timestamps_s: &[f64],
        tolerance_s: f64,
    ) -> Result<Vec<&PoseEntry>> {
        if !(tolerance_s.is_finite() && tolerance_s >= 0.0) {
            return Err(Error::Format {
                what: "time tolerance",
                reason: format!("{tolerance_s} s must be finite and not negative"),
            });
        }
        let mut timed: Vec<(f64, &PoseEntry)> = self
            .poses
            .iter()
            .filter_map(|entry| match entry.key {
                PoseKey::Timestamp(t) => Some((t, entry)),
                _ => None,
            })
            .collect();
        timed.sort_by(|a, b| a.0.total_cmp(&b.0));
        timestamps_s
            .iter()
            .map(|&t| {
                let no_pose = |reason: String| Error::NoPose {
                    frame: format!("at t = {t} s"),
                    reason,
                    path: self.path.clone(),
                };
                if timed.is_empty() {
                    return Err(no_pose(format!(
                        "a {} file has no timestamps; match frames by order or by name",
                        self.format
                    )));
                }
                if !t.is_finite() {
                    return Err(no_pose("the time is not finite".to_owned()));
                }
                let after = timed.partition_point(|(s, _)| *s < t);
                let nearest = [after.checked_sub(1), Some(after)]
                    .into_iter()
                    .flatten()
                    .filter_map(|i| timed.get(i))
                    .min_by(|a, b| (a.0 - t).abs().total_cmp(&(b.0 - t).abs()));
                match nearest {
                    Some(&(s, entry)) if (s - t).abs() <= tolerance_s => Ok(entry),
                    Some(&(s, _)) => Err(no_pose(format!(
                        "the nearest pose (t = {s} s) is {:.4} s away, more than {tolerance_s} s",
                        (s - t).abs()
                    ))),
                    None => Err(no_pose("the trajectory is empty".to_owned())),
                }
            })
            .collect()
    }

    /// For each frame file, its pose by name (COLMAP, NeRF) or by timestamp (TUM).
    ///
    /// Names match when the file names are equal or equal without their extensions
    /// (`images/0001.jpg` matches `depth/0001.png`, NeRF's `./train/r_0` matches `r_0.png`);
    /// when several poses match, the one sharing the most trailing folder names wins. For
    /// TUM, a file's stem is read as its time (`1305031102.175304.png`) and matched within
    /// [`DEFAULT_TIME_TOLERANCE_S`].
    ///
    /// # Errors
    /// [`Error::NoPose`] when a frame has no pose, matches several equally well, or the
    /// trajectory keys poses by order only (use [`Trajectory::poses_for_frames`]).
    pub fn poses_for_files<P: AsRef<Path>>(&self, frames: &[P]) -> Result<Vec<&PoseEntry>> {
        let has = |kind: fn(&PoseKey) -> bool| self.poses.iter().any(|e| kind(&e.key));
        if has(|k| matches!(k, PoseKey::Name(_))) {
            self.poses_by_name(frames)
        } else if has(|k| matches!(k, PoseKey::Timestamp(_))) {
            let times = frames
                .iter()
                .map(|frame| {
                    let frame = frame.as_ref();
                    let stem = frame.file_stem().and_then(|s| s.to_str()).unwrap_or("");
                    stem.parse::<f64>().map_err(|_| Error::NoPose {
                        frame: frame.display().to_string(),
                        reason: format!(
                            "the trajectory is keyed by time and `{stem}` is not a time"
                        ),
                        path: self.path.clone(),
                    })
                })
                .collect::<Result<Vec<f64>>>()?;
            self.poses_for_timestamps(&times, DEFAULT_TIME_TOLERANCE_S)
        } else {
            Err(Error::NoPose {
                frame: frames
                    .first()
                    .map_or_else(String::new, |f| f.as_ref().display().to_string()),
                reason: format!(
                    "a {} file gives poses in order, without names; match frames by order",
                    self.format
                ),
                path: self.path.clone(),
            })
        }
    }

    fn poses_by_name<P: AsRef<Path>>(&self, frames: &[P]) -> Result<Vec<&PoseEntry>> {
        // Each pose under its last path component and under that component's stem.
        let mut by_name: HashMap<&str, Vec<usize>> = HashMap::new();
        for (index, entry) in self.poses.iter().enumerate() {
            if let PoseKey::Name(name) = &entry.key {
                let last = name_components(name).last().copied().unwrap_or("");
                for key in [last, stem(last)] {
                    let list = by_name.entry(key).or_default();
                    if list.last() != Some(&index) {
                        list.push(index);
                    }
                }
            }
        }
        frames
            .iter()
            .map(|frame| {
                let frame = frame.as_ref();
                let text = frame.to_string_lossy();
                let frame_parts = name_components(&text);
                let last = frame_parts.last().copied().unwrap_or("");
                let mut candidates: Vec<usize> = [last, stem(last)]
                    .iter()
                    .filter_map(|key| by_name.get(key))
                    .flatten()
                    .copied()
                    .collect();
                candidates.sort_unstable();
                candidates.dedup();
                // Score: trailing folder names in common, then an exact file name.
                let score = |index: usize| {
                    let PoseKey::Name(name) = &self.poses[index].key else {
                        return (0, false);
                    };
                    let parts = name_components(name);
                    let (name_last, name_dirs) = parts.split_last().unwrap_or((&"", &[]));
                    let frame_dirs = frame_parts.split_last().map_or(&[][..], |(_, d)| d);
                    let common = name_dirs
                        .iter()
                        .rev()
                        .zip(frame_dirs.iter().rev())
                        .take_while(|(a, b)| a == b)
                        .count();
                    (common, *name_last == last)
                };
                let best = candidates.iter().map(|&i| score(i)).max();
                let winners: Vec<usize> = candidates
                    .iter()
                    .copied()
                    .filter(|&i| Some(score(i)) == best)
                    .collect();
                match winners.as_slice() {
                    [one] => Ok(&self.poses[*one]),
                    [] => Err(Error::NoPose {
                        frame: frame.display().to_string(),
                        reason: format!(
                            "no pose is named like `{last}` (the trajectory's first name is {})",
                            self.poses[0].key
                        ),
                        path: self.path.clone(),
                    }),
                    several => Err(Error::NoPose {
                        frame: frame.display().to_string(),
                        reason: format!(
                            "{} poses match equally well: {}",
                            several.len(),
                            several
                                .iter()
                                .map(|&i| self.poses[i].key.to_string())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                        path: self.path.clone(),
                    }),
                }
            })
            .collect()
    }
}

/// Path components of a name as written in a trajectory (`/` or `\` separated), without
/// empty and `.` components.
fn name_components(name: &str) -> Vec<&str> {
    name.split(['/', '\\'])
        .filter(|part| !part.is_empty() && *part != ".")
        .collect()
}

/// A file name without its extension (`a.b.png` -> `a.b`; `.hidden` and `r_0` unchanged).
fn stem(file_name: &str) -> &str {
    match file_name.rsplit_once('.') {
        Some((stem, _)) if !stem.is_empty() => stem,
        _ => file_name,
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use nalgebra::Isometry3;

    use crate::pose::{PoseEntry, PoseFormat, PoseKey, Trajectory};

    #[test]
    fn names_match_by_stem_and_folders_break_ties() {
        let pose = |name: &str| PoseEntry {
            key: PoseKey::Name(name.to_owned()),
            world_from_camera: Isometry3::identity(),
            intrinsics: None,
        };
        let trajectory = Trajectory {
            format: PoseFormat::Colmap,
            path: PathBuf::from("images.txt"),
            poses: vec![
                pose("left/0001.png"),
                pose("right/0001.png"),
                pose("0002.jpg"),
            ],
        };
        let found = trajectory
            .poses_for_files(&["/x/right/0001.png", "/x/left/0001.jpg", "0002.png"])
            .expect("unique");
        assert_eq!(found[0].key, PoseKey::Name("right/0001.png".to_owned()));
        assert_eq!(found[1].key, PoseKey::Name("left/0001.png".to_owned()));
        assert_eq!(found[2].key, PoseKey::Name("0002.jpg".to_owned()));
        let message = trajectory
            .poses_for_files(&["0001.png"])
            .expect_err("ambiguous")
            .to_string();
        assert!(message.contains("2 poses match"), "{message}");
    }
}
