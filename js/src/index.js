// drpc over WebSocket, for browsers and any runtime with a WebSocket:
// docs/PROTOCOL.md sections 1 to 3 and 9.5, and nothing else. A call takes
// an AbortSignal: aborting it (or its deadline passing) cancels the call at
// the server (section 3.3), and a handler of the page's sees the server's
// cancel as `ctx.signal`. A page reads the server's streams (section 3.4)
// with `for await`; it opens no client streams and serves none.
//
//   import { Session } from "drpc-client";
//   const session = await Session.connect("ws://127.0.0.1:9092/drpc");
//   const sum = await session.call("/math/add", { a: 1, b: 2 }, { timeout: 2000, meta: { trace: "t-1" } });
//   session.onPush("/hello", (text) => console.log(text));
//   session.handle("/page/title", () => document.title);   // the server may call the page
//   for await (const tick of session.stream("/ticks", 10)) console.log(tick);
//   await session.close();

import {
  Codec,
  DEFAULT_MAX_FRAME_LEN,
  Flag,
  FrameReader,
  Kind,
  decodeBody,
  encodeBody,
  encodeFrame,
} from "./frame.js";
import { ItemStream, STREAM_KEY, WINDOW_KEY, streamWindow } from "./stream.js";

export { Codec, Flag, Kind, FrameReader, ItemStream, encodeFrame, encodeBody, decodeBody };

/** Status codes of PROTOCOL.md section 5. */
export const Code = Object.freeze({
  OK: 0,
  UNKNOWN: -1,
  WRONG_CONNECTION: 100,
  CONNECTION_CLOSED: 102,
  WRITE_FAILED: 104,
  DIAL_FAILED: 105,
  BAD_MESSAGE: 400,
  UNAUTHORIZED: 401,
  NOT_FOUND: 404,
  NOT_ALLOWED: 405,
  DEADLINE_EXCEEDED: 408,
  TOO_LARGE: 413,
  CANCELED: 499,
  INTERNAL: 500,
  OVERLOADED: 503,
});

/** A failed call: a status code and what happened. Handlers throw it too. */
export class Status extends Error {
  constructor(code, message) {
    super(message);
    this.name = "Status";
    this.code = code;
  }

  toString() {
    return `${this.code}: ${this.message}`;
  }
}

const DEFAULT_TIMEOUT_MS = 30000;
// Section 3.2: the hello this client sends first, and what it takes.
const HELLO = "/_drpc/hello";
const FEATURES_KEY = "drpc-features";
const HELLO_TIMEOUT_MS = 10000;
// Cancels kept while the hello is unanswered, at most.
const MAX_WAITING_CANCELS = 1024;
// The longest a timer can wait in a browser (2^31 - 1 ms, about 24.8
// days); longer deadlines are cut to it, on the wire too.
const MAX_TIMEOUT_MS = 0x7fffffff;

/** One connection to a drpc endpoint; either side may call or push. */
export class Session {
  /**
   * Opens a WebSocket to `url` (ws:// or wss://) and resolves once it is
   * open. Options: `codec` (default Codec.MSGPACK), `timeout` (ms, default
   * 30000), `maxFrameLen` (bytes, default 8 MiB).
   */
  static connect(url, options = {}) {
    return new Promise((resolve, reject) => {
      let ws;
      try {
        ws = new WebSocket(url, ["drpc"]);
      } catch (e) {
        reject(new Status(Code.DIAL_FAILED, `${url}: ${e.message}`));
        return;
      }
      ws.binaryType = "arraybuffer";
      const failed = () => reject(new Status(Code.DIAL_FAILED, `cannot connect to ${url}`));
      ws.addEventListener("error", failed, { once: true });
      ws.addEventListener(
        "open",
        () => {
          ws.removeEventListener("error", failed);
          resolve(new Session(ws, options));
        },
        { once: true },
      );
    });
  }

