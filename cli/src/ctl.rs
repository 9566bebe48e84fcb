//! `drpc ctl`: the control channel of a running endpoint.

use crate::args::{CtlAction, CtlArgs};
use crate::{body, connect};
use drpc::{CallOptions, CodecId};
use serde_json::{json, Map, Value};

/// The least a restart is waited for.
const RESTART_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// The route and argument of an action.
fn request(action: CtlAction, args: &[String]) -> Result<(&'static str, Value), String> {
    Ok(match action {
        CtlAction::Stats => ("/_drpc/admin/stats", Value::Null),
        CtlAction::Sessions => ("/_drpc/admin/sessions", Value::Null),
        CtlAction::Routes => ("/_drpc/admin/routes", Value::Null),
        CtlAction::Limits => {
            let mut change = Map::new();
            for arg in args {
                let (key, value) = arg
                    .split_once('=')
                    .ok_or_else(|| format!("{arg:?}: limits are given as key=value"))?;
                if !["max_sessions", "max_calls", "max_calls_per_session"].contains(&key) {
                    return Err(format!(
                        "{key:?} is not a limit: max_sessions, max_calls or max_calls_per_session"
                    ));
                }
                let n: u64 = value
                    .parse()
                    .map_err(|_| format!("{key}={value}: a limit is a whole number"))?;
                change.insert(key.to_string(), json!(n));
            }
            ("/_drpc/admin/limits", Value::Object(change))
        }
        CtlAction::Health => match args {
            [h] if ["serving", "not_serving", "draining"].contains(&h.as_str()) => {
                ("/_drpc/admin/health", json!(h))
            }
            _ => return Err("health takes one of serving, not_serving".to_string()),
        },
        CtlAction::Stop => match args {
            [] => ("/_drpc/admin/stop", Value::Null),
            [grace] => {
                let grace = humantime::parse_duration(grace)
                    .map_err(|e| format!("{grace:?} is not a duration: {e}"))?;
                ("/_drpc/admin/stop", json!(grace.as_millis() as u64))
            }
            _ => return Err("stop takes at most a grace, as 5s".to_string()),
        },
        CtlAction::Restart => match args {
            [] => ("/_drpc/admin/restart", Value::Null),
            _ => return Err("restart takes no arguments".to_string()),
        },
    })
}

/// Runs the action and prints the answer as pretty JSON.
pub async fn ctl(args: CtlArgs) -> Result<(), String> {
    let (method, arg) = request(args.action, &args.args)?;
    let arg = body::encode_value(&arg, CodecId::MSGPACK)?;
    let (endpoint, sessions) = connect::dial(&args.conn, 1, args.timeout).await?;
    // A restart answers once the new process is ready, which may take a
    // while (its ready timeout is 30 s by default).
    let timeout = match args.action {
        CtlAction::Restart => args.timeout.max(RESTART_WAIT),
        _ => args.timeout,
    };
    let opts = CallOptions::new().codec(CodecId::MSGPACK).timeout(timeout);
    let result = sessions[0].call_raw(method, arg, opts).await;
    endpoint.close().await;
    let reply = result.map_err(|status| format!("{method} failed: {status}"))?;
    let shown = body::pretty(&body::decode(&reply.value, reply.codec)?);
    crate::out(&format!("{shown}\n"));
    Ok(())
}
