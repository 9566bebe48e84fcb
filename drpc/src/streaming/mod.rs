//! Streams (docs/PROTOCOL.md section 3.4): calls that carry a sequence of
//! items besides their argument and reply, from the callee (a server
//! stream), from the caller (a client stream), or both (bidirectional).
//!
//! A caller opens one with [`Session::stream`], [`Session::client_stream`]
//! or [`Session::bidi_stream`]; a callee serves it with a handler from
//! [`Router::server_stream`](crate::Router::server_stream),
//! [`Router::client_stream`](crate::Router::client_stream) or
//! [`Router::bidi_stream`](crate::Router::bidi_stream). Either side reads
//! items as [`Items`] and sends them through an [`ItemSink`]; a client
//! stream's single answer is a [`StreamReply`]. Items go under credit: a
//! side that reads slowly holds its peer's sends back, so neither buffers
//! more than the window (256 items, 16 MiB, per direction).

mod call;
mod handlers;
mod items;
mod reply;
mod sink;

pub use items::Items;
pub use reply::StreamReply;
pub use sink::ItemSink;

use crate::core::conn::streams::{STREAM_KEY, WINDOW_KEY};
use crate::core::streams::{Role, Window};
use crate::runtime::link::Link;
use crate::session::calls::deadline_after;
use crate::session::Session;
use crate::values::{CallOptions, Config, Status, MAX_DEADLINE_AHEAD};
use call::{Hooks, StreamCall};
use drpc_proto::{Header, Message};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;

/// Which way a stream's items go: the value of `drpc-stream`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Server,
    Client,
    Bidi,
}

impl Kind {
    fn value(self) -> &'static str {
        match self {
            Kind::Server => "server",
            Kind::Client => "client",
            Kind::Bidi => "bidi",
        }
    }

    /// Whether the callee sends items.
    fn callee_sends(self) -> bool {
        self != Kind::Client
    }

    /// Whether the caller sends items.
    fn caller_sends(self) -> bool {
        self != Kind::Server
    }
}

/// The window a side grants a stream it reads: the default, or two frames
/// when the frame limit is larger, so any item fits in half of it (docs/
/// PROTOCOL.md 3.4: a grant comes once half is read).
fn receive_window(config: &Config) -> Window {
    Window {
        bytes: Window::DEFAULT.bytes.max(2 * config.max_frame_len as u64),
        ..Window::DEFAULT
    }
}

/// A stream call, as its sides see it once it is open: on the caller's
/// side, once its frame is queued.
struct Opened {
    link: Arc<Link>,
    seq: u32,
    deadline: Instant,
    codec: drpc_codec::CodecId,
    /// The caller's plugins, which see the call end.
    hooks: Option<Hooks>,
}

