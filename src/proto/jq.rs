//! Transformations: jq programs (jaq, pure Rust) run on JSON documents.
//!
//! A program is compiled once (per snapshot) and run on one JSON input; it
//! must yield exactly one value, which is written back as JSON text within
//! a size cap. The `env` builtin is not available: a program written into
//! the configuration must not read the gateway's environment (an admin
//! token) into a body a client sees. Modules cannot be loaded (jaq does not
//! support it), and there is no `input`.

use jaq_core::load::{Arena, File, Loader};
use jaq_core::{data, unwrap_valr, Compiler, Ctx, Vars};
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
            RunError::Failed(e) => format!("the transformation failed: {e}"),
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
        let defs = jaq_core::defs().chain(jaq_std::defs()).chain(jaq_json::defs());
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
        let value = jaq_json::read::parse_single(input).map_err(|_| RunError::NotJson)?;
        let ctx = Ctx::<data::JustLut<Val>>::new(&self.filter.lut, Vars::new([]));
        let mut out = self.filter.id.run((ctx, value)).map(unwrap_valr);
        let first = match out.next() {
            None => return Err(RunError::NoOutput),
            Some(Err(e)) => return Err(RunError::Failed(short(&e.to_string()))),
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
    fn bad_programs_and_env_are_refused() {
        assert!(Program::compile("{user: .user_id").unwrap_err().contains("syntax"));
        assert!(Program::compile("nosuchfn(1)").unwrap_err().contains("nosuchfn"));
        assert!(Program::compile("env.HOME").unwrap_err().contains("env"));
        assert!(Program::compile("include \"/etc/passwd\"; .").is_err());
    }
}
