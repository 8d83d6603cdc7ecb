//! Reading a small file a configuration names (a mock's body, a discovery
//! list): opened without blocking — a FIFO or a device must not hang a
//! load, a reload or the control thread — only if it is a regular file, and
//! at most a given size.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

#[derive(Debug)]
pub enum SmallFileError {
    Io(std::io::Error),
    NotRegular,
    TooLarge,
}

/// The whole of `path` if it is a regular file of at most `max` bytes.
pub fn read_small_file(path: &Path, max: u64) -> Result<Vec<u8>, SmallFileError> {
    let f =
        std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path).map_err(SmallFileError::Io)?;
    if !f.metadata().map_err(SmallFileError::Io)?.is_file() {
        return Err(SmallFileError::NotRegular);
    }
    let mut out = Vec::new();
    f.take(max + 1).read_to_end(&mut out).map_err(SmallFileError::Io)?;
    if out.len() as u64 > max {
        return Err(SmallFileError::TooLarge);
    }
    Ok(out)
}
