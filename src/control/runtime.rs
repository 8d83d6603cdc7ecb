//! The control thread: one thread running a current-thread tokio runtime,
//! where the control plane's slow work happens — DNS resolution of instance
//! names, SQLite commits and reads, diffs, and (later) discovery polling,
//! JWKS fetches and Kafka consumption.
//!
//! Why a thread of its own: the admin listener answers `/healthz`, `/readyz`
//! and `/metrics` on its monoio thread, and a load balancer's probe must not
//! wait behind an fsync or a slow resolver. Admin handlers hand a job over
//! with [`Handle::run`] (blocking work) or [`Handle::spawn`] (async work on
//! tokio) and await a runtime-agnostic future (a flume channel), so any
//! runtime — monoio on the admin thread, a plain thread for `SIGHUP` — can
//! wait for the answer.
//!
//! Blocking jobs go to tokio's blocking pool, so a slow resolver never stalls
//! the async tasks (HTTP fetches) on the control thread itself.

use crate::fetch::HttpClient;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// The control thread is gone (stopped, or a job panicked): the job's
/// answer will never come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gone;

impl std::fmt::Display for Gone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the control thread is not running")
    }
}

impl std::error::Error for Gone {}

type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

enum Job {
    /// Runs on tokio's blocking pool (SQLite, DNS through the system resolver).
    Blocking(Box<dyn FnOnce() + Send>),
    /// Runs as a task on the control thread (HTTP fetches).
    Task(Task),
    Stop,
}

/// Jobs waiting for the control thread, at most: past this, submitting waits
/// (the admin listener's handler, not its thread), so a flood of admin
/// requests costs a bounded queue.
const QUEUE: usize = 1024;

/// Threads in the blocking pool: enough that a slow DNS lookup does not hold
/// up a store read, few enough to stay out of the workers' way.
const BLOCKING_THREADS: usize = 4;

/// How long stopping waits for jobs still running.
const STOP_WAIT: Duration = Duration::from_secs(5);

/// Submits jobs to the control thread. Cheap to clone.
#[derive(Clone)]
pub struct Handle {
    tx: flume::Sender<Job>,
    http: HttpClient,
    /// Test-only: every job sleeps this long first (`WASP_DEBUG_CONTROL_DELAY_MS`).
    #[cfg(debug_assertions)]
    delay: Option<Duration>,
}

/// The running control thread; [`stop`](ControlRuntime::stop) ends it.
pub struct ControlRuntime {
    handle: Handle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ControlRuntime {
    pub fn start() -> Result<ControlRuntime, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .max_blocking_threads(BLOCKING_THREADS)
            .thread_name("wasp-control-io")
            .build()
            .map_err(|e| format!("cannot build the control runtime: {e}"))?;
        let http = HttpClient::new()?;
        let (tx, rx) = flume::bounded::<Job>(QUEUE);
        let thread = std::thread::Builder::new()
            .name("wasp-control".into())
            .spawn(move || {
                rt.block_on(async move {
                    while let Ok(job) = rx.recv_async().await {
                        match job {
                            Job::Blocking(f) => drop(tokio::task::spawn_blocking(f)),
                            Job::Task(t) => drop(tokio::spawn(t)),
                            Job::Stop => break,
                        }
                    }
                });
                rt.shutdown_timeout(STOP_WAIT);
            })
            .map_err(|e| format!("cannot start the control thread: {e}"))?;
        let handle = Handle {
            tx,
            http,
            #[cfg(debug_assertions)]
            delay: debug_delay(),
        };
        Ok(ControlRuntime { handle, thread: Some(thread) })
    }

    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Ends the control thread once the jobs queued before this ran (each
    /// waited for at most [`STOP_WAIT`]); later jobs answer [`Gone`].
    pub fn stop(mut self) {
        let _ = self.handle.tx.send(Job::Stop);
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("the control thread panicked");
            }
        }
    }
}

/// `WASP_DEBUG_CONTROL_DELAY_MS`: a test holds the control thread busy to
/// show that health and metrics never wait on it. Debug builds only.
#[cfg(debug_assertions)]
fn debug_delay() -> Option<Duration> {
    let ms: u64 = std::env::var("WASP_DEBUG_CONTROL_DELAY_MS").ok()?.parse().ok()?;
    tracing::warn!(ms, "WASP_DEBUG_CONTROL_DELAY_MS: every control job sleeps first (test-only)");
    Some(Duration::from_millis(ms))
}

