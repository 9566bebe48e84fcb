// Frames of docs/PROTOCOL.md section 2, and bodies of section 4.

import { encode as msgpackEncode, decode as msgpackDecode } from "@msgpack/msgpack";

/**
 * Message kinds (the byte at offset 5); CANCEL, ITEM and CREDIT only with
 * a peer whose hello named them (section 3.2).
 */
export const Kind = Object.freeze({ CALL: 1, REPLY: 2, PUSH: 3, CANCEL: 4, ITEM: 5, CREDIT: 6 });

/** The flags byte of kinds 5 and 6 (section 3.4). */
export const Flag = Object.freeze({ FROM_CALLER: 0x01, END: 0x02 });

// The flags each kind may carry: none but on items and credit.
const ALLOWED_FLAGS = [0, 0, 0, 0, 0, Flag.FROM_CALLER | Flag.END, Flag.FROM_CALLER];

/** Body codecs this client speaks (section 4). */
export const Codec = Object.freeze({ MSGPACK: 1, JSON: 2, RAW: 3, TEXT: 4 });

/** drpc's default frame limit: 8 MiB. */
export const DEFAULT_MAX_FRAME_LEN = 8 * 1024 * 1024;

const VERSION = 1;
const utf8 = new TextEncoder();
const text = new TextDecoder("utf-8", { fatal: true });

/** A value as a body in `codec`. */
export function encodeBody(codec, value) {
  switch (codec) {
    case Codec.MSGPACK:
      return msgpackEncode(value ?? null);
    case Codec.JSON:
      return utf8.encode(JSON.stringify(value ?? null));
    case Codec.RAW:
      if (value == null) return new Uint8Array(0);
      return value instanceof Uint8Array ? value : utf8.encode(String(value));
    case Codec.TEXT:
      return value == null ? new Uint8Array(0) : utf8.encode(String(value));
    default:
      throw new Error(`codec ${codec} is not one this client speaks`);
  }
}

/** A body in `codec` as a value; an empty body is null (raw: empty bytes). */
export function decodeBody(codec, bytes) {
  switch (codec) {
    case Codec.MSGPACK:
      return bytes.length === 0 ? null : msgpackDecode(bytes);
    case Codec.JSON:
      return bytes.length === 0 ? null : JSON.parse(text.decode(bytes));
    case Codec.RAW:
      return bytes;
    case Codec.TEXT:
      return text.decode(bytes);
    default:
      throw new Error(`codec ${codec} is not one this client speaks`);
  }
}

/**
 * One frame: `{kind, seq, timeout, status, method, message, codec, meta, body}`.
 * `meta` is an array of [key, value] pairs, `body` a Uint8Array.
 */
export function encodeFrame(f) {
  const method = utf8.encode(f.method ?? "");
  const message = utf8.encode(f.message ?? "");
  const meta = (f.meta ?? []).map(([k, v]) => [utf8.encode(k), utf8.encode(v)]);
  const body = f.body ?? new Uint8Array(0);
  const fields = [["service method", method], ["status message", message], ...meta.flatMap(([k, v]) => [["a meta key", k], ["a meta value", v]])];
  for (const [what, b] of fields) {
    if (b.length > 0xffff) throw new Error(`${what} is over 65535 bytes`);
  }
  if (meta.length > 0xffff) throw new Error("more than 65535 meta pairs");
  const metaLen = meta.reduce((n, [k, v]) => n + 4 + k.length + v.length, 0);
  const L = 23 + method.length + message.length + metaLen + body.length;
  const out = new Uint8Array(4 + L);
  const view = new DataView(out.buffer);
  let at = 0;
  const u8 = (v) => view.setUint8(at++, v);
  const u16 = (v) => { view.setUint16(at, v); at += 2; };
  const u32 = (v) => { view.setUint32(at, v); at += 4; };
  const bytes = (b) => { out.set(b, at); at += b.length; };
  u32(L);
  u8(VERSION);
  u8(f.kind);
  u8(f.codec ?? Codec.MSGPACK);
  u8(f.flags ?? 0);
  u32(f.seq ?? 0);
  u32(f.timeout ?? 0);
  view.setInt32(at, f.status ?? 0);
  at += 4;
  u16(method.length);
  bytes(method);
  u16(message.length);
  bytes(message);
  u8(0); // no transfer filters
  u16(meta.length);
  for (const [k, v] of meta) {
    u16(k.length);
    bytes(k);
    u16(v.length);
    bytes(v);
  }
  bytes(body);
  return out;
}

/** Cuts frames from a byte stream that arrives in pieces. */
export class FrameReader {
  constructor(maxFrameLen = DEFAULT_MAX_FRAME_LEN) {
    this.maxFrameLen = maxFrameLen;
    this.buf = new Uint8Array(0);
  }

  /** Appends `chunk`; returns the frames now complete. Throws on a bad frame. */
  push(chunk) {
    const joined = new Uint8Array(this.buf.length + chunk.length);
    joined.set(this.buf);
    joined.set(chunk, this.buf.length);
    const frames = [];
    let at = 0;
    while (joined.length - at >= 4) {
      const view = new DataView(joined.buffer, joined.byteOffset + at);
      const L = view.getUint32(0);
      if (L < 23) throw new Error(`a frame length of ${L} is below the minimum of 23`);
      if (4 + L > this.maxFrameLen) throw new Error(`a frame of ${4 + L} bytes is over the limit`);
      if (joined.length - at < 4 + L) break;
      frames.push(decodeFrame(joined.subarray(at + 4, at + 4 + L)));
      at += 4 + L;
    }
    this.buf = joined.slice(at);
    return frames;
  }
}

/** The frame in `b`, the L bytes after the length field. */
function decodeFrame(b) {
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let at = 0;
  const need = (n) => {
    if (at + n > b.length) throw new Error("a length runs past the end of the frame");
  };
  const u16 = () => { need(2); const v = view.getUint16(at); at += 2; return v; };
  const str = (n) => { need(n); const s = text.decode(b.subarray(at, at + n)); at += n; return s; };
  const version = view.getUint8(0);
  if (version !== VERSION) throw new Error(`unsupported protocol version ${version}`);
  const kind = view.getUint8(1);
  // 4 to 6 come only after this client's hello said it takes them.
  if (kind < 1 || kind > 6) throw new Error(`unknown message kind ${kind}`);
  const codec = view.getUint8(2);
  if (codec === 0) throw new Error("codec 0 is never valid");
  const flags = view.getUint8(3);
  if ((flags & ~ALLOWED_FLAGS[kind]) !== 0) throw new Error(`flags ${flags} on a message of kind ${kind}`);
  const seq = view.getUint32(4);
  const timeout = view.getUint32(8);
  const status = view.getInt32(12);
  at = 16;
  const method = str(u16());
  const message = str(u16());
  need(1);
  const filters = view.getUint8(at);
  at += 1 + filters;
  need(0);
  const meta = [];
  for (let n = u16(); n > 0; n--) {
    const k = str(u16());
    meta.push([k, str(u16())]);
  }
  return { kind, flags, codec, seq, timeout, status, method, message, filters, meta, body: b.slice(at) };
}
