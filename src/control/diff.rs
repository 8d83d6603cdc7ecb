//! Line diffs of two versions (pretty JSON), for `GET /{kind}/{name}/diff`
//! and the CLI: ` ` kept, `-` removed, `+` added.
//!
//! Bounded in both directions: above [`MAX_LINES`] lines or [`MAX_BYTES`]
//! bytes on either side the diff is refused (the admin API answers `413`),
//! and below them Myers' algorithm in linear space (`similar`) keeps memory
//! proportional to the input — the n×m table it replaces took 2.5 GB for two
//! 25,000-line versions — with a deadline after which it settles for a
//! coarser, still correct, diff.

use similar::{Algorithm, DiffOp};
use std::time::{Duration, Instant};

/// Lines on either side, at most.
pub const MAX_LINES: usize = 20_000;
/// Bytes on either side, at most.
pub const MAX_BYTES: usize = 2 * 1024 * 1024;
/// Time the algorithm may spend looking for the shortest diff.
const DEADLINE: Duration = Duration::from_secs(2);

/// Why a diff was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooLarge {
    pub lines: usize,
    pub bytes: usize,
}

impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "a side has {} lines and {} bytes; diffs compare at most {MAX_LINES} lines and {MAX_BYTES} bytes per side",
            self.lines, self.bytes
        )
    }
}

fn check(text: &str) -> Result<Vec<&str>, TooLarge> {
    let too_large = || TooLarge { lines: text.lines().count(), bytes: text.len() };
    if text.len() > MAX_BYTES {
        return Err(too_large());
    }
    // Counted while splitting, stopping at the cap: never a larger vector.
    let mut lines = Vec::new();
    for l in text.lines() {
        if lines.len() == MAX_LINES {
            return Err(too_large());
        }
        lines.push(l);
    }
    Ok(lines)
}

/// The line diff of `a` to `b`.
pub fn line_diff(a: &str, b: &str) -> Result<String, TooLarge> {
    let (x, y) = (check(a)?, check(b)?);
    let ops = similar::capture_diff_slices_deadline(Algorithm::Myers, &x, &y, Some(Instant::now() + DEADLINE));
    let mut out = String::with_capacity(a.len().max(b.len()) + 16);
    let mut line = |mark: &str, text: &str| {
        out.push_str(mark);
        out.push_str(text);
        out.push('\n');
    };
    for op in ops {
        match op {
            DiffOp::Equal { old_index, len, .. } => x[old_index..old_index + len].iter().for_each(|l| line("  ", l)),
            DiffOp::Delete { old_index, old_len, .. } => {
                x[old_index..old_index + old_len].iter().for_each(|l| line("- ", l))
            }
            DiffOp::Insert { new_index, new_len, .. } => {
                y[new_index..new_index + new_len].iter().for_each(|l| line("+ ", l))
            }
            DiffOp::Replace { old_index, old_len, new_index, new_len } => {
                x[old_index..old_index + old_len].iter().for_each(|l| line("- ", l));
                y[new_index..new_index + new_len].iter().for_each(|l| line("+ ", l));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_diffs() {
        assert_eq!(line_diff("a\nb\nc", "a\nc\nd").unwrap(), "  a\n- b\n  c\n+ d\n");
        assert_eq!(line_diff("", "x").unwrap(), "+ x\n");
        assert_eq!(line_diff("x\ny", "").unwrap(), "- x\n- y\n");
        assert_eq!(line_diff("same", "same").unwrap(), "  same\n");
    }

    #[test]
    fn caps_on_lines_and_bytes() {
        let at_cap = "l\n".repeat(MAX_LINES);
        assert!(line_diff(&at_cap, "l").is_ok());
        let over = "l\n".repeat(MAX_LINES + 1);
        let e = line_diff("l", &over).unwrap_err();
        assert_eq!(e, TooLarge { lines: MAX_LINES + 1, bytes: over.len() });
        let wide = "x".repeat(MAX_BYTES + 1);
        assert!(line_diff(&wide, "x").is_err());
    }

    #[test]
    fn two_totally_different_sides_at_the_cap_finish() {
        // The worst case for Myers (nothing in common): the deadline bounds it.
        let a: String = (0..MAX_LINES).map(|i| format!("a{i}\n")).collect();
        let b: String = (0..MAX_LINES).map(|i| format!("b{i}\n")).collect();
        let d = line_diff(&a, &b).unwrap();
        assert_eq!(d.lines().filter(|l| l.starts_with("- ")).count(), MAX_LINES);
        assert_eq!(d.lines().filter(|l| l.starts_with("+ ")).count(), MAX_LINES);
    }
}
