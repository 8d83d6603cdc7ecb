//! `server.scheduler_slice`: workers ask the kernel for a short CPU time
//! slice (default 100 µs) so that a worker waking for a request preempts
//! batch work on its core instead of waiting out that work's slice (see
//! `src/config/scheduling.rs`). Read back from the real process:
//! `/proc/PID/task/TID/sched` shows each thread's `se.slice` in ns.
//!
//! Custom slices for normal tasks came with Linux 6.12; on an older kernel
//! the setting is accepted and changes nothing, and the tests that read it
//! back say so and stop (the test probes the kernel with its own thread).

mod common;
use common::*;
use std::process::Command;
use std::time::Duration;

/// `se.slice` of each thread of `pid`, by thread name.
fn slices(pid: u32) -> Vec<(String, Option<u64>)> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return out };
    for t in tasks.flatten() {
        let dir = t.path();
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default().trim().to_string();
        let sched = std::fs::read_to_string(dir.join("sched")).unwrap_or_default();
        out.push((name, slice_of(&sched)));
    }
    out
}

fn slice_of(sched: &str) -> Option<u64> {
    let line = sched.lines().find(|l| l.trim_start().starts_with("se.slice"))?;
    line.rsplit(':').next()?.trim().parse().ok()
}

/// Whether this kernel gives a normal thread the slice it asks for: a
/// probe thread asks for 300 µs and reads its own `se.slice` back.
fn kernel_has_custom_slices() -> bool {
    std::thread::spawn(|| {
        #[repr(C)]
        struct Attr {
            size: u32,
            policy: u32,
            flags: u64,
            nice: i32,
            priority: u32,
            runtime: u64,
            deadline: u64,
            period: u64,
        }
        // SAFETY (test probe): getpriority/sched_getscheduler read no memory
        // of ours; sched_setattr reads one live, correctly sized struct.
        let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        let policy = unsafe { libc::sched_getscheduler(0) } as u32;
        let a = Attr { size: 48, policy, flags: 0, nice, priority: 0, runtime: 300_000, deadline: 0, period: 0 };
        let rc = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &a as *const Attr, 0) };
        let sched = std::fs::read_to_string("/proc/thread-self/sched").unwrap_or_default();
        rc == 0 && slice_of(&sched) == Some(300_000)
    })
    .join()
    .unwrap_or(false)
}

fn worker_and_main_slices(gw: &Gateway) -> (Vec<u64>, u64) {
    let all = slices(gw.child.id());
    let workers: Vec<u64> =
        all.iter().filter(|(n, _)| n.starts_with("wasp-worker-")).map(|(_, s)| s.expect("worker se.slice")).collect();
    // The main thread (its tid is the pid) keeps the kernel's default.
    let sched = std::fs::read_to_string(format!("/proc/{0}/task/{0}/sched", gw.child.id())).unwrap_or_default();
    let admin = slice_of(&sched).expect("main thread se.slice");
    assert!(!workers.is_empty(), "no wasp-worker-N thread in {all:?}");
    (workers, admin)
}

const BASE: &str = "[server]\nworkers = 2\n";

#[test]
fn workers_ask_for_a_100us_slice_by_default_and_only_workers() {
    if !kernel_has_custom_slices() {
        eprintln!("skipped: this kernel has no custom scheduler slices (Linux 6.12+)");
        return;
    }
    let o = Origin::echo();
    let gw = Gateway::start(&format!("{BASE}[services.echo]\ninstances = [\"{}\"]\n", o.addr));
    let (workers, admin) = worker_and_main_slices(&gw);
    assert_eq!(workers, vec![100_000, 100_000], "workers' se.slice");
    // The main, admin, control and supervisor threads keep the kernel's default.
    assert_ne!(admin, 100_000, "the main thread's slice was changed too");
    // And the gateway serves.
    assert_eq!(http_get(gw.public, "/echo/x").status, 200);
}

