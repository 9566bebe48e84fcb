//! The session's protocol logic, without I/O: what a connection's bytes
//! mean and what to send, the calls waiting for replies, the messages held
//! before a connection is established, the lifecycle of a session, the
//! token bucket and the redial backoff.
//!
//! Nothing here spawns a task, waits, reads a clock or touches a socket:
//! time comes in as an argument, and what the runtime must do comes back
//! as values. So every rule here is tested without sockets or real time
//! (the tests at the bottom of each module, and a pair of cores talking to
//! each other in `tests`). `drpc/tests/layers.rs` keeps it that way.

pub(crate) mod backoff;
pub(crate) mod bucket;
pub(crate) mod conn;
pub(crate) mod expiry;
pub(crate) mod features;
pub(crate) mod hold;
pub(crate) mod inbound;
pub(crate) mod inflight;
pub(crate) mod lifecycle;
pub(crate) mod outbound;
pub(crate) mod read_pool;
pub(crate) mod streams;
pub(crate) mod wire;

#[cfg(test)]
mod tests;
