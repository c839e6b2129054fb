/**
 * `npm run bench [-- --check]`: loads `GET /v1/connections/{name}/authorization` for a cached
 * API_KEY connection and a bare node:http server answering the same bytes, each in its own
 * child process (the server gets one core, autocannon here the other), and prints both
 * throughputs, p50/p99 and their ratio. `--check` exits 1 when the target is missed.
 *
 * BENCH_SECONDS (default 10) is the length of each measurement; BENCH_ROUNDS (default 2) how many
 * times bare and broker are measured, alternating, to even out drift; BENCH_PIN=0 leaves CPU
 * placement to the scheduler. Each measurement first waits (up to 60 s) for other processes to
 * quieten, and the table shows the CPU they took anyway: on a shared 2-core machine a busy
 * neighbour moves the figures more than anything the broker does.
 */
import autocannon from 'autocannon';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { AUTHORIZATION_PATH, createBenchConnection } from './bench-connection.js';
import { cpuShares, sampleCpu, waitForQuietMachine } from './cpu-usage.js';
import { EXIT_WITH_PARENT_ENV, type ReadyLine } from './server-lifecycle.js';

const CONNECTIONS = 32;
const PIPELINING = 1;
const WARM_UP_SECONDS = 2;
const READY_TIMEOUT_MS = 20_000;
const KILL_GRACE_MS = 3_000;
const TARGET_RATIO = 0.7;
const TARGET_P99_MS = 5;
/** Cores' worth of CPU used by other processes above which a measurement is flagged. */
const NOISY_NEIGHBOUR_CORES = 0.15;
/** How long a measurement waits for other processes to quieten before it runs anyway. */
const QUIET_WAIT_MS = 60_000;

const benchDir = path.dirname(fileURLToPath(import.meta.url));
const repoDir = path.dirname(benchDir);

interface ServerChild {
  name: string;
  process: ChildProcess;
  ready: ReadyLine;
}

interface Measurement {
  target: string;
  round: number;
  requestsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  meanMs: number;
  bytesPerResponse: number;
  /** Server CPU per answered request: its cost, whoever limited the throughput. */
  serverCpuUsPerRequest?: number;
  /** Cores' worth of CPU over the measurement (1 = one core). */
  serverCpuCores?: number;
  generatorCpuCores?: number;
  otherCpuCores?: number;
}

function positiveInteger(name: string, fallback: number): number {
  const text = process.env[name];
  if (text === undefined || text === '') return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1) {
    throw new Error(`${name} must be a positive integer (got ${JSON.stringify(text)})`);
  }
  return value;
}

/**
 * Linux with taskset and 2+ CPUs: the servers get the last CPU and this process (autocannon) the
 * others, so the two never share a core. BENCH_PIN=0 leaves placement to the scheduler.
 */
function pinCpus(): { serverCpu: string } | undefined {
  const cpus = availableParallelism();
  if (process.env['BENCH_PIN'] === '0' || process.platform !== 'linux' || cpus < 2) {
    return undefined;
  }
  try {
    execFileSync('taskset', ['-a', '-p', '-c', `0-${cpus - 2}`, String(process.pid)], {
      stdio: 'ignore',
    });
    return { serverCpu: String(cpus - 1) };
  } catch {
    return undefined;
  }
}

