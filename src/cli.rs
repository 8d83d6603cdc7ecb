//! `wasp config …`: the versioned configuration from a terminal, through
//! the admin API. Tables for people, `--json` for scripts.

use crate::admin::client::{AdminClient, Answer};
use serde_json::Value;
use std::io::IsTerminal;

/// The subcommands (see `wasp config --help`).
#[derive(clap::Subcommand, Debug)]
pub enum ConfigCmd {
    /// Every service and endpoint with its active version.
    List,
    /// The active content of one service or endpoint.
    Show { kind: String, name: String },
    /// Every version of one service or endpoint.
    Versions { kind: String, name: String },
    /// What changed between two versions.
    Diff { kind: String, name: String, from: u64, to: u64 },
    /// Make a version active again.
    Apply { kind: String, name: String, version: u64 },
    /// Make the version before the active one active.
    Rollback { kind: String, name: String },
    /// The whole dynamic configuration as one JSON document.
    Export,
    /// Replace the whole dynamic configuration with a document (one apply).
    Import { file: std::path::PathBuf },
    /// Check a document without applying it.
    Validate { file: std::path::PathBuf },
}

/// `wasp consumers …`: who calls through the gateway.
#[derive(clap::Subcommand, Debug)]
pub enum ConsumersCmd {
    /// Every consumer with its number of live keys.
    List,
    /// Create a consumer (or write a new version of it) with no limits.
    Put { name: String },
    /// Delete a consumer: its keys stop working at once.
    Delete { name: String },
}

/// `wasp keys …`: a consumer's API keys.
#[derive(clap::Subcommand, Debug)]
pub enum KeysCmd {
    /// Make a key: printed this once, never stored in clear.
    Create { consumer: String },
    /// The consumer's live keys: ids and creation times.
    List { consumer: String },
    /// Revoke a key (every worker, at its next request).
    Revoke { consumer: String, id: String },
}

pub fn consumers(client: &AdminClient, cmd: &ConsumersCmd, as_json: bool) -> Result<String, String> {
    match cmd {
        ConsumersCmd::List => {
            let doc = json(&client.call("GET", "/config/export", None)?)?;
            let names: Vec<String> =
                doc["consumers"].as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default();
            let mut rows = vec![vec!["CONSUMER".into(), "KEYS".into()]];
            let mut out = Vec::new();
            for name in names {
                let v = json(&client.call("GET", &format!("/consumers/{name}/keys"), None)?)?;
                let n = v["keys"].as_array().map_or(0, Vec::len);
                rows.push(vec![name.clone(), n.to_string()]);
                out.push(serde_json::json!({"name": name, "keys": n}));
            }
            Ok(if as_json { Value::Array(out).to_string() } else { table(&rows) })
        }
        ConsumersCmd::Put { name } => {
            let v = json(&client.call("PUT", &format!("/consumers/{name}"), Some("{}"))?)?;
            Ok(if as_json { v.to_string() } else { format!("consumer {name}: version {}", v["applied"][0]["version"]) })
        }
        ConsumersCmd::Delete { name } => {
            let a = client.call("DELETE", &format!("/consumers/{name}"), None)?;
            let v = json(&a)?;
            Ok(if as_json { v.to_string() } else { format!("deleted consumer {name}") })
        }
    }
}

pub fn keys(client: &AdminClient, cmd: &KeysCmd, as_json: bool) -> Result<String, String> {
    match cmd {
        KeysCmd::Create { consumer } => {
            let v = json(&client.call("POST", &format!("/consumers/{consumer}/keys"), Some(""))?)?;
            Ok(if as_json {
                v.to_string()
            } else {
                format!(
                    "id  {}\nkey {}\n(shown this once: wasp keeps only its HMAC)",
                    v["id"].as_str().unwrap_or(""),
                    v["key"].as_str().unwrap_or("")
                )
            })
        }
        KeysCmd::List { consumer } => {
            let v = json(&client.call("GET", &format!("/consumers/{consumer}/keys"), None)?)?;
            if as_json {
                return Ok(v.to_string());
            }
            let mut rows = vec![vec!["ID".into(), "CREATED".into()]];
            for k in v["keys"].as_array().cloned().unwrap_or_default() {
                rows.push(vec![k["id"].as_str().unwrap_or("").into(), when(k["created_ms"].as_u64().unwrap_or(0))]);
            }
            Ok(table(&rows))
        }
        KeysCmd::Revoke { consumer, id } => {
            let v = json(&client.call("DELETE", &format!("/consumers/{consumer}/keys/{id}"), None)?)?;
            Ok(if as_json { v.to_string() } else { format!("revoked {id}") })
        }
    }
}

