//! Where a session is in its life, and what it does when a connection ends.
//!
//! ```text
//!                  hooks_passed
//!   Establishing ───────────────▶ Active
//!      ▲     │                      │
//!      │     │ connection_lost      │ connection_lost
//!      │     ▼                      │
//!      │   Redialing ◀──────────────┘
//!      │     │
//!      └─────┘ reconnected
//!
//!   any phase but Closed ── close_begun ──▶ Closing ── closed ──▶ Closed
//! ```
//!
//! A session starts `Establishing`: its connection is up and its
//! connection hooks run; only they may use it, and the peer's calls and
//! pushes are held. When every hook passes it is `Active`. When its
//! connection ends, [`after_connection`] decides, from the facts alone,
//! whether it dials again (`Redialing`, then `Establishing` on the new
//! connection) or closes (`Closing`, then `Closed`), and whether the ending
//! connection first finishes the peer's calls (drains) or stops at once.

use std::fmt;

/// The phases of a session; see the [module docs](self) for the diagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// A connection is up and its connection hooks run.
    Establishing,
    /// Calls and pushes flow both ways.
    Active,
    /// The connection was lost and a dialed session dials again; new calls
    /// wait for the next connection (within their deadlines).
    Redialing,
    /// The session is closing: no new calls or pushes start.
    Closing,
    /// Closed for good.
    Closed,
}

/// A transition that the phase it was asked of does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refused {
    pub(crate) from: Phase,
    pub(crate) event: &'static str,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} does not apply to a session {:?}",
            self.event, self.from
        )
    }
}

impl Phase {
    fn to(self, event: &'static str, allowed: bool, next: Phase) -> Result<Phase, Refused> {
        if allowed {
            Ok(next)
        } else {
            Err(Refused { from: self, event })
        }
    }

    /// Every connection hook passed.
    pub(crate) fn hooks_passed(self) -> Result<Phase, Refused> {
        self.to("hooks_passed", self == Phase::Establishing, Phase::Active)
    }

    /// The connection ended and the session dials again.
    pub(crate) fn connection_lost(self) -> Result<Phase, Refused> {
        let ok = matches!(self, Phase::Establishing | Phase::Active);
        self.to("connection_lost", ok, Phase::Redialing)
    }

    /// A redial connected; its hooks run next.
    pub(crate) fn reconnected(self) -> Result<Phase, Refused> {
        self.to("reconnected", self == Phase::Redialing, Phase::Establishing)
    }

    /// A close begins, graceful or not. Closing twice is allowed: the first
    /// one decides.
    pub(crate) fn close_begun(self) -> Result<Phase, Refused> {
        let ok = self != Phase::Closed;
        self.to("close_begun", ok, Phase::Closing)
    }

    /// The close finished: every task of the session has ended.
    pub(crate) fn closed(self) -> Result<Phase, Refused> {
        self.to("closed", self == Phase::Closing, Phase::Closed)
    }

    /// Whether new calls and pushes may start now (on an established
    /// connection), may wait for one (establishing or redialing), or fail.
    pub(crate) fn admits_calls(self) -> Admit {
        match self {
            Phase::Active => Admit::Now,
            Phase::Establishing | Phase::Redialing => Admit::Wait,
            Phase::Closing | Phase::Closed => Admit::Refuse,
        }
    }
}

/// What a new call finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    Now,
    Wait,
    Refuse,
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cause {
    /// The peer ended its stream cleanly, between frames.
    PeerEnded,
    /// Reading or writing failed, the peer broke the protocol, or a frame
    /// was not finished in time.
    Broken,
    /// This side asked for a graceful close (of the session or endpoint).
    LocalClose,
    /// This side aborted the session.
    Abort,
    /// This side dropped the connection as if it broke
    /// (`Session::disconnect`, the heartbeat).
    Dropped,
    /// A connection hook refused the connection.
    HookRefused,
    /// The session reached its maximum age or idle timeout here: this side
    /// asked the peer for a new connection (a going-away notice that says
    /// why).
    Expired(Renewal),
}

/// Why a side asks for its connection to be replaced, as its going-away
/// notice says (docs/PROTOCOL.md section 3.1): it is not shutting down, so
/// a dialer may dial it again whatever its `Redial::after_shutdown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Renewal {
    /// The connection reached the session's maximum age: redial at once.
    MaxAge,
    /// The session was idle for its idle timeout: redial when next needed.
    Idle,
    /// The process restarts: its successor already serves the same
    /// address, so redial at once.
    Restart,
}

impl Renewal {
    /// The `reason` meta value of its notice.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Renewal::MaxAge => "max-age",
            Renewal::Idle => "idle",
            Renewal::Restart => "restart",
        }
    }

    /// The renewal a notice's `reason` names, if it names one.
    pub(crate) fn from_reason(reason: &str) -> Option<Self> {
        match reason {
            "max-age" => Some(Renewal::MaxAge),
            "idle" => Some(Renewal::Idle),
            "restart" => Some(Renewal::Restart),
            _ => None,
        }
    }
}

