//! Bodies between JSON (what a shell has) and each codec (what the wire
//! has).

use bytes::Bytes;
use drpc::CodecId;
use serde_json::Value;

/// Parses `json` (absent: null) and encodes it in `codec`.
pub fn encode(json: Option<&str>, codec: CodecId) -> Result<Bytes, String> {
    let value: Value = match json {
        None => Value::Null,
        Some(text) => serde_json::from_str(text)
            .map_err(|e| format!("the argument is not JSON ({e}): {text}"))?,
    };
    encode_value(&value, codec)
}

/// Encodes `value` in `codec`. The raw codec takes a string (its UTF-8
/// bytes), an array of byte values, or null (no bytes).
pub fn encode_value(value: &Value, codec: CodecId) -> Result<Bytes, String> {
    if codec == CodecId::RAW {
        return match value {
            Value::Null => Ok(Bytes::new()),
            Value::String(s) => Ok(Bytes::copy_from_slice(s.as_bytes())),
            Value::Array(items) => items
                .iter()
                .map(|v| v.as_u64().and_then(|b| u8::try_from(b).ok()))
                .collect::<Option<Vec<u8>>>()
                .map(Bytes::from)
                .ok_or_else(|| "a raw body is a string or an array of bytes (0 to 255)".into()),
            _ => Err("a raw body is a string or an array of bytes (0 to 255)".into()),
        };
    }
    codec
        .encode(value)
        .map(Bytes::from)
        .map_err(|e| format!("cannot encode the argument as {}: {e}", codec.name()))
}

/// `body` in `codec` as JSON: bytes that are not text become an array of
/// byte values, MessagePack map keys that are not strings their JSON text.
pub fn decode(body: &[u8], codec: CodecId) -> Result<Value, String> {
    match codec {
        CodecId::JSON if body.is_empty() => Ok(Value::Null),
        CodecId::JSON => {
            serde_json::from_slice(body).map_err(|e| format!("a JSON body that is not JSON: {e}"))
        }
        CodecId::MSGPACK if body.is_empty() => Ok(Value::Null),
        CodecId::MSGPACK => {
            let mut rest = body;
            let value = rmpv::decode::read_value(&mut rest)
                .map_err(|e| format!("a MessagePack body that is not MessagePack: {e}"))?;
            Ok(from_msgpack(value))
        }
        CodecId::TEXT => Ok(Value::String(String::from_utf8_lossy(body).into_owned())),
        // Raw bytes, and any body the tool has no codec for (protobuf,
        // an application's own): shown as bytes.
        _ => Ok(bytes_value(body)),
    }
}

fn bytes_value(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(text) => Value::String(text.to_string()),
        Err(_) => Value::Array(bytes.iter().map(|b| Value::from(*b)).collect()),
    }
}

fn from_msgpack(v: rmpv::Value) -> Value {
    use rmpv::Value as M;
    match v {
        M::Nil => Value::Null,
        M::Boolean(b) => Value::Bool(b),
        M::Integer(i) => match (i.as_u64(), i.as_i64()) {
            (Some(u), _) => Value::from(u),
            (_, Some(s)) => Value::from(s),
            _ => Value::Null,
        },
        M::F32(f) => Value::from(f64::from(f)),
        M::F64(f) => Value::from(f),
        M::String(s) => match s.into_str() {
            Some(s) => Value::String(s),
            None => Value::Null,
        },
        M::Binary(b) => Value::Array(b.into_iter().map(Value::from).collect()),
        M::Array(items) => Value::Array(items.into_iter().map(from_msgpack).collect()),
        M::Map(pairs) => Value::Object(
            pairs
                .into_iter()
                .map(|(k, v)| {
                    let key = match from_msgpack(k) {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (key, from_msgpack(v))
                })
                .collect(),
        ),
        M::Ext(kind, data) => serde_json::json!({ "ext": kind, "data": data }),
    }
}

/// `value` as the tool prints it.
pub fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_codec_round_trips_json() {
        let v = json!({"a": 1, "b": [true, null, "x"], "c": -2.5});
        for codec in [CodecId::MSGPACK, CodecId::JSON] {
            let bytes = encode_value(&v, codec).unwrap();
            assert_eq!(decode(&bytes, codec).unwrap(), v, "{codec:?}");
        }
        let text = encode_value(&json!("hello"), CodecId::TEXT).unwrap();
        assert_eq!(decode(&text, CodecId::TEXT).unwrap(), json!("hello"));
    }

    #[test]
    fn raw_bodies_are_text_or_bytes() {
        assert_eq!(
            &encode_value(&json!("hi"), CodecId::RAW).unwrap()[..],
            b"hi"
        );
        assert_eq!(
            &encode_value(&json!([0, 255]), CodecId::RAW).unwrap()[..],
            [0, 255]
        );
        assert!(encode_value(&json!([256]), CodecId::RAW).is_err());
        assert!(encode_value(&json!({"a": 1}), CodecId::RAW).is_err());
        assert_eq!(decode(&[0xff, 0], CodecId::RAW).unwrap(), json!([255, 0]));
    }

    #[test]
    fn msgpack_binary_and_odd_keys_still_show() {
        let mut buf = Vec::new();
        let v = rmpv::Value::Map(vec![(
            rmpv::Value::from(7),
            rmpv::Value::Binary(vec![1, 2]),
        )]);
        rmpv::encode::write_value(&mut buf, &v).unwrap();
        assert_eq!(
            decode(&buf, CodecId::MSGPACK).unwrap(),
            json!({"7": [1, 2]})
        );
    }

    #[test]
    fn an_argument_that_is_not_json_says_so() {
        let err = encode(Some("{a: 1}"), CodecId::MSGPACK).unwrap_err();
        assert!(err.contains("not JSON"), "{err}");
    }
}
