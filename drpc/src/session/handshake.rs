//! What a connection hook reads from the peer while the connection is
//! being established: [`Session::take_handshake`] and the message it takes.

use super::Session;
use crate::plugin::HandledCall;
use crate::runtime::link::Link;
use crate::session::calls::unreversed_filters;
use crate::values::{decode_body, Status};
use bytes::Bytes;
use drpc_proto::{Header, Kind, Message, Meta};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

impl Session {
    /// From a connection hook ([`Plugin::after_accept`] or
    /// [`Plugin::after_dial`]): waits up to `within` for the peer's call or
    /// push to `service_method` and takes it, so that no handler ever sees
    /// it. This is how a hook reads what the peer sends while the session is
    /// being established, such as a credential.
    ///
    /// Until every connection hook has passed, the session holds incoming
    /// calls and pushes instead of running their handlers; the ones not
    /// taken run, in order, once the hooks pass, or are answered with the
    /// refusing hook's status if one refuses. Plugins' read-header hooks
    /// run on a taken message as on any other (so a compressed body comes
    /// out decompressed), but no handler runs for it. A taken call must be
    /// answered with [`HandshakeMessage::reply`] (dropping it answers 500).
    ///
    /// Errors: 408 when nothing arrives within `within`; 102 when the
    /// session closes first; 500 when called outside a connection hook
    /// (the session is already established, or has no connection); a read
    /// hook's refusal of the message (a call is answered with it, too).
    ///
    /// [`Plugin::after_accept`]: crate::Plugin::after_accept
    /// [`Plugin::after_dial`]: crate::Plugin::after_dial
    ///
    /// ```
    /// use drpc::plugin::BoxFuture;
    /// use drpc::{Plugin, Session, Status};
    /// use std::time::Duration;
    ///
    /// /// Accepts peers whose first call to `/hello` says "hi".
    /// struct Greeted;
    ///
    /// impl Plugin for Greeted {
    ///     fn after_accept<'a>(&'a self, s: &'a Session) -> BoxFuture<'a, Result<(), Status>> {
    ///         Box::pin(async move {
    ///             let hello = s.take_handshake("/hello", Duration::from_secs(5)).await?;
    ///             if hello.decode::<String>()? == "hi" {
    ///                 hello.reply(Ok(&"welcome"));
    ///                 Ok(())
    ///             } else {
    ///                 let refusal = Status::unauthorized("say hi");
    ///                 hello.reply::<()>(Err(refusal.clone()));
    ///                 Err(refusal)
    ///             }
    ///         })
    ///     }
    /// }
    /// ```
    pub async fn take_handshake(
        &self,
        service_method: &str,
        within: Duration,
    ) -> Result<HandshakeMessage, Status> {
        let link = self.via.clone().or_else(|| self.link()).ok_or_else(|| {
            Status::internal("take_handshake: the session has no connection (it is redialing)")
        })?;
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let held = link.held.notified();
            tokio::pin!(held);
            held.as_mut().enable();
            {
                let mut core = link.core();
                if let Some(msg) = core.take_held(service_method) {
                    drop(core);
                    // Room was freed for a reader that may be waiting.
                    link.reader.notify();
                    return self.read_handshake(&link, msg);
                }
                if core.is_established() {
                    return Err(Status::internal(
                        "take_handshake is for connection hooks: this session is already established",
                    ));
                }
            }
            tokio::select! {
                _ = &mut held => {}
                _ = link.established.cancelled() => {}
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(Status::deadline_exceeded(format!(
                        "the peer sent no {service_method} within {within:?}"
                    )));
                }
                _ = self.shared.closed.cancelled() => return Err(self.closed_status()),
                _ = link.finished.cancelled() => {
                    return Err(Status::connection_closed("the connection ended"));
                }
            }
        }
    }

    /// Runs the read-header hooks on a taken message, as for any other (a
    /// compressed body is decompressed, say); a refusal answers a call with
    /// it, and is returned.
    fn read_handshake(
        &self,
        link: &Arc<Link>,
        mut msg: Message,
    ) -> Result<HandshakeMessage, Status> {
        let plugins = self.plugins();
        let mut scopes = Vec::new();
        let checked = match msg.header.kind {
            Kind::Call => plugins.iter().try_for_each(|p| {
                scopes.extend(p.handle_call(self, &msg)?);
                Ok(())
            }),
            _ => Ok(()),
        }
        .and_then(|()| match msg.header.kind {
            Kind::Call => plugins.try_each(|p| p.after_read_call_header(self, &mut msg)),
            _ => plugins.try_each(|p| p.after_read_push_header(self, &mut msg)),
        })
        .and_then(|()| match msg.header.filters.is_empty() {
            true => Ok(()),
            false => Err(unreversed_filters(&msg.header)),
        });
        let taken = HandshakeMessage {
            session: self.clone(),
            link: link.clone(),
            msg: Some(msg),
            scopes,
        };
        match checked {
            Ok(()) => Ok(taken),
            Err(status) => {
                taken.reply_raw(Err(status.clone()), Meta::default());
                Err(status)
            }
        }
    }
}

