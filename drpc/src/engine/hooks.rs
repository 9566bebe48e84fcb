//! The connection hooks: run with a handle that may use the connection
//! before it is established, and the mark that ends establishment.

use crate::core::lifecycle::Phase;
use crate::runtime::link::Link;
use crate::session::Session;
use crate::values::Status;
use std::sync::Arc;

/// Which side opened the connection.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Origin {
    Accepted,
    Dialed,
}

/// Every connection hook passed: calls made by anyone may go now.
pub(crate) fn mark_established(session: &Session, link: &Link) {
    if session.phase() == Phase::Establishing {
        session.transition(Phase::hooks_passed);
    }
    link.established.cancel();
}

/// Runs the accept or dial hooks of the first connection, each with a
/// handle that may use the connection before it is established.
pub(crate) async fn run_connect_hooks(
    session: &Session,
    link: &Arc<Link>,
    origin: Origin,
) -> Result<(), Status> {
    let own = session.privileged(link);
    for p in session.plugins().iter() {
        // Counted before the hook runs, so a plugin that refuses still gets
        // its close hook and its counts pair up; once the session has
        // closed (the count is sealed), no further hook may start.
        if !session.count_connect_hook() {
            return Err(session.closed_status());
        }
        let verdict = match origin {
            Origin::Accepted => p.after_accept(&own).await,
            Origin::Dialed => p.after_dial(&own, false).await,
        };
        if let Err(status) = verdict {
            tracing::debug!(session = %session.id(), plugin = p.name(), %status, "connection refused by a plugin");
            return Err(status);
        }
    }
    Ok(())
}

/// The dial hooks of a redialed connection. They are not counted: the
/// first connection's already were, and the close hooks pair with those.
pub(crate) async fn run_redial_hooks(session: Session, link: Arc<Link>) -> Result<(), Status> {
    let own = session.privileged(&link);
    for p in session.plugins().iter() {
        if let Err(status) = p.after_dial(&own, true).await {
            tracing::debug!(session = %session.id(), plugin = p.name(), %status, "redialed connection refused by a plugin");
            return Err(status);
        }
    }
    mark_established(&session, &link);
    Ok(())
}