  constructor(ws, options = {}) {
    this.ws = ws;
    this.codec = options.codec ?? Codec.MSGPACK;
    this.timeout = options.timeout ?? DEFAULT_TIMEOUT_MS;
    this.reader = new FrameReader(options.maxFrameLen ?? DEFAULT_MAX_FRAME_LEN);
    this.calls = new Map();
    this.pushes = new Map();
    this.pending = new Map();
    this.nextSeq = 1;
    this.running = 0;
    // The server's calls being handled: seq -> AbortController (ctx.signal).
    this.serving = new Map();
    // Whether the server takes cancels and streams: null until it answers
    // the hello.
    this.peerCancels = null;
    this.peerStreams = null;
    this.helloAnswered = new Promise((resolve) => (this.onHelloAnswered = resolve));
    // The server streams this side reads: seq -> ItemStream.
    this.streams = new Map();
    this.waitingCancels = [];
    this.idle = [];
    // Why new calls fail at once: the peer's going-away notice, or ours.
    this.goingAway = null;
    this.sentNotice = false;
    this.sentEnd = false;
    this.peerEnded = false;
    this.endedWith = null;
    /** Resolves with the peer's going-away notice, as a Status (code 102). */
    this.noticed = new Promise((resolve) => (this.onNotice = resolve));
    /** Resolves with the Status the session ended with. */
    this.closed = new Promise((resolve) => (this.onClosed = resolve));
    ws.addEventListener("message", (ev) => this.receive(ev.data));
    ws.addEventListener("close", (ev) => this.ended(ev));
    this.sayHello();
  }

  /** Serves calls from the peer to `method`: `fn(arg, ctx)` returns the reply value. */
  handle(method, fn) {
    this.calls.set(method, fn);
    return this;
  }

  /** Takes pushes from the peer to `method`: `fn(arg, ctx)`. */
  onPush(method, fn) {
    this.pushes.set(method, fn);
    return this;
  }

  /**
   * Calls `method` with `arg`; resolves with the reply value, rejects with a
   * Status. Options: `timeout` (ms), `meta` (an object or pairs), `codec`,
   * and `signal`, an AbortSignal: aborting it rejects the call with 499 and
   * cancels it at the server.
   */
  async call(method, arg, options = {}) {
    return (await this.callWithMeta(method, arg, options)).value;
  }

