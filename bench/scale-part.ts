/**
 * The scale part (`BENCH_PARTS=scale`, not run by default: it takes minutes): BENCH_SCALE_N
 * (default 100,000) API_KEY connections on the file store, in a fresh temp data dir removed at
 * the end. It creates them through the REST API (16 at once, rate limits raised for the bench)
 * and reports creates/s; stops the broker and starts it again on the same directory, timing
 * spawn → `/readyz` 200; reads the broker's RSS (/proc/<pid>/status VmRSS) with nothing fetched;
 * fetches every connection's authorization once (32 at once: each is a cache miss) for the miss
 * latency and the RSS after touching all; then times ~50 list pages
 * (`NamePrefix`, `Limit=100`: the broker's name for AWS's MaxResults). Figures only, no target (issue 16's targets are later work).
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { positiveInteger, printTable } from './common.js';
import { startServer, stopServer, type Pinning, type ServerChild } from './server-child.js';

const CREATE_CONCURRENCY = 16;
const FETCH_CONCURRENCY = 32;
const LIST_CALLS = 50;
const PAGE_SIZE = 100;
/** Start-up reads every record today (9.8 s at 100,000 in issue 16): leave room for 1M. */
const READY_TIMEOUT_MS = 600_000;
const NAME_DIGITS = 7;

interface ScaleOptions {
  pinning: Pinning | undefined;
  servers: ServerChild[];
}

