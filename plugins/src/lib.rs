//! Built-in plugins for drpc.
//!
//! Every plugin here is written against drpc's public [`Plugin`](drpc::Plugin)
//! hook API only, so anything they do, an application's own plugin can do.
//!
//! | plugin | what it does |
//! |---|---|
//! | [`Counters`] | counts sessions, calls, replies and pushes in each direction |
#![warn(missing_docs)]

mod counters;

pub use counters::{Counters, CountersSnapshot};
