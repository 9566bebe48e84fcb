//! The inbound buffer: frames cut whole, the frame timer, buffers released,
//! kept and pooled.

use super::*;
use crate::core::read_pool::QUIET;
use bytes::BufMut;
use drpc_proto::{FrameLimits, Header, Proto, RawProto};

fn inbound(now: Instant) -> Inbound {
    Inbound::new(
        RawProto.framer(&FrameLimits::default().with_meta_len(64)),
        1024,
        Duration::from_secs(30),
        now,
    )
}

fn wire(msgs: &[Message]) -> Vec<u8> {
    let mut f = RawProto.framer(&FrameLimits::default().with_meta_len(usize::MAX));
    let mut out = BytesMut::new();
    for m in msgs {
        f.encode(m, &mut out).unwrap();
    }
    out.to_vec()
}

/// Feeds `bytes` as one read at `now`.
fn feed(i: &mut Inbound, bytes: &[u8], now: Instant) {
    let (buf, offered) = i.room();
    buf.put_slice(bytes);
    i.filled(offered, bytes.len(), now);
}

#[test]
fn frames_are_cut_whole_and_the_timer_runs_only_mid_frame() {
    let t = Instant::now();
    let mut i = inbound(t);
    let bytes = wire(&[
        Message::new(Header::push("/a"), vec![1]),
        Message::new(Header::push("/b"), vec![2]),
    ]);
    assert_eq!(i.frame_deadline(), None);
    feed(&mut i, &bytes[..10], t);
    assert!(i.next().unwrap().is_none());
    assert_eq!(i.frame_deadline(), Some(t + Duration::from_secs(30)));
    let later = t + Duration::from_secs(1);
    feed(&mut i, &bytes[10..], later);
    assert!(matches!(i.next().unwrap(), Some(Frame::Message(m)) if m.body[..] == [1]));
    assert!(matches!(i.next().unwrap(), Some(Frame::Message(m)) if m.body[..] == [2]));
    assert!(i.next().unwrap().is_none());
    assert_eq!(i.frame_deadline(), None, "between frames there is no timer");
    assert_eq!(i.arrived(), later);
    assert!(i.end_of_stream().is_ok());
}

#[test]
fn a_stream_ending_mid_frame_and_a_stalled_frame_are_named() {
    let t = Instant::now();
    let mut i = inbound(t);
    feed(
        &mut i,
        &wire(&[Message::new(Header::push("/a"), vec![])])[..7],
        t,
    );
    assert!(i.next().unwrap().is_none());
    let err = i.end_of_stream().unwrap_err();
    assert!(err.message().contains("7 bytes unread"), "{err}");
    assert!(i.frame_timed_out().message().contains("7 bytes of a frame"));
}

