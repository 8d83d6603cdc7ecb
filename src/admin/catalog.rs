//! `GET /services`, `GET /endpoints`, `GET /consumers`: what exists now, one
//! line per entity (its active version, when, by whom, why), for lists in
//! the UI and scripts that would otherwise export the whole configuration.
//! Read on the control thread, like every other store read.

use super::server::{AdminRequest, AdminResponse};
use super::AdminState;
use crate::store::Kind;
use serde_json::json;
use std::sync::Arc;

fn kind_of(path: &str) -> Option<(Kind, &'static str)> {
    match path {
        "/services" => Some((Kind::Service, "services")),
        "/endpoints" => Some((Kind::Endpoint, "endpoints")),
        "/consumers" => Some((Kind::Consumer, "consumers")),
        _ => None,
    }
}

/// Answers the three list paths; `None` for any other path.
pub async fn handle(state: &Arc<AdminState>, req: &AdminRequest) -> Option<AdminResponse> {
    let (kind, plural) = kind_of(&req.path)?;
    if req.method != "GET" && req.method != "HEAD" {
        return Some(AdminResponse::method_not_allowed("GET, HEAD"));
    }
    let control = state.control.as_ref()?;
    let listed = control.run(move |c| c.with_store(|store| store.active())).await;
    Some(match listed {
        Ok(Ok(all)) => {
            let mut items: Vec<_> = all
                .into_iter()
                .filter(|(k, _, _)| *k == kind)
                .map(|(_, name, v)| {
                    json!({
                        "name": name,
                        "version": v.meta.version,
                        "created_ms": v.meta.created_ms,
                        "author": v.meta.author,
                        "comment": v.meta.comment,
                    })
                })
                .collect();
            items.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
            AdminResponse::json(200, json!({ plural: items }).to_string())
        }
        Ok(Err(e)) => AdminResponse::error(500, "store_failed", &e.0),
        Err(gone) => AdminResponse::error(503, "control_unavailable", &gone.to_string()),
    })
}