/// A call or push taken by a connection hook with
/// [`Session::take_handshake`]. A call is answered with
/// [`HandshakeMessage::reply`]; one dropped unanswered is answered with 500,
/// so the peer never waits for nothing.
pub struct HandshakeMessage {
    session: Session,
    link: Arc<Link>,
    /// `None` once answered.
    msg: Option<Message>,
    /// The plugins' state for the call, ended when it is answered.
    scopes: Vec<Box<dyn HandledCall>>,
}

impl HandshakeMessage {
    fn msg(&self) -> &Message {
        self.msg.as_ref().expect("present until answered")
    }

    /// The message's header (its kind says whether it is a call or a push).
    pub fn header(&self) -> &Header {
        &self.msg().header
    }

    /// The encoded body, as it arrived.
    pub fn body(&self) -> &Bytes {
        &self.msg().body
    }

    /// Decodes the body with its codec. Fails with 400.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, Status> {
        let h = self.header();
        let codecs = &self.session.shared.ep.config.codecs;
        decode_body(codecs, h.codec, self.body(), &h.service_method)
    }

    /// Answers the call with `result`, its value encoded with the call's
    /// codec. Does nothing for a push.
    pub fn reply<T: Serialize>(self, result: Result<&T, Status>) {
        let codec = self.header().codec;
        let body = result.and_then(|v| {
            let codecs = &self.session.shared.ep.config.codecs;
            codecs.encode(codec, v).map(Bytes::from).map_err(|e| {
                Status::internal(format!("cannot encode a handshake reply as {codec}"))
                    .with_cause(e)
            })
        });
        self.reply_raw(body, Meta::default());
    }

    /// Answers the call with an encoded body (in the call's codec) or a
    /// status, and reply meta. Does nothing for a push.
    pub fn reply_raw(mut self, result: Result<Bytes, Status>, meta: Meta) {
        if let Some(msg) = self.msg.take() {
            let scopes = std::mem::take(&mut self.scopes);
            answer(&self.session, &self.link, scopes, &msg.header, result, meta);
        }
    }
}

fn answer(
    session: &Session,
    link: &Link,
    mut scopes: Vec<Box<dyn HandledCall>>,
    call: &Header,
    result: Result<Bytes, Status>,
    meta: Meta,
) {
    if call.kind != Kind::Call {
        return;
    }
    let mut reply = match result {
        Ok(body) => {
            let mut h = Header::reply(call.seq);
            h.codec = call.codec;
            h.meta = meta;
            Message::new(h, body)
        }
        Err(status) => crate::core::wire::error_reply(call.seq, call.codec, &status),
    };
    if let Err(status) = scopes
        .iter_mut()
        .try_for_each(|s| s.before_reply(&mut reply))
        .and_then(|()| {
            session
                .plugins()
                .try_each(|p| p.before_write_reply(session, &mut reply))
        })
    {
        reply = crate::core::wire::error_reply(call.seq, call.codec, &status);
    }
    link.reply(&reply);
    session
        .plugins()
        .each(|p| p.after_write_reply(session, &reply.header));
}

impl Drop for HandshakeMessage {
    fn drop(&mut self) {
        if let Some(msg) = self.msg.take() {
            let status = Status::internal(format!(
                "the handshake call {} was not answered",
                msg.header.service_method
            ));
            let scopes = std::mem::take(&mut self.scopes);
            answer(
                &self.session,
                &self.link,
                scopes,
                &msg.header,
                Err(status),
                Meta::default(),
            );
        }
    }
}

impl std::fmt::Debug for HandshakeMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandshakeMessage")
            .field("session", &self.session.id())
            .field("header", &self.msg.as_ref().map(|m| &m.header))
            .finish_non_exhaustive()
    }
}
