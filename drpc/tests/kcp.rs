//! KCP at the segment level: a peer that knows only the reference segment
//! layout (as a C library user would) can open a conversation, make a
//! call, and close; a peer that goes silent is found by the keepalive.

mod common;

use bytes::BytesMut;
use common::*;
use drpc::proto::{FrameLimits, Header, Kind, Message, Proto, RawProto};
use drpc::{Code, Config, Endpoint};
use std::time::Duration;
use tokio::net::UdpSocket;

const PUSH: u8 = 81;
const ACK: u8 = 82;
const WASK: u8 = 83;
const WINS: u8 = 84;

/// One segment, in the reference layout: conv u32, cmd u8, frg u8,
/// wnd u16, ts u32, sn u32, una u32, len u32 (little-endian), then data.
#[derive(Debug, Clone, PartialEq)]
struct Segment {
    conv: u32,
    cmd: u8,
    frg: u8,
    wnd: u16,
    ts: u32,
    sn: u32,
    una: u32,
    data: Vec<u8>,
}

impl Segment {
    fn new(conv: u32, cmd: u8, sn: u32, una: u32, data: Vec<u8>) -> Self {
        Self {
            conv,
            cmd,
            frg: 0,
            wnd: 128,
            ts: 0,
            sn,
            una,
            data,
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(24 + self.data.len());
        b.extend_from_slice(&self.conv.to_le_bytes());
        b.push(self.cmd);
        b.push(self.frg);
        b.extend_from_slice(&self.wnd.to_le_bytes());
        b.extend_from_slice(&self.ts.to_le_bytes());
        b.extend_from_slice(&self.sn.to_le_bytes());
        b.extend_from_slice(&self.una.to_le_bytes());
        b.extend_from_slice(&(self.data.len() as u32).to_le_bytes());
        b.extend_from_slice(&self.data);
        b
    }

    /// Every segment in a datagram.
    fn decode_all(mut d: &[u8]) -> Vec<Segment> {
        let mut out = Vec::new();
        let u32_at = |d: &[u8], i: usize| u32::from_le_bytes(d[i..i + 4].try_into().unwrap());
        while d.len() >= 24 {
            let len = u32_at(d, 20) as usize;
            assert!(d.len() >= 24 + len, "segment runs past its datagram");
            out.push(Segment {
                conv: u32_at(d, 0),
                cmd: d[4],
                frg: d[5],
                wnd: u16::from_le_bytes([d[6], d[7]]),
                ts: u32_at(d, 8),
                sn: u32_at(d, 12),
                una: u32_at(d, 16),
                data: d[24..24 + len].to_vec(),
            });
            d = &d[24 + len..];
        }
        assert!(d.is_empty(), "trailing bytes after the last segment");
        out
    }
}

async fn recv_segments(udp: &UdpSocket) -> Vec<Segment> {
    let mut buf = vec![0u8; 65536];
    let n = within("a datagram", udp.recv(&mut buf)).await.unwrap();
    Segment::decode_all(&buf[..n])
}

async fn server(
    config: Config,
) -> (
    Endpoint,
    drpc::Addr,
    tokio::sync::mpsc::UnboundedReceiver<drpc::Session>,
) {
    init_tracing();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let ep = Endpoint::builder()
        .config(config)
        .router(test_router())
        .plugin(AcceptNotify(tx))
        .build()
        .unwrap();
    let addr = ep.listen("kcp://127.0.0.1:0").await.unwrap();
    (ep, addr, rx)
}

#[tokio::test]
async fn a_peer_speaking_only_the_reference_layout_can_call_and_close() {
    let (ep, addr, mut accepts) = server(Config::default()).await;
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    udp.connect(addr.target()).await.unwrap();
    let conv = 0x0102_0304;

    // Open: a window probe under our conv, answered with the window.
    udp.send(&Segment::new(conv, WASK, 0, 0, vec![]).encode())
        .await
        .unwrap();
    let answer = recv_segments(&udp).await;
    assert!(
        answer.iter().any(|s| s.conv == conv && s.cmd == WINS),
        "{answer:?}"
    );
    let session = within("accept", accepts.recv()).await.unwrap();

    // A call as one PUSH segment with sn 0.
    let call = Message::new(Header::call(7, "/math/add"), rmp_add(20, 22));
    let mut frame = BytesMut::new();
    RawProto
        .framer(&FrameLimits::default())
        .encode(&call, &mut frame)
        .unwrap();
    udp.send(&Segment::new(conv, PUSH, 0, 0, frame.to_vec()).encode())
        .await
        .unwrap();

    // The server acknowledges sn 0 and answers with its own PUSH sn 0.
    let mut acked = false;
    let mut reply_bytes = Vec::new();
    while !acked || reply_bytes.is_empty() {
        for s in recv_segments(&udp).await {
            assert_eq!(s.conv, conv);
            match s.cmd {
                ACK if s.sn == 0 => acked = true,
                PUSH if s.sn == 0 => {
                    assert_eq!(s.frg, 0);
                    reply_bytes = s.data;
                }
                _ => {}
            }
        }
    }
    let mut buf = BytesMut::from(&reply_bytes[..]);
    let reply = RawProto
        .framer(&FrameLimits::default())
        .decode(&mut buf)
        .unwrap()
        .expect("a whole reply frame in the segment");
    assert_eq!(reply.header.kind, Kind::Reply);
    assert_eq!((reply.header.seq, reply.header.status_code), (7, 0));
    assert_eq!(&reply.body[..], &[42]);

    // Acknowledge it, then close with the end marker: a PUSH of length 0.
    udp.send(&Segment::new(conv, ACK, 0, 1, vec![]).encode())
        .await
        .unwrap();
    udp.send(&Segment::new(conv, PUSH, 1, 1, vec![]).encode())
        .await
        .unwrap();
    within("the session ends on the end marker", session.closed()).await;
    assert_eq!(
        session.close_reason().unwrap().code(),
        Code::CONNECTION_CLOSED
    );
    ep.close().await;
}

/// MessagePack for `{"a": a, "b": b}` with small positive numbers.
fn rmp_add(a: u8, b: u8) -> Vec<u8> {
    assert!(a < 128 && b < 128);
    vec![0x82, 0xa1, b'a', a, 0xa1, b'b', b]
}

#[tokio::test]
async fn a_silent_peer_is_closed_after_the_idle_timeout() {
    let mut config = Config::default();
    config.transport.kcp.keepalive = Duration::from_millis(100);
    config.transport.kcp.idle_timeout = Duration::from_millis(600);
    let (ep, addr, mut accepts) = server(config).await;
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    udp.connect(addr.target()).await.unwrap();
    let conv = 77;
    udp.send(&Segment::new(conv, WASK, 0, 0, vec![]).encode())
        .await
        .unwrap();
    let session = within("accept", accepts.recv()).await.unwrap();

    // Say nothing more; the server probes, then gives up.
    let mut probes = 0;
    while probes < 2 {
        for s in recv_segments(&udp).await {
            if s.cmd == WASK && s.conv == conv {
                probes += 1;
            }
        }
    }
    within("idle session closes", session.closed()).await;
    let reason = session.close_reason().unwrap();
    assert!(reason.to_string().contains("nothing heard"), "{reason}");
    assert_eq!(ep.session_count(), 0);
    ep.close().await;
}

#[tokio::test]
async fn a_keepalive_keeps_an_idle_session_open() {
    let mut config = Config::default();
    config.transport.kcp.keepalive = Duration::from_millis(100);
    config.transport.kcp.idle_timeout = Duration::from_secs(1);
    let t = Transport {
        name: "kcp",
        listen: "kcp://127.0.0.1:0".into(),
        config,
    };
    let p = t.pair(test_router(), drpc::Router::new()).await;
    // Idle for several idle timeouts; the probes answer each other.
    let idle = tokio::time::sleep(Duration::from_millis(2500));
    tokio::select! {
        _ = idle => {}
        _ = p.session.closed() => panic!("an idle but live session was closed: {:?}", p.session.close_reason()),
    }
    let sum: i64 = p
        .session
        .call("/math/add", &Add { a: 1, b: 2 })
        .await
        .unwrap();
    assert_eq!(sum, 3);
    p.close().await;
}

#[tokio::test]
async fn dialing_a_port_nobody_listens_on_fails_with_105() {
    let port = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    };
    let ep = Endpoint::builder().build().unwrap();
    let err = within("dial", ep.dial(format!("kcp://127.0.0.1:{port}")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::DIAL_FAILED);
    ep.close().await;
}

#[tokio::test]
async fn bad_settings_are_refused_with_the_reason() {
    let mut config = Config::default();
    config.transport.kcp.mtu = 10;
    let ep = Endpoint::builder().config(config).build().unwrap();
    let err = ep.listen("kcp://127.0.0.1:0").await.unwrap_err();
    assert!(err.message().contains("mtu"), "{err}");
    ep.close().await;
}

/// A small deterministic generator, so a failure replays exactly.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[tokio::test]
async fn garbage_datagrams_do_not_disturb_other_sessions() {
    let mut config = Config::default();
    config.transport.kcp.idle_timeout = Duration::from_secs(2);
    let (ep, addr, mut accepts) = server(config.clone()).await;
    let client = Endpoint::builder().config(config).build().unwrap();
    let good = client.dial(&addr).await.unwrap();
    within("accept good", accepts.recv()).await.unwrap();

    // A hostile peer opens a conversation, then sends datagrams that are
    // random bytes, and segments under its conv with random fields.
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    udp.connect(addr.target()).await.unwrap();
    let conv = 4242;
    udp.send(&Segment::new(conv, WASK, 0, 0, vec![]).encode())
        .await
        .unwrap();
    let hostile = within("accept hostile", accepts.recv()).await.unwrap();
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for i in 0..2000u32 {
        let r = rng.next();
        let datagram = if i % 2 == 0 {
            let len = (r % 200) as usize;
            (0..len).map(|_| rng.next() as u8).collect()
        } else {
            let data: Vec<u8> = (0..(r % 64)).map(|_| rng.next() as u8).collect();
            let mut seg = Segment::new(
                conv,
                [PUSH, ACK, WASK, WINS, (r >> 8) as u8][(r % 5) as usize],
                (r >> 16) as u32 % 300,
                (r >> 24) as u32 % 300,
                data,
            );
            seg.frg = (r >> 32) as u8;
            seg.wnd = (r >> 40) as u16;
            seg.ts = (r >> 20) as u32;
            let mut bytes = seg.encode();
            if r % 7 == 0 {
                // A length that runs past the datagram.
                bytes[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
            }
            bytes
        };
        let _ = udp.send(&datagram).await;
    }
    let sum: i64 = good.call("/math/add", &Add { a: 2, b: 2 }).await.unwrap();
    assert_eq!(sum, 4, "the good session is still served");
    // The hostile session ends one way or another (its peer sent no valid
    // drpc frame), and never takes the endpoint with it.
    within("hostile session ends", hostile.closed()).await;
    let sum: i64 = good.call("/math/add", &Add { a: 3, b: 3 }).await.unwrap();
    assert_eq!(sum, 6);
    client.close().await;
    ep.close().await;
}
