//! [`Items`]: a stream's items as their reader gets them, on either side
//! of the call.

use super::call::StreamCall;
use crate::core::streams::{Next, Role};
use crate::runtime::link::Link;
use crate::session::Session;
use crate::values::{decode_body, Status};
use bytes::Bytes;
use drpc_codec::CodecId;
use drpc_proto::{Message, Meta};
use serde::de::DeserializeOwned;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// The items of a stream as their reader gets them: each decoded as `T`,
/// in the order sent, then the end.
///
/// A caller's `Items` (of [`Session::stream`] or [`Session::bidi_stream`])
/// ends with the callee's reply, and dropping it before the end cancels
/// the call at the peer. A handler's `Items` (of a client or bidirectional
/// stream) ends when the caller ends its direction; the handler stops
/// reading by returning.
pub struct Items<T> {
    session: Session,
    link: Arc<Link>,
    seq: u32,
    /// The caller's call, whose reply ends the items; none on the
    /// handler's side.
    call: Option<StreamCall>,
    done: bool,
    trailers: Option<Meta>,
    _item: PhantomData<fn() -> T>,
}

impl<T> Items<T> {
    /// The items of this side's stream call.
    pub(super) fn of_caller(session: &Session, call: StreamCall) -> Self {
        Self {
            session: session.clone(),
            link: call.link.clone(),
            seq: call.seq,
            call: Some(call),
            done: false,
            trailers: None,
            _item: PhantomData,
        }
    }

    /// The caller's items of the peer's call `seq`, read by its handler.
    pub(super) fn of_callee(session: &Session, link: Arc<Link>, seq: u32) -> Self {
        Self {
            session: session.clone(),
            link,
            seq,
            call: None,
            done: false,
            trailers: None,
            _item: PhantomData,
        }
    }
}

impl<T: DeserializeOwned> Items<T> {
    /// The next item; `None` once the sender ended its direction well (a
    /// callee, with a successful reply). The sender's error, the deadline
    /// or a lost connection end it with `Some(Err(..))`, and `None` after.
    /// An item that does not decode as `T` is `Some(Err(..))` (400), and
    /// the stream goes on.
    pub async fn next(&mut self) -> Option<Result<T, Status>> {
        std::future::poll_fn(|cx| self.poll_item(cx)).await
    }

    /// The next item as it came, undecoded: its codec and body (for a
    /// tool or a proxy that passes items on). Ends as [`Items::next`].
    pub async fn next_raw(&mut self) -> Option<Result<(CodecId, Bytes), Status>> {
        let next = std::future::poll_fn(|cx| self.poll_raw(cx)).await;
        next.map(|item| item.map(|msg| (msg.header.codec, msg.body)))
    }

    /// The meta of the callee's reply, once the stream has ended
    /// successfully (gRPC's trailers). It includes `drpc-items`, the count
    /// of items sent. Always `None` on the handler's side.
    pub fn trailers(&self) -> Option<&Meta> {
        self.trailers.as_ref()
    }

    fn poll_item(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<T, Status>>> {
        self.poll_raw(cx)
            .map(|next| next.map(|item| item.and_then(|msg| self.decode(&msg))))
    }

    fn poll_raw(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message, Status>>> {
        if self.done {
            return Poll::Ready(None);
        }
        if let Some(call) = self.call.as_mut() {
            if let Err(status) = call.poll_outcome(cx) {
                self.done = true;
                return Poll::Ready(Some(Err(status)));
            }
        }
        let role = match self.call {
            Some(_) => Role::Caller,
            None => Role::Callee,
        };
        match self.link.poll_item(role, self.seq, cx) {
            Next::Item(msg, _) => Poll::Ready(Some(Ok(msg))),
            Next::Wait(_) => match self.call.as_mut() {
                // The reply came before items it counts (QUIC): they are
                // waited for until the call's deadline.
                Some(call) if call.replied() => match call.poll_late(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(status) => {
                        self.done = true;
                        Poll::Ready(Some(Err(status)))
                    }
                },
                _ => Poll::Pending,
            },
            next @ (Next::End(_) | Next::Gone) => {
                self.done = true;
                let ended = match next {
                    Next::End(status) => status,
                    _ => Some(Status::connection_closed(
                        "the stream is over: its call ended, or its connection",
                    )),
                };
                let Some(call) = self.call.as_mut() else {
                    return Poll::Ready(ended.map(Err));
                };
                Poll::Ready(match call.take_reply(ended) {
                    Ok(reply) => {
                        self.trailers = Some(reply.header.meta);
                        None
                    }
                    Err(status) => Some(Err(status)),
                })
            }
        }
    }

    fn decode(&self, msg: &Message) -> Result<T, Status> {
        let codecs = &self.session.shared.ep.config.codecs;
        decode_body(codecs, msg.header.codec, &msg.body, "a stream item")
    }
}

impl<T: DeserializeOwned> futures_util::Stream for Items<T> {
    type Item = Result<T, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_item(cx)
    }
}

impl<T> std::fmt::Debug for Items<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Items")
            .field("seq", &self.seq)
            .field("caller", &self.call.is_some())
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}
