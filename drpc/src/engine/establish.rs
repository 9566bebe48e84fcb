//! Turning a connected socket into a live session: registering it, running
//! the connection hooks, handing it out once they pass.

use super::connection::{Conn, Verdict};
use super::supervisor::supervise;
use crate::core::lifecycle::Phase;
use crate::core::wire;
use crate::runtime::link::Link;
use crate::session::Session;
use crate::shared::EndpointShared;
use crate::values::Status;
use bytes::BytesMut;
use drpc_socket::{Addr, Socket, WriteHalf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Which side opened the connection.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Origin {
    Accepted,
    Dialed,
}

/// Makes `socket` a session: registers it, starts its supervisor, runs the
/// accept or dial hooks, and returns it once they pass. On a hook's refusal
/// the session is closed with that status, which is returned.
/// `dial_target` is the address a dialed session redials.
pub(crate) async fn establish(
    ep: &Arc<EndpointShared>,
    socket: Socket,
    origin: Origin,
    dial_target: Option<Addr>,
) -> Result<Session, Status> {
    let conn = Conn::new(ep, socket);
    let link = conn.link.clone();
    let session = Session::new(ep.clone(), link.clone(), dial_target);
    if let Err(status) = ep.add_session(&session) {
        if origin == Origin::Accepted {
            refuse(ep, conn.into_write_half(), &status).await;
        }
        return Err(status);
    }
    let (verdict_tx, verdict_rx) = tokio::sync::oneshot::channel();
    ep.tasks
        .spawn(supervise(session.clone(), conn, Verdict::Sent(verdict_rx)));
    let verdict = run_connect_hooks(&session, &link, origin).await;
    if verdict.is_ok() {
        // Before the session is handed out, so its first calls go out at
        // once; the reader learns the verdict next and runs what it held.
        mark_established(&session, &link);
    }
    let refused = verdict.as_ref().err().cloned();
    let _ = verdict_tx.send(verdict);
    match refused {
        None if session.phase() == Phase::Active => Ok(session),
        // Closed while the hooks ran: the session is not usable.
        None => {
            session.closed().await;
            Err(session
                .close_reason()
                .unwrap_or_else(|| session.closed_status()))
        }
        Some(status) => {
            session.closed().await;
            Err(status)
        }
    }
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
async fn run_connect_hooks(
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

/// How long a refused peer gets to take its notice.
const REFUSE_WITHIN: Duration = Duration::from_secs(1);

/// Tells a peer why its connection is refused (a notice, docs/PROTOCOL.md
/// section 3.1), then closes it. Bounded in time: a peer that does not read
/// is simply dropped.
async fn refuse(ep: &EndpointShared, mut wr: WriteHalf, status: &Status) {
    let mut buf = BytesMut::new();
    if ep
        .proto
        .framer(&ep.frame_limits())
        .encode(&wire::notice(status), &mut buf)
        .is_err()
    {
        return;
    }
    let _ = tokio::time::timeout(REFUSE_WITHIN, async {
        wr.write_all(&buf).await?;
        wr.shutdown().await
    })
    .await;
}
