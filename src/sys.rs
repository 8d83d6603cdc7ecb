//! The few raw socket calls std, socket2 and monoio do not offer on a socket
//! we only know by its descriptor. This is the one module allowed `unsafe`.
#![allow(unsafe_code)]

use std::os::fd::RawFd;

/// Ends reading (`SHUT_RD`) or both directions (`SHUT_RDWR`) of a socket.
///
/// Used by the deadline sweeper to cut a stalled peer: the pending read or
/// write completes at once (0 bytes or `EPIPE`) and the task that owns the
/// socket sees why from its [`crate::deadline::Watch`]. The descriptor stays
/// open and owned by that task, so it cannot be reused under our feet.
pub fn shutdown(fd: RawFd, both: bool) {
    let how = if both { libc::SHUT_RDWR } else { libc::SHUT_RD };
    // SAFETY: shutdown(2) takes a plain integer and touches no memory of
    // ours; on a descriptor that is not a socket it fails with ENOTSOCK,
    // which we ignore. The caller guarantees the descriptor is still owned by
    // the task that armed the deadline (armed only while its I/O is pending).
    unsafe {
        libc::shutdown(fd, how);
    }
}

/// What a non-blocking look at an idle socket shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peek {
    /// Nothing to read and still open: safe to send a request on.
    Idle,
    /// The peer closed it, reset it, or sent bytes nobody asked for.
    Unusable,
}

/// Looks at an idle keep-alive socket without consuming anything.
///
/// A pooled upstream connection the service has closed shows end-of-stream
/// here *before* we write: a request found this way provably never reached
/// the service and may go out on another connection, whatever its method.
pub fn peek(fd: RawFd) -> Peek {
    let mut byte = 0u8;
    // SAFETY: recv(2) writes at most 1 byte into `byte`, which lives for the
    // whole call; MSG_DONTWAIT makes it return at once whatever the socket's
    // blocking mode. The descriptor is owned by the caller for the call.
    let n = unsafe { libc::recv(fd, (&mut byte as *mut u8).cast(), 1, libc::MSG_PEEK | libc::MSG_DONTWAIT) };
    if n < 0 {
        let err = std::io::Error::last_os_error();
        if matches!(err.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted) {
            return Peek::Idle;
        }
    }
    Peek::Unusable
}

/// Bytes in a socket's send queue not yet acknowledged by the peer
/// (`SIOCOUTQ`), or `None` if the descriptor is not a TCP socket.
///
/// A write blocked on a full send buffer only wakes once the kernel has
/// freed a good share of it, which a slow but steady reader may take longer
/// than the write timeout to do. The queue shrinking tells that reader
/// apart from one that stopped.
pub fn unacked(fd: RawFd) -> Option<u64> {
    let mut n: libc::c_int = 0;
    // SAFETY: ioctl(SIOCOUTQ) writes one c_int into `n`, which lives for the
    // whole call; on a descriptor that is not a socket it fails and we
    // return None.
    let rc = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut n as *mut libc::c_int) };
    (rc == 0).then(|| u64::try_from(n).unwrap_or(0))
}

/// `struct sched_attr` as `sched_setattr(2)` takes it, in its first
/// version (`SCHED_ATTR_SIZE_VER0`, 48 bytes), which every kernel since 3.14
/// accepts.
#[repr(C)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
}

/// Asks the kernel to give the calling thread a CPU time slice of `slice`
/// (EEVDF custom slice, Linux 6.12+; see `config/scheduling.rs` for why a
/// worker wants a short one). Policy and nice value are kept as they are;
/// a thread under a real-time or idle policy, which the operator chose, is
/// left alone. On kernels without custom slices the call succeeds and
/// changes nothing.
pub fn set_scheduler_slice(slice: std::time::Duration) -> std::io::Result<()> {
    // SAFETY: sched_getscheduler(2) and getpriority(2) take integers and
    // touch no memory of ours; 0 means the calling thread.
    let policy = unsafe { libc::sched_getscheduler(0) };
    if policy < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if policy != libc::SCHED_OTHER && policy != libc::SCHED_BATCH {
        return Ok(());
    }
    // getpriority can return -1 as a value: errno tells an error from it.
    // SAFETY: as above; errno is this thread's.
    let nice = unsafe {
        *libc::__errno_location() = 0;
        libc::getpriority(libc::PRIO_PROCESS, 0)
    };
    let err = std::io::Error::last_os_error();
    if nice == -1 && err.raw_os_error().unwrap_or(0) != 0 {
        return Err(err);
    }
    let attr = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        policy: policy as u32,
        flags: 0,
        nice,
        priority: 0,
        runtime: u64::try_from(slice.as_nanos()).unwrap_or(u64::MAX),
        deadline: 0,
        period: 0,
    };
    // SAFETY: sched_setattr(2) reads `attr.size` bytes from a pointer to a
    // live, properly laid out `SchedAttr` of exactly that size, and writes
    // nothing; pid 0 is the calling thread.
    let rc = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;

    #[test]
    fn peek_tells_idle_from_closed_and_from_unsolicited_bytes() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut s, _) = l.accept().unwrap();
        assert_eq!(peek(c.as_raw_fd()), Peek::Idle);
        s.write_all(b"x").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(peek(c.as_raw_fd()), Peek::Unusable);
        let c2 = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s2, _) = l.accept().unwrap();
        drop(s2);
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(peek(c2.as_raw_fd()), Peek::Unusable);
    }

    #[test]
    fn unacked_bytes_are_seen() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (_s, _) = l.accept().unwrap();
        assert_eq!(unacked(c.as_raw_fd()), Some(0));
        c.write_all(b"hello").unwrap();
        // Loopback acks at once; the figure is readable either way.
        assert!(unacked(c.as_raw_fd()).is_some());
        assert_eq!(unacked(-1), None);
    }

    #[test]
    fn shutdown_read_ends_a_blocked_read() {
        use std::io::Read;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (_s, _) = l.accept().unwrap();
        let fd = c.as_raw_fd();
        let t = std::thread::spawn(move || {
            let mut b = [0u8; 8];
            c.read(&mut b).unwrap()
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        shutdown(fd, false);
        assert_eq!(t.join().unwrap(), 0);
    }
}
