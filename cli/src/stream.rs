//! `drpc stream`: a stream's items as lines of JSON, either way.

use crate::args::{StreamArgs, StreamKind};
use crate::{body, call, connect};
use drpc::{CodecId, ItemSink, Items, Status};
use tokio::io::{AsyncBufReadExt, BufReader};

/// The argument, as the session's codec encodes it to the bytes
/// `body::encode` makes of the JSON given.
#[derive(serde::Serialize)]
#[serde(untagged)]
enum Arg {
    Value(serde_json::Value),
    Bytes(drpc::Blob),
    Text(String),
}

fn argument(json: Option<&str>, codec: CodecId) -> Result<Arg, String> {
    // Checked (and, for raw and text, made) as a call's argument is.
    let bytes = body::encode(json, codec)?;
    Ok(match codec {
        CodecId::RAW => Arg::Bytes(drpc::Blob(bytes)),
        CodecId::TEXT => Arg::Text(String::from_utf8_lossy(&bytes).into_owned()),
        _ => Arg::Value(match json {
            Some(text) => serde_json::from_str(text).map_err(|e| e.to_string())?,
            None => serde_json::Value::Null,
        }),
    })
}

/// Opens the stream; prints what comes, sends what standard input holds.
pub async fn stream(args: StreamArgs) -> Result<(), String> {
    let m = &args.message;
    let codec: CodecId = m.codec.into();
    let arg = argument(m.json.as_deref(), codec)?;
    let mut opts = call::call_options(m);
    if args.no_deadline {
        opts = opts.no_deadline();
    }
    let (endpoint, sessions) = connect::dial(&args.conn, 1, m.timeout).await?;
    let session = &sessions[0];
    let result = match args.kind {
        StreamKind::Server => match session.stream::<_, ()>(&m.method, &arg, opts).await {
            Ok(items) => print_items(items, args.verbose).await,
            Err(status) => Err(status),
        },
        StreamKind::Client => client(session, &m.method, &arg, opts, codec, args.verbose).await,
        StreamKind::Bidi => match session
            .bidi_stream::<_, (), ()>(&m.method, &arg, opts)
            .await
        {
            Ok((sink, items)) => {
                // The endpoint's reply ends the stream: what standard
                // input still holds is not sent.
                let sending = send_lines(sink, codec);
                let printing = print_items(items, args.verbose);
                tokio::pin!(sending, printing);
                tokio::select! {
                    biased;
                    printed = &mut printing => printed,
                    sent = &mut sending => match sent {
                        Err(status) if status.code() != drpc::Code::CONNECTION_CLOSED => Err(status),
                        _ => printing.await,
                    },
                }
            }
            Err(status) => Err(status),
        },
    };
    endpoint.close().await;
    result.map_err(|status| format!("the stream of {} failed: {status}", m.method))
}

async fn client(
    session: &drpc::Session,
    method: &str,
    arg: &Arg,
    opts: drpc::CallOptions,
    codec: CodecId,
    verbose: bool,
) -> Result<(), Status> {
    let (sink, reply) = session
        .client_stream::<_, (), ()>(method, arg, opts)
        .await?;
    // An endpoint may answer before it has read every item: its answer
    // says how it went.
    let sending = send_lines(sink, codec);
    let reply = reply.raw();
    tokio::pin!(sending, reply);
    let reply = tokio::select! {
        biased;
        reply = &mut reply => reply,
        sent = &mut sending => match sent {
            Err(status) if status.code() != drpc::Code::CONNECTION_CLOSED => return Err(status),
            // Sent, or over because the answer came.
            _ => reply.await,
        },
    };
    let reply = reply?;
    if verbose {
        show_meta(&reply.meta);
    }
    let shown = body::decode(&reply.value, reply.codec).map_err(Status::bad_message)?;
    crate::out(&format!("{}\n", body::pretty(&shown)));
    Ok(())
}

/// Prints each item as one line of JSON, as it comes.
async fn print_items(mut items: Items<()>, verbose: bool) -> Result<(), Status> {
    while let Some(item) = items.next_raw().await {
        let (codec, bytes) = item?;
        let value = body::decode(&bytes, codec).map_err(Status::bad_message)?;
        crate::out(&format!("{value}\n"));
    }
    if let (true, Some(meta)) = (verbose, items.trailers()) {
        show_meta(meta);
    }
    Ok(())
}

/// Sends each line of standard input (a JSON value; blank lines are
/// skipped) as an item, then ends the stream; a line that is not JSON
/// fails it.
async fn send_lines(mut sink: ItemSink<()>, codec: CodecId) -> Result<(), Status> {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        let line = match lines.next_line().await {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(e) => {
                let status = Status::internal(format!("cannot read standard input: {e}"));
                sink.fail(status.clone());
                return Err(status);
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        match body::encode(Some(&line), codec) {
            Ok(bytes) => sink.send_raw(bytes).await?,
            Err(e) => {
                let status = Status::bad_message(e);
                sink.fail(status.clone());
                return Err(status);
            }
        }
    }
    sink.end();
    Ok(())
}

fn show_meta(meta: &drpc::proto::Meta) {
    for (k, v) in meta.iter() {
        eprintln!("reply meta: {k}={v}");
    }
}
