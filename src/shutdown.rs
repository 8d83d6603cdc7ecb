//! Process-wide shutdown: one flag and one wake-up for every worker's accept loop.
//!
//! Draining is deliberately simple: accept loops stop, requests already being
//! answered finish (each worker counts them), connections idle between
//! requests are closed when the worker's runtime is dropped.

use event_listener::Event;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Default)]
pub struct Shutdown {
    flag: AtomicBool,
    event: Event,
}

impl Shutdown {
    pub fn trigger(&self) {
        self.flag.store(true, Ordering::SeqCst);
        self.event.notify(usize::MAX);
    }

    pub fn is_triggered(&self) -> bool {
        self.flag.load(Ordering::Relaxed)
    }

    /// Resolves once [`trigger`](Self::trigger) was called (from any thread).
    pub async fn wait(&self) {
        loop {
            if self.flag.load(Ordering::SeqCst) {
                return;
            }
            let listener = self.event.listen();
            if self.flag.load(Ordering::SeqCst) {
                return;
            }
            listener.await;
        }
    }
}