  /** As `call`, resolving with `{ value, meta }` (the handler's reply meta). */
  callWithMeta(method, arg, options = {}) {
    return new Promise((resolve, reject) => {
      const refused = this.refused();
      if (refused) return reject(refused);
      const signal = options.signal;
      if (signal?.aborted) return reject(new Status(Code.CANCELED, `${method}: aborted before it was sent`));
      const codec = options.codec ?? this.codec;
      const timeout = Math.min(MAX_TIMEOUT_MS, Math.max(1, Math.ceil(options.timeout ?? this.timeout)));
      const seq = this.allocate();
      options.onSeq?.(seq);
      let frame;
      try {
        frame = this.frame_of({
          kind: Kind.CALL, seq, timeout, method, codec, meta: pairs(options.meta), body: encodeBody(codec, arg),
        });
      } catch (e) {
        return reject(e instanceof Status ? e : new Status(Code.BAD_MESSAGE, `cannot encode the argument of ${method}: ${e.message}`));
      }
      const timer = setTimeout(() => {
        this.settle(seq);
        this.cancel(seq);
        reject(new Status(Code.DEADLINE_EXCEEDED, `${method}: no reply within ${timeout} ms`));
      }, timeout);
      const onAbort = () => {
        if (!this.settle(seq)) return;
        this.cancel(seq);
        reject(new Status(Code.CANCELED, `${method}: the caller aborted the call`));
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.pending.set(seq, { resolve, reject, timer, method, signal, onAbort });
      this.ws.send(frame);
    });
  }

  /**
   * Opens a server stream (section 3.4): calls `method` with `arg` and
   * returns at once an ItemStream of the server's items, to read with
   * `for await`. Options as `call`: `timeout` bounds the whole stream, and
   * aborting `signal` (or breaking out of the loop, or `cancel()`) cancels
   * it at the server. A server that does not take streams fails it with
   * 405.
   */
  stream(method, arg, options = {}) {
    const stream = new ItemStream(this, method, streamWindow(this.reader.maxFrameLen));
    const user = options.signal;
    if (user?.aborted) stream.controller.abort();
    else user?.addEventListener("abort", () => stream.controller.abort(), { once: true });
    const { items, bytes } = stream.window;
    const meta = [...pairs(options.meta), [STREAM_KEY, "server"], [WINDOW_KEY, `${items},${bytes}`]];
    const register = (seq) => {
      stream.seq = seq;
      this.streams.set(seq, stream);
    };
    this.helloAnswered
      .then(() => {
        if (!this.peerStreams) {
          throw new Status(Code.NOT_ALLOWED, `${method}: the server did not say it takes streams (section 3.2)`);
        }
        return this.callWithMeta(method, arg, { ...options, meta, signal: stream.controller.signal, onSeq: register });
      })
      .then(
        (reply) => {
          const broken = stream.finish(reply.meta);
          if (broken) stream.fail(new Status(Code.BAD_MESSAGE, broken));
        },
        (e) => stream.fail(e),
      )
      .finally(() => {
        if (this.streams.get(stream.seq) === stream) this.streams.delete(stream.seq);
      });
    return stream;
  }

  /** Pushes `arg` to `method`: one-way, nothing comes back. */
  async push(method, arg, options = {}) {
    const refused = this.refused();
    if (refused) throw refused;
    const codec = options.codec ?? this.codec;
    let frame;
    try {
      frame = this.frame_of({ kind: Kind.PUSH, method, codec, meta: pairs(options.meta), body: encodeBody(codec, arg) });
    } catch (e) {
      throw e instanceof Status ? e : new Status(Code.BAD_MESSAGE, `cannot encode the push to ${method}: ${e.message}`);
    }
    this.ws.send(frame);
  }

  /**
   * Closes gracefully: tells the peer this side is going away, waits for
   * the replies to its own calls and for the calls it is serving, then
   * ends its stream. Resolves when the connection has closed.
   */
  async close() {
    if (this.isOpen() && !this.sentNotice) {
      this.sentNotice = true;
      this.goingAway ??= new Status(Code.CONNECTION_CLOSED, "the session is closing");
      this.send({ kind: Kind.REPLY, seq: 0, status: Code.CONNECTION_CLOSED, message: "going away" });
      await this.whenIdle();
      this.endStream();
    }
    return this.closed;
  }

  // --- the rest is the protocol ---

  isOpen() {
    return this.ws.readyState === WebSocket.OPEN;
  }

  refused() {
    if (this.endedWith) return this.endedWith;
    if (this.goingAway) return new Status(Code.CONNECTION_CLOSED, `${this.goingAway.message}; not sent`);
    if (!this.isOpen() || this.sentEnd || this.peerEnded) {
      return new Status(Code.CONNECTION_CLOSED, "the connection is closed");
    }
    return null;
  }

  allocate() {
    for (;;) {
      const seq = this.nextSeq;
      this.nextSeq = seq >= 0xffffffff ? 1 : seq + 1;
      if (!this.pending.has(seq)) return seq;
    }
  }

  send(frame) {
    this.ws.send(encodeFrame(frame));
  }

  sendIfOpen(frame) {
    if (this.isOpen() && !this.sentEnd) this.send(frame);
  }

  /** A frame's bytes, refused with 413 locally when over the peer's limit (section 2.2). */
  frame_of(fields) {
    let frame;
    try {
      frame = encodeFrame(fields);
    } catch (e) {
      throw new Status(Code.TOO_LARGE, e.message);
    }
    if (frame.length > this.reader.maxFrameLen) {
      throw new Status(Code.TOO_LARGE, `a frame of ${frame.length} bytes is over the limit of ${this.reader.maxFrameLen}`);
    }
    return frame;
  }

  /** Sends the hello of section 3.2, the first frame: the answer says whether the server takes cancels and streams. */
  sayHello() {
    const seq = this.allocate();
    const answered = (meta) => {
      const names = (meta?.[FEATURES_KEY] ?? "").split(",").map((n) => n.trim());
      this.peerCancels = names.includes("cancel");
      this.peerStreams = names.includes("stream");
      this.onHelloAnswered();
      for (const waiting of this.waitingCancels.splice(0)) this.cancel(waiting);
    };
    const timer = setTimeout(() => this.settle(seq) && answered(null), HELLO_TIMEOUT_MS);
    this.pending.set(seq, {
      resolve: (reply) => answered(reply.meta),
      reject: () => answered(null),
      timer,
      method: HELLO,
    });
    this.send({
      kind: Kind.CALL, seq, timeout: HELLO_TIMEOUT_MS, method: HELLO, codec: Codec.RAW,
      meta: [[FEATURES_KEY, "cancel,stream"]], body: new Uint8Array(0),
    });
  }

  /** Tells the server this side gave up on call `seq` (section 3.3), once it is known to take that. */
  cancel(seq) {
    if (this.peerCancels === null) {
      if (this.waitingCancels.length < MAX_WAITING_CANCELS) this.waitingCancels.push(seq);
    } else if (this.peerCancels && this.isOpen() && !this.sentEnd) {
      this.send({ kind: Kind.CANCEL, seq, status: Code.CANCELED });
    }
  }

  /** Forgets call `seq`; returns its waiter. */
  settle(seq) {
    const p = this.pending.get(seq);
    if (p) {
      clearTimeout(p.timer);
      p.signal?.removeEventListener("abort", p.onAbort);
      this.pending.delete(seq);
      this.maybeIdle();
    }
    return p;
  }

  whenIdle() {
    return new Promise((resolve) => {
      this.idle.push(resolve);
      this.maybeIdle();
    });
  }

  maybeIdle() {
    if (this.pending.size === 0 && this.running === 0) {
      for (const resolve of this.idle.splice(0)) resolve();
    }
  }

  /** Ends this side's stream (the empty message of section 9.5). */
  endStream() {
    if (this.sentEnd || !this.isOpen()) return;
    this.sentEnd = true;
    this.ws.send(new Uint8Array(0));
    if (this.peerEnded) this.ws.close(1000);
  }

  receive(data) {
    if (typeof data === "string") {
      this.fail(new Status(Code.BAD_MESSAGE, "a text message: drpc frames travel in binary messages"));
      return;
    }
    const bytes = new Uint8Array(data);
    if (bytes.length === 0) {
      // The peer's end marker: it sends nothing more; answer what we run,
      // then end our stream too.
      this.peerEnded = true;
      this.failPending(new Status(Code.CONNECTION_CLOSED, "the peer ended its stream"));
      this.whenIdle().then(() => this.endStream());
      return;
    }
    let frames;
    try {
      frames = this.reader.push(bytes);
    } catch (e) {
      this.fail(new Status(Code.BAD_MESSAGE, e.message));
      return;
    }
    for (const f of frames) this.frame(f);
  }

  frame(f) {
    if (f.kind === Kind.REPLY && f.seq === 0) return this.notice(f);
    if (f.kind === Kind.REPLY) return this.reply(f);
    if (f.kind === Kind.CALL) return this.serve(f);
    if (f.kind === Kind.ITEM || f.kind === Kind.CREDIT) return this.streamFrame(f);
    if (f.kind === Kind.CANCEL) {
      // The server gave up on its call: no reply goes out, and the handler
      // sees ctx.signal aborted.
      const serving = this.serving.get(f.seq);
      if (serving) {
        // No longer owed: a close does not wait for it.
        this.serving.delete(f.seq);
        this.running -= 1;
        serving.abort(new Status(Code.CANCELED, "the caller cancelled the call"));
        this.maybeIdle();
      }
      return;
    }
    const handler = this.pushes.get(f.method);
    if (!handler || f.filters > 0) return;
    try {
      handler(decodeBody(f.codec, f.body), this.context(f));
    } catch (e) {
      console.debug(`push ${f.method} dropped: ${e}`);
    }
  }

  /**
   * An item of a stream this side reads. A page sends no items, so credit
   * for it, and items of calls it serves, cannot be: they are dropped, as
   * are items of a stream it no longer reads (section 3.4).
   */
  streamFrame(f) {
    if (f.kind !== Kind.ITEM || f.flags & Flag.FROM_CALLER) return;
    const stream = this.streams.get(f.seq);
    const broken = stream?.item(f);
    if (broken) this.fail(new Status(Code.BAD_MESSAGE, `the server broke a stream's flow control: ${broken}`));
  }

  notice(f) {
    if (f.status === Code.OK) return;
    const status = new Status(f.status, `notice from the peer: ${f.message}`);
    if (f.status === Code.CONNECTION_CLOSED) {
      this.goingAway ??= status;
      this.onNotice(status);
    } else {
      // Refused: the connection is over.
      this.fail(status);
    }
  }

  reply(f) {
    const p = this.settle(f.seq);
    if (!p) return; // late: its caller gave up
    if (f.status !== Code.OK) return p.reject(new Status(f.status, f.message));
    if (f.filters > 0) return p.reject(new Status(Code.BAD_MESSAGE, "a reply with transfer filters"));
    try {
      p.resolve({ value: decodeBody(f.codec, f.body), meta: Object.fromEntries(f.meta) });
    } catch (e) {
      p.reject(new Status(Code.BAD_MESSAGE, `cannot decode the reply of ${p.method}: ${e.message}`));
    }
  }

  async serve(f) {
    if (f.seq === 0) {
      // No reply could name it (section 3).
      return this.fail(new Status(Code.BAD_MESSAGE, "a call with seq 0"));
    }
    const controller = new AbortController();
    const answer = (fields) => {
      // Nothing goes out after this side's end marker (section 9.5), nor
      // for a call the server cancelled (section 3.3).
      if (controller.signal.aborted) return;
      if (this.isOpen() && !this.sentEnd) this.send({ kind: Kind.REPLY, seq: f.seq, codec: f.codec, ...fields });
    };
    if (this.sentNotice) {
      return answer({ status: Code.CONNECTION_CLOSED, message: "going away: the call was not run" });
    }
    if (this.serving.has(f.seq)) {
      return answer({ status: Code.BAD_MESSAGE, message: `seq ${f.seq} is still in use by a call of yours being handled` });
    }
    const handler = this.calls.get(f.method);
    if (!handler) return answer({ status: Code.NOT_FOUND, message: `no handler for ${f.method}` });
    if (f.meta.some(([k]) => k === STREAM_KEY)) {
      return answer({ status: Code.BAD_MESSAGE, message: `${f.method} takes no streams: this client serves none` });
    }
    if (f.filters > 0) return answer({ status: Code.BAD_MESSAGE, message: "transfer filters are not supported here" });
    let arg;
    try {
      arg = decodeBody(f.codec, f.body);
    } catch (e) {
      return answer({ status: Code.BAD_MESSAGE, message: `cannot decode the body of ${f.method}: ${e.message}` });
    }
    this.running += 1;
    this.serving.set(f.seq, controller);
    const timeout = Math.min(MAX_TIMEOUT_MS, f.timeout || DEFAULT_TIMEOUT_MS);
    let timer;
    try {
      const late = new Promise((_, reject) => {
        timer = setTimeout(
          () => reject(new Status(Code.DEADLINE_EXCEEDED, `${f.method} ran past its deadline`)),
          timeout,
        );
      });
      const value = await Promise.race([handler(arg, this.context(f, controller.signal)), late]);
      answer({ body: encodeBody(f.codec, value) });
    } catch (e) {
      if (e instanceof Status) answer({ status: e.code, message: e.message });
      else answer({ status: Code.INTERNAL, message: `${f.method}: ${e?.message ?? e}` });
    } finally {
      clearTimeout(timer);
      if (this.serving.get(f.seq) === controller) this.serving.delete(f.seq);
      // A cancelled call was counted out when its cancel came.
      if (!controller.signal.aborted) {
        this.running -= 1;
        this.maybeIdle();
      }
    }
  }

  /** What a handler gets: for a call, `signal` aborts when the server cancels it. */
  context(f, signal = null) {
    return {
      session: this,
      method: f.method,
      meta: Object.fromEntries(f.meta),
      deadline: f.kind === Kind.CALL ? Date.now() + (f.timeout || DEFAULT_TIMEOUT_MS) : null,
      signal,
    };
  }

  failPending(status) {
    for (const seq of [...this.pending.keys()]) this.settle(seq)?.reject(status);
  }

  /** Ends the session for `status`. A page may close with 1000 or 3000-4999 only: 4000 + the code. */
  fail(status) {
    this.endedWith ??= status;
    this.failPending(status);
    if (this.ws.readyState <= WebSocket.OPEN) this.ws.close(4000 + (status.code % 1000), "drpc protocol error");
  }

  ended(ev) {
    const status =
      this.endedWith ??
      new Status(Code.CONNECTION_CLOSED, `the connection closed (${ev.code}${ev.reason ? ` ${ev.reason}` : ""})`);
    this.endedWith = status;
    this.failPending(status);
    this.onClosed(status);
  }
}

function pairs(meta) {
  if (!meta) return [];
  return Array.isArray(meta) ? meta : Object.entries(meta);
}
