//! Drives the admin UI in a real browser: Debian's `chromium` (headless,
//! `--no-sandbox`) through `playwright-core` from npm, scripted by
//! `tests/peers/ui.mjs`, one scenario per run.
//!
//! `.ci/run` installs both (`apt-get install chromium`, `npm install
//! playwright-core` under `~/.cache/wasp/node`). `CHROMIUM` names another
//! browser binary; the node binary and package folder are found as for the
//! OAuth2 peer (`WASP_TEST_NODE`, `WASP_TEST_NODE_MODULES`).
//!
//! The script prints progress, `READY` where a scenario waits for the test
//! to do something (start load, stop the gateway), and finally `OK <json>`
//! or `FAIL <reason>`. Screenshots go to `WASP_UI_SHOTS` when set (the
//! README's come from a run with `WASP_UI_SHOTS=docs/ui`).

use super::oauth2::{node, node_modules};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

const INSTALL: &str = "install Debian's chromium and `npm install --prefix ~/.cache/wasp/node playwright-core` \
     (.ci/run does both), or point CHROMIUM / WASP_TEST_NODE_MODULES at them";

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/ui.mjs")
}

/// Runs `scenario` against the UI at `url` (`http://ADMIN/ui/`); calls
/// `on_ready` when the script says `READY`. Returns the JSON of its `OK`
/// line; panics with the script's output on anything else.
pub fn run(scenario: &str, url: &str, token: Option<&str>, args: Value, on_ready: impl FnOnce()) -> Value {
    run_script(&script(), scenario, url, token, args, on_ready)
}

/// [`run`] with another scenario file (same conventions as `ui.mjs`).
pub fn run_script(
    script: &std::path::Path,
    scenario: &str,
    url: &str,
    token: Option<&str>,
    args: Value,
    on_ready: impl FnOnce(),
) -> Value {
    // One browser at a time per test binary: a dozen headless chromiums at
    // once on a 2-core box make timing-dependent scenarios (the dashboard's
    // rate under load) fail for want of CPU, not for a bug.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(std::path::Path::new(&chromium).exists(), "no browser at {chromium}: {INSTALL}");
    let modules = node_modules();
    assert!(modules.join("playwright-core").exists(), "no playwright-core in {}: {INSTALL}", modules.display());
    let mut cmd = Command::new(node());
    cmd.arg(script)
        .arg(scenario)
        .env("WASP_UI_URL", url)
        .env("WASP_ADMIN_TOKEN", token.unwrap_or(""))
        .env("WASP_UI_ARGS", args.to_string())
        .env("WASP_TEST_NODE_MODULES", &modules)
        .env("CHROMIUM", &chromium)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(dir) = std::env::var_os("WASP_UI_SHOTS") {
        cmd.env("WASP_UI_SHOTS", dir);
    }
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot run `{}` ({e}): {INSTALL}", node()));
    let stderr = child.stderr.take().expect("stderr");
    let err_lines =
        std::thread::spawn(move || BufReader::new(stderr).lines().map_while(Result::ok).collect::<Vec<_>>());
    let mut lines = Vec::new();
    let mut on_ready = Some(on_ready);
    let mut result = None;
    for line in BufReader::new(child.stdout.take().expect("stdout")).lines().map_while(Result::ok) {
        if line.trim() == "READY" {
            if let Some(f) = on_ready.take() {
                f();
            }
        } else if let Some(json) = line.strip_prefix("OK ") {
            result = serde_json::from_str::<Value>(json).ok();
        }
        lines.push(line);
    }
    let status = child.wait().expect("wait for node");
    let errs = err_lines.join().unwrap_or_default();
    match result {
        Some(v) if status.success() => {
            // The scenario's own progress lines, for the report.
            for l in lines.iter().filter(|l| l.starts_with("..")) {
                eprintln!("{l}");
            }
            v
        }
        _ => panic!(
            "browser scenario {scenario} failed ({status}):\n{}\n--- stderr\n{}",
            lines.join("\n"),
            errs.join("\n")
        ),
    }
}
