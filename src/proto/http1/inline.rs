//! A short string kept inline: methods and request ids travel with every
//! request and should not cost an allocation each.

#[derive(Clone, Copy)]
pub struct InlineStr<const N: usize> {
    len: u8,
    bytes: [u8; N],
}

impl<const N: usize> InlineStr<N> {
    pub const fn empty() -> Self {
        InlineStr { len: 0, bytes: [0; N] }
    }

    /// Copies `s`, cut to `N` bytes (on a char boundary only matters for
    /// non-ASCII, which callers never pass: tokens and ids are ASCII).
    pub fn new(s: &[u8]) -> Self {
        let mut v = Self::empty();
        let n = s.len().min(N).min(255);
        v.bytes[..n].copy_from_slice(&s[..n]);
        v.len = n as u8;
        v
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or("?")
    }
}

impl<const N: usize> std::fmt::Debug for InlineStr<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

pub type Method = InlineStr<24>;
pub type RequestId = InlineStr<64>;

/// Request ids: a random per-worker prefix and a counter, as hex. Unique
/// within a run and across restarts; cheap (no syscall, no allocation).
pub struct IdGen {
    prefix: u32,
    counter: std::cell::Cell<u64>,
}

impl IdGen {
    pub fn new(prefix: u32) -> Self {
        IdGen { prefix, counter: std::cell::Cell::new(0) }
    }

    pub fn next(&self) -> RequestId {
        let n = self.counter.get().wrapping_add(1);
        self.counter.set(n);
        let mut buf = [0u8; 24];
        hex_into(&mut buf[..8], u64::from(self.prefix));
        hex_into(&mut buf[8..], n);
        RequestId::new(&buf)
    }
}

fn hex_into(out: &mut [u8], mut v: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for slot in out.iter_mut().rev() {
        *slot = HEX[(v & 0xf) as usize];
        v >>= 4;
    }
}

/// A client-supplied request id is kept only if it is short and plain.
pub fn acceptable_request_id(v: &[u8]) -> bool {
    !v.is_empty() && v.len() <= 64 && v.iter().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_hex() {
        let g = IdGen::new(0xdeadbeef);
        let a = g.next();
        let b = g.next();
        assert_eq!(a.as_str(), "deadbeef0000000000000001");
        assert_ne!(a.as_str(), b.as_str());
        assert!(acceptable_request_id(b"abc-123"));
        assert!(!acceptable_request_id(b"a b"));
    }
}
