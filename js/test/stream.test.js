// A server stream as the page reads it (js/src/stream.js), against a
// session that records what would go out: items in order, credit once half
// the window is read, the reply's count checked, and flow control enforced.
// Run: node --test js/test/*.test.js (examples/tests/browser.rs runs it).

import { test } from "node:test";
import assert from "node:assert/strict";
import { Codec, Flag, Kind, encodeBody } from "../src/index.js";
import { ItemStream } from "../src/stream.js";

function opened(window = { items: 4, bytes: 1000 }) {
  const sent = [];
  const stream = new ItemStream({ sendIfOpen: (f) => sent.push(f) }, "/ticks", window);
  stream.seq = 7;
  return { stream, sent };
}

const item = (n, value) => ({ kind: Kind.ITEM, flags: 0, seq: 7, timeout: n, codec: Codec.MSGPACK, body: encodeBody(Codec.MSGPACK, value) });

test("items come in order, credit goes once half the window is read, and the reply ends them", async () => {
  const { stream, sent } = opened();
  const reading = (async () => {
    const got = [];
    for await (const v of stream) got.push(v);
    return got;
  })();
  for (let n = 1; n <= 4; n++) assert.equal(stream.item(item(n, n * 10)), null);
  assert.match(stream.item(item(5, 0)), /past the credit/, "4 allowed");
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(sent.length, 2, "a grant after 2 read, and after 4");
  assert.deepEqual([sent[0].kind, sent[0].flags, sent[0].seq, sent[0].timeout], [Kind.CREDIT, Flag.FROM_CALLER, 7, 6]);
  assert.equal(new DataView(sent[0].body.buffer).getBigUint64(0), 1002n, "2 bytes read + 1000");
  assert.equal(sent[1].timeout, 8);
  assert.equal(stream.finish({ "drpc-items": "4", done: "yes" }), null);
  assert.deepEqual(await reading, [10, 20, 30, 40]);
  assert.equal(stream.trailers.done, "yes");
});

test("a failed stream throws its status after its items, and counts must add up", async () => {
  const { stream } = opened();
  stream.item(item(1, "a"));
  stream.fail(Object.assign(new Error("ran dry"), { code: 1234 }));
  const it = stream[Symbol.asyncIterator]();
  assert.deepEqual(await it.next(), { value: "a", done: false });
  await assert.rejects(it.next(), /ran dry/);
  assert.deepEqual(await it.next(), { value: undefined, done: true });
  const other = opened().stream;
  assert.equal(other.item(item(2, "b")), "item 2 of call 7: expected 1");
  assert.match(other.finish({ "drpc-items": "3" }), /counts 3 items, but 0 came/);
  assert.match(other.item({ ...item(1, "c"), flags: Flag.END }), /END item from the server/);
});

test("breaking out of the loop cancels the call, and a cancelled stream grants no more credit", async () => {
  const { stream, sent } = opened();
  for (let n = 1; n <= 3; n++) stream.item(item(n, n));
  for await (const v of stream) {
    assert.equal(v, 1);
    break;
  }
  assert.ok(stream.controller.signal.aborted);
  stream.take();
  assert.equal(sent.length, 0, "item 2 would have granted credit");
});
