//! The end of a connection: draining it, flushing it, or stopping at once.

use super::Reader;
use crate::core::lifecycle::Stop;
use crate::engine::read::{poll_read, Read};
use crate::engine::writer::WriterEnd;
use crate::runtime::timer::LazyTimer;
use crate::runtime::yielding::yield_once;
use std::future::poll_fn;
use std::pin::pin;

impl Reader<'_> {
    /// Stops the connection as decided: drains it (running handlers finish
    /// and their replies are written, calls that cross the notice are
    /// answered), flushes what is queued, or stops at once. Bounded by the
    /// close grace, and cut short by a second close of the endpoint or an
    /// abort.
    pub(super) async fn stop(&mut self, stop: Stop) {
        let mut grace_end = tokio::time::Instant::now() + self.ep.grace();
        // A connection that began to stop on its own (the peer ended its
        // stream) still ends by the grace of an endpoint shutdown begun
        // since, if that comes first.
        let mut shutdown_seen = self.ep.shutdown.is_cancelled();
        // Its reads no longer arm the timer that would forget the pool.
        self.inbound.forget_pool();
        let handlers = &self.link.handlers;
        if stop != Stop::Drain {
            handlers.abort.cancel();
        }
        if stop == Stop::AtOnce {
            // Dropped unfinished: what is queued is not written.
            self.writer = None;
            return;
        }
        let shared = &self.session.shared;
        let mut finishing = false;
        let mut call_timer = pin!(LazyTimer::new());
        // When a server (the accepting side) shuts down, calls its clients
        // sent before its going-away notice reached them may still be on
        // their way: they are answered (102, "not run") until the client
        // ends its stream or for NOTICE_LINGER, instead of meeting the end
        // of the stream, which would leave the client unsure whether they
        // ran (so a cluster client can move them to another instance). All
        // connections linger at once; a single session's close, and a
        // client's shutdown, do not wait. A connection renewed for the
        // session's age or idle limit lingers on either side: no call may
        // be lost to a renewal.
        let linger_end = (tokio::time::Instant::now() + NOTICE_LINGER).min(grace_end);
        while self.writer.is_some() {
            let owed = handlers.running() > 0 || self.link.core().handling() > 0;
            // A renewal waits for this side's calls too: read their replies.
            let owed = owed || (self.expired && self.link.core().calls.len() > 0);
            let lingering = stop == Stop::Drain
                && (self.expired || self.ep.shutdown.is_cancelled() && !self.session.is_dialed())
                && self.reading
                && self.link.core().going_away_sent()
                && tokio::time::Instant::now() < linger_end;
            if !finishing && (stop == Stop::Flush || (!owed && !lingering)) {
                // Every reply owed is queued: write them, then end the
                // stream.
                finishing = true;
                self.link.finish_writing();
            }
            call_timer
                .as_mut()
                .arm(self.link.core().calls.next_deadline());
            let can_read = self.reading && self.waiting.is_none() && !self.backlog;
            tokio::select! {
                biased;
                _ = shared.abort_requested.cancelled() => break,
                _ = self.ep.hurry.cancelled() => break,
                _ = tokio::time::sleep_until(grace_end) => break,
                _ = tokio::time::sleep_until(linger_end), if lingering && !finishing => {}
                _ = self.ep.shutdown.cancelled(), if !shutdown_seen => {
                    shutdown_seen = true;
                    grace_end = grace_end.min(tokio::time::Instant::now() + self.ep.grace());
                }
                w = async { self.writer.as_mut().expect("checked").await } => {
                    self.writer = None;
                    if let WriterEnd::Failed(status) = &w {
                        tracing::debug!(session = %self.session.id(), %status, "the writer failed while the connection stopped");
                    }
                    self.writer_end = Some(w);
                }
                read = poll_fn(|cx| poll_read(&mut self.rd, &mut self.inbound, cx)), if can_read => {
                    match read {
                        // The peer's calls that cross the going-away notice
                        // are answered 102 (the core does), replies to calls
                        // that already failed are dropped.
                        Read::Bytes => {
                            if self.frames().is_some() {
                                self.reading = false;
                            }
                        }
                        Read::End | Read::Failed(_) => self.reading = false,
                    }
                }
                _ = yield_once(), if self.backlog => {
                    if self.frames().is_some() {
                        self.reading = false;
                    }
                }
                _ = poll_fn(|cx| self.link.reader.poll(cx)) => {}
                _ = call_timer.as_mut().fired(), if call_timer.is_armed() => self.expire_calls(),
            }
        }
        if self.writer.take().is_some() {
            // The grace ran out, or a hurry: cancel what still runs.
            handlers.abort.cancel();
            return;
        }
        // Our side has ended its stream. Read on until the peer ends its
        // own, so closing with its bytes unread cannot reset a connection
        // whose last replies it still reads; but not past the grace, nor
        // past LINGER_QUIET of silence (a frozen peer has nothing to lose).
        while self.reading && matches!(self.writer_end, Some(WriterEnd::Finished)) {
            let mut sink = [0u8; 4096];
            let quiet = tokio::time::Instant::now() + LINGER_QUIET;
            let read = tokio::select! {
                _ = tokio::time::sleep_until(grace_end.min(quiet)) => break,
                _ = self.ep.hurry.cancelled() => break,
                _ = shared.abort_requested.cancelled() => break,
                r = tokio::io::AsyncReadExt::read(&mut self.rd, &mut sink) => r,
            };
            if !matches!(read, Ok(n) if n > 0) {
                self.reading = false;
            }
        }
    }
}

/// How long after its going-away notice a side still answers the peer's
/// crossing calls while the peer has not ended its stream: a few round trips
/// on a LAN, one across continents (docs/PROTOCOL.md section 3.1).
const NOTICE_LINGER: std::time::Duration = std::time::Duration::from_millis(250);

/// After this side ended its stream, how long a silent peer is waited for
/// before the connection closes without its end of stream. A peer that is
/// still there answers an end of stream within a round trip.
const LINGER_QUIET: std::time::Duration = std::time::Duration::from_secs(1);