async function startServer(
  name: string,
  script: string,
  pinning: { serverCpu: string } | undefined,
  env: Record<string, string> = {},
): Promise<ServerChild> {
  const nodeArgs = ['--import', 'tsx', path.join(benchDir, script)];
  // taskset execs node, so the child's pid stays the server's.
  const [command, args] =
    pinning === undefined
      ? [process.execPath, nodeArgs]
      : ['taskset', ['-c', pinning.serverCpu, process.execPath, ...nodeArgs]];
  const child = spawn(command, args, {
    cwd: repoDir,
    env: { ...process.env, ...env, [EXIT_WITH_PARENT_ENV]: '1' },
    // stdin stays open: the server exits when it closes, should this process die unannounced.
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: child.stdout });
  const abort = new AbortController();
  try {
    const ready = await Promise.race([
      once(lines, 'line', { signal: abort.signal }).then(([line]) => {
        const parsed = JSON.parse(String(line)) as ReadyLine;
        if (typeof parsed.port !== 'number') throw new Error(`unexpected line: ${String(line)}`);
        return parsed;
      }),
      once(child, 'exit', { signal: abort.signal }).then(([code, signal]) => {
        throw new Error(`exited before it was ready (code ${String(code)}, ${String(signal)})`);
      }),
      delay(READY_TIMEOUT_MS, undefined, { signal: abort.signal }).then(() => {
        throw new Error(`printed no ready line within ${READY_TIMEOUT_MS / 1000} s`);
      }),
    ]);
    return { name, process: child, ready };
  } catch (error) {
    await stopServer({ name, process: child, ready: { port: 0 } });
    throw new Error(`${name} server (${script}): ${(error as Error).message}`, { cause: error });
  } finally {
    abort.abort();
  }
}

async function stopServer(server: ServerChild): Promise<void> {
  const child = server.process;
  const exited = (): boolean => child.exitCode !== null || child.signalCode !== null;
  if (exited()) return;
  const exit = once(child, 'exit');
  child.kill('SIGTERM');
  const stopped = await Promise.race([exit.then(() => true), delay(KILL_GRACE_MS, false)]);
  if (!stopped && !exited()) {
    process.stderr.write(`${server.name} server ignored SIGTERM for 3 s: SIGKILL\n`);
    child.kill('SIGKILL');
    await exit;
  }
}

function urlOf(server: ServerChild, requestPath: string): string {
  return `http://127.0.0.1:${server.ready.port}${requestPath}`;
}

/** Both must answer 200 with the same body and the same header names and fixed values. */
async function verifySameAnswer(bare: string, broker: string): Promise<void> {
  const [a, b] = await Promise.all([fetch(bare), fetch(broker)]);
  const [bareBody, brokerBody] = await Promise.all([a.text(), b.text()]);
  const problems: string[] = [];
  if (a.status !== 200) problems.push(`bare answered ${a.status}`);
  if (b.status !== 200) problems.push(`broker answered ${b.status}: ${brokerBody}`);
  if (bareBody !== brokerBody) problems.push(`bodies differ:\n  ${bareBody}\n  ${brokerBody}`);
  const names = (h: Headers): string => [...h.keys()].sort().join(',');
  if (names(a.headers) !== names(b.headers)) {
    problems.push(`header names differ: ${names(a.headers)} | ${names(b.headers)}`);
  }
  for (const name of ['content-type', 'content-length', 'cache-control', 'connection']) {
    if (a.headers.get(name) !== b.headers.get(name)) {
      problems.push(`${name} differs: ${a.headers.get(name)} | ${b.headers.get(name)}`);
    }
  }
  for (const [target, headers] of [
    ['bare', a.headers],
    ['broker', b.headers],
  ] as const) {
    if (!/^[0-9a-f-]{36}$/.test(headers.get('x-request-id') ?? '')) {
      problems.push(`${target} sent no generated x-request-id`);
    }
  }
  if (problems.length > 0) {
    throw new Error(`the two servers do not answer alike: ${problems.join('; ')}`);
  }
}

async function load(url: string, seconds: number): Promise<autocannon.Result> {
  const result = await autocannon({
    url,
    connections: CONNECTIONS,
    pipelining: PIPELINING,
    duration: seconds,
  });
  const failures = {
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    mismatches: result.mismatches,
  };
  if (Object.values(failures).some((count) => count > 0) || result['2xx'] === 0) {
    throw new Error(`load on ${url} failed: ${JSON.stringify({ ...failures, ok: result['2xx'] })}`);
  }
  return result;
}

