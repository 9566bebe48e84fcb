//! A control channel: an admin endpoint beside the endpoint it manages,
//! for operators and `drpc ctl`.

use crate::{Auth, RouteStats};
use drpc::{Addr, CallCtx, Endpoint, Health, Limits, Router, Status, ToAddr};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// The admin service's routes live under this prefix.
pub const ADMIN_PREFIX: &str = "/_drpc/admin";

/// Serves the control channel of an endpoint.
///
/// | route | argument | answer |
/// |---|---|---|
/// | `/_drpc/admin/stats` | nothing | [`Stats`]: sessions, calls running, health, limits |
/// | `/_drpc/admin/sessions` | nothing | a [`SessionInfo`] for each live session |
/// | `/_drpc/admin/limits` | a [`LimitsChange`] (fields left out stay) | the limits now in force |
/// | `/_drpc/admin/health` | `serving`, `draining` or `not_serving` | the health now |
/// | `/_drpc/admin/routes` | nothing | each call route's [`RouteFigures`](crate::RouteFigures), when a [`RouteStats`] was given ([`Admin::route_stats`]); else 404 |
/// | `/_drpc/admin/stop` | a grace in milliseconds, or nothing (the endpoint's close grace) | `stopping`; the endpoint shuts down gracefully, then the control channel closes |
/// | `/_drpc/admin/restart` | nothing | the new process's id, once it is ready (the endpoint and the channel then shut down); when a [`Restart`](drpc::restart::Restart) was given ([`Admin::restart`]); else 404 |
///
/// Its guard: on `unix://` (the default choice), the socket file's
/// permissions, set to `0600` (the process's user only); on any other
/// transport, a token every session must present (the [`Auth`] plugin's
/// `/_drpc/auth`, as `drpc ctl --token` does), without which listening is
/// refused.
///
/// ```no_run
/// # async fn demo(endpoint: drpc::Endpoint) -> Result<(), drpc::Status> {
/// use drpc_plugins::Admin;
///
/// let (admin, at) = Admin::new(&endpoint).listen("unix:///run/app/admin.sock").await?;
/// // drpc ctl unix:///run/app/admin.sock stats
/// # Ok(()) }
/// ```
pub struct Admin {
    target: Endpoint,
    token: Option<String>,
    routes: Option<Arc<RouteStats>>,
    #[cfg(unix)]
    restart: Option<drpc::restart::Restart>,
}

/// What `/_drpc/admin/stats` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Live sessions.
    pub sessions: usize,
    /// Calls whose handlers run now.
    pub calls_running: usize,
    /// What `/_drpc/health` answers.
    pub health: Health,
    /// The overload limits in force.
    pub limits: LimitsView,
}

/// The overload limits, as the control channel shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitsView {
    /// [`Limits::max_sessions`].
    pub max_sessions: usize,
    /// [`Limits::max_calls`].
    pub max_calls: usize,
    /// [`Limits::max_calls_per_session`].
    pub max_calls_per_session: usize,
    /// [`Limits::calls_per_second`]: the rate, if any.
    pub calls_per_second: Option<u32>,
}

/// A change of limits: each field given replaces that limit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitsChange {
    /// A new [`Limits::max_sessions`].
    pub max_sessions: Option<usize>,
    /// A new [`Limits::max_calls`].
    pub max_calls: Option<usize>,
    /// A new [`Limits::max_calls_per_session`].
    pub max_calls_per_session: Option<usize>,
}

/// One live session, as `/_drpc/admin/sessions` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// Its id.
    pub id: String,
    /// The other end's address.
    pub peer: String,
    /// This end's address.
    pub local: String,
    /// Whether this end dialed it.
    pub dialed: bool,
    /// Its state: `Active`, `Redialing`, ...
    pub state: String,
    /// Calls of its peer whose handlers run now.
    pub calls_running: usize,
    /// Its own calls waiting for replies.
    pub pending_calls: usize,
}

fn view(l: Limits) -> LimitsView {
    LimitsView {
        max_sessions: l.max_sessions,
        max_calls: l.max_calls,
        max_calls_per_session: l.max_calls_per_session,
        calls_per_second: l.calls_per_second.map(|r| r.per_second),
    }
}

impl Admin {
    /// The control channel of `target`.
    pub fn new(target: &Endpoint) -> Self {
        Self {
            target: target.clone(),
            token: None,
            routes: None,
            #[cfg(unix)]
            restart: None,
        }
    }

    /// Serves `/_drpc/admin/restart` with `restart`, and hands the
    /// channel's own listener on at each restart (so the successor's
    /// channel answers on the same socket).
    #[cfg(unix)]
    pub fn restart(mut self, restart: drpc::restart::Restart) -> Self {
        self.restart = Some(restart);
        self
    }

    /// Serves `/_drpc/admin/routes` from `stats`, a [`RouteStats`] plugin
    /// of the endpoint.
    pub fn route_stats(mut self, stats: Arc<RouteStats>) -> Self {
        self.routes = Some(stats);
        self
    }

