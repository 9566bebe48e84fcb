// Server streams of docs/PROTOCOL.md section 3.4, as a page reads them:
// the server's items arrive in number order under the credit this side
// grants, so a page that reads slowly holds the server back, and the reply
// ends them.

import { Codec, Flag, Kind, decodeBody } from "./frame.js";

/** The meta keys of section 3.4. */
export const STREAM_KEY = "drpc-stream";
export const WINDOW_KEY = "drpc-window";
const ITEMS_KEY = "drpc-items";

/** The window a page grants: 256 items and 16 MiB, or two frames if more. */
export function streamWindow(maxFrameLen) {
  return { items: 256, bytes: Math.max(16 * 1024 * 1024, 2 * maxFrameLen) };
}

/**
 * The items of a server stream: an async iterable of decoded values
 * (`for await (const item of stream)`), which ends when the server's reply
 * does and throws the server's Status if it fails. Breaking out of the
 * loop, or `cancel()`, cancels the call at the server. `trailers` holds the
 * reply's meta once the stream has ended well.
 */
export class ItemStream {
  constructor(session, method, window) {
    this.session = session;
    this.method = method;
    this.window = window;
    this.seq = null;
    this.ready = [];
    this.waiters = [];
    this.received = 0;
    this.receivedBytes = 0;
    this.consumed = 0;
    this.consumedBytes = 0;
    this.granted = { items: window.items, bytes: window.bytes };
    this.ended = false;
    this.error = null;
    this.trailers = null;
    this.controller = new AbortController();
  }

  [Symbol.asyncIterator]() {
    return this;
  }

  /** The next item, as the async iterator protocol has it. */
  next() {
    if (this.ready.length > 0) return Promise.resolve({ value: this.take(), done: false });
    if (this.error) {
      const error = this.error;
      this.error = null;
      this.ended = true;
      return Promise.reject(error);
    }
    if (this.ended) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  /** Stops reading: the call is cancelled at the server if it has not ended. */
  return() {
    this.cancel();
    return Promise.resolve({ value: undefined, done: true });
  }

  /** Cancels the call at the server (section 3.3); reading then ends with 499. */
  cancel() {
    if (!this.ended && !this.error) this.controller.abort();
  }

  /** Decodes the next item, and grants credit once half the window is read. */
  take() {
    const f = this.ready.shift();
    this.consumed += 1;
    this.consumedBytes += f.body.length;
    const itemsLeft = this.granted.items - this.consumed;
    const bytesLeft = this.granted.bytes - this.consumedBytes;
    // No credit for a stream that is over (ended, failed, or cancelled).
    const live = !this.ended && !this.error && !this.controller.signal.aborted;
    if (live && (itemsLeft <= this.window.items / 2 || bytesLeft <= this.window.bytes / 2)) {
      this.granted = { items: this.consumed + this.window.items, bytes: this.consumedBytes + this.window.bytes };
      const body = new Uint8Array(8);
      new DataView(body.buffer).setBigUint64(0, BigInt(this.granted.bytes));
      this.session.sendIfOpen({
        kind: Kind.CREDIT, flags: Flag.FROM_CALLER, seq: this.seq, timeout: this.granted.items, codec: Codec.RAW, body,
      });
    }
    return decodeBody(f.codec, f.body);
  }

  // --- called by the session ---

  /** An item from the server; returns why it breaks the protocol, if it does. */
  item(f) {
    if (f.flags & Flag.END) return "an END item from the server, whose direction ends with its reply";
    if (f.timeout !== this.received + 1) return `item ${f.timeout} of call ${f.seq}: expected ${this.received + 1}`;
    if (f.timeout > this.granted.items || this.receivedBytes + f.body.length > this.granted.bytes) {
      return `item ${f.timeout} of call ${f.seq} goes past the credit granted`;
    }
    this.received += 1;
    this.receivedBytes += f.body.length;
    this.ready.push(f);
    this.wake();
    return null;
  }

  /**
   * The server's successful reply: every item it counts came before it (a
   * WebSocket keeps order). Returns why it does not add up, if it does not.
   */
  finish(meta) {
    const counted = Number(meta[ITEMS_KEY] ?? "0");
    if (counted !== this.received) return `the reply counts ${counted} items, but ${this.received} came`;
    this.ended = true;
    this.trailers = meta;
    this.wake();
    return null;
  }

  fail(status) {
    if (this.ended || this.error) return;
    this.error = status;
    this.wake();
  }

  wake() {
    while (this.waiters.length > 0 && (this.ready.length > 0 || this.ended || this.error)) {
      const waiter = this.waiters.shift();
      this.next().then(waiter.resolve, waiter.reject);
    }
  }
}
