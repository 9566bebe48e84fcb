//! Calls and pushes this side makes.

use super::Session;
use crate::core::inflight::Outcome;
use crate::plugin::{CallEnd, MadeCall};
use crate::runtime::link::Link;
use crate::values::{
    decode_body, CallOptions, Code, PushOptions, Reply, Status, MAX_DEADLINE_AHEAD,
};
use bytes::{BufMut, Bytes, BytesMut};
use drpc_codec::{CodecError, CodecId};
use drpc_proto::{Head, Header, Kind, Message, ProtoError};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a call refused as "not run" waits for the peer's going-away
/// notice that explains it, when the refusal came first.
const NOTICE_WAIT: Duration = Duration::from_secs(1);

/// Now plus `timeout` on tokio's clock (so a paused clock in a test is
/// obeyed), capped a year ahead.
pub(crate) fn deadline_after(timeout: Duration) -> Instant {
    tokio::time::Instant::now().into_std() + timeout.min(MAX_DEADLINE_AHEAD)
}

impl Session {
    /// Calls `service_method` with `arg` and the default options, and decodes
    /// the reply as `R`.
    pub async fn call<A, R>(&self, service_method: &str, arg: &A) -> Result<R, Status>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        self.call_with(service_method, arg, CallOptions::default())
            .await
            .map(|reply| reply.value)
    }

    /// Calls `service_method` with `arg` and `opts`; the [`Reply`] carries the
    /// decoded value and the reply's meta.
    ///
    /// Errors: the peer's status; 408 when the deadline passes first; 102 when
    /// the session closes first; 104 when the call could not be written; 413
    /// when the message exceeds the frame limit; 400 when the argument cannot
    /// be encoded or the reply decoded. Dropping the returned future abandons
    /// the call and frees its entry.
    pub async fn call_with<A, R>(
        &self,
        service_method: &str,
        arg: &A,
        opts: CallOptions,
    ) -> Result<Reply<R>, Status>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let codecs = &self.shared.ep.config.codecs;
        let codec = opts.codec.unwrap_or(self.shared.ep.config.default_codec);
        let opts = opts.codec(codec);
        let reply = if self.plugins().is_empty() {
            // Nothing needs the body as a value: it is encoded straight
            // into the connection's batch.
            let mut failed = None;
            let mut encode = |dst: &mut BytesMut| {
                codecs.encode_into(codec, arg, dst.writer()).map_err(|e| {
                    let what = e.to_string();
                    failed = Some(e);
                    ProtoError::Unencodable(what)
                })
            };
            let result = self
                .call_message(service_method, opts, Body::Encode(&mut encode))
                .await;
            match (result, failed) {
                (Err(_), Some(e)) => return Err(arg_status(codec, service_method, e)),
                (result, _) => result?,
            }
        } else {
            let body = codecs
                .encode(codec, arg)
                .map_err(|e| arg_status(codec, service_method, e))?;
            self.call_message(service_method, opts, Body::<NoEncode>::Bytes(body.into()))
                .await?
        };
        let value = decode_body(codecs, reply.header.codec, &reply.body, service_method)?;
        self.plugins()
            .try_each(|p| p.after_read_reply_body(self, &reply.header))?;
        Ok(Reply {
            value,
            meta: reply.header.meta,
            codec: reply.header.codec,
        })
    }

    /// Calls `service_method` with a body that is already encoded, and
    /// returns the reply's body as it came, undecoded: the codec in `opts`
    /// (or the default) is only recorded in the call, and the reply says
    /// which codec its body is in. For pass-through, such as a proxy.
    ///
    /// Errors: as [`Session::call_with`]; the peer's status comes back with
    /// its code and message unchanged.
    pub async fn call_raw(
        &self,
        service_method: &str,
        body: Bytes,
        opts: CallOptions,
    ) -> Result<Reply<Bytes>, Status> {
        let reply = self
            .call_message(service_method, opts, Body::<NoEncode>::Bytes(body))
            .await?;
        self.plugins()
            .try_each(|p| p.after_read_reply_body(self, &reply.header))?;
        Ok(Reply {
            value: reply.body,
            meta: reply.header.meta,
            codec: reply.header.codec,
        })
    }

    /// Sends a call of `method` and waits for a successful reply, running
    /// the plugins around it. A call the peer did not run because it left
    /// the connection (its going-away notice crossed the call) is made
    /// again on the session's next connection, within the same deadline,
    /// when the session moves to one.
    async fn call_message<F>(
        &self,
        method: &str,
        opts: CallOptions,
        mut body: Body<F>,
    ) -> Result<Box<Message>, Status>
    where
        F: FnMut(&mut BytesMut) -> Result<(), ProtoError>,
    {
        if opts.no_deadline {
            return Err(Status::bad_message(format!(
                "{method}: a plain call must have a deadline; no_deadline is for streams"
            )));
        }
        let config = &self.shared.ep.config;
        let timeout = opts.timeout.unwrap_or(config.default_timeout);
        let deadline = deadline_after(timeout);
        let mut attempt_timeout = timeout;
        loop {
            let (result, again) = self
                .call_once(method, &opts, attempt_timeout, deadline, &mut body)
                .await;
            match result {
                Err(status) if again => {
                    let now = tokio::time::Instant::now().into_std();
                    if now >= deadline {
                        return Err(status);
                    }
                    tracing::debug!(session = %self.id(), method, %status, "making the call again on the next connection");
                    attempt_timeout = deadline - now;
                }
                result => return result,
            }
        }
    }

    /// One attempt of [`Session::call_message`], and whether its failure
    /// may be made again on the next connection.
    async fn call_once<F>(
        &self,
        method: &str,
        opts: &CallOptions,
        timeout: Duration,
        deadline: Instant,
        body: &mut Body<F>,
    ) -> (Result<Box<Message>, Status>, bool)
    where
        F: FnMut(&mut BytesMut) -> Result<(), ProtoError>,
    {
        let config = &self.shared.ep.config;
        // Until the call is queued, a failure means it was not sent.
        let link = match self.usable_link(deadline, method).await {
            Ok(link) => link,
            Err(status) => return (Err(status.unrun()), false),
        };
        let codec = opts.codec.unwrap_or(config.default_codec);
        let mut call = Call {
            session: self,
            link: &link,
            seq: 0,
            method,
            started: (!self.plugins().is_empty()).then(tokio::time::Instant::now),
            scopes: Vec::new(),
            collected: true,
            sent: false,
        };
        let result = async {
            match body {
                Body::Encode(encode) => {
                    let mut head = Head {
                        kind: Kind::Call,
                        flags: 0,
                        seq: 0,
                        service_method: method,
                        timeout: Some(timeout),
                        status_code: 0,
                        status_message: "",
                        codec,
                        filters: &[],
                        meta: &opts.meta,
                    };
                    call.seq = link
                        .start_call(&mut head, deadline, encode)
                        .await
                        .map_err(Status::unrun)?;
                    call.collected = false;
                    call.sent = true;
                }
                Body::Bytes(body) => {
                    let mut header = Header::call(0, method);
                    header.codec = codec;
                    header.meta = opts.meta.clone();
                    header.timeout = Some(timeout);
                    let mut msg = Message::new(header, body.clone());
                    call.seq = link.register_call(deadline);
                    call.collected = false;
                    msg.header.seq = call.seq;
                    for p in self.plugins().iter() {
                        p.before_write_call(self, &mut msg)?;
                        if let Some(scope) = p.make_call(self, &mut msg)? {
                            call.scopes.push(scope);
                        }
                    }
                    link.send(&msg, deadline).await.map_err(Status::unrun)?;
                    call.sent = true;
                    let header = &msg.header;
                    self.plugins().each(|p| p.after_write_call(self, header));
                }
            }
            let outcome = link.outcome(call.seq).await;
            call.collected = true;
            let mut reply = match outcome {
                Outcome::Reply(reply) => reply,
                Outcome::Failed(status) => return Err(status),
                Outcome::Expired => {
                    // The peer's handler may still run: it stops now.
                    link.cancel(call.seq);
                    return Err(Status::deadline_exceeded(format!(
                        "no reply to {method} within {timeout:?}"
                    )));
                }
            };
            for scope in call.scopes.iter_mut() {
                scope.on_reply(&mut reply)?;
            }
            self.plugins()
                .try_each(|p| p.after_read_reply_header(self, &mut reply))?;
            if !reply.header.filters.is_empty() {
                return Err(unreversed_filters(&reply.header));
            }
            match Link::reply_status(&reply) {
                Some(status) => Err(status),
                None => Ok(reply),
            }
        }
        .await;
        call.end(match &result {
            Ok(_) => Status::ok(),
            Err(status) => status.clone(),
        });
        let again = match &result {
            // A connection hook's handle has only its own connection.
            Err(status)
                if self.via.is_none()
                    && status.never_ran()
                    && status.code() == Code::CONNECTION_CLOSED =>
            {
                // On QUIC's streams a refusal can overtake the notice that
                // caused it: wait a moment for the notice (or the end of
                // the connection) before deciding.
                if !link.going_away.is_cancelled() {
                    let wait = deadline.min(tokio::time::Instant::now().into_std() + NOTICE_WAIT);
                    tokio::select! {
                        _ = link.going_away.cancelled() => {}
                        _ = link.finished.cancelled() => {}
                        _ = tokio::time::sleep_until(wait.into()) => {}
                    }
                }
                self.moves_on_from(&link)
            }
            _ => false,
        };
        (result, again)
    }

    /// Pushes `arg` to the peer's handler for `service_method`, with the
    /// default options.
    pub async fn push<A: Serialize + ?Sized>(
        &self,
        service_method: &str,
        arg: &A,
    ) -> Result<(), Status> {
        self.push_with(service_method, arg, PushOptions::default())
            .await
    }

    /// Pushes `arg` with `opts`. Returns once the push is queued for writing:
    /// a push has no reply, so success means "handed to the connection".
    ///
    /// Errors: 102 when the session is closed, 408 when the write queue stays
    /// full past the timeout, 413 when the body exceeds the frame limit, 400
    /// when `arg` cannot be encoded, or a plugin's status.
    pub async fn push_with<A: Serialize + ?Sized>(
        &self,
        service_method: &str,
        arg: &A,
        opts: PushOptions,
    ) -> Result<(), Status> {
        let config = &self.shared.ep.config;
        let codec = opts.codec.unwrap_or(config.default_codec);
        let body = config
            .codecs
            .encode(codec, arg)
            .map_err(|e| arg_status(codec, service_method, e))?;
        self.push_raw(service_method, body.into(), opts.codec(codec))
            .await
    }

    /// Pushes a body that is already encoded, as it is: the codec in `opts`
    /// (or the default) is only recorded in the message, for the receiver
    /// to decode with. For pass-through, such as a proxy.
    ///
    /// Errors: as [`Session::push_with`].
    pub async fn push_raw(
        &self,
        service_method: &str,
        body: Bytes,
        opts: PushOptions,
    ) -> Result<(), Status> {
        let config = &self.shared.ep.config;
        let deadline = deadline_after(opts.timeout.unwrap_or(config.default_timeout));
        let link = self.usable_link(deadline, service_method).await?;
        let mut header = Header::push(service_method);
        header.codec = opts.codec.unwrap_or(config.default_codec);
        header.meta = opts.meta;
        let mut msg = Message::new(header, body);
        self.plugins()
            .try_each(|p| p.before_write_push(self, &mut msg))?;
        link.send(&msg, deadline).await?;
        let header = &msg.header;
        self.plugins().each(|p| p.after_write_push(self, header));
        Ok(())
    }
}

