//! Forwarding unknown calls and pushes to another endpoint.

use drpc::{CallCtx, CallOptions, PushCtx, PushOptions, RouteError, Router, Session};

/// Forwards every call and push the router has no route for to an upstream
/// session, and passes the answer back unchanged: body, codec, meta, and an
/// error's status code and message. The deadline goes along: the upstream
/// call gets what is left of the caller's. So does a cancel: when the
/// caller gives up (docs/PROTOCOL.md section 3.3), the forwarding handler
/// is dropped, and with it the upstream call, which the upstream is told
/// to stop.
///
/// It installs the router's fallbacks, so the router's own routes still
/// answer first. The upstream is any session, usually a dialed one (which
/// redials if its connection drops).
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use drpc::{Endpoint, Router};
/// use drpc_plugins::Proxy;
///
/// let upstream = Endpoint::builder().build()?.dial("tcp://10.0.0.5:9090").await?;
/// let mut router = Router::new();
/// Proxy::new(upstream).install(&mut router)?;
/// let gateway = Endpoint::builder().router(router).build()?;
/// gateway.listen("tcp://0.0.0.0:9090").await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Proxy {
    upstream: Session,
}

impl Proxy {
    /// Forwards to `upstream`.
    pub fn new(upstream: Session) -> Self {
        Self { upstream }
    }

    /// Sets `router`'s call and push fallbacks to forward. Fails if the
    /// router already has fallbacks.
    pub fn install(self, router: &mut Router) -> Result<(), RouteError> {
        let up = self.upstream.clone();
        router.call_fallback_raw(move |ctx: CallCtx| {
            let up = up.clone();
            async move {
                let mut opts = CallOptions::new()
                    .codec(ctx.codec())
                    .timeout(ctx.remaining());
                for (k, v) in ctx.meta().iter() {
                    opts = opts.meta(k, v);
                }
                // Passed on as it came: a 102 the upstream did not run
                // stays 102 for the caller, who may try elsewhere.
                let reply = up
                    .call_raw(ctx.service_method(), ctx.body().clone(), opts)
                    .await
                    .map_err(drpc::Status::passed_on)?;
                ctx.set_reply_codec(reply.codec);
                for (k, v) in reply.meta.iter() {
                    ctx.set_reply_meta(k, v);
                }
                Ok(reply.value)
            }
        })?;
        let up = self.upstream;
        router.push_fallback(move |ctx: PushCtx| {
            let up = up.clone();
            async move {
                let mut opts = PushOptions::new().codec(ctx.codec());
                for (k, v) in ctx.meta().iter() {
                    opts = opts.meta(k, v);
                }
                if let Err(status) = up
                    .push_raw(ctx.service_method(), ctx.body().clone(), opts)
                    .await
                {
                    // A push has no one to answer to; a failed forward is
                    // only worth a log line.
                    tracing::warn!(method = ctx.service_method(), %status, "proxy could not forward a push");
                }
            }
        })?;
        Ok(())
    }
}
