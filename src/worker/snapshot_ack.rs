//! Recording which snapshot version this worker's loop has seen.

use crate::pipeline::ctx::Worker;
use std::rc::Rc;
use std::sync::atomic::Ordering;

/// The worker-side hook: records the snapshot version this worker sees at
/// its start and each time a publish wakes it. One task per worker.
pub async fn acknowledge_snapshots(w: Rc<Worker>) {
    let ack = &w.stats.snapshot_ack;
    loop {
        // Listening before loading: a publish in between still wakes us.
        let next = ack.published.listen();
        ack.version.fetch_max(w.snapshot.load().version, Ordering::AcqRel);
        ack.acked.notify(usize::MAX);
        next.await;
    }
}
