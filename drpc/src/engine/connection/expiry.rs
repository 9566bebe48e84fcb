//! The session's age and idle limits on a connection, and its end once the
//! peer's going-away notice leaves it nothing to send.

use super::Reader;
use crate::core::lifecycle::{Cause, Renewal};
use crate::values::Status;

impl Reader<'_> {
    /// The end owed to a limit reached now, if one is.
    pub(super) fn check_expiry(&mut self) -> Option<(Cause, Status)> {
        let now = tokio::time::Instant::now().into_std();
        if self.link.going_away.is_cancelled() {
            // Leaving already (a notice either way): nothing to renew.
            self.expiry.disable();
            return None;
        }
        let activity = {
            let (count, busy) = self.link.core().activity();
            (count, busy || self.link.handlers.running() > 0)
        };
        let renewal = self.expiry.check(now, activity)?;
        let status = match renewal {
            Renewal::MaxAge => Status::connection_closed(format!(
                "the session reached its maximum age ({:?}); its connection is renewed",
                self.session.max_age().unwrap_or_default()
            )),
            Renewal::Idle => Status::connection_closed(format!(
                "the session was idle for its idle timeout ({:?})",
                self.session.idle_timeout().unwrap_or_default()
            )),
            // Not a limit: the endpoint's restart says it (`leaving`).
            Renewal::Restart => Status::connection_closed("the process restarts"),
        };
        tracing::debug!(session = %self.session.id(), %status, "session expired");
        self.expired = true;
        Some((Cause::Expired(renewal), status))
    }

    /// Takes limits changed on the session since the connection last did.
    pub(super) fn expiry_changed(&mut self) {
        if let Some(limits) = self.session.take_expiry_change() {
            let now = tokio::time::Instant::now().into_std();
            self.expiry.set(limits, now);
        }
    }

    /// Ends this side's stream once the peer said it is going away and this
    /// side owes it nothing: no reply (its calls are all answered) and no
    /// new call or push (they go to the next connection, or fail). The
    /// peer then stops waiting for calls that might cross its notice
    /// (docs/PROTOCOL.md section 3.1), and the connection ends as soon as
    /// the peer's running calls are answered. Reading goes on for those.
    pub(super) fn end_writing_after_notice(&mut self) {
        // Over an unordered transport (QUIC) a call the peer sent before
        // its notice may still come after it: never end early there.
        let link = self.link;
        // Checked on every wake-up of the reader: the common case (no
        // notice) costs one atomic load, no lock.
        if !link.going_away.is_cancelled()
            || self.writes_ended
            || !self.ordered
            || !self.established
            || self.writer.is_none()
        {
            return;
        }
        let owes_nothing = {
            let core = link.core();
            core.peer_notice().is_some() && core.handling() == 0
        };
        if owes_nothing && link.handlers.running() == 0 {
            self.writes_ended = true;
            link.finish_writing();
        }
    }
}
