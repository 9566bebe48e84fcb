//! Endpoints built from the connection options: certificates for tls://
//! and quic://, and the Auth plugin for --token.

use crate::args::Conn;
use drpc::socket::tls::{self, TlsConfig};
use drpc::{Config, Endpoint, EndpointBuilder, Router, Session};
use drpc_plugins::Auth;
use std::path::Path;
use std::time::Duration;

fn read(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read the {what} {}: {e}", path.display()))
}

/// The endpoint's configuration: certificates to dial with (`listen`
/// false) or to listen with.
fn config(conn: &Conn, listen: bool) -> Result<Config, String> {
    let mut config = Config::default();
    let identity = match (&conn.cert, &conn.key) {
        (Some(c), Some(k)) => Some((read(c, "certificate")?, read(k, "key")?)),
        _ => None,
    };
    let ca = conn.ca.as_deref().map(|p| read(p, "CA")).transpose()?;
    let secure = conn.url.starts_with("tls://") || conn.url.starts_with("quic://");
    let mut t = TlsConfig::default();
    if listen {
        if let Some((cert, key)) = &identity {
            t = t
                .with_server_pem(cert, key, ca.as_deref())
                .map_err(|e| format!("the server certificate: {e}"))?;
        } else if secure {
            return Err("listening on tls:// or quic:// needs --cert and --key".into());
        }
    } else if let Some(ca) = &ca {
        let id = identity.as_ref().map(|(c, k)| (c.as_slice(), k.as_slice()));
        t = t.with_client(tls::client_config(ca, id).map_err(|e| format!("the CA: {e}"))?);
    } else if secure {
        return Err("dialing tls:// or quic:// needs --ca, the roots to trust".into());
    }
    if let Some(name) = &conn.server_name {
        t = t.with_server_name(name.clone());
    }
    config.transport.tls = t;
    Ok(config)
}

/// A builder for an endpoint that listens.
pub fn listener(conn: &Conn, router: Router) -> Result<EndpointBuilder, String> {
    builder(conn, true, config(conn, true)?, router)
}

fn builder(
    conn: &Conn,
    listen: bool,
    config: Config,
    router: Router,
) -> Result<EndpointBuilder, String> {
    let mut builder = Endpoint::builder().config(config).router(router);
    if let Some(token) = &conn.token {
        let auth = if listen {
            let want = token.clone();
            Auth::new().checker(move |_, got: String| {
                let ok = got == want;
                async move {
                    if ok {
                        Ok(())
                    } else {
                        Err("wrong token".to_string())
                    }
                }
            })
        } else {
            Auth::new().credential(token.clone())
        };
        builder = builder.plugin(auth);
    }
    Ok(builder)
}

/// An endpoint that serves nothing, and `sessions` sessions to `conn.url`,
/// each dial given `timeout`.
pub async fn dial(
    conn: &Conn,
    sessions: usize,
    timeout: Duration,
) -> Result<(Endpoint, Vec<Session>), String> {
    let mut config = config(conn, false)?;
    config.dial_timeout = timeout;
    let endpoint = builder(conn, false, config, Router::new())?
        .build()
        .map_err(|e| format!("cannot build the endpoint: {e}"))?;
    let mut out = Vec::with_capacity(sessions);
    for _ in 0..sessions.max(1) {
        match endpoint.dial(conn.url.as_str()).await {
            Ok(s) => out.push(s),
            Err(status) => {
                endpoint.close().await;
                return Err(format!("cannot connect to {}: {status}", conn.url));
            }
        }
    }
    Ok((endpoint, out))
}
