//! `discovery = { file = "/etc/wasp/shop.json" }`: a JSON array of
//! `"host:port"` strings, watched.
//!
//! Checked every 500 ms by its size, modification time and inode, so a
//! write-and-rename (how editors and config tools replace files) is seen
//! like an edit in place. A file that is missing or does not parse keeps
//! the last good list and says why; host names are resolved on the control
//! thread's blocking pool by the system resolver.

use super::Live;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

/// How often the file is looked at.
const POLL: Duration = Duration::from_millis(500);
/// A file larger than this is not read (a list of addresses is small).
const MAX_BYTES: u64 = 1 << 20;

/// Watches `path` for `cell` until `stop` is set.
pub async fn watch(path: PathBuf, cell: Arc<Live>, stop: Arc<AtomicBool>) {
    let mut seen: Option<(u64, std::time::SystemTime, u64)> = None;
    while !stop.load(Relaxed) {
        let id = std::fs::metadata(&path).ok().map(|m| {
            use std::os::unix::fs::MetadataExt;
            (m.len(), m.modified().unwrap_or(std::time::UNIX_EPOCH), m.ino())
        });
        match id {
            None => {
                if seen.take().is_some() || cell.state().last_seen.is_none() {
                    cell.failed(format!("{} cannot be read", path.display()));
                }
            }
            Some(id) if seen != Some(id) => {
                seen = Some(id);
                match read(&path).await {
                    Ok(addrs) => cell.publish(addrs),
                    Err(e) => cell.failed(e),
                }
            }
            Some(_) => {}
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The file's instances, or why there are none to take.
async fn read(path: &std::path::Path) -> Result<Vec<SocketAddr>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.len() > MAX_BYTES {
        return Err(format!("{} is larger than 1 MiB", path.display()));
    }
    let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let list: Vec<String> = serde_json::from_slice(&text)
        .map_err(|e| format!("{}: not a JSON array of \"host:port\" strings: {e}", path.display()))?;
    if list.len() > 10_000 {
        return Err(format!("{}: more than 10000 instances", path.display()));
    }
    let mut addrs = Vec::with_capacity(list.len());
    for entry in list {
        let found: Vec<SocketAddr> = match tokio::net::lookup_host(entry.as_str()).await {
            Ok(it) => it.collect(),
            Err(e) => return Err(format!("{}: {entry:?}: {e}", path.display())),
        };
        // Every address a name has, each once.
        for a in found {
            if !addrs.contains(&a) {
                addrs.push(a);
            }
        }
    }
    Ok(addrs)
}