#[test]
fn oversize_meta_is_a_frame_of_its_own_and_reading_goes_on() {
    let t = Instant::now();
    let mut i = inbound(t);
    let mut big = Header::call(9, "/m");
    big.meta.insert("k", "v".repeat(100));
    let bytes = wire(&[
        Message::new(big, vec![]),
        Message::new(Header::push("/ok"), vec![]),
    ]);
    feed(&mut i, &bytes, t);
    match i.next().unwrap() {
        Some(Frame::Oversize {
            kind, seq, status, ..
        }) => {
            assert_eq!((kind, seq), (Kind::Call, 9));
            assert_eq!(status.code(), crate::values::Code::MESSAGE_TOO_LARGE);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(i.next().unwrap(), Some(Frame::Message(_))));
}

#[test]
fn garbage_is_fatal() {
    let t = Instant::now();
    let mut i = inbound(t);
    feed(&mut i, &[0, 0, 0, 30, 9, 9, 9, 9], t);
    assert!(i.next().unwrap_err().is_fatal());
}

#[test]
fn the_buffer_is_released_when_empty_and_read_room_grows_with_full_reads() {
    let t = Instant::now();
    let mut i = inbound(t);
    assert_eq!(i.capacity(), 0, "nothing is held before the first read");
    let (_, offered) = i.room();
    assert_eq!(offered, KEEP);
    i.filled(offered, offered, t);
    i.release_if_empty();
    assert_eq!(i.capacity(), KEEP, "a small buffer is kept to reuse");
    let (_, again) = i.room();
    i.filled(again, again, t);
    let (_, more) = i.room();
    assert!(more >= 2048, "full reads grow the next offer");
    i.release_if_empty();
    assert_eq!(i.capacity(), 0, "a larger buffer is released");
    // A partial frame is kept.
    feed(&mut i, &[0, 0], t);
    i.release_if_empty();
    assert!(i.capacity() > 0);
}

#[test]
fn a_read_without_a_buffer_allocates_only_for_what_came() {
    let t = Instant::now();
    let mut i = inbound(t);
    assert_eq!(
        i.released_offer(512),
        None,
        "an offer over the reader's space"
    );
    let offered = i.released_offer(16 * 1024).expect("no buffer yet");
    assert_eq!(offered, 1024);
    let bytes = wire(&[
        Message::new(Header::push("/a"), vec![1]),
        Message::new(Header::push("/b"), vec![2; 2000]),
    ]);
    let cut = 200;
    i.filled_from(offered, &bytes[..cut], t);
    assert_eq!(i.capacity(), KEEP, "a small read: as much as may be kept");
    assert!(matches!(i.next(), Ok(Some(Frame::Message(m))) if m.body[..] == [1]));
    assert!(matches!(i.next(), Ok(None)));
    assert_eq!(
        i.released_offer(16 * 1024),
        None,
        "a partial frame is read into its buffer"
    );
    assert!(i.kept_room().is_none(), "nor is it reused as drained");
    feed(&mut i, &bytes[cut..], t);
    assert!(matches!(i.next(), Ok(Some(Frame::Message(m))) if m.body.len() == 2000));
    i.release_if_empty();
    assert_eq!(i.capacity(), 0, "a large one goes");
    assert!(i.released_offer(16 * 1024).is_some());
}

#[test]
fn a_buffer_drained_by_its_frames_is_released_unless_small() {
    let t = Instant::now();
    let mut i = inbound(t);
    for (body, kept) in [(KEEP, 0), (100, KEEP)] {
        let bytes = wire(&[Message::new(Header::push("/a"), vec![1; body])]);
        i.filled_from(16 * 1024, &bytes, t);
        assert!(matches!(i.next(), Ok(Some(Frame::Message(_)))));
        assert!(matches!(i.next(), Ok(None)));
        i.release_if_empty();
        assert_eq!(i.capacity(), kept, "{body}-byte body");
    }
}

/// Six frames of 100 KB bodies (1 to 6): 600 KB, across full-size reads.
fn six_large_frames() -> Vec<u8> {
    let big = |n| Message::new(Header::push("/a"), vec![n; 100_000]);
    wire(&[big(1), big(2), big(3), big(4), big(5), big(6)])
}

/// An inbound that read [`six_large_frames`] at full size (dropping
/// them), when, and those frames.
fn with_a_pool() -> (Instant, Inbound, Vec<u8>) {
    let t = Instant::now();
    let mut i = at_full_size(t);
    let bytes = six_large_frames();
    read_all(&mut i, &bytes, t, &mut Vec::new());
    (t, i, bytes)
}

/// An inbound whose reads have grown to full size, holding no buffer.
fn at_full_size(t: Instant) -> Inbound {
    let mut i = inbound(t);
    while i.sizer.next < POOLED {
        let (_, offered) = i.room();
        i.filled(offered, offered, t);
    }
    i.release_if_empty();
    i
}

/// Reads `bytes` in reads of what the buffer offers, at `now`, and
/// keeps every message they make; the buffers read into, by address.
fn read_all(i: &mut Inbound, bytes: &[u8], now: Instant, msgs: &mut Vec<Frame>) -> Vec<usize> {
    read_all_within(i, bytes, now, POOLED, msgs)
}

/// [`read_all`] in reads of at most `most` bytes.
fn read_all_within(
    i: &mut Inbound,
    mut bytes: &[u8],
    now: Instant,
    most: usize,
    msgs: &mut Vec<Frame>,
) -> Vec<usize> {
    let mut buffers = Vec::new();
    while !bytes.is_empty() {
        // As the connection does before each read.
        i.arm_timer();
        let (buf, offered) = i.room();
        let n = offered.min(bytes.len()).min(most);
        buf.put_slice(&bytes[..n]);
        buffers.push(buf.as_ptr() as usize);
        i.filled(offered, n, now);
        bytes = &bytes[n..];
        while let Some(frame) = i.next().unwrap() {
            msgs.push(frame);
        }
    }
    buffers
}

#[test]
fn full_size_reads_take_back_buffers_their_messages_left_until_reads_are_quiet() {
    let t = Instant::now();
    let mut i = at_full_size(t);
    let bytes = six_large_frames();
    let mut held = Vec::new();
    let first = read_all(&mut i, &bytes, t, &mut held);
    assert_eq!(held.len(), 6, "each frame whole, across buffers");
    assert!(matches!(&held[5], Frame::Message(m) if m.body[..] == [6; 100_000][..]));
    let later = t + Duration::from_millis(10);
    let again = read_all(&mut i, &bytes, later, &mut held);
    assert!(
        again.iter().all(|b| !first.contains(b)),
        "messages hold the first buffers: none is read into again"
    );
    held.clear();
    let kept = i.pool.len();
    assert!(kept > 0);
    let third = read_all(&mut i, &bytes, later, &mut held);
    assert!(
        third.iter().all(|b| first.contains(b) || again.contains(b)),
        "their messages gone, the same buffers take the next reads"
    );
    assert_eq!(i.pool.len(), kept, "each taken back, none new");
    assert_eq!(held.len(), 6);

    i.release_if_empty();
    assert_eq!(i.frame_deadline(), None);
    // A small read since (a peer trickling frames) does not keep it.
    let small = wire(&[Message::new(Header::push("/s"), vec![1])]);
    i.filled_from(1024, &small, later + QUIET / 2);
    assert!(matches!(i.next(), Ok(Some(Frame::Message(_)))));
    assert_eq!(i.arm_timer(), Some(later + QUIET), "the pool's time");
    assert!(!i.on_timer(later + QUIET - Duration::from_millis(1)));
    assert!(!i.pool.is_empty(), "not yet quiet");
    assert!(!i.on_timer(later + QUIET));
    assert!(i.pool.is_empty(), "quiet: the pool is given back");
    assert_eq!(i.arm_timer(), None, "and needs no timer");
    // A read that finds nothing then: with no timer set to forget it,
    // its buffer is freed, not kept, and no timer is due.
    i.room();
    i.release_if_empty();
    assert!(i.pool.is_empty());
    assert_eq!(i.arm_timer(), None);
    drop(held);
}

#[test]
fn a_large_frames_buffer_goes_back_to_the_pool_after_it_when_reads_are_small() {
    let t = Instant::now();
    let mut i = Inbound::new(
        RawProto.framer(&FrameLimits::default()),
        128 * 1024,
        Duration::from_secs(30),
        t,
    );
    // A frame that leaves its 1 MiB buffer less than half a read of room.
    let bytes = wire(&[Message::new(Header::push("/a"), vec![3; 1_000_000])]);
    assert!((1 << 20) - bytes.len() < 64 * 1024);
    let mut held = Vec::new();
    let first = read_all_within(&mut i, &bytes, t, 64 * 1024, &mut held);
    assert_eq!(i.sizer.next, 128 * 1024, "reads stay half-size");
    // The next frame, while the first is still held, moves on to another.
    let second = read_all_within(&mut i, &bytes, t, 64 * 1024, &mut held);
    assert_ne!(second[1], first[1]);
    assert!(
        i.pool.kept() >= 1 << 20,
        "the first buffer went to the pool"
    );
    held.clear();
    let third = read_all_within(&mut i, &bytes, t, 64 * 1024, &mut held);
    assert!(
        third[1] == first[1] || third[1] == second[1],
        "messages gone, a large buffer serves again"
    );
    assert!(matches!(&held[..], [Frame::Message(m)] if m.body.len() == 1_000_000));
}

#[test]
fn the_pools_time_counts_from_the_read_into_a_buffer_it_gave() {
    let (t, mut i, bytes) = with_a_pool();
    i.release_if_empty();
    // A burst after a pause: its first buffer is taken before its read.
    let later = t + Duration::from_secs(1);
    i.arm_timer();
    let (buf, offered) = i.room();
    buf.put_slice(&bytes[..offered]);
    i.filled(offered, offered, later);
    assert_eq!(i.arm_timer(), Some(later + QUIET), "not the pause's start");
}

#[test]
fn a_stopping_connection_keeps_no_pool() {
    let (t, mut i, bytes) = with_a_pool();
    assert!(!i.pool.is_empty());
    i.forget_pool();
    assert!(i.pool.is_empty());
    // Its reads go on, but arm no timer: nothing joins the pool.
    for _ in 0..3 {
        let (buf, offered) = i.room();
        buf.put_slice(&bytes[..offered]);
        i.filled(offered, offered, t);
        while i.next().unwrap().is_some() {}
        i.buf.clear();
        i.release_if_empty();
        assert!(i.pool.is_empty());
    }
}

#[test]
fn a_frame_larger_than_any_read_gets_room_for_all_of_it_at_once_and_again() {
    let t = Instant::now();
    let mut i = at_full_size(t);
    let bytes = wire(&[Message::new(Header::push("/a"), vec![3; 600_000])]);
    let mut held = Vec::new();
    let buffers = read_all_within(&mut i, &bytes, t, 64 * 1024, &mut held);
    assert!(matches!(&held[..], [Frame::Message(m)] if m.body.len() == 600_000));
    assert!(
        buffers[1..].iter().all(|b| *b == buffers[1]),
        "one buffer from the second read on, never moved"
    );
    // The next frame begins in what is left of that buffer, and moves
    // to another; from then on the two take turns.
    held.clear();
    let second = read_all_within(&mut i, &bytes, t, 64 * 1024, &mut held);
    let kept = i.pool.len();
    held.clear();
    let third = read_all_within(&mut i, &bytes, t, 64 * 1024, &mut held);
    assert_ne!(second[1], buffers[1]);
    assert_eq!(
        third[1], buffers[1],
        "messages gone, large frames take their buffers back"
    );
    assert_eq!(i.pool.len(), kept, "and none is new");
}

#[test]
fn a_kept_buffer_is_read_into_once_nothing_holds_its_frames() {
    let t = Instant::now();
    let mut i = inbound(t);
    let bytes = wire(&[Message::new(Header::push("/a"), vec![1; 100])]);
    i.filled_from(16 * 1024, &bytes, t);
    let Ok(Some(Frame::Message(held))) = i.next() else {
        panic!("a whole frame")
    };
    assert!(
        i.kept_room().is_none(),
        "its message still holds the buffer: reusing it would copy"
    );
    drop(held);
    let (buf, room) = i.kept_room().expect("the buffer is free again");
    assert_eq!(room, KEEP);
    buf.put_slice(&bytes);
    i.filled(room, bytes.len(), t);
    assert!(matches!(i.next(), Ok(Some(Frame::Message(m))) if m.body.len() == 100));
    let (buf, room) = i.kept_room().expect("free again");
    buf.put_slice(&vec![0; room]);
    i.filled(room, room, t);
    i.buf.clear();
    assert!(
        i.kept_room().is_none(),
        "after a full read more may wait: the sizer's offer, not 1 KiB"
    );
}
