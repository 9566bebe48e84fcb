use drpc::plugin::BoxFuture;
use drpc::proto::{Header, Message};
use drpc::{Plugin, Session, Status};
use std::sync::atomic::{AtomicU64, Ordering};

/// Counts what flows through an endpoint: sessions opened and closed, calls,
/// replies and pushes sent and received, and error replies.
///
/// Keep an `Arc` of it to read the figures while the endpoint runs:
///
/// ```
/// use drpc::Endpoint;
/// use drpc_plugins::Counters;
/// use std::sync::Arc;
/// ///
/// let counters = Arc::new(Counters::default());
/// let endpoint = Endpoint::builder().plugin_arc(counters.clone()).build()?;
/// assert_eq!(counters.snapshot().sessions_live(), 0);
/// # Ok::<(), drpc::Status>(())
/// ```
#[derive(Debug, Default)]
pub struct Counters {
    sessions_opened: AtomicU64,
    sessions_closed: AtomicU64,
    calls_sent: AtomicU64,
    calls_received: AtomicU64,
    replies_sent: AtomicU64,
    replies_received: AtomicU64,
    error_replies_sent: AtomicU64,
    pushes_sent: AtomicU64,
    pushes_received: AtomicU64,
}

/// The figures of a [`Counters`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CountersSnapshot {
    /// Sessions accepted or dialed (including ones a later plugin refused).
    pub sessions_opened: u64,
    /// Sessions closed.
    pub sessions_closed: u64,
    /// Calls written.
    pub calls_sent: u64,
    /// Calls read.
    pub calls_received: u64,
    /// Replies written (successes and errors).
    pub replies_sent: u64,
    /// Replies read that reached a waiting call.
    pub replies_received: u64,
    /// Replies written with a status other than OK.
    pub error_replies_sent: u64,
    /// Pushes written.
    pub pushes_sent: u64,
    /// Pushes read.
    pub pushes_received: u64,
}

impl CountersSnapshot {
    /// Sessions open now.
    pub fn sessions_live(&self) -> u64 {
        self.sessions_opened - self.sessions_closed
    }
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    /// The current figures.
    pub fn snapshot(&self) -> CountersSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        // Closed is read first so a session closing meanwhile can never make
        // closed exceed opened.
        let sessions_closed = get(&self.sessions_closed);
        CountersSnapshot {
            sessions_opened: get(&self.sessions_opened),
            sessions_closed,
            calls_sent: get(&self.calls_sent),
            calls_received: get(&self.calls_received),
            replies_sent: get(&self.replies_sent),
            replies_received: get(&self.replies_received),
            error_replies_sent: get(&self.error_replies_sent),
            pushes_sent: get(&self.pushes_sent),
            pushes_received: get(&self.pushes_received),
        }
    }

    fn opened(&self) -> BoxFuture<'_, Result<(), Status>> {
        bump(&self.sessions_opened);
        Box::pin(async { Ok(()) })
    }
}

impl Plugin for Counters {
    fn name(&self) -> &str {
        "counters"
    }

    fn after_accept<'a>(&'a self, _: &'a Session) -> BoxFuture<'a, Result<(), Status>> {
        self.opened()
    }

    fn after_dial<'a>(&'a self, _: &'a Session, _: bool) -> BoxFuture<'a, Result<(), Status>> {
        self.opened()
    }

    fn after_session_close(&self, _: &Session) {
        bump(&self.sessions_closed);
    }

    fn after_write_call(&self, _: &Session, _: &Header) {
        bump(&self.calls_sent);
    }

    fn after_write_reply(&self, _: &Session, header: &Header) {
        bump(&self.replies_sent);
        if header.status_code != 0 {
            bump(&self.error_replies_sent);
        }
    }

    fn after_write_push(&self, _: &Session, _: &Header) {
        bump(&self.pushes_sent);
    }

    fn after_read_call_header(&self, _: &Session, _: &mut Message) -> Result<(), Status> {
        bump(&self.calls_received);
        Ok(())
    }

    fn after_read_reply_header(&self, _: &Session, _: &mut Message) -> Result<(), Status> {
        bump(&self.replies_received);
        Ok(())
    }

    fn after_read_push_header(&self, _: &Session, _: &mut Message) -> Result<(), Status> {
        bump(&self.pushes_received);
        Ok(())
    }
}
