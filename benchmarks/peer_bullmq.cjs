// BullMQ harness, run by node with BULLMQ_DIR pointing at bench-results/.peers/node/node_modules/bullmq.
//
//   node peer_bullmq.cjs enqueue URL PREFIX N TIMED   // TIMED jobs by add() one at a time (awaited), the rest by addBulk
//   node peer_bullmq.cjs drain URL PREFIX N CONCURRENCY
//
// Queue "bench" under the key prefix PREFIX; jobs are no-ops with no data. `drain` starts one Worker with a no-op
// processor and prints the wall-clock time (Date.now(), ms) of the first and the N-th 'completed' event.
// Completed jobs are kept (BullMQ's default), as in peer-baselines.md. Each mode prints one JSON line last.
"use strict";

const { Queue, Worker } = require(process.env.BULLMQ_DIR);

function connection(url) {
  const u = new URL(url);
  const opts = { host: u.hostname, port: Number(u.port || 6379), maxRetriesPerRequest: null };
  if (u.password) opts.password = decodeURIComponent(u.password);
  if (u.username) opts.username = decodeURIComponent(u.username);
  const db = u.pathname.replace("/", "");
  if (db) opts.db = Number(db);
  return opts;
}

async function enqueue(url, prefix, n, timed) {
  const queue = new Queue("bench", { connection: connection(url), prefix });
  await queue.waitUntilReady();
  const start = process.hrtime.bigint();
  for (let i = 0; i < timed; i++) {
    await queue.add("noop", null);
  }
  const timedS = Number(process.hrtime.bigint() - start) / 1e9;
  for (let i = timed; i < n; i += 1000) {
    const jobs = [];
    for (let j = i; j < Math.min(n, i + 1000); j++) jobs.push({ name: "noop", data: null });
    await queue.addBulk(jobs);
  }
  await queue.close();
  return { timed, timed_s: timedS };
}

async function drain(url, prefix, n, concurrency) {
  let count = 0;
  let first = null;
  let resolveDone;
  const done = new Promise((resolve) => { resolveDone = resolve; });
  const worker = new Worker("bench", async () => null, { connection: connection(url), prefix, concurrency });
  worker.on("completed", () => {
    count += 1;
    const now = Date.now();
    if (first === null) first = now;
    if (count === n) resolveDone(now);
  });
  worker.on("error", (err) => { console.error(String(err)); });
  const end = await done;
  await worker.close();
  return { jobs: count, first: first / 1000, done: end / 1000 };
}

async function main() {
  const [mode, url, prefix, a, b] = process.argv.slice(2);
  let out;
  if (mode === "enqueue") out = await enqueue(url, prefix, Number(a), Number(b));
  else if (mode === "drain") out = await drain(url, prefix, Number(a), Number(b));
  else throw new Error(`unknown mode ${mode}`);
  console.log(JSON.stringify(out));
  process.exit(0);
}

main().catch((err) => { console.error(err); process.exit(1); });
