//! Authentication when a session connects: the dialer presents a
//! credential, the acceptor checks it before any handler of the session
//! runs.

use drpc::plugin::BoxFuture;
use drpc::{CallOptions, Code, CodecId, Plugin, Session, Status};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// The service method the credential is presented to (docs/PROTOCOL.md,
/// section 10).
pub const AUTH_METHOD: &str = "/_drpc/auth";

type Presenter = Arc<dyn Fn(Session) -> BoxFuture<'static, Result<String, Status>> + Send + Sync>;
type Checker = Arc<dyn Fn(Session, String) -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// Authentication of sessions when they connect.
///
/// - **Dialer** ([`Auth::credential`] or [`Auth::credential_with`]): every
///   dialed session, and every redial of it, presents the credential in its
///   `after_dial` hook, before the session is handed to anyone; a refusal
///   fails the dial with the acceptor's 401 and its reason.
/// - **Acceptor** ([`Auth::checker`]): every accepted session waits for the
///   credential, up to [`Auth::timeout`], and hands it to the checker. Until
///   the checker accepts, no handler of the session runs: the calls the peer
///   sends meanwhile are held, and are answered with 401 if the peer is
///   refused, after which the session is closed. On success the checker's
///   identity is stored on the session as [`Authenticated<T>`], for
///   handlers to read.
///
/// The credential travels in the clear as the body of a call (see
/// docs/PROTOCOL.md, section 10.1): dial `tls://` or `quic://` wherever the
/// network is not trusted, so it reaches only the server you meant.
///
/// One endpoint may do both: its dialed sessions present, its accepted ones
/// check. A dialer whose peer does not check (it has no `Auth`) carries on:
/// the peer answers the credential with 404.
///
/// ```
/// use drpc::{CallCtx, Endpoint, Router, Status};
/// use drpc_plugins::{Auth, Authenticated};
///
/// #[derive(Clone)]
/// struct User(String);
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut routes = Router::new();
/// routes.call("/whoami", |ctx: CallCtx, _: ()| async move {
///     let user = ctx.session().value::<Authenticated<User>>().expect("checked");
///     Ok::<_, Status>(user.0 .0)
/// })?;
/// let server = Endpoint::builder()
///     .router(routes)
///     .plugin(Auth::new().checker(|_session, token: String| async move {
///         match token.as_str() {
///             "alice-token" => Ok(User("alice".into())),
///             _ => Err("unknown token".to_string()),
///         }
///     }))
///     .build()?;
/// let addr = server.listen("tcp://127.0.0.1:0").await?;
///
/// let alice = Endpoint::builder()
///     .plugin(Auth::new().credential("alice-token"))
///     .build()?;
/// let session = alice.dial(&addr).await?;
/// let me: String = session.call("/whoami", &()).await?;
/// assert_eq!(me, "alice");
///
/// let mallory = Endpoint::builder()
///     .plugin(Auth::new().credential("guess"))
///     .build()?;
/// let refused = mallory.dial(&addr).await.unwrap_err();
/// assert_eq!(refused.code(), drpc::Code::UNAUTHORIZED);
/// assert!(refused.message().contains("unknown token"));
/// # alice.close().await; mallory.close().await; server.close().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Auth {
    presenter: Option<Presenter>,
    checker: Option<Checker>,
    timeout: Duration,
}

/// The identity an [`Auth`] checker returned for a session, stored on the
/// session: `ctx.session().value::<Authenticated<T>>()` in a handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated<T>(pub T);

impl<T> std::ops::Deref for Authenticated<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl Default for Auth {
    fn default() -> Self {
        Self::new()
    }
}

impl Auth {
    /// An `Auth` that neither presents nor checks; add
    /// [`Auth::credential`] and/or [`Auth::checker`]. The timeout is 10 s.
    pub fn new() -> Self {
        Self {
            presenter: None,
            checker: None,
            timeout: Duration::from_secs(10),
        }
    }

    /// Dialed sessions present `credential` (a token, say) when they
    /// connect and on every redial.
    pub fn credential(self, credential: impl Into<String>) -> Self {
        let credential: String = credential.into();
        self.credential_with(move |_| {
            let c = credential.clone();
            async move { Ok(c) }
        })
    }