/// What the peer last said about the connection, in a notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Notice {
    /// Nothing.
    None,
    /// It is shutting down (102): it answers the calls it runs, takes no
    /// new ones.
    GoingAway,
    /// It is going away from this connection only (102 with a renewal
    /// reason): a dialer may dial it again.
    Renew(Renewal),
    /// It refused the connection (503, or any other status): final.
    Refused,
}

/// Everything [`after_connection`] decides by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Facts {
    pub(crate) cause: Cause,
    pub(crate) notice: Notice,
    /// This side dialed the session.
    pub(crate) dialed: bool,
    /// `Redial::enabled`.
    pub(crate) redial: bool,
    /// `Redial::after_shutdown`.
    pub(crate) redial_after_shutdown: bool,
    /// Some connection of the session got through its hooks. A session
    /// whose first connection never did was never handed to anyone.
    pub(crate) ever_established: bool,
    /// The endpoint is closing, or a close of the session was asked for.
    pub(crate) closing: bool,
}

/// How the ending connection stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Calls already received run to completion and their replies are
    /// written (within the close grace) before the connection closes.
    Drain,
    /// Handlers are cancelled; what is already queued is still written,
    /// then the connection closes.
    Flush,
    /// Handlers are cancelled and nothing more is written.
    AtOnce,
}

/// What the session does once its connection has stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Then {
    Redial,
    /// Redial once a call or push needs the connection: the connection
    /// was closed for being idle, and dialing at once would only make
    /// another idle one.
    RedialWhenNeeded,
    Close,
}

/// The decision for an ending connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Next {
    pub(crate) stop: Stop,
    pub(crate) then: Then,
}

