//! `rewrite`: the path the service receives. `path = "/v2{path}"` puts the
//! client's service-relative path where `{path}` stands; the query string
//! is kept as sent. Path patterns of `block`/`allow` see the client's path,
//! whatever the order: a rewrite cannot be used to slip past them.

use super::{Action, Ctx, Filter, Request};
use crate::config::RewriteConfig;

#[derive(Debug)]
pub struct Rewrite {
    before: String,
    after: Option<String>,
}

impl Rewrite {
    pub fn new(r: &RewriteConfig) -> Self {
        Rewrite { before: r.before.clone(), after: r.after.clone() }
    }
}

impl Filter for Rewrite {
    fn kind(&self) -> &'static str {
        "rewrite"
    }

    fn request(&self, req: &Request<'_>, ctx: &mut Ctx) -> Action {
        // A later rewrite works on what an earlier one made.
        let current = ctx.path.as_deref().unwrap_or(req.path);
        let path = match &self.after {
            None => self.before.clone(),
            Some(after) => {
                // "/v2/" + "/x": one slash at the junction, not two.
                let middle =
                    if self.before.ends_with('/') { current.strip_prefix('/').unwrap_or(current) } else { current };
                let mut p = String::with_capacity(self.before.len() + middle.len() + after.len());
                p.push_str(&self.before);
                p.push_str(middle);
                p.push_str(after);
                if p.is_empty() {
                    p.push('/');
                }
                p
            }
        };
        ctx.path = Some(path);
        Action::Changed
    }
}