/// A call's body: encoded already, or encoded in place into the batch by
/// `F` (generic, so the call's future is `Send` exactly when `F` is).
enum Body<F> {
    Bytes(Bytes),
    Encode(F),
}

/// The encoder type of a body that is already encoded.
type NoEncode = fn(&mut BytesMut) -> Result<(), ProtoError>;

/// The 400 for an argument the codec cannot encode.
fn arg_status(codec: CodecId, method: &str, e: CodecError) -> Status {
    Status::bad_message(format!(
        "cannot encode the argument of {method} as {codec}: {e}"
    ))
    .with_cause(e)
}

/// A filter still recorded once the hooks ran: a body nothing here can
/// read (a plugin such as drpc-plugins' `Compression` reverses filters).
pub(crate) fn unreversed_filters(header: &Header) -> Status {
    Status::bad_message(format!(
        "transfer filters {:?} are not supported by this endpoint",
        &header.filters[..]
    ))
}

/// One call this side makes, from its seq to its end. Its `Drop` frees the
/// seq however the call's future ends (an error, the deadline, or the
/// caller dropping it), and ends the plugins' state: first each scope, in
/// the order the plugins made them, then the endpoint's call-end hooks.
struct Call<'a> {
    session: &'a Session,
    link: &'a Arc<Link>,
    seq: u32,
    method: &'a str,
    /// When the call started, if any plugin will see how long it took.
    started: Option<tokio::time::Instant>,
    scopes: Vec<Box<dyn MadeCall>>,
    /// Whether the outcome was collected (the entry is then gone).
    collected: bool,
    /// Whether its frame was queued: the peer may be running it.
    sent: bool,
}

impl Call<'_> {
    /// Runs the end of the call once, with `status`.
    fn end(&mut self, status: Status) {
        let Some(started) = self.started.take() else {
            return;
        };
        let end = CallEnd {
            seq: self.seq,
            service_method: self.method,
            status: &status,
            elapsed: started.elapsed(),
        };
        for scope in std::mem::take(&mut self.scopes) {
            scope.end(&end);
        }
        let session = self.session;
        session.plugins().each(|p| p.after_call_end(session, &end));
    }
}

impl Drop for Call<'_> {
    fn drop(&mut self) {
        match (self.collected, self.sent) {
            (false, true) => self.link.cancel(self.seq),
            (false, false) => self.link.forget(self.seq),
            (true, _) => {}
        }
        if self.started.is_some() {
            self.end(Status::canceled("the caller stopped waiting for the call"));
        }
    }
}