fn plural(kind: &str) -> Result<&'static str, String> {
    match kind {
        "service" | "services" => Ok("services"),
        "endpoint" | "endpoints" => Ok("endpoints"),
        "consumer" | "consumers" => Ok("consumers"),
        k => Err(format!("{k:?}: the kind is service, endpoint or consumer")),
    }
}

fn json(a: &Answer) -> Result<Value, String> {
    let v: Value = serde_json::from_str(&a.body).map_err(|_| format!("admin API answered {}: {}", a.status, a.body))?;
    if (200..300).contains(&a.status) {
        return Ok(v);
    }
    let msg = v["message"].as_str().unwrap_or(&a.body);
    Err(match v["pointer"].as_str() {
        Some(p) if !p.is_empty() => format!("{} at {p}: {msg}", a.status),
        _ => format!("{}: {msg}", a.status),
    })
}

fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> =
        (0..cols).map(|c| rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0)).collect();
    rows.iter()
        .map(|r| {
            r.iter()
                .enumerate()
                .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn when(ms: u64) -> String {
    let s = ms / 1000;
    let (d, r) = (s / 86_400, s % 86_400);
    // Civil date from days since 1970 (Howard Hinnant's algorithm).
    let z = d as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}Z", r / 3600, r % 3600 / 60, r % 60)
}

/// Runs one subcommand; the text to print on success.
/// `wasp instances SERVICE`: each instance with its source and when that
/// source last answered (and the registry's error, while it is stale).
pub fn instances(client: &AdminClient, service: &str, as_json: bool) -> Result<String, String> {
    let v = json(&client.call("GET", &format!("/services/{service}/instances"), None)?)?;
    if as_json {
        return Ok(v.to_string());
    }
    let source = v["source"].as_str().unwrap_or("-").to_string();
    let seen = v["last_seen_ms"].as_u64().map_or("-".to_string(), |ms| {
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        format!("{:.1}s ago", now.saturating_sub(ms) as f64 / 1000.0)
    });
    let mut rows = vec![vec!["ADDRESS".into(), "SOURCE".into(), "LAST SEEN".into()]];
    for i in v["instances"].as_array().cloned().unwrap_or_default() {
        rows.push(vec![i["address"].as_str().unwrap_or("-").to_string(), source.clone(), seen.clone()]);
    }
    let mut out = table(&rows);
    if let Some(e) = v["error"].as_str() {
        out.push_str(&format!("\nstale: {e}"));
    }
    Ok(out)
}

pub fn run(client: &AdminClient, cmd: &ConfigCmd, as_json: bool) -> Result<String, String> {
    match cmd {
        ConfigCmd::List => {
            let doc = json(&client.call("GET", "/config/export", None)?)?;
            let mut rows = vec![vec!["KIND".into(), "NAME".into(), "ACTIVE".into(), "VERSIONS".into()]];
            let mut out = Vec::new();
            for (section, kind) in [("services", "service"), ("endpoints", "endpoint"), ("consumers", "consumer")] {
                for name in doc[section].as_object().map(|m| m.keys().cloned().collect::<Vec<_>>()).unwrap_or_default()
                {
                    let v = json(&client.call("GET", &format!("/{section}/{name}/versions"), None)?)?;
                    let versions = v["versions"].as_array().cloned().unwrap_or_default();
                    let active =
                        versions.iter().find(|x| x["active"] == true).and_then(|x| x["version"].as_u64()).unwrap_or(0);
                    rows.push(vec![kind.into(), name.clone(), active.to_string(), versions.len().to_string()]);
                    out.push(
                        serde_json::json!({"kind": kind, "name": name, "active": active, "versions": versions.len()}),
                    );
                }
            }
            Ok(if as_json { Value::Array(out).to_string() } else { table(&rows) })
        }
        ConfigCmd::Show { kind, name } => {
            let v = json(&client.call("GET", &format!("/{}/{name}", plural(kind)?), None)?)?;
            Ok(if as_json {
                v.to_string()
            } else {
                format!(
                    "# {kind} {name}, version {}\n{}",
                    v["version"],
                    serde_json::to_string_pretty(&v["content"]).unwrap_or_default()
                )
            })
        }
        ConfigCmd::Versions { kind, name } => {
            let v = json(&client.call("GET", &format!("/{}/{name}/versions", plural(kind)?), None)?)?;
            if as_json {
                return Ok(v.to_string());
            }
            let mut rows = vec![vec![
                "VERSION".into(),
                "".into(),
                "CREATED".into(),
                "AUTHOR".into(),
                "HASH".into(),
                "COMMENT".into(),
            ]];
            for x in v["versions"].as_array().cloned().unwrap_or_default() {
                let mark = if x["active"] == true {
                    "active"
                } else if x["deleted"] == true {
                    "deleted"
                } else {
                    ""
                };
                rows.push(vec![
                    x["version"].to_string(),
                    mark.into(),
                    when(x["created_ms"].as_u64().unwrap_or(0)),
                    x["author"].as_str().unwrap_or("").into(),
                    x["hash"].as_str().unwrap_or("").chars().take(12).collect(),
                    x["comment"].as_str().unwrap_or("").into(),
                ]);
            }
            Ok(table(&rows))
        }
        ConfigCmd::Diff { kind, name, from, to } => {
            let v = json(&client.call("GET", &format!("/{}/{name}/diff?from={from}&to={to}", plural(kind)?), None)?)?;
            if as_json {
                return Ok(v.to_string());
            }
            let diff = v["diff"].as_str().unwrap_or("");
            let color = std::io::stdout().is_terminal();
            Ok(diff
                .lines()
                .map(|l| match (color, l.chars().next()) {
                    (true, Some('+')) => format!("\x1b[32m{l}\x1b[0m"),
                    (true, Some('-')) => format!("\x1b[31m{l}\x1b[0m"),
                    _ => l.to_string(),
                })
                .collect::<Vec<_>>()
                .join("\n"))
        }
        ConfigCmd::Apply { kind, name, version } => {
            applied(client, &format!("/{}/{name}/versions/{version}/apply", plural(kind)?), None, as_json)
        }
        ConfigCmd::Rollback { kind, name } => {
            let v = json(&client.call("GET", &format!("/{}/{name}/versions", plural(kind)?), None)?)?;
            let versions = v["versions"].as_array().cloned().unwrap_or_default();
            let active = versions
                .iter()
                .find(|x| x["active"] == true)
                .and_then(|x| x["version"].as_u64())
                .ok_or("no active version")?;
            let previous = versions
                .iter()
                .filter_map(|x| x["version"].as_u64())
                .filter(|n| *n < active)
                .max()
                .ok_or("no version before the active one")?;
            applied(client, &format!("/{}/{name}/versions/{previous}/apply", plural(kind)?), None, as_json)
        }
        ConfigCmd::Export => {
            Ok(serde_json::to_string_pretty(&json(&client.call("GET", "/config/export", None)?)?).unwrap_or_default())
        }
        ConfigCmd::Import { file } => {
            let doc = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
            applied(client, "/config/import", Some(&doc), as_json)
        }
        ConfigCmd::Validate { file } => {
            let doc = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
            let v = json(&client.call("POST", "/config/validate", Some(&doc))?)?;
            Ok(if as_json { v.to_string() } else { format!("{}: valid", file.display()) })
        }
    }
}

fn applied(client: &AdminClient, path: &str, body: Option<&str>, as_json: bool) -> Result<String, String> {
    let v = json(&client.call("POST", path, body)?)?;
    if as_json {
        return Ok(v.to_string());
    }
    let changed: Vec<String> = v["applied"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|c| {
            format!(
                "{} {} → version {}",
                c["kind"].as_str().unwrap_or(""),
                c["name"].as_str().unwrap_or(""),
                c["version"]
            )
        })
        .collect();
    Ok(format!(
        "{}\nconfiguration version {} on {} workers in {} µs",
        if changed.is_empty() { "nothing changed".to_string() } else { changed.join("\n") },
        v["snapshot_version"],
        v["workers"],
        v["reached_all_workers_us"]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_tables() {
        assert_eq!(when(0), "1970-01-01 00:00:00Z");
        assert_eq!(when(1_795_464_000_000), "2026-11-23 20:00:00Z");
        assert_eq!(table(&[vec!["a".into(), "bb".into()], vec!["ccc".into(), "d".into()]]), "a    bb\nccc  d");
    }
}
