//! The tokio pieces for one connection and its calls: the link its tasks
//! and callers share, the admission of calls, and the scope a handler runs
//! in, a timer for changing deadlines, and a gate that spares a task's loop
//! polls of futures with nothing to do. Nothing here knows a `Session` or
//! a `Plugin`.

pub(crate) mod admission;
pub(crate) mod attention;
pub(crate) mod gate;
pub(crate) mod link;
pub(crate) mod scope;
pub(crate) mod stream_io;
pub(crate) mod timer;
pub(crate) mod write_side;
pub(crate) mod yielding;