impl Session {
    /// Calls `service_method` as a server stream with `arg`: the callee's
    /// items arrive as [`Items`], then its reply ends them. The call's
    /// deadline (`opts`, or the endpoint's default of 30 s) bounds the
    /// whole stream, unless [`CallOptions::no_deadline`] says it has none;
    /// dropping the [`Items`] cancels the call at the peer.
    ///
    /// Errors: as [`Session::call_with`], for the call that opens it; 405
    /// when the peer did not say it takes streams (docs/PROTOCOL.md 3.2);
    /// 408 when the deadline passes before the peer said.
    ///
    /// Plugins see a stream as the call it is, from its open to its end:
    /// on this side `before_write_call` and `make_call` as it opens,
    /// `after_read_reply_header` for the reply that ends it, and
    /// `after_call_end` exactly once when it ends, however it ends; on the
    /// callee's, the hooks of a handled call (docs/PLUGINS.md).
    ///
    /// ```no_run
    /// # async fn demo(session: drpc::Session) -> Result<(), drpc::Status> {
    /// use drpc::CallOptions;
    ///
    /// let mut ticks = session.stream::<_, u64>("/ticks", &10u32, CallOptions::new()).await?;
    /// while let Some(tick) = ticks.next().await {
    ///     println!("tick {}", tick?);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn stream<A, T>(
        &self,
        service_method: &str,
        arg: &A,
        opts: CallOptions,
    ) -> Result<Items<T>, Status>
    where
        A: Serialize + ?Sized,
        T: DeserializeOwned,
    {
        let opened = self
            .open_stream(Kind::Server, service_method, arg, opts)
            .await?;
        Ok(Items::of_caller(self, StreamCall::new(opened)))
    }

    /// Calls `service_method` as a client stream with `arg`: this side
    /// sends items through the [`ItemSink`], ends them with
    /// [`ItemSink::end`], and the callee answers once with the
    /// [`StreamReply`]. Items go once the callee has started handling the
    /// call and granted credit. The call's deadline bounds the whole
    /// stream; dropping the [`StreamReply`] cancels the call at the peer,
    /// and dropping the sink without ending it fails this side's items
    /// (the callee reads 499).
    ///
    /// Errors: as [`Session::stream`].
    ///
    /// ```no_run
    /// # async fn demo(session: drpc::Session) -> Result<(), drpc::Status> {
    /// use drpc::CallOptions;
    ///
    /// let (mut sink, reply) = session
    ///     .client_stream::<_, u64, u64>("/sum", &(), CallOptions::new())
    ///     .await?;
    /// for n in 1..=10 {
    ///     sink.send(&n).await?;
    /// }
    /// sink.end();
    /// assert_eq!(reply.await?.value, 55);
    /// # Ok(()) }
    /// ```
    pub async fn client_stream<A, T, R>(
        &self,
        service_method: &str,
        arg: &A,
        opts: CallOptions,
    ) -> Result<(ItemSink<T>, StreamReply<R>), Status>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let opened = self
            .open_stream(Kind::Client, service_method, arg, opts)
            .await?;
        let sink = ItemSink::of_caller(self, &opened);
        let reply = StreamReply::new(self, StreamCall::new(opened), service_method);
        Ok((sink, reply))
    }

    /// Calls `service_method` as a bidirectional stream with `arg`: both
    /// sides send items, this one through the [`ItemSink`] (ended with
    /// [`ItemSink::end`]), the callee's arriving as [`Items`] until its
    /// reply ends the call. The two directions run independently, each
    /// under its own credit. Dropping the [`Items`] cancels the call at
    /// the peer.
    ///
    /// Errors: as [`Session::stream`].
    ///
    /// ```no_run
    /// # async fn demo(session: drpc::Session) -> Result<(), drpc::Status> {
    /// use drpc::CallOptions;
    ///
    /// let (mut sink, mut echoes) = session
    ///     .bidi_stream::<_, String, String>("/chat", &(), CallOptions::new())
    ///     .await?;
    /// sink.send(&"hello".to_string()).await?;
    /// println!("{:?}", echoes.next().await);
    /// sink.end();
    /// while let Some(echo) = echoes.next().await {
    ///     println!("{}", echo?);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn bidi_stream<A, T, U>(
        &self,
        service_method: &str,
        arg: &A,
        opts: CallOptions,
    ) -> Result<(ItemSink<T>, Items<U>), Status>
    where
        A: Serialize + ?Sized,
        U: DeserializeOwned,
    {
        let opened = self
            .open_stream(Kind::Bidi, service_method, arg, opts)
            .await?;
        let sink = ItemSink::of_caller(self, &opened);
        Ok((sink, Items::of_caller(self, StreamCall::new(opened))))
    }

    /// Opens a stream call of `kind`: its stream is open before its frame
    /// can go out.
    async fn open_stream<A: Serialize + ?Sized>(
        &self,
        kind: Kind,
        service_method: &str,
        arg: &A,
        opts: CallOptions,
    ) -> Result<Opened, Status> {
        let config = &self.shared.ep.config;
        let codec = opts.codec.unwrap_or(config.default_codec);
        let timeout = match opts.no_deadline {
            true => MAX_DEADLINE_AHEAD,
            false => opts.timeout.unwrap_or(config.default_timeout),
        };
        let deadline = deadline_after(timeout);
        // Opening it (a redial, the hello, room in the write queue) is
        // bounded by the default timeout when the stream itself has no
        // deadline.
        let open_by = match opts.no_deadline {
            true => deadline_after(config.default_timeout),
            false => deadline,
        };
        let body = config.codecs.encode(codec, arg).map_err(|e| {
            Status::bad_message(format!(
                "cannot encode the argument of {service_method} as {codec}: {e}"
            ))
        })?;
        let link = self.usable_link(open_by, service_method).await?;
        // A dialer learns what the peer takes from the answer to its hello.
        if link.core().hello_pending() {
            tokio::select! {
                _ = link.hello.cancelled() => {}
                _ = link.finished.cancelled() => {}
                _ = tokio::time::sleep_until(open_by.into()) => {
                    return Err(Status::deadline_exceeded(format!(
                        "{service_method}: the peer did not answer the hello within the deadline"
                    )));
                }
            }
        }
        if !link.core().streams_on() {
            return Err(Status::type_not_allowed(format!(
                "{service_method}: the peer did not say it takes streams (docs/PROTOCOL.md 3.2)"
            )));
        }
        let receive = kind.callee_sends().then(|| receive_window(config));
        let mut header = Header::call(0, service_method);
        header.codec = codec;
        // 0 on the wire: a stream with no deadline.
        header.timeout = (!opts.no_deadline).then_some(timeout);
        header.meta = opts.meta;
        header.meta.insert(STREAM_KEY, kind.value());
        if let Some(window) = receive {
            header.meta.insert(WINDOW_KEY, window.value().as_str());
        }
        let mut msg = Message::new(header, body);
        let sends = kind.caller_sends();
        if !self.plugins().is_empty() {
            let times = (deadline, open_by);
            return self.open_hooked(link, msg, times, receive, sends).await;
        }
        let seq = link
            .start_stream_call(&mut msg, (deadline, open_by), receive, sends)
            .await?;
        Ok(Opened {
            link,
            seq,
            deadline,
            codec,
            hooks: None,
        })
    }

    /// Opens a stream call as a plain call is made when the endpoint has
    /// plugins: its seq first, then their hooks on the message
    /// (`before_write_call`, `make_call`), then its stream and its frame.
    /// From the seq on, their `after_call_end` runs exactly once: when the
    /// stream ends, or here if it fails to open.
    async fn open_hooked(
        &self,
        link: Arc<Link>,
        mut msg: Message,
        (deadline, open_by): (Instant, Instant),
        receive: Option<Window>,
        sends: bool,
    ) -> Result<Opened, Status> {
        let seq = link.register_call(deadline);
        msg.header.seq = seq;
        let mut opening = Opening {
            link: link.clone(),
            seq,
            hooks: Some(Hooks {
                session: self.clone(),
                method: msg.header.service_method.to_string(),
                started: tokio::time::Instant::now(),
                scopes: Vec::new(),
            }),
        };
        let sent = async {
            for p in self.plugins().iter() {
                p.before_write_call(self, &mut msg)?;
                if let Some(scope) = p.make_call(self, &mut msg)? {
                    opening.scopes().push(scope);
                }
            }
            link.open_caller_stream(seq, receive, sends);
            link.send(&msg, open_by).await
        };
        if let Err(status) = sent.await {
            opening.fail(&status);
            return Err(status);
        }
        let hooks = opening.hooks.take();
        let header = &msg.header;
        self.plugins().each(|p| p.after_write_call(self, header));
        Ok(Opened {
            link,
            seq,
            deadline,
            codec: msg.header.codec,
            hooks,
        })
    }
}

/// A stream call with plugins until its frame is queued: if it fails, or
/// its caller stops waiting, its seq and stream are freed and the plugins
/// see it end.
struct Opening {
    link: Arc<Link>,
    seq: u32,
    hooks: Option<Hooks>,
}

impl Opening {
    fn scopes(&mut self) -> &mut Vec<Box<dyn crate::plugin::MadeCall>> {
        &mut self.hooks.as_mut().expect("kept until the end").scopes
    }

    fn fail(&mut self, status: &Status) {
        if let Some(hooks) = self.hooks.take() {
            self.link.close_stream(Role::Caller, self.seq);
            self.link.forget(self.seq);
            hooks.end(self.seq, status);
        }
    }
}

impl Drop for Opening {
    fn drop(&mut self) {
        self.fail(&Status::canceled(
            "the caller stopped waiting for the stream to open",
        ));
    }
}
