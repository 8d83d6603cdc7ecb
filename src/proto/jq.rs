//! Transformations: jq programs (jaq, pure Rust) run on JSON documents.
//!
//! A program is compiled once (per snapshot) and run on one JSON input; it
//! must yield exactly one value, which is written back as JSON text within
//! a size cap.
//!
//! What a program may not do: read the gateway's environment (`env` is
//! left out: an admin token must not end up in a body a client sees),
//! stop the process (`halt`, `halt_error` are plain errors here), write to
//! the gateway's stderr (`stderr`, `debug`), or parse a string as JSON
//! (`fromjson`: jaq's parser recurses without a depth limit). Modules
//! cannot be loaded, and there is no `input`.
//!
//! What an input may not be: anything but one strict JSON document (jaq
//! also reads `NaN`, `{1:2}`, `[+1]`, which are not JSON), nested deeper
//! than 128 levels (jaq's reader recurses: a body of 65,536 `[` would
//! overflow the worker's stack and abort the process), or holding a number
//! written with more than 100 characters (jaq reads long integers as
//! bignums in quadratic time: 4 MB of digits cost 13 s). Both are checked
//! first with serde_json and a scan, in linear time.

use jaq_core::load::{Arena, File, Loader};
use jaq_core::{data, Compiler, Ctx, Vars};
use jaq_json::Val;

type Filter = jaq_core::Filter<data::JustLut<Val>>;

/// A compiled program.
pub struct Program {
    filter: Filter,
    text: String,
}

impl std::fmt::Debug for Program {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Program({:?})", self.text)
    }
}

impl PartialEq for Program {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

/// Why a run gave no document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunError {
    /// The input is not one JSON document.
    NotJson,
    /// The program yielded nothing.
    NoOutput,
    /// The program yielded more than one value.
    SeveralOutputs,
    /// The program raised an error (its text, cut short).
    Failed(String),
    /// The output is larger than the cap.
    TooLarge,
}

impl RunError {
    /// The `502` a failed program gets the client. The message is fixed:
    /// the program's own error text goes to the debug log only.
    pub fn to_error(&self) -> crate::error::ProxyError {
        let message = match self {
            RunError::NotJson => "the body is not one JSON document",
            RunError::NoOutput => "the transformation yielded no value",
            RunError::SeveralOutputs => "the transformation yielded more than one value",
            RunError::Failed(_) => "the transformation raised an error",
            RunError::TooLarge => "the transformation's output is over the size limit",
        };
        if let RunError::Failed(text) = self {
            tracing::debug!(error = %text, "transformation failed");
        }
        crate::error::ProxyError::bad_gateway(message)
    }

    pub fn message(&self) -> String {
        match self {
            RunError::NotJson => "the body is not one JSON document".into(),
            RunError::NoOutput => "the transformation yielded no value".into(),
            RunError::SeveralOutputs => "the transformation yielded more than one value".into(),
            // Fixed: the program's own text can quote the data it failed on.
            RunError::Failed(_) => "the transformation raised an error".into(),
            RunError::TooLarge => "the transformation's output is over the size limit".into(),
        }
    }
}

impl Program {
    /// Compiles `text`; the error says what is wrong, in one line.
    pub fn compile(text: &str) -> Result<Program, String> {
        if text.len() > 64 * 1024 {
            return Err("a jq program has at most 64 KiB".into());
        }
        // Later definitions shadow earlier ones: these replace builtins a
        // program in the gateway must not reach.
        let sealed = jaq_core::load::parse(SEALED, |p| p.defs()).unwrap_or_default();
        let defs = jaq_core::defs().chain(jaq_std::defs()).chain(jaq_json::defs()).chain(sealed);
        // `env` would hand the gateway's environment to whoever writes a program.
        let funs = jaq_core::funs().chain(jaq_std::funs()).chain(jaq_json::funs()).filter(|f| f.0 != "env");
        let loader = Loader::new(defs);
        let arena = Arena::default();
        let modules = loader.load(&arena, File { code: text, path: () }).map_err(|errs| {
            let what: Vec<String> = errs.iter().map(|(_, e)| short(&format!("{e:?}"))).collect();
            format!("jq syntax error: {}", what.join("; "))
        })?;
        let filter = Compiler::default().with_funs(funs).compile(modules).map_err(|errs| {
            let names: Vec<String> =
                errs.iter().flat_map(|(_, es)| es.iter().map(|(name, _)| name.to_string())).collect();
            format!("jq: undefined {}", names.join(", "))
        })?;
        Ok(Program { filter, text: text.to_string() })
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// Runs on the JSON document `input`; the one value it yields, as JSON
    /// text of at most `max_out` bytes.
    pub fn run(&self, input: &[u8], max_out: usize) -> Result<Vec<u8>, RunError> {
        check_json(input)?;
        let value = jaq_json::read::parse_single(input).map_err(|_| RunError::NotJson)?;
        let ctx = Ctx::<data::JustLut<Val>>::new(&self.filter.lut, Vars::new([]));
        // Not `unwrap_valr`: it calls `process::exit` on a halt.
        let mut out = self.filter.id.run((ctx, value)).map(|r| {
            r.map_err(|e| match e.get_err() {
                Ok(err) => short(&err.to_string()),
                Err(_) => "the program halted".to_string(),
            })
        });
        let first = match out.next() {
            None => return Err(RunError::NoOutput),
            Some(Err(e)) => return Err(RunError::Failed(e)),
            Some(Ok(v)) => v,
        };
        if out.next().is_some() {
            return Err(RunError::SeveralOutputs);
        }
        let text = first.to_string();
        if text.len() > max_out {
            return Err(RunError::TooLarge);
        }
        Ok(text.into_bytes())
    }
}

/// Whether a body with these headers is one a transform works on:
/// `application/json` or `…+json`, and no `Content-Encoding`.
pub fn transformable(content_type: Option<&[u8]>, content_encoding: Option<&[u8]>) -> bool {
    if content_encoding.is_some_and(|e| !e.is_empty() && !e.eq_ignore_ascii_case(b"identity")) {
        return false;
    }
    let Some(ct) = content_type else { return false };
    let mime = ct.split(|b| *b == b';').next().unwrap_or_default();
    let mime = super::http1::headers::trim(mime).to_ascii_lowercase();
    mime == b"application/json" || mime.starts_with(b"application/") && mime.ends_with(b"+json")
}

/// Builtins replaced by errors (see the module notes).
const SEALED: &str = r#"
def fromjson: error("fromjson is not available in wasp");
def stderr: error("stderr is not available in wasp");
def debug: error("debug is not available in wasp");
def debug($m): error("debug is not available in wasp");
def halt: error("halt is not available in wasp");
def halt_error: error("halt_error is not available in wasp");
def halt_error($c): error("halt_error is not available in wasp");
"#;

/// Number literals longer than this are refused before jaq sees them.
const MAX_NUMBER: usize = 100;

/// Strict JSON, at most 128 levels deep (serde_json's own recursion limit),
/// no number literal over `MAX_NUMBER` characters. Linear time.
pub fn check_json(input: &[u8]) -> Result<(), RunError> {
    serde_json::from_slice::<serde::de::IgnoredAny>(input).map_err(|_| RunError::NotJson)?;
    let (mut in_string, mut escaped, mut run) = (false, false, 0usize);
    for &b in input {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => {
                in_string = true;
                run = 0;
            }
            b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E' => {
                run += 1;
                if run > MAX_NUMBER {
                    return Err(RunError::NotJson);
                }
            }
            _ => run = 0,
        }
    }
    Ok(())
}

