//! API keys of a consumer on the admin listener. Keys are not versions:
//! creating or revoking one changes no configuration version (an old
//! consumer version applied again never revives a revoked key), so these
//! calls bypass the versioned-entity path of `config.rs`. Runs on the
//! control thread like the rest of the configuration API.

use super::server::AdminResponse;
use crate::control::{ApplyError, Control};
use crate::pipeline::ws::conn::json_string;

/// `POST /consumers/{name}/keys` (201, the key shown this once), `GET` (ids
/// and creation times), `DELETE /consumers/{name}/keys/{id}` (revoke).
pub fn handle(control: &Control, consumer: &str, rest: &[&str], method: &str) -> AdminResponse {
    let failed = |e: ApplyError| match e {
        ApplyError::NotFound(m) => AdminResponse::error(404, "not_found", &m),
        ApplyError::Invalid(c) => AdminResponse::error(409, "no_key_secret", &c.0),
        ApplyError::Store(m) => AdminResponse::error(500, "store_failed", &m),
    };
    match (method, rest) {
        ("POST", []) => match control.key_create(consumer) {
            Ok((id, key, created)) => AdminResponse::json(
                201,
                format!(r#"{{"id":{},"key":{},"created_ms":{created}}}"#, json_string(&id), json_string(&key)),
            ),
            Err(e) => failed(e),
        },
        ("GET", []) => match control.key_list(consumer) {
            Ok(list) => {
                let items: Vec<String> = list
                    .iter()
                    .map(|k| format!(r#"{{"id":{},"created_ms":{}}}"#, json_string(&k.id), k.created_ms))
                    .collect();
                AdminResponse::json(200, format!(r#"{{"keys":[{}]}}"#, items.join(",")))
            }
            Err(e) => failed(e),
        },
        ("DELETE", [id]) => match control.key_revoke(consumer, id) {
            Ok(true) => AdminResponse::json(200, r#"{"revoked":true}"#),
            Ok(false) => AdminResponse::error(404, "not_found", "no such key"),
            Err(e) => failed(e),
        },
        (_, []) => AdminResponse::method_not_allowed("GET, POST"),
        (_, [_]) => AdminResponse::method_not_allowed("DELETE"),
        _ => AdminResponse::error(404, "not_found", "no such admin endpoint"),
    }
}
