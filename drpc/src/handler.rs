//! A call handler's future with its type erased, and the reply it keeps
//! until the dispatcher encodes it.

use crate::values::Status;
use bytes::{BufMut, Bytes, BytesMut};
use drpc_codec::{CodecError, CodecId, Codecs};
use serde::Serialize;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

/// A handler's reply body, as the dispatcher reads it from the finished
/// handler.
pub(crate) enum ReplyBody<'a> {
    /// Encoded already (a raw handler's).
    Bytes(Bytes),
    /// A value, encoded with the reply codec when the reply is queued:
    /// straight into the connection's batch when no plugin needs it as
    /// bytes first.
    Value(&'a dyn ReplyValue),
}

/// A handler's return value, its type erased.
pub(crate) trait ReplyValue: Send {
    /// Appends the value's encoding with `codec` (one of `codecs`) to `out`.
    fn encode_into(
        &self,
        codecs: &Codecs,
        codec: CodecId,
        out: &mut BytesMut,
    ) -> Result<(), CodecError>;
}

impl<R: Serialize + Send> ReplyValue for R {
    fn encode_into(
        &self,
        codecs: &Codecs,
        codec: CodecId,
        out: &mut BytesMut,
    ) -> Result<(), CodecError> {
        codecs.encode_into(codec, self, out.writer())
    }
}

/// A running call handler, its type erased. The value it finishes with
/// stays inside it, where the dispatcher reads it to encode the reply: a
/// reply costs no allocation of its own.
pub(crate) trait CallFuture: Send {
    /// Runs the handler; `Ok` once its reply is ready in
    /// [`CallFuture::reply`], or the status it failed with.
    fn poll_done(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Status>>;

    /// The reply of a handler that finished with `Ok`.
    fn reply(&self) -> ReplyBody<'_>;
}

/// A running call handler, boxed.
pub(crate) type BoxCallFuture = Pin<Box<dyn CallFuture>>;

pin_project_lite::pin_project! {
    /// A handler's future and, once it finished, its value.
    pub(crate) struct Handling<Fut, R> {
        #[pin]
        fut: Fut,
        out: Option<R>,
        reply: for<'a> fn(&'a R) -> ReplyBody<'a>,
    }
}

impl<Fut, R> Handling<Fut, R>
where
    Fut: Future<Output = Result<R, Status>> + Send + 'static,
    R: Serialize + Send + 'static,
{
    /// A handler whose value is encoded with the reply's codec.
    pub(crate) fn value(fut: Fut) -> BoxCallFuture {
        Box::pin(Self {
            fut,
            out: None,
            reply: |value| ReplyBody::Value(value),
        })
    }
}

impl<Fut> Handling<Fut, Bytes>
where
    Fut: Future<Output = Result<Bytes, Status>> + Send + 'static,
{
    /// A handler whose reply body is encoded already.
    pub(crate) fn bytes(fut: Fut) -> BoxCallFuture {
        Box::pin(Self {
            fut,
            out: None,
            reply: |body| ReplyBody::Bytes(body.clone()),
        })
    }
}

impl<Fut, R> CallFuture for Handling<Fut, R>
where
    Fut: Future<Output = Result<R, Status>> + Send,
    R: Send,
{
    fn poll_done(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        let this = self.project();
        Poll::Ready(ready!(this.fut.poll(cx)).map(|value| *this.out = Some(value)))
    }

    fn reply(&self) -> ReplyBody<'_> {
        let value = self
            .out
            .as_ref()
            .expect("a reply is read only from a handler that finished with Ok");
        (self.reply)(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    fn poll(fut: &mut BoxCallFuture) -> Poll<Result<(), Status>> {
        fut.as_mut()
            .poll_done(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn a_finished_handler_keeps_its_value_for_the_reply() {
        let mut fut = Handling::value(async { Ok::<_, Status>(vec![1u8, 2]) });
        assert!(matches!(poll(&mut fut), Poll::Ready(Ok(()))));
        let ReplyBody::Value(value) = fut.reply() else {
            panic!("a value")
        };
        let mut out = BytesMut::new();
        value
            .encode_into(&Codecs::new(), CodecId::JSON, &mut out)
            .unwrap();
        assert_eq!(&out[..], b"[1,2]");
    }

    #[test]
    fn a_raw_handler_replies_with_its_bytes_and_a_failure_with_its_status() {
        let mut fut = Handling::bytes(async { Ok(Bytes::from_static(b"as is")) });
        assert!(matches!(poll(&mut fut), Poll::Ready(Ok(()))));
        assert!(matches!(fut.reply(), ReplyBody::Bytes(b) if b == "as is"));
        let mut failed =
            Handling::bytes(async { Err::<Bytes, _>(Status::not_found("no such thing")) });
        assert!(matches!(poll(&mut failed), Poll::Ready(Err(s)) if s.message() == "no such thing"));
    }

    #[test]
    fn a_waiting_handler_is_pending_until_it_finishes() {
        let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
        let mut fut =
            Handling::value(async move { rx.await.map_err(|_| Status::internal("gone")) });
        assert!(poll(&mut fut).is_pending());
        tx.send(7).unwrap();
        assert!(matches!(poll(&mut fut), Poll::Ready(Ok(()))));
    }
}