    /// The token a session must present (required off `unix://`).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Starts the control channel on `addr`; returns its endpoint (close
    /// it to stop the channel alone) and the address it listens on.
    ///
    /// Errors: an address other than `unix://` without a token; the
    /// listen's own errors.
    pub async fn listen(self, addr: impl ToAddr) -> Result<(Endpoint, Addr), Status> {
        let addr = addr
            .to_addr()
            .map_err(|e| Status::internal(e.to_string()))?;
        let unix = addr.scheme().as_str() == "unix";
        if !unix && self.token.is_none() {
            return Err(Status::unauthorized(format!(
                "a control channel on {addr} needs a token (Admin::token); only unix:// is guarded by file permissions"
            )));
        }
        #[allow(unused_mut)]
        let mut config = drpc::Config::default();
        #[cfg(unix)]
        if let Some(restart) = &self.restart {
            restart.apply(&mut config);
        }
        let mut builder = Endpoint::builder().config(config).router(self.router()?);
        if let Some(token) = self.token {
            builder = builder.plugin(Auth::new().checker(move |_, presented: String| {
                let ok = presented == token;
                async move {
                    if ok {
                        Ok(())
                    } else {
                        Err("wrong admin token".to_string())
                    }
                }
            }));
        }
        let admin = builder.build()?;
        let bound = admin.listen(&addr).await?;
        #[cfg(unix)]
        if let Some(restart) = &self.restart {
            restart.serve(&admin);
        }
        if unix {
            restrict(bound.target()).map_err(|e| {
                Status::internal(format!("cannot restrict {bound} to this user: {e}"))
            })?;
        }
        Ok((admin, bound))
    }

    fn router(&self) -> Result<Router, Status> {
        let internal = |e: drpc::RouteError| Status::internal(e.to_string());
        let mut r = Router::new();
        let mut g = r.group(ADMIN_PREFIX);
        let t = self.target.clone();
        g.call("/stats", move |_: CallCtx, _: ()| {
            let t = t.clone();
            async move {
                Ok::<_, Status>(Stats {
                    sessions: t.session_count(),
                    calls_running: t.calls_running(),
                    health: t.health(),
                    limits: view(t.limits()),
                })
            }
        })
        .map_err(internal)?;
        let t = self.target.clone();
        g.call("/sessions", move |_: CallCtx, _: ()| {
            let t = t.clone();
            async move {
                let list: Vec<SessionInfo> = t
                    .sessions()
                    .iter()
                    .map(|s| SessionInfo {
                        id: s.id().to_string(),
                        peer: s.peer_addr().to_string(),
                        local: s.local_addr().to_string(),
                        dialed: s.is_dialed(),
                        state: format!("{:?}", s.state()),
                        calls_running: s.calls_running(),
                        pending_calls: s.pending_calls(),
                    })
                    .collect();
                Ok::<_, Status>(list)
            }
        })
        .map_err(internal)?;
        let t = self.target.clone();
        g.call("/limits", move |_: CallCtx, change: LimitsChange| {
            let t = t.clone();
            async move {
                let mut limits = t.limits();
                limits.max_sessions = change.max_sessions.unwrap_or(limits.max_sessions);
                limits.max_calls = change.max_calls.unwrap_or(limits.max_calls);
                limits.max_calls_per_session = change
                    .max_calls_per_session
                    .unwrap_or(limits.max_calls_per_session);
                t.set_limits(limits);
                Ok::<_, Status>(view(t.limits()))
            }
        })
        .map_err(internal)?;
        let t = self.target.clone();
        g.call("/health", move |_: CallCtx, health: Health| {
            let t = t.clone();
            async move {
                t.set_health(health);
                Ok::<_, Status>(t.health())
            }
        })
        .map_err(internal)?;
        if let Some(stats) = self.routes.clone() {
            g.call("/routes", move |_: CallCtx, _: ()| {
                let snapshot = stats.snapshot();
                async move { Ok::<_, Status>(snapshot) }
            })
            .map_err(internal)?;
        }
        let t = self.target.clone();
        g.call("/stop", move |ctx: CallCtx, grace_ms: Option<u64>| {
            let t = t.clone();
            async move {
                let admin = ctx.session().endpoint();
                tokio::spawn(async move {
                    match grace_ms {
                        Some(ms) => t.shutdown(Duration::from_millis(ms)).await,
                        None => t.close().await,
                    }
                    admin.close().await;
                });
                Ok::<_, Status>("stopping")
            }
        })
        .map_err(internal)?;
        #[cfg(unix)]
        if let Some(restart) = self.restart.clone() {
            g.call("/restart", move |_: CallCtx, _: ()| {
                let restart = restart.clone();
                async move {
                    restart.restart().await.map_err(|e| {
                        Status::internal(format!("restart failed; this process serves on: {e}"))
                    })
                }
            })
            .map_err(internal)?;
        }
        Ok(r)
    }
}

/// Only this process's user may connect to the socket file.
fn restrict(path: &str) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(())
    }
}
