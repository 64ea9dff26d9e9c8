//! Writing files so that a crash or an error never leaves half a file at the destination.

use std::io::{self, BufWriter, Write};
use std::path::Path;

use crate::error::{Error, Result};

/// Writes `path` atomically: `write` fills a buffered temporary file in the destination's
/// directory (which must exist), which is synced and then renamed into place. With
/// `overwrite` false an existing file is left untouched and an error returned. The result
/// gets the permissions of a newly created file (0666 less the umask).
///
/// ```
/// let dir = tempfile::tempdir().expect("temporary directory");
/// let path = dir.path().join("a.txt");
/// anydepth_core::fs::write_atomically(&path, false, |out| out.write_all(b"hi")).expect("new");
/// assert!(anydepth_core::fs::write_atomically(&path, false, |out| out.write_all(b"x")).is_err());
/// assert_eq!(std::fs::read(&path).expect("read"), b"hi");
/// ```
///
/// # Errors
/// [`Error::Io`] naming `path` when the temporary file, the writing or the
/// rename fails, or when the file exists and `overwrite` is false.
pub fn write_atomically(
    path: &Path,
    overwrite: bool,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<()> {
    let fail = |reason: String| Error::Io {
        reason,
        path: path.to_path_buf(),
    };
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix(".anydepth-").suffix(".tmp");
    // Temporary files are created 0600; ask for 0666 so the umask applies as usual.
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
    let mut temp = builder
        .tempfile_in(dir)
        .map_err(|e| fail(format!("cannot create a temporary file beside it ({e})")))?;
    {
        let mut out = BufWriter::new(temp.as_file_mut());
        write(&mut out)
            .and_then(|()| out.flush())
            .map_err(|e| fail(format!("cannot write ({e})")))?;
    }
    temp.as_file()
        .sync_all()
        .map_err(|e| fail(format!("cannot sync ({e})")))?;
    let persisted = if overwrite {
        temp.persist(path)
    } else {
        temp.persist_noclobber(path)
    };
    persisted.map_err(|e| {
        let hint = if overwrite {
            ""
        } else {
            ", and existing files are kept"
        };
        fail(format!(
            "cannot move the written file into place ({}{hint})",
            e.error
        ))
    })?;
    Ok(())
}
