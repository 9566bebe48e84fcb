//! One HTTP request as a drpc call or push, and its reply as a response.

use crate::link::{Failure, Link, CONNECTION_CLOSED};
use bytes::Bytes;
use drpc_codec::CodecId;
use drpc_proto::{Header, Message, Meta, ProtoError};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue, ALLOW, CONNECTION, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

/// Headers named `Drpc-Meta-<key>` carry meta `<key>`, both ways.
pub const META_PREFIX: &str = "drpc-meta-";
/// The call's deadline, in whole milliseconds.
pub const TIMEOUT_HEADER: &str = "drpc-timeout";
/// `1` or `true`: send a push instead of a call.
pub const PUSH_HEADER: &str = "drpc-push";
/// On every response: the drpc status code (0 for success).
pub const STATUS_HEADER: &str = "drpc-status";
/// On a response whose body is in a codec without a media type: its id.
pub const CODEC_HEADER: &str = "drpc-codec";

/// The longest the gateway waits for a reply when the request names no
/// deadline; the endpoint answers 408 at its own default deadline long
/// before.
const WAIT_WITHOUT_DEADLINE: Duration = Duration::from_secs(600);

/// The HTTP status for a drpc status code.
///
/// | drpc code | HTTP status |
/// |---|---|
/// | 0 | 200 OK |
/// | 408 deadline exceeded | 504 Gateway Timeout |
/// | 400 to 499, 500 to 599 | the same number (404 → 404, 401 → 401, 413 → 413, 503 → 503, ...) |
/// | 100 to 199 (the connection closed, a write or dial failed) | 503 Service Unavailable |
/// | any other (-1 unknown, application codes from 1000) | 500 Internal Server Error |
///
/// ```
/// use drpc_gateway::http_status;
///
/// assert_eq!(http_status(404).as_u16(), 404);
/// assert_eq!(http_status(408).as_u16(), 504);
/// assert_eq!(http_status(102).as_u16(), 503);
/// assert_eq!(http_status(1001).as_u16(), 500);
/// ```
pub fn http_status(code: i32) -> StatusCode {
    match code {
        0 => StatusCode::OK,
        408 => StatusCode::GATEWAY_TIMEOUT,
        400..=599 => StatusCode::from_u16(code as u16).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        100..=199 => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Answers one request; every failure becomes an error response.
pub(crate) async fn handle(
    link: Arc<Link>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let answered = answer(&link, req).await;
    Ok(answered.unwrap_or_else(|f| error_response(f, link.refused().is_some())))
}

async fn answer(
    link: &Arc<Link>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Failure> {
    if req.method() != Method::POST {
        return Err(Failure::new(
            405,
            format!(
                "use POST: the path names the service method, the body is its argument (not {})",
                req.method()
            ),
        ));
    }
    let method = req.uri().path().to_string();
    let codec = request_codec(req.headers().get(CONTENT_TYPE))?;
    let (meta, timeout, push) = read_headers(req.headers())?;
    if let Some(why) = link.refused() {
        return Err(why);
    }
    let body = Limited::new(req.into_body(), link.max_frame_len)
        .collect()
        .await
        .map_err(
            |e| match e.downcast_ref::<http_body_util::LengthLimitError>() {
                Some(_) => Failure::new(
                    413,
                    format!(
                        "the body is over the frame limit of {} bytes",
                        link.max_frame_len
                    ),
                ),
                None => Failure::new(400, format!("the request body could not be read: {e}")),
            },
        )?
        .to_bytes();
    // The endpoint may have gone away while the body came in.
    if let Some(why) = link.refused() {
        return Err(why);
    }
    let mut header = if push {
        Header::push(method)
    } else {
        Header::call(0, method)
    };
    header.codec = codec;
    header.meta = meta;
    if push {
        link.send(&Message::new(header, body)).await?;
        return Ok(respond(StatusCode::ACCEPTED, 0, Full::default()));
    }
    header.timeout = timeout;
    header.seq = link.next_seq();
    let (_pending, reply) = link.expect(header.seq)?;
    link.send(&Message::new(header, body)).await?;
    let wait = timeout.map_or(WAIT_WITHOUT_DEADLINE, |t| t + Duration::from_secs(1));
    let reply = match tokio::time::timeout(wait, reply).await {
        Ok(Ok(reply)) => reply?,
        Ok(Err(_)) => {
            return Err(Failure::new(
                CONNECTION_CLOSED,
                "the session behind the gateway ended",
            ))
        }
        Err(_) => return Err(Failure::new(408, "no reply within the deadline")),
    };
    let h = &reply.header;
    if h.status_code != 0 {
        return Err(Failure::new(h.status_code, h.status_message.to_string()));
    }
    let mut response = respond(StatusCode::OK, 0, Full::new(reply.body.clone()));
    let headers = response.headers_mut();
    match media_type(h.codec) {
        Some(t) => headers.insert(CONTENT_TYPE, HeaderValue::from_static(t)),
        None => {
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            headers.insert(CODEC_HEADER, HeaderValue::from(u16::from(h.codec.as_u8())))
        }
    };
    for (key, value) in h.meta.iter() {
        // Meta that cannot be a header (a key with spaces, a value with
        // line breaks) stays behind rather than failing the reply.
        let name = HeaderName::try_from(format!("{META_PREFIX}{key}"));
        if let (Ok(name), Ok(value)) = (name, HeaderValue::from_str(value)) {
            headers.append(name, value);
        }
    }
    Ok(response)
}

/// The codec a request's `Content-Type` names.
fn request_codec(content_type: Option<&HeaderValue>) -> Result<CodecId, Failure> {
    let Some(value) = content_type else {
        return Ok(CodecId::JSON);
    };
    let text = value.to_str().unwrap_or("");
    let media = text
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    Ok(match media.as_str() {
        // curl -d sends its data as a form; what drpc reads there is JSON.
        "application/json" | "" | "application/x-www-form-urlencoded" => CodecId::JSON,
        "application/msgpack" | "application/x-msgpack" | "application/vnd.msgpack" => {
            CodecId::MSGPACK
        }
        "text/plain" => CodecId::TEXT,
        "application/octet-stream" => CodecId::RAW,
        "application/x-protobuf" | "application/protobuf" => CodecId::PROTOBUF,
        _ => {
            return Err(Failure::new(
                415,
                format!("Content-Type {text:?} names no codec; use application/json, application/msgpack, text/plain, application/octet-stream or application/x-protobuf"),
            ))
        }
    })
}

/// The media type of a reply's codec.
fn media_type(codec: CodecId) -> Option<&'static str> {
    Some(match codec {
        CodecId::JSON => "application/json",
        CodecId::MSGPACK => "application/msgpack",
        CodecId::TEXT => "text/plain; charset=utf-8",
        CodecId::RAW => "application/octet-stream",
        CodecId::PROTOBUF => "application/x-protobuf",
        _ => return None,
    })
}

/// Meta, the deadline and whether it is a push, from the headers.
fn read_headers(headers: &hyper::HeaderMap) -> Result<(Meta, Option<Duration>, bool), Failure> {
    let mut meta = Meta::default();
    for (name, value) in headers {
        if let Some(key) = name.as_str().strip_prefix(META_PREFIX) {
            let value = value.to_str().map_err(|_| {
                Failure::new(400, format!("header {name}: meta values are visible ASCII"))
            })?;
            meta.insert(key.to_string(), value.to_string());
        }
    }
    let timeout = match headers.get(TIMEOUT_HEADER) {
        None => None,
        Some(v) => {
            let ms = v.to_str().ok().and_then(|t| t.trim().parse::<u32>().ok());
            match ms {
                Some(ms) if ms > 0 => Some(Duration::from_millis(ms.into())),
                _ => {
                    return Err(Failure::new(
                        400,
                        format!(
                            "{TIMEOUT_HEADER} is a number of milliseconds from 1 to {}",
                            u32::MAX
                        ),
                    ))
                }
            }
        }
    };
    let push = match headers.get(PUSH_HEADER).map(|v| v.to_str().unwrap_or("")) {
        None | Some("0" | "false") => false,
        Some("1" | "true") => true,
        Some(other) => {
            return Err(Failure::new(
                400,
                format!("{PUSH_HEADER} is 1 or true, not {other:?}"),
            ))
        }
    };
    Ok((meta, timeout, push))
}

fn respond(status: StatusCode, code: i32, body: Full<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut()
        .insert(STATUS_HEADER, HeaderValue::from(code));
    r
}

/// The response for a failure: its HTTP status and a JSON body with the
/// drpc code and message; `close` once the session is over.
fn error_response(f: Failure, close: bool) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "code": f.code, "message": f.message });
    let mut r = respond(
        http_status(f.code),
        f.code,
        Full::new(Bytes::from(body.to_string())),
    );
    let headers = r.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if f.code == 405 {
        headers.insert(ALLOW, HeaderValue::from_static("POST"));
    }
    if close {
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
    }
    r
}

/// A frame the gateway could not encode, as a status.
pub(crate) fn encode_failure(e: ProtoError) -> Failure {
    match e {
        ProtoError::FrameTooLarge { len, max, .. } => Failure::new(
            413,
            format!("the request is {len} bytes as a frame, over the limit of {max}"),
        ),
        ProtoError::HeaderTooLarge { what, len, max, .. } => Failure::new(
            413,
            format!("the {what} is {len} bytes, over its limit of {max}"),
        ),
        e => Failure::new(400, e.to_string()),
    }
}

/// A reply that refuses a call with `code`.
pub(crate) fn error_reply(seq: u32, code: i32, message: &str) -> Message {
    let mut h = Header::reply(seq);
    h.status_code = code;
    h.status_message = message.into();
    Message::new(h, Bytes::new())
}
