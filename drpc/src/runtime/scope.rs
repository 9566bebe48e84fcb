//! The handler running on the current task: its session, and the message
//! it handles, so a close called from a handler does not wait for itself
//! and a plugin can link what a handler sends to what it handles. Kept
//! type-erased here: the runtime knows no sessions or contexts.

use std::any::Any;
use std::future::Future;
use std::sync::Arc;

/// What a handler's task carries.
#[derive(Clone)]
pub(crate) struct Current {
    /// The address of the handler's session, as an identity.
    pub(crate) session: usize,
    /// The message being handled, when the task handles one.
    pub(crate) message: Option<Arc<dyn Any + Send + Sync>>,
}

tokio::task_local! {
    static CURRENT: Current;
}

/// Runs `fut` as the handler described by `current`.
pub(crate) fn scope<F: Future>(current: Current, fut: F) -> impl Future<Output = F::Output> {
    CURRENT.scope(current, fut)
}

/// Runs `f` (one poll of a handler) as the handler described by `current`.
pub(crate) fn sync_scope<R>(current: Current, f: impl FnOnce() -> R) -> R {
    CURRENT.sync_scope(current, f)
}

/// Whether the current task runs a handler of the session at `session`.
pub(crate) fn in_session(session: usize) -> bool {
    CURRENT.try_with(|c| c.session == session).unwrap_or(false)
}

/// The message the current task's handler handles, if any.
pub(crate) fn message() -> Option<Arc<dyn Any + Send + Sync>> {
    CURRENT.try_with(|c| c.message.clone()).ok().flatten()
}
