//! `drpc call` and `drpc push`.

use crate::args::{CallArgs, HealthArgs, Message};
use crate::{body, connect};
use drpc::{CallOptions, CodecId, PushOptions};

/// The options of a call made from `m`.
pub fn call_options(m: &Message) -> CallOptions {
    let mut opts = CallOptions::new().codec(m.codec.into()).timeout(m.timeout);
    for (k, v) in &m.meta {
        opts = opts.meta(k, v);
    }
    opts
}

/// Calls, prints the reply as pretty JSON; an error status is the error.
pub async fn call(args: CallArgs) -> Result<(), String> {
    let codec: CodecId = args.message.codec.into();
    let arg = body::encode(args.message.json.as_deref(), codec)?;
    let (endpoint, sessions) = connect::dial(&args.conn, 1, args.message.timeout).await?;
    let result = sessions[0]
        .call_raw(&args.message.method, arg, call_options(&args.message))
        .await;
    endpoint.close().await;
    let reply = result.map_err(|status| format!("{} failed: {status}", args.message.method))?;
    if args.verbose {
        eprintln!("reply codec: {}", reply.codec.name());
        for (k, v) in reply.meta.iter() {
            eprintln!("reply meta: {k}={v}");
        }
    }
    let shown = body::pretty(&body::decode(&reply.value, reply.codec)?);
    crate::out(&format!("{shown}\n"));
    Ok(())
}

/// Pushes; returns once the endpoint has written it and closed.
pub async fn push(args: CallArgs) -> Result<(), String> {
    let m = &args.message;
    let codec: CodecId = m.codec.into();
    let arg = body::encode(m.json.as_deref(), codec)?;
    let (endpoint, sessions) = connect::dial(&args.conn, 1, args.message.timeout).await?;
    let mut opts = PushOptions::new().codec(codec).timeout(m.timeout);
    for (k, v) in &m.meta {
        opts = opts.meta(k, v);
    }
    let result = sessions[0].push_raw(&m.method, arg, opts).await;
    // Closing is graceful: what is queued is written before the end.
    endpoint.close().await;
    result.map_err(|status| format!("push to {} failed: {status}", m.method))
}

/// Asks `/_drpc/health`; prints the answer, and fails unless `serving`.
pub async fn health(args: HealthArgs) -> Result<(), String> {
    let (endpoint, sessions) = connect::dial(&args.conn, 1, args.timeout).await?;
    let result = sessions[0]
        .call_with::<_, String>(
            drpc::HEALTH_METHOD,
            &(),
            CallOptions::new().timeout(args.timeout),
        )
        .await;
    endpoint.close().await;
    let health = result.map_err(|status| format!("{} failed: {status}", drpc::HEALTH_METHOD))?;
    crate::out(&format!("{}\n", health.value));
    match health.value.as_str() {
        "serving" => Ok(()),
        other => Err(format!("{} is {other}", args.conn.url)),
    }
}