impl Handle {
    /// The HTTP(S) client for the control plane's fetches; use it inside
    /// [`spawn`](Handle::spawn)ed work (it needs the tokio runtime).
    pub fn http(&self) -> &HttpClient {
        &self.http
    }

    fn blocking_job<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> (Job, flume::Receiver<T>) {
        let (tx, rx) = flume::bounded(1);
        #[cfg(debug_assertions)]
        let delay = self.delay;
        let job = Job::Blocking(Box::new(move || {
            #[cfg(debug_assertions)]
            if let Some(d) = delay {
                std::thread::sleep(d);
            }
            let _ = tx.send(f());
        }));
        (job, rx)
    }

    /// Runs blocking work (store, DNS) off the caller's thread; the answer
    /// arrives through a future any runtime can await.
    pub fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> impl Future<Output = Result<T, Gone>> + 'static {
        let (job, rx) = self.blocking_job(f);
        let tx = self.tx.clone();
        async move {
            tx.send_async(job).await.map_err(|_| Gone)?;
            rx.recv_async().await.map_err(|_| Gone)
        }
    }

    /// Like [`run`](Handle::run) for a plain thread (the signal loop): waits in place.
    pub fn run_wait<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, Gone> {
        let (job, rx) = self.blocking_job(f);
        self.tx.send(job).map_err(|_| Gone)?;
        rx.recv().map_err(|_| Gone)
    }

    /// Starts a long-running task on the control thread (a discovery
    /// watcher) without waiting for it; it ends on its own stop signal.
    pub fn spawn_detached(&self, fut: impl Future<Output = ()> + Send + 'static) {
        if self.tx.send(Job::Task(Box::pin(fut))).is_err() {
            tracing::warn!("the control thread is gone: a background task was not started");
        }
    }

    /// Runs async work (HTTP fetches) as a task on the control thread.
    pub fn spawn<T: Send + 'static>(
        &self,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> impl Future<Output = Result<T, Gone>> + 'static {
        let (tx, rx) = flume::bounded(1);
        #[cfg(debug_assertions)]
        let delay = self.delay;
        let job = Job::Task(Box::pin(async move {
            #[cfg(debug_assertions)]
            if let Some(d) = delay {
                tokio::time::sleep(d).await;
            }
            let _ = tx.send(fut.await);
        }));
        let jobs = self.tx.clone();
        async move {
            jobs.send_async(job).await.map_err(|_| Gone)?;
            rx.recv_async().await.map_err(|_| Gone)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny executor for the runtime-agnostic futures: the test thread waits.
    fn wait<T>(f: impl Future<Output = T>) -> T {
        let (tx, rx) = flume::bounded(1);
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async move { tx.send(f.await).unwrap() });
        rx.recv().unwrap()
    }

    #[test]
    fn jobs_run_off_the_caller_and_answer() {
        let rt = ControlRuntime::start().unwrap();
        let h = rt.handle();
        let caller = std::thread::current().id();
        let other = wait(h.run(move || std::thread::current().id() != caller));
        assert_eq!(other, Ok(true));
        assert_eq!(h.run_wait(|| 7), Ok(7));
        let name = wait(h.spawn(async { std::thread::current().name().map(str::to_string) }));
        assert_eq!(name, Ok(Some("wasp-control".to_string())));
        rt.stop();
        // Stopped: jobs answer Gone instead of hanging.
        assert_eq!(h.run_wait(|| 1), Err(Gone));
        assert_eq!(wait(h.run(|| 1)), Err(Gone));
    }

    #[test]
    fn a_panicking_job_answers_gone() {
        let rt = ControlRuntime::start().unwrap();
        let h = rt.handle();
        assert_eq!(h.run_wait(|| -> u8 { panic!("job panics (test)") }), Err(Gone));
        // The control thread goes on.
        assert_eq!(h.run_wait(|| 2), Ok(2));
        rt.stop();
    }
}
