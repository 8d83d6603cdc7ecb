//! `discovery = { file = "/etc/wasp/shop.json" }`: a JSON array of
//! `"host:port"` strings, watched.
//!
//! Checked every 500 ms by its size, modification time and inode, so a
//! write-and-rename (how editors and config tools replace files) is seen
//! like an edit in place. A file that is missing or does not parse keeps
//! the last good list and says why; host names are resolved on the control
//! thread's blocking pool by the system resolver.

use super::Watch;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// How often the file is looked at.
const POLL: Duration = Duration::from_millis(500);
/// A file larger than this is not read (a list of addresses is small).
const MAX_BYTES: u64 = 1 << 20;

/// Watches `path` until told to stop.
pub async fn watch(path: PathBuf, w: Watch) {
    let mut seen: Option<(u64, std::time::SystemTime, u64)> = None;
    let mut told_missing = false;
    while !w.stopped() {
        let id = std::fs::metadata(&path).ok().map(|m| {
            use std::os::unix::fs::MetadataExt;
            (m.len(), m.modified().unwrap_or(std::time::UNIX_EPOCH), m.ino())
        });
        match id {
            None => {
                if !told_missing {
                    w.failed(format!("{} cannot be read", path.display()));
                    told_missing = true;
                }
                seen = None;
            }
            Some(id) if seen != Some(id) => {
                seen = Some(id);
                told_missing = false;
                match read(&path).await {
                    Ok(addrs) => w.publish(addrs),
                    Err(e) => w.failed(e),
                }
            }
            Some(_) => {}
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The file's instances, or why there are none to take. Only a regular
/// file is read (opened without blocking: a FIFO or a device must not
/// stall the control thread), and at most `MAX_BYTES` of it.
async fn read(path: &std::path::Path) -> Result<Vec<SocketAddr>, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let meta = f.metadata().map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    let mut text = Vec::new();
    f.take(MAX_BYTES + 1).read_to_end(&mut text).map_err(|e| format!("{}: {e}", path.display()))?;
    if text.len() as u64 > MAX_BYTES {
        return Err(format!("{} is larger than 1 MiB", path.display()));
    }
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
        // Every address a name has, each once; port 0 is no instance.
        for a in found {
            if a.port() == 0 {
                return Err(format!("{}: {entry:?}: port 0", path.display()));
            }
            if !addrs.contains(&a) {
                addrs.push(a);
            }
        }
    }
    Ok(addrs)
}