/// What a session does when its connection ends: a pure function of the
/// facts.
///
/// - How the connection stops: a graceful close, or a peer that ended its
///   stream, **drains** (the peer may still read: everything it asked is
///   answered); a broken connection or a refusing hook **flushes** what is
///   queued (the refusal replies among it); an abort, a dropped connection
///   or the peer's refusal stop **at once**.
/// - What follows: a dialed session with redial on, that was established
///   once and is not closing, **redials**, unless the peer refused it or
///   said it was going away (then only with `after_shutdown`). A notice
///   that asks for a new connection, or this side's own expiry, is no
///   shutdown: the session redials, and after an idle timeout only when
///   next needed. Everything else **closes**.
pub(crate) fn after_connection(f: &Facts) -> Next {
    let stop = match f.cause {
        Cause::LocalClose | Cause::PeerEnded | Cause::Expired(_) => Stop::Drain,
        Cause::Broken | Cause::HookRefused => Stop::Flush,
        Cause::Abort | Cause::Dropped => Stop::AtOnce,
    };
    let stop = if f.notice == Notice::Refused {
        Stop::AtOnce
    } else {
        stop
    };
    let notice_allows = match f.notice {
        Notice::None => true,
        Notice::GoingAway => f.redial_after_shutdown,
        Notice::Renew(_) => true,
        Notice::Refused => false,
    };
    let cause_allows = !matches!(f.cause, Cause::LocalClose | Cause::Abort);
    let redial =
        f.dialed && f.redial && f.ever_established && !f.closing && cause_allows && notice_allows;
    let idle = f.cause == Cause::Expired(Renewal::Idle) || f.notice == Notice::Renew(Renewal::Idle);
    let then = match (redial, idle) {
        (false, _) => Then::Close,
        (true, false) => Then::Redial,
        (true, true) => Then::RedialWhenNeeded,
    };
    Next { stop, then }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Facts = Facts {
        cause: Cause::Broken,
        notice: Notice::None,
        dialed: true,
        redial: true,
        redial_after_shutdown: false,
        ever_established: true,
        closing: false,
    };

    fn next(f: impl FnOnce(&mut Facts)) -> Next {
        let mut facts = BASE;
        f(&mut facts);
        after_connection(&facts)
    }

    fn redial(stop: Stop) -> Next {
        Next {
            stop,
            then: Then::Redial,
        }
    }

    fn close(stop: Stop) -> Next {
        Next {
            stop,
            then: Then::Close,
        }
    }

    #[test]
    fn a_broken_dialed_connection_flushes_and_redials() {
        assert_eq!(next(|_| {}), redial(Stop::Flush));
    }

    #[test]
    fn an_accepted_session_never_redials() {
        assert_eq!(next(|f| f.dialed = false), close(Stop::Flush));
        assert_eq!(
            next(|f| {
                f.dialed = false;
                f.cause = Cause::PeerEnded
            }),
            close(Stop::Drain)
        );
    }

    #[test]
    fn redial_off_closes() {
        assert_eq!(next(|f| f.redial = false), close(Stop::Flush));
    }

    #[test]
    fn a_peer_that_ends_its_stream_is_drained_then_redialed() {
        assert_eq!(next(|f| f.cause = Cause::PeerEnded), redial(Stop::Drain));
    }

    #[test]
    fn a_peer_going_away_is_drained_and_redialed_only_after_shutdown() {
        let going = |f: &mut Facts| {
            f.cause = Cause::PeerEnded;
            f.notice = Notice::GoingAway;
        };
        assert_eq!(next(going), close(Stop::Drain));
        assert_eq!(
            next(|f| {
                going(f);
                f.redial_after_shutdown = true
            }),
            redial(Stop::Drain)
        );
    }

    #[test]
    fn an_expiry_here_or_at_the_peer_drains_and_redials_without_after_shutdown() {
        for renewal in [Renewal::MaxAge, Renewal::Idle, Renewal::Restart] {
            let then = match renewal {
                Renewal::MaxAge | Renewal::Restart => Then::Redial,
                Renewal::Idle => Then::RedialWhenNeeded,
            };
            let expired = next(|f| f.cause = Cause::Expired(renewal));
            assert_eq!(
                expired,
                Next {
                    stop: Stop::Drain,
                    then
                },
                "{renewal:?}"
            );
            let renewed = next(|f| {
                f.cause = Cause::PeerEnded;
                f.notice = Notice::Renew(renewal)
            });
            assert_eq!(
                renewed,
                Next {
                    stop: Stop::Drain,
                    then
                },
                "{renewal:?}"
            );
            // An accepted session, or one with redial off, just closes.
            let accepted = next(|f| {
                f.cause = Cause::Expired(renewal);
                f.dialed = false
            });
            assert_eq!(accepted, close(Stop::Drain));
            let no_redial = next(|f| {
                f.notice = Notice::Renew(renewal);
                f.redial = false
            });
            assert_eq!(no_redial.then, Then::Close);
        }
    }

    #[test]
    fn renewal_reasons_round_trip() {
        for r in [Renewal::MaxAge, Renewal::Idle, Renewal::Restart] {
            assert_eq!(Renewal::from_reason(r.reason()), Some(r));
        }
        assert_eq!(Renewal::from_reason("shutdown"), None);
    }

    #[test]
    fn a_refusing_peer_ends_the_session_at_once_for_good() {
        let refused = |f: &mut Facts| f.notice = Notice::Refused;
        assert_eq!(next(refused), close(Stop::AtOnce));
        assert_eq!(
            next(|f| {
                refused(f);
                f.redial_after_shutdown = true
            }),
            close(Stop::AtOnce)
        );
    }

    #[test]
    fn a_local_close_drains_and_closes() {
        assert_eq!(next(|f| f.cause = Cause::LocalClose), close(Stop::Drain));
    }

    #[test]
    fn an_abort_stops_at_once_and_closes() {
        assert_eq!(next(|f| f.cause = Cause::Abort), close(Stop::AtOnce));
    }

    #[test]
    fn a_dropped_connection_stops_at_once_and_redials_a_dialed_session() {
        assert_eq!(next(|f| f.cause = Cause::Dropped), redial(Stop::AtOnce));
        assert_eq!(
            next(|f| {
                f.cause = Cause::Dropped;
                f.dialed = false
            }),
            close(Stop::AtOnce)
        );
    }

    #[test]
    fn a_refusing_hook_flushes_its_refusals_and_is_retried_only_after_an_establishment() {
        assert_eq!(next(|f| f.cause = Cause::HookRefused), redial(Stop::Flush));
        assert_eq!(
            next(|f| {
                f.cause = Cause::HookRefused;
                f.ever_established = false
            }),
            close(Stop::Flush)
        );
    }

    #[test]
    fn nothing_redials_while_closing() {
        for cause in [Cause::Broken, Cause::PeerEnded, Cause::Dropped] {
            assert_eq!(
                next(|f| {
                    f.cause = cause;
                    f.closing = true
                })
                .then,
                Then::Close,
                "{cause:?}"
            );
        }
    }

    #[test]
    fn phases_move_only_along_the_diagram() {
        use Phase::*;
        assert_eq!(Establishing.hooks_passed(), Ok(Active));
        assert!(Active.hooks_passed().is_err());
        assert_eq!(Active.connection_lost(), Ok(Redialing));
        assert_eq!(Establishing.connection_lost(), Ok(Redialing));
        assert!(Redialing.connection_lost().is_err());
        assert_eq!(Redialing.reconnected(), Ok(Establishing));
        assert!(Active.reconnected().is_err());
        for p in [Establishing, Active, Redialing, Closing] {
            assert_eq!(p.close_begun(), Ok(Closing), "{p:?}");
        }
        let err = Closed.close_begun().unwrap_err();
        assert_eq!(
            err.to_string(),
            "close_begun does not apply to a session Closed"
        );
        assert_eq!(Closing.closed(), Ok(Closed));
        assert!(Active.closed().is_err());
    }

    #[test]
    fn calls_start_wait_or_fail_by_phase() {
        assert_eq!(Phase::Active.admits_calls(), Admit::Now);
        assert_eq!(Phase::Redialing.admits_calls(), Admit::Wait);
        assert_eq!(Phase::Establishing.admits_calls(), Admit::Wait);
        assert_eq!(Phase::Closing.admits_calls(), Admit::Refuse);
        assert_eq!(Phase::Closed.admits_calls(), Admit::Refuse);
    }
}
