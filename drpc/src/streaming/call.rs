//! The caller's hold on a stream call: its outcome, its deadline, the
//! plugins' state for it, and the cancel that goes out if it is dropped
//! before the end.

use super::Opened;
use crate::core::inflight::Outcome;
use crate::core::streams::Role;
use crate::plugin::{CallEnd, MadeCall};
use crate::runtime::link::Link;
use crate::session::Session;
use crate::values::Status;
use drpc_proto::Message;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

/// One stream call of this side, until its outcome is read.
pub(super) struct StreamCall {
    pub(super) link: Arc<Link>,
    pub(super) seq: u32,
    /// The call's deadline, which still bounds the wait for items the
    /// reply said were sent once the reply is in.
    deadline: Instant,
    late: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The call's outcome, once it came (its reply may precede its last
    /// items over QUIC).
    outcome: Option<Outcome>,
    done: bool,
    hooks: Option<Hooks>,
}

/// What the endpoint's plugins keep of a stream call: they saw it made,
/// and see its reply and its end, once.
pub(super) struct Hooks {
    pub(super) session: Session,
    pub(super) method: String,
    pub(super) started: tokio::time::Instant,
    pub(super) scopes: Vec<Box<dyn MadeCall>>,
}

impl Hooks {
    /// The reply came: the plugins may change it, or fail the call.
    fn on_reply(&mut self, reply: &mut Message) -> Result<(), Status> {
        for scope in self.scopes.iter_mut() {
            scope.on_reply(reply)?;
        }
        let session = &self.session;
        session
            .plugins()
            .try_each(|p| p.after_read_reply_header(session, reply))
    }

    /// The call ended with `status`.
    pub(super) fn end(self, seq: u32, status: &Status) {
        let end = CallEnd {
            seq,
            service_method: &self.method,
            status,
            elapsed: self.started.elapsed(),
        };
        for scope in self.scopes {
            scope.end(&end);
        }
        let session = &self.session;
        session.plugins().each(|p| p.after_call_end(session, &end));
    }
}

impl StreamCall {
    pub(super) fn new(opened: Opened) -> Self {
        Self {
            link: opened.link,
            seq: opened.seq,
            deadline: opened.deadline,
            late: None,
            outcome: None,
            done: false,
            hooks: opened.hooks,
        }
    }

    pub(super) fn is_done(&self) -> bool {
        self.done
    }

    /// Looks for the outcome, keeping `cx`'s waker while it has not come.
    /// A failed or expired call is finished here, with its status.
    pub(super) fn poll_outcome(&mut self, cx: &mut Context<'_>) -> Result<(), Status> {
        if self.outcome.is_none() {
            self.outcome = self.link.core().calls.poll(self.seq, |w| match w {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => *w = Some(cx.waker().clone()),
            });
        }
        let failed = match &self.outcome {
            Some(Outcome::Failed(status)) => status.clone(),
            Some(Outcome::Expired) => {
                // The peer may still be sending: it stops now.
                self.link.cancel(self.seq);
                Status::deadline_exceeded("the stream did not end within its call's deadline")
            }
            _ => return Ok(()),
        };
        Err(self.finish(failed))
    }

    /// Whether the reply is in.
    pub(super) fn replied(&self) -> bool {
        matches!(self.outcome, Some(Outcome::Reply(_)))
    }

    /// The successful reply, once the items it counts are read (or the
    /// stream is gone): the call is over here. `ended` is how the items
    /// ended, for a call with no reply. Errors: the callee's status, or
    /// how the stream ended without a reply.
    pub(super) fn take_reply(&mut self, ended: Option<Status>) -> Result<Box<Message>, Status> {
        if self.outcome.is_none() {
            // The reply may have come between the two looks.
            self.outcome = self.link.core().calls.poll(self.seq, |_| {});
        }
        let Some(Outcome::Reply(mut reply)) = self.outcome.take() else {
            let status = ended
                .unwrap_or_else(|| Status::connection_closed("the stream's connection is gone"));
            return Err(self.finish(status));
        };
        if let Some(hooks) = self.hooks.as_mut() {
            if let Err(status) = hooks.on_reply(&mut reply) {
                return Err(self.finish(status));
            }
        }
        match Link::reply_status(&reply) {
            Some(status) => Err(self.finish(status)),
            None => {
                self.finish(Status::ok());
                Ok(reply)
            }
        }
    }

    /// Waits, until the call's deadline, for items a reply counts that are
    /// still on their way (a reply can overtake them over QUIC).
    pub(super) fn poll_late(&mut self, cx: &mut Context<'_>) -> Poll<Status> {
        let deadline = self.deadline;
        let late = self
            .late
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline.into())));
        match late.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => Poll::Ready(self.finish(Status::deadline_exceeded(
                "the stream's reply came, but not every item it counts within the deadline",
            ))),
        }
    }

    /// Marks the call over, forgets it (and its stream) here, and returns
    /// `status`.
    pub(super) fn finish(&mut self, status: Status) -> Status {
        self.done = true;
        self.link.close_stream(Role::Caller, self.seq);
        self.link.forget(self.seq);
        if let Some(hooks) = self.hooks.take() {
            hooks.end(self.seq, &status);
        }
        status
    }
}

impl Drop for StreamCall {
    fn drop(&mut self) {
        if !self.done {
            self.link.close_stream(Role::Caller, self.seq);
            if self.outcome.is_none() {
                self.link.cancel(self.seq);
            }
            if let Some(hooks) = self.hooks.take() {
                let status = Status::canceled("the caller stopped reading the stream");
                hooks.end(self.seq, &status);
            }
        }
    }
}