export interface LatencySummary {
  count: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

/** The broker's own view of its memory, in MiB (see bench/scale-server.ts). */
export interface HeapFigures {
  heapUsedMiB: number;
  heapTotalMiB: number;
  externalMiB: number;
  /** Heap still used after a full GC: what is really held. */
  heapUsedAfterGcMiB: number;
}

export interface ScaleFigures {
  connections: number;
  createConcurrency: number;
  createSeconds: number;
  createsPerSecond: number;
  /** Spawn → /readyz 200 with an empty data dir, for comparison. */
  emptyStartToReadyMs: number;
  startToReadyMs: number;
  /** RSS of the broker on the empty data dir: Node, tsx and the broker's code. */
  emptyRssMiB: number;
  rssAfterStartMiB: number;
  rssAfterTouchingAllMiB: number;
  heapAfterStart: HeapFigures;
  heapAfterTouchingAll: HeapFigures;
  miss: LatencySummary;
  fetchSeconds: number;
  list: LatencySummary & { pageSize: number };
  totalSeconds: number;
}

const nameOf = (i: number): string => `scale-${String(i).padStart(NAME_DIGITS, '0')}`;

function createBody(i: number): string {
  return JSON.stringify({
    Name: nameOf(i),
    AuthorizationType: 'API_KEY',
    AuthParameters: {
      ApiKeyAuthParameters: {
        ApiKeyName: 'x-api-key',
        ApiKeyValue: `scale_${i}_${'k'.repeat(24)}`,
      },
      InvocationHttpParameters: {
        HeaderParameters: [{ Key: 'Accept', Value: 'application/json', IsValueSecret: false }],
      },
    },
  });
}

/** Runs `task(i)` for i in [0, count) with `concurrency` workers pulling the next index. */
async function pool(
  count: number,
  concurrency: number,
  task: (i: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) {
      const i = next;
      next += 1;
      await task(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
}

/** Nearest-rank percentiles; sorts `values` in place. */
function summarize(values: Float64Array): LatencySummary {
  values.sort();
  const at = (p: number): number =>
    values[Math.min(values.length - 1, Math.max(0, Math.ceil(p * values.length) - 1))] ?? 0;
  return { count: values.length, p50Ms: at(0.5), p99Ms: at(0.99), maxMs: at(1) };
}

function rssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(status);
  if (match === null) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(match[1]) / 1024;
}

const MIB = 1024 * 1024;

/** Asks the broker (SIGUSR2) to write its memory figures, read once RSS has been taken. */
async function heapFigures(pid: number, file: string): Promise<HeapFigures> {
  await rm(file, { force: true });
  process.kill(pid, 'SIGUSR2');
  for (let waited = 0; ; waited += 50) {
    try {
      const parsed = JSON.parse(await readFile(file, 'utf8')) as {
        before: NodeJS.MemoryUsage;
        heapUsedAfterGc: number;
      }; // written by bench/scale-server.ts
      return {
        heapUsedMiB: parsed.before.heapUsed / MIB,
        heapTotalMiB: parsed.before.heapTotal / MIB,
        externalMiB: parsed.before.external / MIB,
        heapUsedAfterGcMiB: parsed.heapUsedAfterGc / MIB,
      };
    } catch (error) {
      if (waited > 10_000)
        throw new Error('the scale broker wrote no memory figures', { cause: error });
      await delay(50);
    }
  }
}

async function expectStatus(response: Response, status: number, what: string): Promise<void> {
  if (response.status !== status) {
    throw new Error(`${what}: ${response.status} ${await response.text()}`);
  }
  // Drained, so the keep-alive socket is reused.
  await response.arrayBuffer();
}

/** Starts the scale broker and waits for /readyz 200; returns it and spawn → ready in ms. */
async function startAndWaitReady(
  options: ScaleOptions,
  env: Record<string, string>,
): Promise<{ server: ServerChild; baseUrl: string; readyMs: number }> {
  const startedMs = performance.now();
  const server = await startServer(
    'scale',
    'scale-server.ts',
    options.pinning,
    env,
    READY_TIMEOUT_MS,
  );
  options.servers.push(server);
  const baseUrl = `http://127.0.0.1:${server.ready.port}`;
  for (;;) {
    const response = await fetch(`${baseUrl}/readyz`);
    await response.arrayBuffer();
    if (response.status === 200) break;
    if (performance.now() - startedMs > READY_TIMEOUT_MS) {
      throw new Error(`/readyz not 200 within ${READY_TIMEOUT_MS / 1000} s`);
    }
    await delay(10);
  }
  return { server, baseUrl, readyMs: performance.now() - startedMs };
}

function listPrefixes(count: number): string[] {
  // Spread over the names; dropping 3 or 4 digits matches up to 1,000 or 10,000 names.
  return Array.from({ length: LIST_CALLS }, (_, k) => {
    const name = nameOf(Math.floor((k * count) / LIST_CALLS));
    return name.slice(0, name.length - (k % 2 === 0 ? 3 : 4));
  });
}

function log(text: string): void {
  process.stderr.write(`scale: ${text}\n`);
}

export async function runScalePart(options: ScaleOptions): Promise<ScaleFigures> {
  const count = positiveInteger('BENCH_SCALE_N', 100_000);
  const partStartedMs = performance.now();
  const dataDir = await mkdtemp(path.join(tmpdir(), 'broker-bench-scale-'));
  const env = {
    BENCH_SCALE_DATA_DIR: dataDir,
    BENCH_SCALE_MASTER_KEY: randomBytes(32).toString('base64'),
    // Beside the data dir, not in it: the file store owns what is inside.
    BENCH_SCALE_MEMORY_FILE: `${dataDir}-memory.json`,
    // For the heap-after-GC figure only; nothing else calls gc().
    NODE_OPTIONS: `${process.env['NODE_OPTIONS'] ?? ''} --expose-gc`.trim(),
  };
  const memoryFile = env.BENCH_SCALE_MEMORY_FILE;
  try {
    // 1. Fill: the empty start doubles as the zero-connection start-up baseline.
    const first = await startAndWaitReady(options, env);
    const firstPid = first.server.process.pid;
    if (firstPid === undefined) throw new Error('the scale broker has no pid');
    await delay(1000);
    const emptyRssMiB = rssMiB(firstPid);
    log(`creating ${count} connections, ${CREATE_CONCURRENCY} at once…`);
    const createStartedMs = performance.now();
    let lastReportMs = createStartedMs;
    let created = 0;
    await pool(count, CREATE_CONCURRENCY, async (i) => {
      const response = await fetch(`${first.baseUrl}/v1/connections`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: createBody(i),
      });
      await expectStatus(response, 201, `creating ${nameOf(i)}`);
      created += 1;
      const now = performance.now();
      if (now - lastReportMs > 10_000) {
        lastReportMs = now;
        const rate = created / ((now - createStartedMs) / 1000);
        log(`${created}/${count} created (${rate.toFixed(0)}/s)`);
      }
    });
    const createSeconds = (performance.now() - createStartedMs) / 1000;
    await stopServer(first.server);

    // 2. Restart on the filled directory.
    await delay(1000);
    log('restarting on the filled data dir…');
    const second = await startAndWaitReady(options, env);
    const pid = second.server.process.pid;
    if (pid === undefined) throw new Error('the scale broker has no pid');
    await delay(1000);
    const rssAfterStartMiB = rssMiB(pid);
    const heapAfterStart = await heapFigures(pid, memoryFile);

    // 3. Touch every connection once: each first fetch is a miss.
    log(`fetching each connection's authorization once, ${FETCH_CONCURRENCY} at once…`);
    const missLatencies = new Float64Array(count);
    const fetchStartedMs = performance.now();
    await pool(count, FETCH_CONCURRENCY, async (i) => {
      const started = performance.now();
      const response = await fetch(`${second.baseUrl}/v1/connections/${nameOf(i)}/authorization`);
      await expectStatus(response, 200, `authorization of ${nameOf(i)}`);
      missLatencies[i] = performance.now() - started;
    });
    const fetchSeconds = (performance.now() - fetchStartedMs) / 1000;
    await delay(1000);
    const rssAfterTouchingAllMiB = rssMiB(pid);
    const heapAfterTouchingAll = await heapFigures(pid, memoryFile);

    // 4. List pages by prefix, one at a time.
    const prefixes = listPrefixes(count);
    const listLatencies = new Float64Array(prefixes.length);
    for (const [k, prefix] of prefixes.entries()) {
      const started = performance.now();
      const response = await fetch(
        `${second.baseUrl}/v1/connections?NamePrefix=${prefix}&Limit=${PAGE_SIZE}`,
      );
      const body = (await response.json()) as { Connections?: unknown[] }; // shape from openapi.yaml
      listLatencies[k] = performance.now() - started;
      if (
        response.status !== 200 ||
        !Array.isArray(body.Connections) ||
        body.Connections.length === 0
      ) {
        throw new Error(`listing ${prefix}: ${response.status} ${JSON.stringify(body)}`);
      }
    }
    await stopServer(second.server);

    const figures: ScaleFigures = {
      connections: count,
      createConcurrency: CREATE_CONCURRENCY,
      createSeconds,
      createsPerSecond: count / createSeconds,
      emptyStartToReadyMs: first.readyMs,
      startToReadyMs: second.readyMs,
      emptyRssMiB,
      rssAfterStartMiB,
      rssAfterTouchingAllMiB,
      heapAfterStart,
      heapAfterTouchingAll,
      miss: summarize(missLatencies),
      fetchSeconds,
      list: { ...summarize(listLatencies), pageSize: PAGE_SIZE },
      totalSeconds: (performance.now() - partStartedMs) / 1000,
    };
    printScaleTable(figures);
    return figures;
  } finally {
    await rm(dataDir, { recursive: true, force: true });
    await rm(memoryFile, { force: true });
  }
}

function printScaleTable(f: ScaleFigures): void {
  const n = f.connections.toLocaleString('en-US');
  const ms = (value: number): string => value.toFixed(value < 10 ? 2 : 0);
  const heap = (h: HeapFigures): string =>
    `${h.heapUsedMiB.toFixed(0)} / ${h.heapUsedAfterGcMiB.toFixed(0)} / ${h.externalMiB.toFixed(0)} MiB`;
  console.log(`scale: ${n} API_KEY connections, file store`);
  printTable(
    ['what', 'figure'],
    [
      [
        `create, ${f.createConcurrency} at once`,
        `${f.createsPerSecond.toFixed(0)}/s (${f.createSeconds.toFixed(1)} s)`,
      ],
      ['start → ready, empty data dir', `${ms(f.emptyStartToReadyMs)} ms`],
      [`start → ready, ${n} connections`, `${ms(f.startToReadyMs)} ms`],
      ['RSS after start, empty data dir', `${f.emptyRssMiB.toFixed(0)} MiB`],
      ['RSS after start, nothing fetched', `${f.rssAfterStartMiB.toFixed(0)} MiB`],
      ['RSS after fetching each once', `${f.rssAfterTouchingAllMiB.toFixed(0)} MiB`],
      ['heap used / after GC / external, after start', heap(f.heapAfterStart)],
      ['heap used / after GC / external, after all', heap(f.heapAfterTouchingAll)],
      [
        `miss latency p50 / p99 (${FETCH_CONCURRENCY} at once)`,
        `${ms(f.miss.p50Ms)} / ${ms(f.miss.p99Ms)} ms (${(f.miss.count / f.fetchSeconds).toFixed(0)}/s)`,
      ],
      [
        `list page of ${f.list.pageSize} by prefix p50 / p99 (${f.list.count} calls)`,
        `${ms(f.list.p50Ms)} / ${ms(f.list.p99Ms)} ms`,
      ],
      ['part took', `${f.totalSeconds.toFixed(0)} s`],
    ],
    2,
  );
}
