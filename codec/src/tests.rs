use super::*;
use bytes::Bytes;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Add {
    a: i64,
    b: i64,
}

#[test]
fn every_codec_round_trips_what_it_carries() {
    for codec in [CodecId::MSGPACK, CodecId::JSON] {
        let v = Add { a: 1, b: -2 };
        let bytes = codec.encode(&v).unwrap();
        assert_eq!(codec.decode::<Add>(&bytes).unwrap(), v, "{codec}");
    }
    for codec in CodecId::ALL {
        let bytes = codec.encode("héllo").unwrap();
        assert_eq!(codec.decode::<String>(&bytes).unwrap(), "héllo", "{codec}");
    }
}

#[test]
fn msgpack_encodes_structs_as_maps() {
    let bytes = CodecId::MSGPACK.encode(&Add { a: 1, b: 2 }).unwrap();
    // fixmap of 2, "a", 1, "b", 2
    assert_eq!(bytes, [0x82, 0xa1, b'a', 0x01, 0xa1, b'b', 0x02]);
    let as_map: BTreeMap<String, i64> = CodecId::MSGPACK.decode(&bytes).unwrap();
    assert_eq!(as_map["b"], 2);
}

#[test]
fn raw_carries_bytes_unchanged() {
    let payload: Vec<u8> = (0..=255).collect();
    assert_eq!(CodecId::RAW.encode(&payload).unwrap(), payload);
    assert_eq!(
        CodecId::RAW.encode(&Bytes::from(payload.clone())).unwrap(),
        payload
    );
    assert_eq!(
        CodecId::RAW
            .encode(&serde_bytes::ByteBuf::from(payload.clone()))
            .unwrap(),
        payload
    );
    assert_eq!(CodecId::RAW.decode::<Vec<u8>>(&payload).unwrap(), payload);
    assert_eq!(CodecId::RAW.decode::<Bytes>(&payload).unwrap(), payload);
    assert_eq!(
        CodecId::RAW
            .decode::<serde_bytes::ByteBuf>(&payload)
            .unwrap()
            .into_vec(),
        payload
    );
    assert!(CodecId::RAW.encode(&()).unwrap().is_empty());
    CodecId::RAW.decode::<()>(b"").unwrap();
}

#[test]
fn raw_refuses_values_that_are_not_bytes() {
    let err = CodecId::RAW.encode(&Add { a: 1, b: 2 }).unwrap_err();
    assert!(err.to_string().contains("not a struct"), "{err}");
    let err = CodecId::RAW.encode(&vec![1u32, 2]).unwrap_err();
    assert!(err.to_string().contains("u32"), "{err}");
    assert!(CodecId::RAW.decode::<String>(&[0xff, 0xfe]).is_err());
    assert!(CodecId::RAW.decode::<()>(b"x").is_err());
}

#[test]
fn text_writes_scalars_as_text() {
    assert_eq!(CodecId::TEXT.encode(&42i64).unwrap(), b"42");
    assert_eq!(CodecId::TEXT.decode::<i64>(b"-7").unwrap(), -7);
    assert_eq!(CodecId::TEXT.encode(&true).unwrap(), b"true");
    assert!(CodecId::TEXT.encode(&Add { a: 1, b: 2 }).is_err());
    assert!(CodecId::TEXT.decode::<String>(&[0xff]).is_err());
}

#[test]
fn codec_ids_are_stable() {
    let ids: Vec<u8> = CodecId::ALL.iter().map(|c| c.as_u8()).collect();
    assert_eq!(ids, [1, 2, 3, 4]);
    for c in CodecId::ALL {
        assert_eq!(CodecId::from_u8(c.as_u8()), Some(c));
        assert_eq!(c.name().parse::<CodecId>().unwrap(), c);
    }
    assert_eq!(CodecId::from_u8(0), None);
    assert_eq!(CodecId::PROTOBUF.as_u8(), 5);
    assert_eq!("protobuf".parse::<CodecId>().unwrap(), CodecId::PROTOBUF);
    assert_eq!("200".parse::<CodecId>().unwrap().as_u8(), 200);
    assert_eq!(CodecId::from_u8(200).unwrap().to_string(), "codec 200");
}

