//! [`StreamReply`]: the single answer to a client stream.

use super::call::StreamCall;
use crate::session::Session;
use crate::values::{decode_body, Reply, Status};
use bytes::Bytes;
use drpc_proto::Message;
use serde::de::DeserializeOwned;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

/// The callee's answer to a client stream ([`Session::client_stream`]): a
/// future of its [`Reply`], which the callee may send before it has read
/// every item (this side's further sends then fail). Dropping it before
/// the answer comes cancels the call at the peer.
pub struct StreamReply<R> {
    session: Session,
    call: StreamCall,
    method: String,
    _reply: PhantomData<fn() -> R>,
}

impl<R> StreamReply<R> {
    pub(super) fn new(session: &Session, call: StreamCall, method: &str) -> Self {
        Self {
            session: session.clone(),
            call,
            method: method.to_string(),
            _reply: PhantomData,
        }
    }
}

impl<R> StreamReply<R> {
    /// The answer as it came, undecoded: its body, meta and codec (for a
    /// tool or a proxy that passes it on).
    ///
    /// Errors: as the future's, but for decoding.
    pub async fn raw(mut self) -> Result<Reply<Bytes>, Status> {
        let reply = std::future::poll_fn(|cx| self.poll_reply(cx)).await?;
        Ok(Reply {
            value: reply.body,
            meta: reply.header.meta,
            codec: reply.header.codec,
        })
    }

    fn poll_reply(&mut self, cx: &mut Context<'_>) -> Poll<Result<Box<Message>, Status>> {
        if self.call.is_done() {
            return Poll::Ready(Err(Status::bad_message(
                "the stream's reply was taken already",
            )));
        }
        self.call.poll_outcome(cx)?;
        if !self.call.replied() {
            return Poll::Pending;
        }
        Poll::Ready(self.call.take_reply(None))
    }
}

impl<R: DeserializeOwned> Future for StreamReply<R> {
    type Output = Result<Reply<R>, Status>;

    /// Errors: the callee's status; 408 when the call's deadline passes
    /// first; 102 when the connection is lost; 400 when the reply does not
    /// decode as `R`. Polling again after it is ready is an error (400).
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let reply = match this.poll_reply(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(reply) => reply?,
        };
        let codecs = &this.session.shared.ep.config.codecs;
        let value = decode_body(codecs, reply.header.codec, &reply.body, &this.method)?;
        Poll::Ready(Ok(Reply {
            value,
            meta: reply.header.meta,
            codec: reply.header.codec,
        }))
    }
}

impl<R> std::fmt::Debug for StreamReply<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamReply")
            .field("method", &self.method)
            .field("seq", &self.call.seq)
            .finish_non_exhaustive()
    }
}