#[test]
fn a_configured_slice_is_what_workers_get_and_off_leaves_the_kernel_default() {
    if !kernel_has_custom_slices() {
        eprintln!("skipped: this kernel has no custom scheduler slices (Linux 6.12+)");
        return;
    }
    let gw = Gateway::start(&format!("{BASE}scheduler_slice = \"2ms\"\n"));
    assert_eq!(worker_and_main_slices(&gw).0, vec![2_000_000, 2_000_000]);

    let gw = Gateway::start(&format!("{BASE}scheduler_slice = \"off\"\n"));
    let (workers, admin) = worker_and_main_slices(&gw);
    assert!(workers.iter().all(|w| *w == admin), "off: workers {workers:?} differ from the default {admin}");
}

#[test]
fn a_replaced_worker_asks_for_its_slice_again() {
    if !kernel_has_custom_slices() {
        eprintln!("skipped: this kernel has no custom scheduler slices (Linux 6.12+)");
        return;
    }
    let gw =
        Gateway::start_with("[server]\nworkers = 1\nscheduler_slice = \"300us\"\n", &[], &[("WASP_DEBUG_FAULTS", "1")]);
    let before: Vec<_> =
        std::fs::read_dir(format!("/proc/{}/task", gw.child.id())).unwrap().flatten().map(|t| t.file_name()).collect();
    // The debug-only fault injection (src/worker/fault.rs) kills the
    // worker thread; the supervisor starts a new one.
    let mut s = connect(gw.public);
    use std::io::{Read, Write};
    s.write_all(b"GET /__wasp_fault/worker HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let _ = s.read(&mut [0u8; 64]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let fresh: Vec<_> = std::fs::read_dir(format!("/proc/{}/task", gw.child.id()))
            .unwrap()
            .flatten()
            .filter(|t| !before.contains(&t.file_name()))
            .filter(|t| std::fs::read_to_string(t.path().join("comm")).unwrap_or_default().starts_with("wasp-worker-"))
            .collect();
        if let Some(t) = fresh.first() {
            // The new thread sets its slice as it starts: give it a moment.
            std::thread::sleep(Duration::from_millis(200));
            let sched = std::fs::read_to_string(t.path().join("sched")).unwrap_or_default();
            assert_eq!(slice_of(&sched), Some(300_000), "the replacement worker's se.slice");
            return;
        }
        assert!(std::time::Instant::now() < deadline, "no replacement worker thread appeared");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn out_of_range_or_malformed_slices_are_refused_naming_the_key() {
    let dir = temp_dir("slice");
    for (value, expect) in [
        ("\"50us\"", "from \"100us\" to \"100ms\""),
        ("\"101ms\"", "from \"100us\" to \"100ms\""),
        ("\"0ms\"", "from \"100us\" to \"100ms\""),
        ("\"fast\"", "or \"off\""),
        ("\"100\"", "no unit"),
        ("\"1.5ms\"", "unknown unit"),
        ("100", "invalid type"),
    ] {
        let path = dir.join("wasp.toml");
        std::fs::write(&path, format!("[server]\nscheduler_slice = {value}\n")).unwrap();
        let out = Command::new(wasp_bin()).args(["check", "--config"]).arg(&path).output().expect("run wasp check");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!out.status.success(), "{value} was accepted: {text}");
        assert!(text.contains("scheduler_slice"), "{value}: the error does not name the key: {text}");
        assert!(text.contains(expect), "{value}: expected {expect:?} in {text}");
    }
    for ok in ["\"100us\"", "\"100ms\"", "\"750us\"", "\"off\""] {
        let path = dir.join("ok.toml");
        std::fs::write(&path, format!("[server]\nscheduler_slice = {ok}\n")).unwrap();
        let out = Command::new(wasp_bin()).args(["check", "--config"]).arg(&path).output().expect("run wasp check");
        assert!(out.status.success(), "{ok} refused: {}", String::from_utf8_lossy(&out.stderr));
    }
}
