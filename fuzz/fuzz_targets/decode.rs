//! Feeds arbitrary bytes to the raw proto's decoder, whole and split in two
//! at a point the input picks, the way a socket may deliver them.
//!
//! Nothing may panic, and every frame decoded must survive a round trip:
//! encoding it again and decoding that gives the same message.

#![no_main]

use bytes::BytesMut;
use drpc_proto::{FrameLimits, Proto, RawProto};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A small limit, so the fuzzer reaches "too large" as easily as "fits".
    let limits = FrameLimits::new(64 * 1024);
    let split = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    let mut framer = RawProto.framer(&limits);
    let mut buf = BytesMut::new();
    for part in [&data[..split], &data[split..]] {
        buf.extend_from_slice(part);
        loop {
            match framer.decode(&mut buf) {
                Ok(Some(msg)) => {
                    let mut again = BytesMut::new();
                    let mut other = RawProto.framer(&limits);
                    other
                        .encode(&msg, &mut again)
                        .expect("a decoded frame encodes again");
                    let back = other
                        .decode(&mut again)
                        .expect("its encoding decodes")
                        .expect("its encoding is one whole frame");
                    assert_eq!(back, msg);
                    assert!(again.is_empty());
                }
                Ok(None) => break,
                // The frame was consumed; the stream goes on.
                Err(e) if !e.is_fatal() => {}
                Err(_) => return,
            }
        }
    }
});
