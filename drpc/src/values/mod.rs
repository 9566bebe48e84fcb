//! Plain values, at the bottom of the crate: statuses, settings, per-call
//! options, typed storage. Nothing here knows sessions, tasks or sockets.

mod body;
mod config;
mod health;
mod limits;
mod options;
mod redial;
mod status;
mod storage;

pub(crate) use body::{decode_body, MAX_DEADLINE_AHEAD};
pub use config::Config;
pub use health::{Health, HEALTH_METHOD};
pub use limits::{Limits, Rate};
pub use options::{CallOptions, PushOptions, Reply};
pub use redial::Redial;
pub use status::{Code, Status};
pub(crate) use storage::Storage;
