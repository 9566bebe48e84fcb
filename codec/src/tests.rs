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
    for codec in [CodecId::MsgPack, CodecId::Json] {
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
    let bytes = CodecId::MsgPack.encode(&Add { a: 1, b: 2 }).unwrap();
    // fixmap of 2, "a", 1, "b", 2
    assert_eq!(bytes, [0x82, 0xa1, b'a', 0x01, 0xa1, b'b', 0x02]);
    let as_map: BTreeMap<String, i64> = CodecId::MsgPack.decode(&bytes).unwrap();
    assert_eq!(as_map["b"], 2);
}

#[test]
fn raw_carries_bytes_unchanged() {
    let payload: Vec<u8> = (0..=255).collect();
    assert_eq!(CodecId::Raw.encode(&payload).unwrap(), payload);
    assert_eq!(
        CodecId::Raw.encode(&Bytes::from(payload.clone())).unwrap(),
        payload
    );
    assert_eq!(
        CodecId::Raw
            .encode(&serde_bytes::ByteBuf::from(payload.clone()))
            .unwrap(),
        payload
    );
    assert_eq!(CodecId::Raw.decode::<Vec<u8>>(&payload).unwrap(), payload);
    assert_eq!(CodecId::Raw.decode::<Bytes>(&payload).unwrap(), payload);
    assert_eq!(
        CodecId::Raw
            .decode::<serde_bytes::ByteBuf>(&payload)
            .unwrap()
            .into_vec(),
        payload
    );
    assert!(CodecId::Raw.encode(&()).unwrap().is_empty());
    CodecId::Raw.decode::<()>(b"").unwrap();
}

#[test]
fn raw_refuses_values_that_are_not_bytes() {
    let err = CodecId::Raw.encode(&Add { a: 1, b: 2 }).unwrap_err();
    assert!(err.to_string().contains("not a struct"), "{err}");
    let err = CodecId::Raw.encode(&vec![1u32, 2]).unwrap_err();
    assert!(err.to_string().contains("u32"), "{err}");
    assert!(CodecId::Raw.decode::<String>(&[0xff, 0xfe]).is_err());
    assert!(CodecId::Raw.decode::<()>(b"x").is_err());
}

#[test]
fn text_writes_scalars_as_text() {
    assert_eq!(CodecId::Text.encode(&42i64).unwrap(), b"42");
    assert_eq!(CodecId::Text.decode::<i64>(b"-7").unwrap(), -7);
    assert_eq!(CodecId::Text.encode(&true).unwrap(), b"true");
    assert!(CodecId::Text.encode(&Add { a: 1, b: 2 }).is_err());
    assert!(CodecId::Text.decode::<String>(&[0xff]).is_err());
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
    assert_eq!(CodecId::from_u8(5), None);
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
    let body = Bytes::from(CodecId::MsgPack.encode(&v).unwrap());
    let back: Upload = CodecId::MsgPack.decode_shared(&body).unwrap();
    assert_eq!(back.data, data);
    assert!(
        body.as_ptr_range().contains(&back.data.as_ptr()),
        "a field is a slice too"
    );
    // Without the body to slice, it is a copy.
    let copied: Upload = CodecId::MsgPack.decode(&body).unwrap();
    assert!(!body.as_ptr_range().contains(&copied.data.as_ptr()));

    let raw = Bytes::from(CodecId::Raw.encode(&data).unwrap());
    let back: Blob = CodecId::Raw.decode_shared(&raw).unwrap();
    assert_eq!(back.as_ptr(), raw.as_ptr());

    // JSON carries it as a list of numbers, decoded into a copy.
    let json = Bytes::from(CodecId::Json.encode(&Blob::from(&b"hi"[..])).unwrap());
    assert_eq!(&json[..], b"[104,105]");
    let back: Blob = CodecId::Json.decode_shared(&json).unwrap();
    assert_eq!(&back[..], b"hi");
}

#[test]
fn a_nested_decode_restores_the_outer_source() {
    #[derive(Deserialize)]
    struct Outer {
        inner: Blob,
        tail: Blob,
    }
    let inner_body = Bytes::from(CodecId::MsgPack.encode(&Blob::from(vec![1u8; 8])).unwrap());
    let outer = Bytes::from(
        CodecId::MsgPack
            .encode(&(Blob(inner_body.clone()), Blob::from(vec![2u8; 8])))
            .unwrap(),
    );
    let decoded: (Blob, Blob) = CodecId::MsgPack.decode_shared(&outer).unwrap();
    let nested: Blob = CodecId::MsgPack.decode_shared(&decoded.0).unwrap();
    assert_eq!(&nested[..], &[1u8; 8]);
    let again: Outer = CodecId::MsgPack
        .decode_shared(&outer)
        .map(|(inner, tail): (Blob, Blob)| Outer { inner, tail })
        .unwrap();
    assert!(outer.as_ptr_range().contains(&again.tail.as_ptr()));
    assert_eq!(again.inner.len(), inner_body.len());
}