    /// Dialed sessions present the credential `make` returns, asked for
    /// afresh on each dial and redial (for short-lived tokens). An error
    /// from it fails the dial with that status.
    pub fn credential_with<F, Fut>(mut self, make: F) -> Self
    where
        F: Fn(Session) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, Status>> + Send + 'static,
    {
        self.presenter = Some(Arc::new(move |s| Box::pin(make(s))));
        self
    }

    /// Accepted sessions must present a credential that `check` accepts.
    /// It gets the session (for its peer address, say) and the credential,
    /// and returns the peer's identity, which is stored on the session as
    /// [`Authenticated<T>`], or the reason for refusing, which the peer
    /// gets with 401.
    pub fn checker<T, F, Fut>(mut self, check: F) -> Self
    where
        T: Send + Sync + 'static,
        F: Fn(Session, String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, String>> + Send + 'static,
    {
        let check = Arc::new(check);
        self.checker = Some(Arc::new(move |session: Session, credential| {
            let check = check.clone();
            Box::pin(async move {
                let identity = check(session.clone(), credential).await?;
                session.set_value(Authenticated(identity));
                Ok(())
            })
        }));
        self
    }

    /// How long an acceptor waits for the credential and its check, and a
    /// dialer for the answer (default 10 s). Past it the acceptor refuses
    /// the session with 401, and the dial fails with 408.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    async fn present(&self, presenter: &Presenter, session: &Session) -> Result<(), Status> {
        let credential = presenter(session.clone()).await?;
        let opts = CallOptions::new()
            .codec(CodecId::TEXT)
            .timeout(self.timeout);
        match session
            .call_raw(AUTH_METHOD, credential.into_bytes().into(), opts)
            .await
        {
            Ok(_) => Ok(()),
            Err(status) if status.code() == Code::NOT_FOUND => {
                tracing::debug!(session = %session.id(), "the peer does not check credentials");
                Ok(())
            }
            Err(status) => Err(status),
        }
    }

    async fn check(&self, checker: &Checker, session: &Session) -> Result<(), Status> {
        let presented = session
            .take_handshake(AUTH_METHOD, self.timeout)
            .await
            .map_err(|e| match e.code() {
                Code::DEADLINE_EXCEEDED => Status::unauthorized(format!(
                    "no credential was presented within {:?}",
                    self.timeout
                )),
                _ => e,
            })?;
        let verdict = match std::str::from_utf8(presented.body()) {
            Err(_) => Err("the credential is not UTF-8 text".to_string()),
            Ok(credential) => {
                match tokio::time::timeout(
                    self.timeout,
                    checker(session.clone(), credential.to_string()),
                )
                .await
                {
                    Ok(verdict) => verdict,
                    Err(_) => Err(format!(
                        "the credential could not be checked within {:?}",
                        self.timeout
                    )),
                }
            }
        };
        match verdict {
            Ok(()) => {
                presented.reply_raw(Ok(bytes::Bytes::new()), Default::default());
                Ok(())
            }
            Err(reason) => {
                let refusal = Status::unauthorized(reason);
                tracing::info!(session = %session.id(), peer = %session.peer_addr(), %refusal, "credential refused");
                presented.reply_raw(Err(refusal.clone()), Default::default());
                Err(refusal)
            }
        }
    }
}

impl Plugin for Auth {
    fn name(&self) -> &str {
        "auth"
    }

    fn after_dial<'a>(
        &'a self,
        session: &'a Session,
        _is_redial: bool,
    ) -> BoxFuture<'a, Result<(), Status>> {
        Box::pin(async move {
            match &self.presenter {
                Some(presenter) => self.present(presenter, session).await,
                None => Ok(()),
            }
        })
    }

    fn after_accept<'a>(&'a self, session: &'a Session) -> BoxFuture<'a, Result<(), Status>> {
        Box::pin(async move {
            match &self.checker {
                Some(checker) => self.check(checker, session).await,
                None => Ok(()),
            }
        })
    }
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("presents", &self.presenter.is_some())
            .field("checks", &self.checker.is_some())
            .field("timeout", &self.timeout)
            .finish()
    }
}
