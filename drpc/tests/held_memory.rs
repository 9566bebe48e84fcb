//! A held call costs about what its frame took on the wire, however its
//! meta is made: meta stays a slice of the frame, and past the limit a call
//! is refused as it arrives. Measured by counting this binary's allocations.

mod common;
#[path = "common/counting.rs"]
mod counting;

use common::*;
use counting::{live, Counting};
use drpc::proto::{FrameLimits, Header, Kind, Message, Meta, Proto, RawProto};
use drpc::Endpoint;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[global_allocator]
static ALLOC: Counting = Counting;

/// A `/wait` call with `pairs` empty-valued meta pairs, as raw bytes.
fn call_frame(seq: u32, pairs: usize) -> Vec<u8> {
    let mut h = Header::call(seq, "/wait");
    h.timeout = Some(std::time::Duration::from_secs(30));
    h.meta = (0..pairs).map(|i| (format!("{i}"), "")).collect::<Meta>();
    let unlimited = FrameLimits::default().with_meta_len(usize::MAX);
    let mut out = bytes::BytesMut::new();
    RawProto
        .framer(&unlimited)
        .encode(&Message::new(h, vec![0xc0]), &mut out)
        .unwrap();
    out.to_vec()
}

/// A `/wait` call with 65,535 pairs of empty keys and values, by hand (a
/// `Meta` keeps one pair per key).
fn empty_pairs_frame(seq: u32) -> Vec<u8> {
    let mut f = vec![1, 1, 1, 0];
    f.extend_from_slice(&seq.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0x75, 0x30, 0, 0, 0, 0]);
    f.extend_from_slice(&[0, 5]);
    f.extend_from_slice(b"/wait");
    f.extend_from_slice(&[0, 0, 0]);
    f.extend_from_slice(&u16::MAX.to_be_bytes());
    f.resize(f.len() + 4 * u16::MAX as usize, 0);
    f.push(0xc0);
    let mut frame = (f.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&f);
    frame
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_call_costs_about_its_frame_whatever_its_meta() {
    init_tracing();
    let (routes, mut gate) = gated_router();
    let server = Endpoint::builder().router(routes).build().unwrap();
    let addr = server.listen("tcp://127.0.0.1:0").await.unwrap();
    // The most meta the server takes (16 KiB on the wire): 2,000 pairs.
    let template = call_frame(1, 2000);
    let frames: Vec<Vec<u8>> = (1..=50u32)
        .map(|seq| {
            let mut f = template.clone();
            f[8..12].copy_from_slice(&seq.to_be_bytes());
            f
        })
        .collect();
    let frame = frames[0].len();
    assert!(frame < 16 * 1024 + 64, "{frame}");
    let mut raw = TcpStream::connect(addr.target()).await.unwrap();
    // The connection is up (one round trip), then measure.
    raw.write_all(&call_frame(100, 0)).await.unwrap();
    within("the first handler", gate.started.recv())
        .await
        .unwrap();

    let before = live();
    for f in &frames {
        raw.write_all(f).await.unwrap();
    }
    for _ in 0..frames.len() {
        within("a held call starts", gate.started.recv())
            .await
            .unwrap();
    }
    let per_call = (live() - before).max(0) as usize / frames.len();
    println!(
        "{} held calls with {frame}-byte frames: {per_call} bytes each",
        frames.len()
    );
    // Held as it came: the frame's own bytes (in the read buffer it shares
    // with its neighbours), the context and the handler's task.
    assert!(
        per_call <= 3 * frame,
        "a held call costs {per_call} bytes for a frame of {frame}"
    );
    gate.release.send(true).unwrap();

    // 65,535 empty pairs (262 KB of lengths): refused with 413 on arrival.
    raw.write_all(&empty_pairs_frame(200)).await.unwrap();
    let mut framer = RawProto.framer(&FrameLimits::default());
    let mut buf = bytes::BytesMut::new();
    let refusal = loop {
        if let Some(m) = framer.decode(&mut buf).unwrap() {
            if m.header.seq == 200 {
                break m;
            }
            continue;
        }
        assert!(within("replies", raw.read_buf(&mut buf)).await.unwrap() > 0);
    };
    assert_eq!(
        (refusal.header.kind, refusal.header.status_code),
        (Kind::Reply, 413)
    );
    // The released calls end on their own tasks, whose replies may follow
    // the refusal: wait for the count to come down, not past WAIT.
    within("the released calls end", async {
        while server.calls_running() > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    })
    .await;
    server.close().await;
}
