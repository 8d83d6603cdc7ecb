//! Configuration: strict TOML in (`file`), a validated model out (`model`).

mod duration;
mod file;
mod model;

pub use duration::parse_duration;
pub use model::*;
