// Run by browser.html in headless Chromium against a real drpc endpoint
// (examples/tests/browser.rs): calls with meta and deadlines, a push each
// way, a call from the server, cancels both ways, server streams, then the
// server's going-away notice. Each step's outcome goes back to the test over a
// second session.

import { Code, Session, Status } from "../src/index.js";

const params = new URLSearchParams(location.search);

async function report(step, data) {
  const reporter = await Session.connect(params.get("report"));
  await reporter.call("/report", { step, ...data }, { timeout: 5000 });
  await reporter.close();
}

async function run() {
  const session = await Session.connect(params.get("ws"));
  const pushed = new Promise((resolve) => session.onPush("/page/hello", (text) => resolve(text)));
  session.handle("/page/double", (n, ctx) => {
    if (ctx.meta.from !== "server") throw new Status(Code.BAD_MESSAGE, "meta from=server is missing");
    return n * 2;
  });
  // The server calls this, then gives up: ctx.signal says so.
  session.handle("/page/wait", (_, ctx) => new Promise((resolve) => {
    ctx.signal.addEventListener("abort", () => {
      session.push("/page/note", "cancelled");
      resolve(null);
    }, { once: true });
    session.push("/page/note", "waiting");
  }));

  const sum = await session.call("/math/add", { a: 20, b: 22 });
  const { value: seen, meta } = await session.callWithMeta("/meta", "trace", {
    meta: { trace: "t-1" },
    timeout: 2000,
  });
  let late = null;
  try {
    await session.call("/slow", 5000, { timeout: 100 });
  } catch (e) {
    late = e.code;
  }
  const remaining = await session.call("/remaining_ms", null, { timeout: 5000 });
  const missing = await session.call("/nowhere", null).catch((e) => e.code);
  const push = await pushed;
  // Aborting a call cancels it at the server: its handler stops.
  const abort = new AbortController();
  const hanging = session.call("/hang", null, { signal: abort.signal, timeout: 30000 }).catch((e) => e.code);
  await session.call("/hang_started", null, { timeout: 15000 });
  abort.abort();
  const aborted = await hanging;
  const stopped = await session.call("/hang_stopped", null, { timeout: 15000 });
  // A server stream read to its end, past one window of credit.
  const counted = [];
  const ticks = session.stream("/count", 300);
  for await (const n of ticks) counted.push(n);
  const streamed = { n: counted.length, last: counted.at(-1), done: ticks.trailers?.done ?? null };
  // Breaking out of a stream cancels it at the server.
  let taken = 0;
  for await (const _ of session.stream("/endless", null)) {
    if (++taken === 5) break;
  }
  const endlessStopped = await session.call("/endless_stopped", null, { timeout: 15000 });
  await session.push("/page/note", "from the page");
  await report("calls", {
    sum, seen, replyMeta: meta.seen ?? null, late, remaining, missing, push, aborted, stopped, streamed, taken, endlessStopped,
  });

  // The test shuts the server down now.
  const notice = await session.noticed;
  const after = await session.call("/math/add", { a: 1, b: 1 }).catch((e) => e.code);
  const closed = await session.closed;
  await report("going-away", { notice: notice.code, after, closed: closed.code });
}

run().catch((e) => report("error", { message: String(e?.stack ?? e) }));