#[test]
fn a_registry_refuses_drpc_ids_and_names_what_it_knows() {
    let mut codecs = Codecs::new();
    assert!(codecs.register(CodecId::JSON, Reversed).is_err());
    assert!(codecs
        .register(CodecId::from_u8(100).unwrap(), Reversed)
        .is_err());
    let id = CodecId::custom(150).unwrap();
    assert!(!codecs.knows(id));
    let err = codecs.encode(id, &"x").unwrap_err().to_string();
    assert!(err.contains("codec 150 is not known here"), "{err}");
    assert!(err.contains("msgpack (1)"), "{err}");
    assert!(!codecs.register(id, Reversed).unwrap());
    assert!(codecs.knows(id) && codecs.knows(CodecId::MSGPACK));
    assert!(codecs.describe().contains("reversed-json (150)"));
    // Built-in ids still go to the built-in codecs.
    assert_eq!(codecs.encode(CodecId::JSON, &[1]).unwrap(), b"[1]");
    let bytes = codecs.encode(id, &"abc").unwrap();
    assert_eq!(bytes, br#""cba""#);
    let back: String = codecs.decode(id, &bytes).unwrap();
    assert_eq!(back, "abc");
}

/// JSON written backwards: a codec no built-in could pass for.
struct Reversed;

impl DynCodec for Reversed {
    fn name(&self) -> &str {
        "reversed-json"
    }

    fn encode(
        &self,
        value: &dyn erased_serde::Serialize,
        out: &mut dyn std::io::Write,
    ) -> Result<(), CodecError> {
        let mut json = serde_json::to_vec(value).map_err(|e| CodecError::new("reversed", e))?;
        json.reverse();
        out.write_all(&json)
            .map_err(|e| CodecError::new("reversed", e))
    }

    fn decode<'de>(
        &self,
        bytes: &'de [u8],
        visit: ErasedDecode<'_, 'de>,
    ) -> Result<(), CodecError> {
        let json: Vec<u8> = bytes.iter().rev().copied().collect();
        let mut de = serde_json::Deserializer::from_reader(json.as_slice());
        visit(&mut <dyn erased_serde::Deserializer>::erase(&mut de))
            .map_err(|e| CodecError::new("reversed", e))
    }
}

#[test]
fn blobs_decode_as_slices_of_the_body_in_every_codec_that_can() {
    #[derive(Serialize, Deserialize)]
    struct Upload {
        name: String,
        data: Blob,
    }
    let data = Blob::from(vec![9u8; 300]);
    let v = Upload {
        name: "f".into(),
        data: data.clone(),
    };
    let body = Bytes::from(CodecId::MSGPACK.encode(&v).unwrap());
    let back: Upload = CodecId::MSGPACK.decode_shared(&body).unwrap();
    assert_eq!(back.data, data);
    assert!(
        body.as_ptr_range().contains(&back.data.as_ptr()),
        "a field is a slice too"
    );
    // Without the body to slice, it is a copy.
    let copied: Upload = CodecId::MSGPACK.decode(&body).unwrap();
    assert!(!body.as_ptr_range().contains(&copied.data.as_ptr()));

    let raw = Bytes::from(CodecId::RAW.encode(&data).unwrap());
    let back: Blob = CodecId::RAW.decode_shared(&raw).unwrap();
    assert_eq!(back.as_ptr(), raw.as_ptr());

    // JSON carries it as a list of numbers, decoded into a copy.
    let json = Bytes::from(CodecId::JSON.encode(&Blob::from(&b"hi"[..])).unwrap());
    assert_eq!(&json[..], b"[104,105]");
    let back: Blob = CodecId::JSON.decode_shared(&json).unwrap();
    assert_eq!(&back[..], b"hi");
}

#[test]
fn a_nested_decode_restores_the_outer_source() {
    #[derive(Deserialize)]
    struct Outer {
        inner: Blob,
        tail: Blob,
    }
    let inner_body = Bytes::from(CodecId::MSGPACK.encode(&Blob::from(vec![1u8; 8])).unwrap());
    let outer = Bytes::from(
        CodecId::MSGPACK
            .encode(&(Blob(inner_body.clone()), Blob::from(vec![2u8; 8])))
            .unwrap(),
    );
    let decoded: (Blob, Blob) = CodecId::MSGPACK.decode_shared(&outer).unwrap();
    let nested: Blob = CodecId::MSGPACK.decode_shared(&decoded.0).unwrap();
    assert_eq!(&nested[..], &[1u8; 8]);
    let again: Outer = CodecId::MSGPACK
        .decode_shared(&outer)
        .map(|(inner, tail): (Blob, Blob)| Outer { inner, tail })
        .unwrap();
    assert!(outer.as_ptr_range().contains(&again.tail.as_ptr()));
    assert_eq!(again.inner.len(), inner_body.len());
}
