//! `discovery = { file = "/etc/wasp/shop.json" }`: a JSON array of
//! `"host:port"` strings, watched.
//!
//! Looked at every 500 ms by its size, modification time and inode, so a
//! write-and-rename (how editors and config tools replace files) is seen
//! like an edit in place. A file that is missing or does not parse keeps
//! the last good list and says why; host names are resolved by the system
//! resolver (on the control thread's blocking pool).

use super::{Discovery, Next};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// How often the file is looked at.
const POLL: Duration = Duration::from_millis(500);
/// A file larger than this is not read (a list of addresses is small).
const MAX_BYTES: u64 = 1 << 20;

/// What tells one version of the file from another.
type Identity = (u64, SystemTime, u64);

pub struct File {
    path: PathBuf,
    /// The version last read; `None` before the first look.
    seen: Option<Option<Identity>>,
}

impl File {
    pub fn new(path: PathBuf) -> File {
        File { path, seen: None }
    }

    fn identity(&self) -> Option<Identity> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(&self.path).ok()?;
        Some((m.len(), m.modified().unwrap_or(std::time::UNIX_EPOCH), m.ino()))
    }
}

impl Discovery for File {
    /// The file's list once it is new: at once the first time, then after
    /// the file changed (or went missing).
    fn next(&mut self) -> Next<'_> {
        Box::pin(async move {
            if self.seen.is_some() {
                loop {
                    tokio::time::sleep(POLL).await;
                    if self.seen != Some(self.identity()) {
                        break;
                    }
                }
            }
            let id = self.identity();
            self.seen = Some(id);
            match id {
                None => Err(format!("{} cannot be read", self.path.display())),
                Some(_) => read(&self.path).await,
            }
        })
    }
}

/// The file's instances, or why there are none to take. Only a regular
/// file is read (opened without blocking: a FIFO or a device must not
/// stall the control thread), and at most `MAX_BYTES` of it.
async fn read(path: &Path) -> Result<Vec<SocketAddr>, String> {
    use crate::config::SmallFileError::*;
    let text = crate::config::read_small_file(path, MAX_BYTES).map_err(|e| match e {
        Io(e) => format!("{}: {e}", path.display()),
        NotRegular => format!("{} is not a regular file", path.display()),
        TooLarge => format!("{} is larger than 1 MiB", path.display()),
    })?;
    let list: Vec<String> = serde_json::from_slice(&text)
        .map_err(|e| format!("{}: not a JSON array of \"host:port\" strings: {e}", path.display()))?;
    if list.len() > super::MAX_INSTANCES {
        return Err(format!("{}: more than {} instances", path.display(), super::MAX_INSTANCES));
    }
    let mut addrs = super::Found::default();
    for entry in list {
        let Some((host, port)) = super::split_host_port(&entry) else {
            return Err(format!("{}: {entry:?} is not \"host:port\"", path.display()));
        };
        super::resolve(host, port, &mut addrs).await.map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(addrs.into_vec())
}
