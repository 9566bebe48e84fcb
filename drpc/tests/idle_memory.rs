//! An idle session holds no read or write buffer: after traffic that grew
//! them, a session that waits holds a few KiB of heap in all, and one that
//! moved a large stream gives its pooled read buffers back once its reads
//! are quiet. Measured by counting this binary's allocations.

mod common;
#[path = "common/counting.rs"]
mod counting;

use common::*;
use counting::{live, Counting};
use drpc::{Blob, CallCtx, CodecId, Endpoint, ItemSink, Router, Status};
use std::time::Duration;

#[global_allocator]
static ALLOC: Counting = Counting;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_session_holds_no_read_or_write_buffer() {
    init_tracing();
    let mut routes = Router::new();
    routes
        .call("/big", |_: CallCtx, n: usize| async move {
            Ok::<_, Status>(drpc::Blob::from(vec![7u8; n]))
        })
        .unwrap()
        .call("/echo", |_: CallCtx, body: drpc::Blob| async move {
            Ok::<_, Status>(body)
        })
        .unwrap()
        .server_stream(
            "/bytes",
            |_: CallCtx, n: usize, out: ItemSink<Blob>| async move {
                let mut out = out.with_codec(CodecId::RAW);
                let piece = bytes::Bytes::from(vec![9u8; 65_536]);
                for _ in 0..n {
                    out.send_raw(piece.clone()).await?;
                }
                Ok::<_, Status>(())
            },
        )
        .unwrap();
    let server = Endpoint::builder().router(routes).build().unwrap();
    let addr = server.listen("tcp://127.0.0.1:0").await.unwrap();
    let client = Endpoint::builder().build().unwrap();
    // One session first, so everything made once per endpoint is made.
    let first = client.dial(&addr).await.unwrap();
    first
        .call::<_, drpc::Blob>("/big", &100_000usize)
        .await
        .unwrap();

    const SESSIONS: usize = 200;
    let before = live();
    let mut sessions = Vec::new();
    for _ in 0..SESSIONS {
        let s = within("dial", client.dial(&addr)).await.unwrap();
        // Traffic first: 64 KiB each way grows the buffers, which an idle
        // session must give back.
        let back: drpc::Blob = within("a call", s.call("/big", &65_536usize))
            .await
            .unwrap();
        assert_eq!(back.len(), 65_536);
        drop(back);
        sessions.push(s);
    }
    // Every session on both sides is idle now; a round trip on each makes
    // sure its reader has come back to wait (and given its buffer back).
    // Its 12 KB each way arrive in one read of whole frames, whose buffer
    // must not stay behind either.
    let last = drpc::Blob::from(vec![1u8; 12_000]);
    for s in &sessions {
        let back: drpc::Blob = within("a last call", s.call("/echo", &last)).await.unwrap();
        assert_eq!(back.len(), last.len());
    }
    let per_session = || (live() - before).max(0) as usize / (2 * SESSIONS);
    println!(
        "{SESSIONS} idle connections (both ends here): {} bytes of heap per session",
        per_session()
    );
    assert!(
        per_session() <= 8 * 1024,
        "an idle session holds {} bytes of heap",
        per_session()
    );

    // 4 MiB streamed on each of 10 sessions: their readers read at full
    // size, into buffers they keep for reuse (a MiB or more each), and
    // give back once their reads have been quiet for 100 ms; what stays is
    // less than one such buffer (256 KiB) in all.
    let idle = live();
    for s in &sessions[..10] {
        let mut items = within(
            "a stream",
            s.stream::<_, Blob>("/bytes", &64usize, Default::default()),
        )
        .await
        .unwrap();
        let mut got = 0;
        while let Some(item) = within("an item", items.next()).await {
            got += item.unwrap().len();
        }
        assert_eq!(got, 64 * 65_536);
    }
    let left = || (live() - idle).max(0) as usize;
    within("the pooled buffers given back", async {
        while left() > 128 * 1024 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    println!("after 10 streams of 4 MiB: {} bytes more in all", left());
    for s in sessions {
        s.close().await;
    }
    client.close().await;
    server.close().await;
}
