//! A connection's notices both ways (docs/PROTOCOL.md section 3.1), and
//! the activity its idle timeout watches.

use super::ConnCore;
use crate::core::lifecycle::Renewal;
use crate::core::wire;
use crate::values::Status;

impl<W> ConnCore<W> {
    /// Why new calls and pushes fail on this connection, if they do: it
    /// ended, or the peer said it is going away.
    pub(crate) fn refusal(&self) -> Option<Status> {
        self.ended.clone().or_else(|| self.peer_notice.clone())
    }

    /// Whether this side has told the peer it is going away.
    pub(crate) fn going_away_sent(&self) -> bool {
        self.going_away_sent
    }

    /// The peer's notice, if it sent one.
    pub(crate) fn peer_notice(&self) -> Option<&Status> {
        self.peer_notice.as_ref()
    }

    /// The new connection the peer's going-away notice asked for, if it
    /// asked for one.
    pub(crate) fn peer_renewal(&self) -> Option<Renewal> {
        self.peer_renewal
    }

    /// A renewal of this connection, asked for by either side.
    pub(crate) fn renewal(&self) -> Option<Renewal> {
        self.peer_renewal.or(self.own_renewal)
    }

    /// Tells the peer this side is going away: it takes no new calls and
    /// answers the running ones; with `renewal`, the notice says why and
    /// that a new connection is welcome. Sent once; returns the writer to
    /// wake.
    pub(crate) fn going_away(&mut self, renewal: Option<Renewal>) -> Option<W> {
        if std::mem::replace(&mut self.going_away_sent, true) {
            return None;
        }
        self.own_renewal = renewal;
        let notice = match renewal {
            None => wire::going_away_notice(),
            Some(r) => wire::renew_notice(r),
        };
        self.force(&notice)
    }

    pub(super) fn note_activity(&mut self, method: &str) {
        if counts_as_activity(method) {
            self.activity = self.activity.wrapping_add(1);
        }
    }

    /// A count that changes with every call and push of the application,
    /// and whether any call is in flight either way: what the idle timeout
    /// watches.
    pub(crate) fn activity(&self) -> (u64, bool) {
        let busy = self.calls.len() > 0 || !self.handling.is_empty();
        (self.activity, busy)
    }
}

/// Whether a message of `method` keeps a session from idling: drpc's own
/// methods (`/_drpc/...`: heartbeat pings, health checks) do not, so a
/// heartbeat can watch a connection that the idle timeout still reaps.
fn counts_as_activity(method: &str) -> bool {
    !method.starts_with("/_drpc/")
}
