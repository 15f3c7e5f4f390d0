// The hand-written ioredis data layer of the TypeScript web service (hashes + sorted-set index +
// stream enqueue), with a timing loop around each operation; `benches/three_way.rs` runs it.
// It FLUSHes the database it is pointed at: only ever point it at a private server.
// Env: REDIS_URL, N, and optionally ONLY=<workload>[,<workload>...] to run just those workloads
// (in the order below; each create workload flushes first, the others read what the last one made).
// Output: one JSON line per workload: {"workload", "ops", "ns", "ops_per_sec"}.
const Redis = require('ioredis');
// No default: it flushes the database, so the server must be named on purpose.
const url = process.env.REDIS_URL;
if (!url) { console.error('set REDIS_URL to a private server: this benchmark FLUSHes it'); process.exit(2); }
const N = +(process.env.N || 20000);
const redis = new Redis(url, { retryStrategy: t => Math.min(t * 50, 2000) });
const toHash = o => { const h = {}; for (const [k, v] of Object.entries(o)) { if (v === undefined || v === null) continue; h[k.replace(/[A-Z]/g, c => '_' + c.toLowerCase())] = typeof v === 'boolean' ? (v ? '1' : '0') : String(v); } return h; };
const fromHash = h => ({ id: h.id, userId: h.user_id, repo: h.repo, status: h.status, createdAt: Number(h.created_at), attempts: Number(h.attempts) });
async function createJob(job) {
  const p = redis.pipeline();
  p.hset(`job:${job.id}`, toHash(job));
  p.zadd(`jobs:user:${job.userId}`, job.createdAt, job.id);
  await p.exec();
  await redis.xadd('jobs:stream', '*', 'job_id', job.id);   // enqueueJob
}
async function getJob(id) { const h = await redis.hgetall(`job:${id}`); return h.id ? fromHash(h) : null; }
async function getUserJobs(uid, off, lim) { const ids = await redis.zrevrange(`jobs:user:${uid}`, off, off + lim - 1); const p = redis.pipeline(); ids.forEach(i => p.hgetall(`job:${i}`)); return (await p.exec()).map(([, h]) => fromHash(h)); }
async function updateJobStatus(id, status) { await redis.hset(`job:${id}`, 'status', status); }
const mk = i => ({ id: `j${i}`, userId: `u${i % 100}`, repo: 'org/repo', status: 'queued', createdAt: 1700000000000 + i, attempts: 0 });
async function time(name, n, f) { const t = process.hrtime.bigint(); await f(); const ns = process.hrtime.bigint() - t; console.log(JSON.stringify({ workload: name, ops: n, ns: String(ns), ops_per_sec: Math.round(n / (Number(ns) / 1e9)) })); }
// [name, operations, flush first, body]: the workloads in their order.
const workloads = [
  ['seq create_job', N, true, async () => { for (let i = 0; i < N; i++) await createJob(mk(i)); }],
  ['seq get_job', N, false, async () => { for (let i = 0; i < N; i++) await getJob(`j${i}`); }],
  ['seq update_status', N, false, async () => { for (let i = 0; i < N; i++) await updateJobStatus(`j${i}`, 'running'); }],
  ['seq list_user_jobs(20)', N / 10, false, async () => { for (let i = 0; i < N / 10; i++) await getUserJobs(`u${i % 100}`, 0, 20); }],
  ['conc64 create_job', N, true, async () => { let next = 0; await Promise.all(Array.from({ length: 64 }, async () => { while (next < N) await createJob(mk(next++)); })); }],
  ['conc64 get_job', N, false, async () => { let next = 0; await Promise.all(Array.from({ length: 64 }, async () => { while (next < N) await getJob(`j${next++}`); })); }],
  ['conc64 list_user_jobs(20)', N / 10, false, async () => { let next = 0; await Promise.all(Array.from({ length: 64 }, async () => { while (next < N / 10) { const i = next++; await getUserJobs(`u${i % 100}`, 0, 20); } })); }],
];
const only = process.env.ONLY ? process.env.ONLY.split(',') : null;
const unknown = (only || []).filter(name => !workloads.some(([w]) => w === name));
if (unknown.length) { console.error(`unknown workload(s) in ONLY: ${unknown.join(', ')}`); process.exit(2); }
(async () => {
  // Connected before the first timing even when it does not flush.
  if (redis.status !== 'ready') await new Promise(resolve => redis.once('ready', resolve));
  for (const [name, n, flushFirst, body] of workloads) {
    if (only && !only.includes(name)) continue;
    if (flushFirst) await redis.flushdb();
    await time(name, n, body);
  }
  redis.disconnect();
})();
