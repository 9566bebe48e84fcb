//! [`ItemSink`]: where either side of a stream sends its items.

use super::Opened;
use crate::core::streams::Role;
use crate::runtime::link::Link;
use crate::session::Session;
use crate::values::Status;
use drpc_codec::CodecId;
use drpc_proto::{flag, Header, Message};
use serde::Serialize;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Instant;

/// Where one side of a stream sends its items: each encoded in the call's
/// codec, sent once the reader's credit allows (so `send` waits for a slow
/// reader, at most until the call's deadline). One send at a time (it
/// takes `&mut self`): the items of a direction are numbered in order.
///
/// A caller's sink (of [`Session::client_stream`] or
/// [`Session::bidi_stream`]) ends its direction with [`ItemSink::end`] or
/// fails it with [`ItemSink::fail`]; dropping it without either fails it
/// with 499, so a caller that gives up half way is never read as done. A
/// handler's direction ends with its reply (the handler's return): its
/// sink's `end` and `fail` only stop it sending, and dropping it changes
/// nothing.
pub struct ItemSink<T> {
    link: Arc<Link>,
    seq: u32,
    role: Role,
    codec: CodecId,
    deadline: Instant,
    session: Session,
    ended: bool,
    _item: PhantomData<fn(&T)>,
}

impl<T> ItemSink<T> {
    /// The sink of this side's stream call.
    pub(super) fn of_caller(session: &Session, opened: &Opened) -> Self {
        Self::new(session, opened.link.clone(), Role::Caller, opened)
    }

    /// The sink of the handler of the peer's call described by `opened`.
    pub(super) fn of_callee(session: &Session, opened: &Opened) -> Self {
        Self::new(session, opened.link.clone(), Role::Callee, opened)
    }

    fn new(session: &Session, link: Arc<Link>, role: Role, opened: &Opened) -> Self {
        Self {
            link,
            seq: opened.seq,
            role,
            codec: opened.codec,
            deadline: opened.deadline,
            session: session.clone(),
            ended: false,
            _item: PhantomData,
        }
    }

    /// Sends the items in `codec` rather than the call's: raw bytes
    /// ([`CodecId::RAW`]) for a byte stream, say. The reader decodes each
    /// item by its own codec byte.
    pub fn with_codec(mut self, codec: CodecId) -> Self {
        self.codec = codec;
        self
    }

    /// Sends an item already encoded in the sink's codec, as it is: no
    /// copy of `body` is made before it is queued.
    ///
    /// Errors: as [`ItemSink::send`].
    pub async fn send_raw(&mut self, body: bytes::Bytes) -> Result<(), Status> {
        let flags = match self.role {
            Role::Caller => flag::FROM_CALLER,
            Role::Callee => 0,
        };
        let msg = Message::new(Header::item(self.seq, flags, 0, self.codec), body);
        self.link.send_item(self.role, msg, self.deadline).await
    }

    /// Ends this direction well: the reader's next read, once it has every
    /// item sent, is the end. Items already sent still go.
    pub fn end(mut self) {
        self.close(None);
    }

    /// Fails this direction with `status`: the reader reads every item
    /// sent, then `status` (a caller's sink; a handler fails with its
    /// return value instead).
    pub fn fail(mut self, status: Status) {
        self.close(Some(status));
    }

    fn close(&mut self, status: Option<Status>) {
        if !std::mem::replace(&mut self.ended, true) && self.role == Role::Caller {
            self.link.end_items(self.seq, status);
        }
    }
}

impl<T: Serialize> ItemSink<T> {
    /// Sends `item`, waiting for credit.
    ///
    /// Errors: 408 when the call's deadline passes first; 102 when the
    /// stream is over (its reader ended it: a reply, a cancel) or its
    /// connection is; 413 when the item is over the frame limit; 400 when
    /// it cannot be encoded.
    pub async fn send(&mut self, item: &T) -> Result<(), Status> {
        let codecs = &self.session.shared.ep.config.codecs;
        let body = codecs.encode(self.codec, item).map_err(|e| {
            Status::bad_message(format!(
                "cannot encode a stream item as {}: {e}",
                self.codec
            ))
        })?;
        self.send_raw(body.into()).await
    }
}

impl<T> Drop for ItemSink<T> {
    fn drop(&mut self) {
        self.close(Some(Status::canceled(
            "the caller dropped its item sink without ending it",
        )));
    }
}

impl<T> std::fmt::Debug for ItemSink<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ItemSink")
            .field("seq", &self.seq)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}