async function measure(
  target: string,
  server: ServerChild,
  url: string,
  round: number,
  seconds: number,
): Promise<Measurement> {
  await waitForQuietMachine(NOISY_NEIGHBOUR_CORES, QUIET_WAIT_MS, (busyCores) => {
    process.stderr.write(
      `other processes use ${busyCores.toFixed(2)} cores: waiting up to ${QUIET_WAIT_MS / 1000} s…\n`,
    );
  });
  process.stderr.write(`round ${round}: ${target} warm-up ${WARM_UP_SECONDS} s, ${seconds} s…\n`);
  await load(url, WARM_UP_SECONDS);
  const pids = [server.process.pid ?? 0, process.pid];
  const cpuBefore = sampleCpu(pids);
  const startedMs = performance.now();
  const result = await load(url, seconds);
  const cpu = cpuShares(
    cpuBefore,
    sampleCpu(pids),
    pids[0]!,
    process.pid,
    (performance.now() - startedMs) / 1000,
  );
  return {
    target,
    round,
    requestsPerSec: result.requests.average,
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    meanMs: result.latency.mean,
    bytesPerResponse: result.throughput.total / result.requests.total,
    ...(cpu !== undefined && {
      serverCpuUsPerRequest: (cpu.serverSeconds * 1e6) / result.requests.total,
      serverCpuCores: cpu.server,
      generatorCpuCores: cpu.generator,
      otherCpuCores: cpu.other,
    }),
  };
}

