//! What the checkpoint readers (`pth`, `safetensors_file`) share: the order they read the
//! tensors asked for in, and reading one tensor's or storage's bytes into a reused buffer.

use std::io::Read;

/// The indices `wanted`, ascending and each once.
pub(crate) fn ascending_once(wanted: impl IntoIterator<Item = usize>) -> Vec<usize> {
    let mut wanted: Vec<usize> = wanted.into_iter().collect();
    wanted.sort_unstable();
    wanted.dedup();
    wanted
}

/// Replaces `buffer`'s contents with the next `length` bytes of `reader`. The buffer is
/// reused from one call to the next: a fresh one each time makes the kernel supply (and
/// zero) new pages for the whole checkpoint once more, which showed in reading a 5 GB file.
///
/// # Errors
/// When `length` bytes do not fit in memory, or `reader` fails or ends before them.
pub(crate) fn read_into(
    buffer: &mut Vec<u8>,
    reader: impl Read,
    length: u64,
) -> Result<(), String> {
    buffer.clear();
    usize::try_from(length)
        .ok()
        .and_then(|n| buffer.try_reserve_exact(n).ok())
        .ok_or_else(|| format!("{length} bytes do not fit in memory"))?;
    reader
        .take(length)
        .read_to_end(buffer)
        .map_err(|e| e.to_string())?;
    if buffer.len() as u64 != length {
        return Err(format!(
            "the file ends {} bytes into {length}",
            buffer.len()
        ));
    }
    Ok(())
}