/// At most 200 characters of an error text.
fn short(s: &str) -> String {
    let mut t: String = s.chars().take(200).collect();
    if s.chars().count() > 200 {
        t.push('…');
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_value_in_one_value_out() {
        let p = Program::compile("{user: .user_id, items: [.cart[] | {sku, qty}]}").unwrap();
        let out = p.run(br#"{"user_id":7,"cart":[{"sku":"a","qty":2,"price":3}]}"#, 1 << 20).unwrap();
        assert_eq!(out, br#"{"user":7,"items":[{"sku":"a","qty":2}]}"#);
        assert_eq!(Program::compile("empty").unwrap().run(b"{}", 100), Err(RunError::NoOutput));
        assert_eq!(Program::compile(".[]").unwrap().run(b"[1,2]", 100), Err(RunError::SeveralOutputs));
        assert_eq!(Program::compile(".").unwrap().run(b"{} x", 100), Err(RunError::NotJson));
        assert_eq!(Program::compile(".").unwrap().run(b"[1,2,3]", 4), Err(RunError::TooLarge));
        assert!(matches!(Program::compile(".a + 1").unwrap().run(br#"{"a":"x"}"#, 100), Err(RunError::Failed(_))));
    }

    #[test]
    fn inputs_jaq_would_choke_on_are_refused_first() {
        let p = Program::compile(".").unwrap();
        let deep = "[".repeat(65_536);
        assert_eq!(p.run(deep.as_bytes(), 1 << 20), Err(RunError::NotJson));
        let long = format!("{{\"n\":{}}}", "9".repeat(200));
        assert_eq!(p.run(long.as_bytes(), 1 << 20), Err(RunError::NotJson));
        let in_string = format!("{{\"n\":\"{}\"}}", "9".repeat(200));
        assert!(p.run(in_string.as_bytes(), 1 << 20).is_ok(), "digits inside strings are fine");
        for not_json in ["{1:2}", "NaN", "[+1]", "[Infinity]", "b\"abc\"", "{\"a\":-Infinity}"] {
            assert_eq!(p.run(not_json.as_bytes(), 100), Err(RunError::NotJson), "{not_json}");
        }
        let nested = format!("{}1{}", "[".repeat(100), "]".repeat(100));
        assert!(p.run(nested.as_bytes(), 1 << 20).is_ok());
    }

    #[test]
    fn halting_and_printing_are_errors_not_exits() {
        for prog in ["halt", "halt_error", "\"x\" | halt_error(1)", "stderr", "debug", "\"[1]\" | fromjson"] {
            let p = Program::compile(prog).unwrap();
            assert!(matches!(p.run(b"{}", 100), Err(RunError::Failed(_))), "{prog}");
        }
    }

    #[test]
    fn bad_programs_and_env_are_refused() {
        assert!(Program::compile("{user: .user_id").unwrap_err().contains("syntax"));
        assert!(Program::compile("nosuchfn(1)").unwrap_err().contains("nosuchfn"));
        assert!(Program::compile("env.HOME").unwrap_err().contains("env"));
        assert!(Program::compile("include \"/etc/passwd\"; .").is_err());
    }
}
