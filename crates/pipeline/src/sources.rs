//! Frame sources: files, folders and glob patterns turned into ordered lists of frames, and
//! the names their outputs are written under.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{bail, Context, Result};

/// File extensions taken from folders (files named explicitly are always tried).
const IMAGE_EXTENSIONS: [&str; 11] = [
    "jpg", "jpeg", "png", "tif", "tiff", "bmp", "webp", "pgm", "ppm", "pnm", "pbm",
];

/// The expanded inputs, in a stable order, each with the stem its outputs are named after.
#[derive(Debug)]
pub struct Inputs {
    /// The files to read, in order.
    pub files: Vec<PathBuf>,
    /// Files in folders that were not taken because they are not images by extension.
    pub ignored: Vec<PathBuf>,
}

fn is_image_name(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

fn is_glob(arg: &str) -> bool {
    arg.contains(['*', '?', '['])
}

/// Expands `args`: a file is itself, a folder gives its image files (sorted, not
/// recursive), anything else with `*`, `?` or `[` is a glob pattern.
///
/// # Errors
/// When an argument names nothing, a glob matches nothing, or two inputs would write to
/// the same output names.
pub fn expand_images(args: &[PathBuf]) -> Result<Inputs> {
    let mut files = Vec::new();
    let mut ignored = Vec::new();
    for arg in args {
        let text = arg.to_string_lossy();
        if arg.is_dir() {
            for entry in folder_files(arg)? {
                if is_image_name(&entry) {
                    files.push(entry);
                } else {
                    ignored.push(entry);
                }
            }
        } else if arg.exists() {
            files.push(arg.clone());
        } else if is_glob(&text) {
            let mut matched: Vec<PathBuf> = glob::glob(&text)
                .with_context(|| format!("invalid glob pattern {text:?}"))?
                .filter_map(|p| p.ok())
                .filter(|p| p.is_file())
                .collect();
            if matched.is_empty() {
                bail!("no file matches the pattern {text:?}");
            }
            matched.sort();
            files.extend(matched);
        } else {
            bail!("input not found: {}", arg.display());
        }
    }
    // The same file named twice is processed once.
    let mut seen = std::collections::HashSet::new();
    files.retain(|f| seen.insert(f.canonicalize().unwrap_or_else(|_| f.clone())));
    let mut by_stem: BTreeMap<String, &PathBuf> = BTreeMap::new();
    for file in &files {
        let stem = stem(file);
        if let Some(other) = by_stem.insert(stem.clone(), file) {
            bail!(
                "two inputs would write the same outputs ({stem}.*): {} and {}; \
                 process them into different --out folders",
                other.display(),
                file.display()
            );
        }
    }
    if files.is_empty() {
        bail!("no image files among the inputs");
    }
    Ok(Inputs { files, ignored })
}

/// Files, folders (every file in them) and globs, in name order per argument: the depth
/// maps of a frame sequence, whatever their extension.
///
/// # Errors
/// As [`expand_images`] for a glob that matches nothing or a path that names nothing.
pub fn expand_files(args: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for arg in args {
        if arg.is_dir() {
            files.extend(folder_files(arg)?);
        } else if arg.exists() {
            files.push(arg.clone());
        } else {
            files.extend(expand_images(std::slice::from_ref(arg))?.files);
        }
    }
    Ok(files)
}

/// The files directly in `folder`, in name order.
fn folder_files(folder: &Path) -> Result<Vec<PathBuf>> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(folder)
        .with_context(|| format!("cannot list folder {}", folder.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    entries.sort();
    Ok(entries)
}

/// The name outputs of `path` are based on.
pub fn stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_globs_and_files_expand_in_order() {
        let dir = tempfile::tempdir().expect("temp dir");
        for name in ["b.png", "a.jpg", "notes.txt"] {
            std::fs::write(dir.path().join(name), b"x").expect("write");
        }
        let inputs = expand_images(&[dir.path().to_path_buf()]).expect("folder");
        let names: Vec<String> = inputs.files.iter().map(|p| stem(p)).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(inputs.ignored.len(), 1);

        let pattern = dir.path().join("*.png");
        let inputs = expand_images(&[pattern]).expect("glob");
        assert_eq!(inputs.files.len(), 1);

        assert!(expand_images(&[dir.path().join("missing.jpg")]).is_err());
        assert!(expand_images(&[dir.path().join("*.gif")]).is_err());
        // a.jpg twice is one input; a.jpg and a.png would collide.
        let a = dir.path().join("a.jpg");
        assert_eq!(
            expand_images(&[a.clone(), a.clone()])
                .expect("dup")
                .files
                .len(),
            1
        );
        std::fs::write(dir.path().join("a.png"), b"x").expect("write");
        let err = expand_images(&[a, dir.path().join("a.png")]).expect_err("collision");
        assert!(err.to_string().contains("same outputs"));
    }
}
