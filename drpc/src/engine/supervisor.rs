//! A session's supervisor: its one long-lived task. It runs the session's
//! connection, and when that ends, redials or closes as the lifecycle
//! decides; the close sequence runs here, once.

use super::connection::{self, Conn, Verdict};
use super::hooks::run_redial_hooks;
use crate::core::backoff::Backoff;
use crate::core::lifecycle::{Phase, Then};
use crate::session::Session;
use crate::values::{Code, Status};

/// Runs `session` from its first connection to its close.
pub(crate) async fn supervise(session: Session, mut conn: Conn, mut verdict: Verdict) {
    let ep = session.shared.ep.clone();
    let mut backoff = Backoff::new(ep.config.redial);
    let mut ever_established = false;
    let reason = loop {
        let began = tokio::time::Instant::now();
        let ended = connection::run(&session, conn, verdict, ever_established).await;
        if ended.established {
            // A connection that got through its hooks resets the count.
            backoff = Backoff::new(ep.config.redial);
            ever_established = true;
        }
        if ended.next.then == Then::Close {
            break ended.status;
        }
        let when = match ended.next.then {
            Then::RedialWhenNeeded => When::Needed,
            // A connection renewed at once after it began (a tiny age
            // limit, a peer that renews on sight) backs off like a lost
            // one, so renewals cannot spin.
            _ if ended.renewed && began.elapsed() >= MIN_RENEWED_LIFE => When::AtOnce,
            _ => When::AfterBackoff,
        };
        // Boxed: a session spends its life in the connection, not here, and
        // an idle session's task should stay small.
        match Box::pin(redial(&session, &mut backoff, &ended.status, when)).await {
            Ok(next) => {
                let link = next.link.clone();
                session.set_link(Some(link.clone()));
                session.transition(Phase::reconnected);
                verdict = Verdict::Run(Box::pin(run_redial_hooks(session.clone(), link)));
                conn = next;
            }
            Err(reason) => {
                session.begin_close(&reason);
                break reason;
            }
        }
    };
    match reason.code() {
        Code::CONNECTION_CLOSED => {
            tracing::debug!(session = %session.id(), %reason, "session closed")
        }
        _ => tracing::warn!(session = %session.id(), %reason, "session closed"),
    }
    session.mark_closed(reason);
    ep.remove_session(&session);
    let hooked = session.seal_connect_hooks();
    for p in session.plugins().iter().take(hooked) {
        p.after_session_close(&session);
    }
    session.shared.closed.cancel();
}

/// How long a renewed connection must have lived for the next one to be
/// dialed without waiting.
const MIN_RENEWED_LIFE: std::time::Duration = std::time::Duration::from_secs(1);

/// When a redial makes its first attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum When {
    /// After the backoff's first wait: the connection was lost, and a peer
    /// that restarts needs a moment.
    AfterBackoff,
    /// At once: the peer asked for a new connection, or this side's limits
    /// renewed it; the peer is there.
    AtOnce,
    /// Once a call or push waits for the connection: it was closed for
    /// being idle.
    Needed,
}

/// Dials the session's address again, with backoff, until it connects or
/// the attempts run out (or the session or endpoint is closed meanwhile).
async fn redial(
    session: &Session,
    backoff: &mut Backoff,
    lost: &Status,
    when: When,
) -> Result<Conn, Status> {
    let ep = session.shared.ep.clone();
    let addr = session
        .dial_target()
        .cloned()
        .expect("only dialed sessions redial");
    let shared = &session.shared;
    let mut last = lost.clone();
    let mut first = true;
    loop {
        // The first attempt of a renewal comes at once (or when needed);
        // the ones after it, and every attempt after a loss, back off.
        let delay = match std::mem::replace(&mut first, false) && when != When::AfterBackoff {
            true => None,
            false => match backoff.next_delay(fastrand::f64()) {
                Some(delay) => Some(delay),
                None => {
                    return Err(Status::connection_closed(format!(
                        "redial gave up after {} attempts; last: {last}",
                        backoff.attempts()
                    )))
                }
            },
        };
        let wait = async {
            match delay {
                Some(delay) => tokio::time::sleep(delay).await,
                None if when == When::Needed => session.connection_wanted().await,
                None => {}
            }
        };
        tokio::select! {
            _ = wait => {}
            _ = shared.close_requested.cancelled() => {
                return Err(Status::connection_closed("closed by the local endpoint while redialing"));
            }
            _ = shared.abort_requested.cancelled() => return Err(session.abort_status()),
            _ = ep.shutdown.cancelled() => {
                return Err(Status::connection_closed("the endpoint closed while redialing"));
            }
        }
        let attempt = async {
            ep.plugins.try_each(|p| p.before_dial(&addr, true))?;
            let dial = ep.dialer.dial(&addr, &ep.config);
            match tokio::time::timeout(ep.config.dial_timeout, dial).await {
                Ok(Ok(socket)) => Ok(socket),
                Ok(Err(e)) => Err(Status::dial_failed(e.to_string()).with_cause(e)),
                Err(_) => Err(Status::dial_failed(format!(
                    "dial {addr}: no connection within {:?}",
                    ep.config.dial_timeout
                ))),
            }
        };
        match attempt.await {
            Ok(socket) => {
                return Ok(Conn::new(&ep, session.shared.proto.clone(), socket).say_hello())
            }
            Err(status) => {
                tracing::debug!(session = %session.id(), attempt = backoff.attempts(), %status, "redial failed");
                ep.plugins.each(|p| p.after_dial_fail(&addr, &status, true));
                last = status;
            }
        }
    }
}
