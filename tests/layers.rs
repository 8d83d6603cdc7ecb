//! ARCHITECTURE.md's layer rule, checked: a module never uses one of a
//! higher layer. Reads every `crate::` path in `src/` (test modules aside)
//! and compares the ranks of the two top-level modules.

use std::path::Path;

/// Rank of each top-level module of `src/`; a module may use only modules
/// of a rank at most its own. Keep in step with ARCHITECTURE.md.
const RANKS: &[(&str, u8)] = &[
    // Wire protocols and the data-plane error: bytes in, values out.
    ("proto", 0),
    ("error", 0),
    ("sys", 0),
    // The validated config model and small support modules.
    ("config", 1),
    ("io", 1),
    ("shutdown", 1),
    ("deadline", 1),
    ("systemd", 1),
    ("logging", 2),
    ("metrics", 2),
    // The control side's HTTP client (discovery registries, JWKS).
    ("fetch", 2),
    // The data plane, bottom to top.
    ("upstream", 3),
    ("discovery", 3),
    // Who is calling: the API key index (filters and upgrades read it).
    ("auth", 3),
    // The Kafka client: one producer, consumers for the control side.
    ("kafka", 3),
    // Rate-limit budgets shared by the workers (filters and events spend them).
    ("limits", 3),
    ("targets", 4),
    ("router", 5),
    ("filters", 6),
    ("pipeline", 7),
    ("worker", 8),
    // The control side, beside the workers.
    ("store", 9),
    ("control", 9),
    ("admin", 9),
    ("server", 10),
    ("cli", 10),
    ("main", 11),
    ("lib", 11),
];

fn rank(module: &str) -> Option<u8> {
    RANKS.iter().find(|(m, _)| *m == module).map(|(_, r)| *r)
}

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read src") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `text` with every top-level `#[cfg(test)]` item blanked, up to its
/// closing `}` (the first line that is only `}`: items are formatted by
/// rustfmt, and braces inside string literals do not count).
fn without_test_modules(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_test = false;
    for line in text.lines() {
        if !in_test && line.starts_with("#[cfg(test)]") {
            in_test = true;
        }
        if !in_test {
            out.push_str(line);
        }
        // Keep the line count, so reported line numbers stay true.
        out.push('\n');
        if in_test && (line == "}" || line.ends_with(';') && !line.starts_with(' ') && !line.starts_with("#[")) {
            in_test = false;
        }
    }
    out
}

#[test]
fn no_module_uses_a_higher_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    let mut wrong = Vec::new();
    for path in all {
        let rel = path.strip_prefix(&src).expect("under src");
        let top = rel
            .components()
            .next()
            .expect("a component")
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        let Some(own) = rank(&top) else {
            wrong.push(format!("{}: module `{top}` has no layer in tests/layers.rs", rel.display()));
            continue;
        };
        let text = std::fs::read_to_string(&path).expect("read");
        // Unit tests may reach up (a test builds a snapshot, say).
        let code = without_test_modules(&text);
        for (n, line) in code.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for (i, _) in line.match_indices("crate::") {
                let used: String =
                    line[i + 7..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                if used == top {
                    continue;
                }
                match rank(&used) {
                    Some(r) if r <= own => {}
                    _ => wrong.push(format!("{}:{}: `{top}` uses `{used}`", rel.display(), n + 1)),
                }
            }
        }
    }
    assert!(wrong.is_empty(), "layer rule broken (see ARCHITECTURE.md):\n{}", wrong.join("\n"));
}
