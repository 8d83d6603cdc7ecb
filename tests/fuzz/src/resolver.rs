//! `getaddrinfo` for the fuzz binaries: numeric hosts and `localhost` only.
//!
//! Configuration parsing resolves service instances and integration URLs
//! with `ToSocketAddrs` (static discovery resolves once, at load). A fuzzer
//! feeding random configurations would otherwise send a DNS query for every
//! random host name it invents: slow, and network traffic from a fuzzer.
//! This definition in the executable takes the place of the C library's for
//! every caller (std included); it maps `localhost` to `127.0.0.1` and asks
//! the real one with `AI_NUMERICHOST`, so a name fails at once, as an
//! unresolvable name does, and nothing leaves the process.

use std::ffi::{c_char, c_int, CStr};
use std::sync::OnceLock;

type Gai = unsafe extern "C" fn(*const c_char, *const c_char, *const libc::addrinfo, *mut *mut libc::addrinfo) -> c_int;

fn real() -> Gai {
    static REAL: OnceLock<usize> = OnceLock::new();
    let p = *REAL.get_or_init(|| {
        // SAFETY: dlsym with a NUL-terminated name; RTLD_NEXT finds the C
        // library's definition, the one this function stands in for.
        let p = unsafe { libc::dlsym(libc::RTLD_NEXT, c"getaddrinfo".as_ptr()) };
        assert!(!p.is_null(), "no getaddrinfo after the fuzz binary's own");
        p as usize
    });
    // SAFETY: `p` is the C library's getaddrinfo, which has this signature.
    unsafe { std::mem::transmute::<usize, Gai>(p) }
}

/// # Safety
/// The C `getaddrinfo` contract: `node`/`service` NULL or NUL-terminated,
/// `hints` NULL or valid, `res` valid.
#[no_mangle]
pub unsafe extern "C" fn getaddrinfo(
    node: *const c_char,
    service: *const c_char,
    hints: *const libc::addrinfo,
    res: *mut *mut libc::addrinfo,
) -> c_int {
    // SAFETY: per the C contract above.
    unsafe {
        let localhost = !node.is_null() && CStr::from_ptr(node).to_bytes().eq_ignore_ascii_case(b"localhost");
        let node = if localhost { c"127.0.0.1".as_ptr() } else { node };
        let mut h: libc::addrinfo = if hints.is_null() { std::mem::zeroed() } else { *hints };
        h.ai_flags |= libc::AI_NUMERICHOST | libc::AI_NUMERICSERV;
        real()(node, service, &h, res)
    }
}

/// Keeps [`getaddrinfo`] in every fuzz binary (an unreferenced object of a
/// library is not linked) and checks it answers as meant.
pub fn install() {
    use std::net::ToSocketAddrs;
    static CHECKED: OnceLock<()> = OnceLock::new();
    CHECKED.get_or_init(|| {
        std::hint::black_box(getaddrinfo as *const () as usize);
        assert!("localhost:9".to_socket_addrs().is_ok_and(|mut a| a.next().is_some()), "localhost resolves");
        assert!("wasp-fuzz.example:9".to_socket_addrs().is_err(), "names are not resolved");
    });
}
