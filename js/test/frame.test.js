// The worked examples of docs/PROTOCOL.md section 6, byte for byte: the
// client encodes them exactly and decodes them whole or in pieces.
// Run: node --test js/test/ (examples/tests/browser.rs runs it).

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { Codec, Flag, FrameReader, Kind, decodeBody, encodeBody, encodeFrame } from "../src/index.js";

/** The hex blocks of section 6, as byte arrays. */
function examples() {
  const spec = readFileSync(new URL("../../docs/PROTOCOL.md", import.meta.url), "utf8");
  const section = spec.split("## 6. Worked example")[1].split("## 7.")[0];
  return section
    .split("```text\n")
    .slice(1)
    .map((block) => {
      const hex = [];
      for (const line of block.split("```")[0].split("\n")) {
        if (!/^[0-9a-f]{2}( |$)/.test(line)) continue; // explanation lines are indented
        for (const token of line.split("  ")[0].split(" ")) hex.push(parseInt(token, 16));
      }
      return Uint8Array.from(hex);
    });
}

const [call, reply, error, push] = examples();

test("the call of section 6 encodes byte for byte", () => {
  const frame = encodeFrame({
    kind: Kind.CALL,
    seq: 1,
    timeout: 5000,
    method: "/math/add",
    codec: Codec.MSGPACK,
    meta: [["k", "v"]],
    body: encodeBody(Codec.MSGPACK, { a: 1, b: 2 }),
  });
  assert.deepEqual(frame, call);
});

test("replies decode, whole or a byte at a time", () => {
  const whole = new FrameReader().push(Uint8Array.from([...reply, ...error]));
  const pieces = new FrameReader();
  const byByte = [...reply, ...error].flatMap((b) => pieces.push(Uint8Array.of(b)));
  for (const frames of [whole, byByte]) {
    assert.equal(frames.length, 2);
    const [ok, failed] = frames;
    assert.equal(ok.kind, Kind.REPLY);
    assert.equal(ok.seq, 1);
    assert.equal(decodeBody(ok.codec, ok.body), 3);
    assert.equal(failed.seq, 2);
    assert.equal(failed.status, 404);
    assert.equal(failed.message, "not found");
  }
  assert.deepEqual(
    encodeFrame({ kind: Kind.REPLY, seq: 2, status: 404, message: "not found", codec: Codec.MSGPACK }),
    error,
  );
});

test("the push of section 6 encodes byte for byte", () => {
  const frame = encodeFrame({
    kind: Kind.PUSH,
    method: "/hello",
    codec: Codec.TEXT,
    body: encodeBody(Codec.TEXT, "hi"),
  });
  assert.deepEqual(frame, push);
});

test("bad frames are refused with a reason", () => {
  assert.throws(() => new FrameReader().push(Uint8Array.of(0, 0, 0, 2, 1, 1)), /below the minimum/);
  assert.throws(() => new FrameReader(64).push(Uint8Array.of(0, 0, 1, 0)), /over the limit/);
  const badVersion = call.slice();
  badVersion[4] = 7;
  assert.throws(() => new FrameReader().push(badVersion), /version 7/);
});

/** The frames of the first hex block after `heading`: lines of hex pairs only, a frame per run of them. */
function specFrames(heading) {
  const spec = readFileSync(new URL("../../docs/PROTOCOL.md", import.meta.url), "utf8");
  const block = spec.split(heading)[1].split("```text\n")[1].split("```")[0];
  return block.split("\n\n").map((frame) =>
    Uint8Array.from(
      frame
        .split("\n")
        .filter((line) => line.trim() && line.trim().split(/\s+/).every((t) => /^[0-9a-f]{2}$/.test(t)))
        .flatMap((line) => line.trim().split(/\s+/).map((t) => parseInt(t, 16))),
    ),
  );
}

test("the hello of section 3.2 encodes byte for byte, and its answer decodes", () => {
  const [hello, answer] = specFrames("### 3.2 Hello");
  const frame = encodeFrame({
    kind: Kind.CALL, seq: 1, timeout: 10000, method: "/_drpc/hello", codec: Codec.RAW,
    meta: [["drpc-features", "cancel,stream"]], body: new Uint8Array(0),
  });
  assert.deepEqual(frame, hello);
  const [reply] = new FrameReader().push(answer);
  assert.equal(reply.kind, Kind.REPLY);
  assert.equal(reply.status, 0);
  assert.deepEqual(reply.meta, [["drpc-features", "cancel,stream"]]);
});

test("the cancel of section 3.3 encodes byte for byte and decodes", () => {
  const [cancel] = specFrames("### 3.3 Cancel");
  assert.deepEqual(encodeFrame({ kind: Kind.CANCEL, seq: 5, status: 499 }), cancel);
  const [read] = new FrameReader().push(cancel);
  assert.equal(read.kind, Kind.CANCEL);
  assert.equal(read.seq, 5);
});

test("the stream frames of section 3.4 encode byte for byte and decode", () => {
  const [item, end, credit] = specFrames("### 3.4 Streams");
  assert.deepEqual(
    encodeFrame({ kind: Kind.ITEM, seq: 7, timeout: 1, codec: Codec.RAW, body: Uint8Array.of(0x68, 0x69) }),
    item,
  );
  assert.deepEqual(
    encodeFrame({ kind: Kind.ITEM, flags: Flag.FROM_CALLER | Flag.END, seq: 7, timeout: 3 }),
    end,
  );
  const bytes = new Uint8Array(8);
  new DataView(bytes.buffer).setBigUint64(0, 16n << 20n);
  assert.deepEqual(
    encodeFrame({ kind: Kind.CREDIT, flags: Flag.FROM_CALLER, seq: 7, timeout: 256, codec: Codec.RAW, body: bytes }),
    credit,
  );
  const [a, b, c] = new FrameReader().push(Uint8Array.from([...item, ...end, ...credit]));
  assert.deepEqual([a.kind, a.flags, a.timeout, decodeBody(a.codec, a.body)], [Kind.ITEM, 0, 1, Uint8Array.of(0x68, 0x69)]);
  assert.deepEqual([b.kind, b.flags, b.timeout], [Kind.ITEM, 3, 3]);
  assert.deepEqual([c.kind, c.flags, c.timeout, c.body], [Kind.CREDIT, 1, 256, bytes]);
  // A flag a kind does not use is refused.
  const flagged = item.slice();
  flagged[5] = Kind.CALL;
  flagged[7] = Flag.FROM_CALLER;
  assert.throws(() => new FrameReader().push(flagged), /flags 1 on a message of kind 1/);
});
