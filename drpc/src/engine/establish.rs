//! Turning a connected socket into a live session: registering it, running
//! the connection hooks, handing it out once they pass.

use super::connection::{Conn, Verdict};
pub(crate) use super::hooks::Origin;
use super::hooks::{mark_established, run_connect_hooks};
use super::supervisor::supervise;
use crate::core::lifecycle::Phase;
use crate::core::wire;
use crate::session::Session;
use crate::shared::EndpointShared;
use crate::values::Status;
use bytes::BytesMut;
use drpc_proto::Proto;
use drpc_socket::{Addr, Socket, WriteHalf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Makes `socket` a session: registers it, starts its supervisor, runs the
/// accept or dial hooks, and returns it once they pass. On a hook's refusal
/// the session is closed with that status, which is returned.
/// `dial_target` is the address a dialed session redials (none for a
/// connection the application made).
pub(crate) async fn establish(
    ep: &Arc<EndpointShared>,
    socket: Socket,
    origin: Origin,
    dial_target: Option<Addr>,
    proto: Arc<dyn Proto>,
) -> Result<Session, Status> {
    let dialed = origin == Origin::Dialed;
    let conn = match dialed {
        true => Conn::new(ep, proto.clone(), socket).say_hello(),
        false => Conn::new(ep, proto.clone(), socket),
    };
    let link = conn.link.clone();
    let session = Session::new(ep.clone(), link.clone(), dialed, dial_target, proto.clone());
    if let Err(status) = ep.add_session(&session) {
        if origin == Origin::Accepted {
            refuse(ep, &*proto, conn.into_write_half(), &status).await;
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
        // Its connection may be lost already, and a dialed session then
        // dials again: it is handed out all the same, as any session that
        // redials.
        None if matches!(session.phase(), Phase::Active | Phase::Redialing) => Ok(session),
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

/// How long a refused peer gets to take its notice.
const REFUSE_WITHIN: Duration = Duration::from_secs(1);

/// Tells a peer why its connection is refused (a notice, docs/PROTOCOL.md
/// section 3.1), then closes it. Bounded in time: a peer that does not read
/// is simply dropped.
async fn refuse(ep: &EndpointShared, proto: &dyn Proto, mut wr: WriteHalf, status: &Status) {
    let mut buf = BytesMut::new();
    // Refused because the endpoint restarts: the dialer redials at once,
    // and finds the new process.
    let notice = match ep.leaving.get() {
        Some(renewal) if wire::is_going_away(status) => wire::renew_notice(*renewal),
        _ => wire::notice(status),
    };
    if proto
        .framer(&ep.frame_limits())
        .encode(&notice, &mut buf)
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