function median(values: number[]): number {
  const sorted = [...values].sort((x, y) => x - y);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

type Summary = Omit<Measurement, 'round'>;

function summarize(target: string, all: Measurement[]): Summary {
  const rounds = all.filter((m) => m.target === target);
  const of = (pick: (m: Measurement) => number): number => median(rounds.map(pick));
  const optional = (pick: (m: Measurement) => number | undefined): number | undefined => {
    const values = rounds.map(pick).filter((v): v is number => v !== undefined);
    return values.length === rounds.length ? median(values) : undefined;
  };
  const summary: Summary = {
    target,
    requestsPerSec: of((m) => m.requestsPerSec),
    p50Ms: of((m) => m.p50Ms),
    p99Ms: of((m) => m.p99Ms),
    meanMs: of((m) => m.meanMs),
    bytesPerResponse: of((m) => m.bytesPerResponse),
  };
  const cpu = {
    serverCpuUsPerRequest: optional((m) => m.serverCpuUsPerRequest),
    serverCpuCores: optional((m) => m.serverCpuCores),
    generatorCpuCores: optional((m) => m.generatorCpuCores),
    otherCpuCores: optional((m) => m.otherCpuCores),
  };
  for (const [key, value] of Object.entries(cpu) as Array<[keyof typeof cpu, number | undefined]>) {
    if (value !== undefined) summary[key] = value;
  }
  return summary;
}

function printTable(rows: Array<Summary & { round: string }>): void {
  const header = [
    'target',
    'round',
    'req/s',
    'p50 ms',
    'p99 ms',
    'mean ms',
    'server µs/req',
    'server cpu',
    'autocannon cpu',
    'other cpu',
  ];
  const fixed = (value: number | undefined, digits: number): string =>
    value === undefined ? '-' : value.toFixed(digits);
  const cells = rows.map((r) => [
    r.target,
    r.round,
    r.requestsPerSec.toFixed(0),
    r.p50Ms.toFixed(0),
    r.p99Ms.toFixed(0),
    r.meanMs.toFixed(2),
    fixed(r.serverCpuUsPerRequest, 1),
    fixed(r.serverCpuCores, 2),
    fixed(r.generatorCpuCores, 2),
    fixed(r.otherCpuCores, 2),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  for (const line of [header, ...cells]) {
    console.log(
      line
        .map((cell, i) => (i < 2 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!)))
        .join('  '),
    );
  }
}

async function main(): Promise<number> {
  const check = process.argv.includes('--check');
  const seconds = positiveInteger('BENCH_SECONDS', 10);
  const roundCount = positiveInteger('BENCH_ROUNDS', 2);
  const servers: ServerChild[] = [];
  const stopAll = (): Promise<void[]> => Promise.all(servers.map(stopServer));
  const interrupted = (): void => {
    void stopAll().finally(() => process.exit(130));
  };
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);
  try {
    const pinning = pinCpus();
    const broker = await startServer('broker', 'broker-server.ts', pinning);
    servers.push(broker);
    const body = await createBenchConnection(`http://127.0.0.1:${broker.ready.port}`);
    const requestPath = AUTHORIZATION_PATH;
    const bare = await startServer('bare', 'bare-server.ts', pinning, { BENCH_BODY: body });
    servers.push(bare);
    const urls = { bare: urlOf(bare, requestPath), broker: urlOf(broker, requestPath) };
    await verifySameAnswer(urls.bare, urls.broker);
    console.log(
      `GET ${requestPath} (${Buffer.byteLength(body)}-byte body), ${CONNECTIONS} connections, ` +
        `pipelining ${PIPELINING}, ${WARM_UP_SECONDS} s warm-up + ${seconds} s × ${roundCount} rounds, ` +
        (pinning === undefined ? 'CPUs not pinned' : `servers pinned to CPU ${pinning.serverCpu}`),
    );

    const measurements: Measurement[] = [];
    for (let round = 1; round <= roundCount; round += 1) {
      for (const target of ['bare', 'broker'] as const) {
        const server = target === 'bare' ? bare : broker;
        measurements.push(await measure(target, server, urls[target], round, seconds));
      }
    }
    // The broker must still answer the same bytes after the load.
    await verifySameAnswer(urls.bare, urls.broker);

    const bareSummary = summarize('bare', measurements);
    const brokerSummary = summarize('broker', measurements);
    printTable([
      ...measurements.map((m) => ({ ...m, round: String(m.round) })),
      { ...bareSummary, round: 'median' },
      { ...brokerSummary, round: 'median' },
    ]);
    console.log(
      '(latency percentiles are whole milliseconds: autocannon records latencies at 1 ms resolution)',
    );
    if (bareSummary.bytesPerResponse !== brokerSummary.bytesPerResponse) {
      console.log('warning: the two servers sent a different number of bytes per response');
    }
    const noisy = measurements.filter((m) => (m.otherCpuCores ?? 0) > NOISY_NEIGHBOUR_CORES);
    if (noisy.length > 0) {
      console.log(
        `warning: other processes used > ${NOISY_NEIGHBOUR_CORES} cores during ` +
          `${noisy.map((m) => `${m.target} round ${m.round}`).join(', ')}: figures are disturbed`,
      );
    }
    const ratio = brokerSummary.requestsPerSec / bareSummary.requestsPerSec;
    const costRatio =
      bareSummary.serverCpuUsPerRequest !== undefined &&
      brokerSummary.serverCpuUsPerRequest !== undefined
        ? bareSummary.serverCpuUsPerRequest / brokerSummary.serverCpuUsPerRequest
        : undefined;
    const met = ratio >= TARGET_RATIO && brokerSummary.p99Ms < TARGET_P99_MS;
    console.log(`ratio (broker/bare) = ${ratio.toFixed(2)}`);
    if (costRatio !== undefined) {
      console.log(
        `server CPU per request: bare ${bareSummary.serverCpuUsPerRequest?.toFixed(1)} µs, ` +
          `broker ${brokerSummary.serverCpuUsPerRequest?.toFixed(1)} µs ` +
          `(bare/broker = ${costRatio.toFixed(2)}, the ratio a saturated core would give)`,
      );
    }
    console.log(
      `target: ratio >= ${TARGET_RATIO} and broker p99 < ${TARGET_P99_MS} ms at ` +
        `${CONNECTIONS} connections: ${met ? 'MET' : 'MISSED'}`,
    );
    console.log(
      `BENCH_RESULT ${JSON.stringify({
        path: requestPath,
        connections: CONNECTIONS,
        pipelining: PIPELINING,
        seconds,
        rounds: roundCount,
        serverCpu: pinning?.serverCpu ?? null,
        bare: bareSummary,
        broker: brokerSummary,
        measurements,
        ratio,
        ...(costRatio !== undefined && { cpuCostRatio: costRatio }),
        target: { ratio: TARGET_RATIO, p99Ms: TARGET_P99_MS, met },
      })}`,
    );
    return check && !met ? 1 : 0;
  } finally {
    await stopAll();
    process.off('SIGINT', interrupted);
    process.off('SIGTERM', interrupted);
  }
}

process.exitCode = await main();
