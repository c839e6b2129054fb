/**
 * The HTTP Task part of `npm run bench`: how long `POST /v1/http-task/invoke` and
 * `POST /v1/http-task/prepare` take on top of the upstream API's own time. Three targets, each
 * loaded with autocannon: the upstream directly (bare-server.ts answering `{"ok":true}`, the
 * baseline), invoke (the broker sends the task to that upstream with an API_KEY connection's
 * key) and prepare (the broker only builds the request: no upstream call). The broker, in its
 * own child with BROKER_ALLOW_INSECURE_ENDPOINTS=true since the upstream is http://127.0.0.1,
 * and the upstream share the server CPU; autocannon keeps the other. No pass/fail target.
 *
 * Every target is loaded twice per round:
 * - 8 connections (not the credential part's 32): enough to keep the server core busy, so req/s
 *   is the throughput, while a request waits behind at most 7 others; at 32 the p50/p99 would be
 *   mostly time spent queueing (latency ≈ connections / throughput).
 * - 1 connection: one request at a time, nothing queues, so the latency is the request's own.
 *
 * Latency resolution: autocannon truncates each latency to whole milliseconds before recording
 * it (0.9 ms counts as 0), so its p50/p99 and also its mean, though printed with decimals, are at
 * 1 ms resolution. The µs figures are the same responses as autocannon timed them (process.hrtime,
 * its 'response' event), before the truncation: no load loop of our own.
 */
import autocannon from 'autocannon';
import {
  fixed,
  roundMedians,
  NOISY_NEIGHBOUR_CORES,
  printTable,
  waitForQuiet,
  WARM_UP_SECONDS,
} from './common.js';
import { cpuShares, sampleCpu } from './cpu-usage.js';
import { startServer, stopServer, urlOf, type Pinning, type ServerChild } from './server-child.js';

/** Created through the broker's HTTP API, like the credential part's connection. */
export const TASK_CONNECTION = 'bench-task';
const API_KEY_NAME = 'x-api-key';
const API_KEY_VALUE = `bench_${'t'.repeat(32)}`;
const UPSTREAM_PATH = '/ok';
const UPSTREAM_BODY = '{"ok":true}';
const LOADED_CONNECTIONS = 8;
const SEQUENTIAL_CONNECTIONS = 1;
const CONNECTION_COUNTS = [LOADED_CONNECTIONS, SEQUENTIAL_CONNECTIONS];
const PIPELINING = 1;
const TARGETS = ['upstream', 'invoke', 'prepare'] as const;
type Target = (typeof TARGETS)[number];

interface LoadTarget {
  url: string;
  method: 'GET' | 'POST';
  body?: string;
  /** A 2xx answer this refuses (a FAILED task) is counted as an error. */
  isSuccess: (body: string) => boolean;
}

export interface TaskMeasurement {
  target: Target;
  connections: number;
  round: number;
  requestsPerSec: number;
  /** autocannon's figures: whole milliseconds (each latency truncated before it is recorded). */
  p50Ms: number;
  p99Ms: number;
  meanMs: number;
  /** The same 2xx responses at autocannon's own timer resolution. */
  p50Us: number;
  p99Us: number;
  meanUs: number;
  /** Answers that are not a success (FAILED task, non-2xx), socket errors and timeouts. */
  errors: number;
  /** Server CPU per answered request, of each server process. */
  brokerCpuUsPerRequest?: number;
  upstreamCpuUsPerRequest?: number;
  generatorCpuCores?: number;
  otherCpuCores?: number;
}

type TaskSummary = Omit<TaskMeasurement, 'round'>;

/** invoke − upstream: what the broker adds to the upstream's own time. */
interface Overhead {
  connections: number;
  p50Ms: number;
  p99Ms: number;
  p50Us: number;
  p99Us: number;
  meanUs: number;
}

export interface HttpTaskPartOptions {
  pinning: Pinning | undefined;
  seconds: number;
  rounds: number;
  /** Every child this part starts is added here, so an interrupted run can stop it. */
  servers: ServerChild[];
}

interface TaskAnswer {
  Status?: string;
  Error?: string;
  Cause?: string;
  Output?: { StatusCode?: number; ResponseBody?: unknown };
  Request?: { Url?: string; Headers?: Record<string, string> };
}

async function createTaskConnection(baseUrl: string): Promise<void> {
  const created = await fetch(`${baseUrl}/v1/connections`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      Name: TASK_CONNECTION,
      AuthorizationType: 'API_KEY',
      AuthParameters: {
        ApiKeyAuthParameters: { ApiKeyName: API_KEY_NAME, ApiKeyValue: API_KEY_VALUE },
      },
    }),
  });
  if (created.status !== 201) {
    throw new Error(`creating ${TASK_CONNECTION}: ${created.status} ${await created.text()}`);
  }
}

/** Each target must answer once as the load expects it to, before the load and after. */
async function verifyTargets(
  targets: Record<Target, LoadTarget>,
  upstreamUrl: string,
): Promise<void> {
  const problems: string[] = [];
  for (const name of TARGETS) {
    const target = targets[name];
    const response = await fetch(target.url, {
      method: target.method,
      ...(target.body !== undefined && {
        headers: { 'content-type': 'application/json' },
        body: target.body,
      }),
    });
    const text = await response.text();
    if (response.status !== 200 || !target.isSuccess(text)) {
      problems.push(`${name} answered ${response.status}: ${text}`);
      continue;
    }
    if (name === 'upstream') continue;
    const answer = JSON.parse(text) as TaskAnswer;
    if (
      name === 'invoke' &&
      (answer.Output?.StatusCode !== 200 ||
        JSON.stringify(answer.Output.ResponseBody) !== UPSTREAM_BODY)
    ) {
      problems.push(`invoke did not pass the upstream's answer on: ${text}`);
    }
    if (
      name === 'prepare' &&
      (answer.Request?.Url !== upstreamUrl ||
        answer.Request.Headers?.[API_KEY_NAME] !== API_KEY_VALUE)
    ) {
      problems.push(`prepare did not build the request with the key: ${text}`);
    }
  }
  if (problems.length > 0) throw new Error(`HTTP Task targets: ${problems.join('; ')}`);
}

/** One autocannon run; `latenciesMs`, when given, receives every 2xx response's latency. */
function load(
  target: LoadTarget,
  connections: number,
  seconds: number,
  latenciesMs?: number[],
): Promise<autocannon.Result> {
  return new Promise((resolve, reject) => {
    const instance = autocannon(
      {
        url: target.url,
        method: target.method,
        connections,
        pipelining: PIPELINING,
        duration: seconds,
        ...(target.body !== undefined && {
          headers: { 'content-type': 'application/json' },
          body: target.body,
        }),
        verifyBody: (body) => typeof body === 'string' && target.isSuccess(body),
      },
      (error: unknown, result: autocannon.Result) => {
        if (error)
          reject(error instanceof Error ? error : new Error('autocannon failed', { cause: error }));
        else resolve(result);
      },
    );
    if (latenciesMs !== undefined) {
      // Emitted with autocannon's own hrtime-based latency, before its histogram truncates it.
      instance.on('response', (_client, statusCode, _bytes, responseTimeMs) => {
        if (statusCode >= 200 && statusCode < 300) latenciesMs.push(responseTimeMs);
      });
    }
  });
}

/** Nearest-rank percentiles and the mean, in µs. */
function latencyFigures(latenciesMs: number[]): { p50Us: number; p99Us: number; meanUs: number } {
  const sorted = Float64Array.from(latenciesMs).sort();
  const at = (p: number): number =>
    (sorted[Math.max(1, Math.ceil((p / 100) * sorted.length)) - 1] ?? Number.NaN) * 1000;
  const sum = sorted.reduce((s, v) => s + v, 0);
  return { p50Us: at(50), p99Us: at(99), meanUs: (sum / sorted.length) * 1000 };
}

async function measure(
  name: Target,
  target: LoadTarget,
  connections: number,
  round: number,
  seconds: number,
  servers: { broker: ServerChild; upstream: ServerChild },
): Promise<TaskMeasurement> {
  await waitForQuiet();
  process.stderr.write(
    `round ${round}: ${name} × ${connections} connection(s) warm-up ${WARM_UP_SECONDS} s, ${seconds} s…\n`,
  );
  const warmUp = await load(target, connections, WARM_UP_SECONDS);
  if (warmUp['2xx'] === 0) throw new Error(`${name}: no 2xx answer during the warm-up`);
  const brokerPid = servers.broker.process.pid ?? 0;
  const upstreamPid = servers.upstream.process.pid ?? 0;
  const serverPids = [brokerPid, upstreamPid];
  const pids = [...serverPids, process.pid];
  const latenciesMs: number[] = [];
  const cpuBefore = sampleCpu(pids);
  const startedMs = performance.now();
  const result = await load(target, connections, seconds, latenciesMs);
  const cpu = cpuShares(
    cpuBefore,
    sampleCpu(pids),
    serverPids,
    process.pid,
    (performance.now() - startedMs) / 1000,
  );
  if (result['2xx'] === 0 || latenciesMs.length === 0) {
    throw new Error(`${name}: no 2xx answer (${JSON.stringify({ errors: result.errors })})`);
  }
  const perRequest = (pid: number): number | undefined => {
    const cpuSeconds = cpu?.serverSecondsByPid.get(pid);
    return cpuSeconds === undefined ? undefined : (cpuSeconds * 1e6) / result.requests.total;
  };
  const brokerCpu = perRequest(brokerPid);
  const upstreamCpu = perRequest(upstreamPid);
  return {
    target: name,
    connections,
    round,
    requestsPerSec: result.requests.average,
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    meanMs: result.latency.mean,
    ...latencyFigures(latenciesMs),
    // A non-2xx answer also fails verifyBody, so mismatches already hold them; errors hold
    // timeouts.
    errors: result.mismatches + result.errors,
    ...(brokerCpu !== undefined && { brokerCpuUsPerRequest: brokerCpu }),
    ...(upstreamCpu !== undefined && { upstreamCpuUsPerRequest: upstreamCpu }),
    ...(cpu !== undefined && { generatorCpuCores: cpu.generator, otherCpuCores: cpu.other }),
  };
}

function summarize(target: Target, connections: number, all: TaskMeasurement[]): TaskSummary {
  const rounds = all.filter((m) => m.target === target && m.connections === connections);
  const { of, optional } = roundMedians(rounds);
  const summary: TaskSummary = {
    target,
    connections,
    requestsPerSec: of((m) => m.requestsPerSec),
    p50Ms: of((m) => m.p50Ms),
    p99Ms: of((m) => m.p99Ms),
    meanMs: of((m) => m.meanMs),
    p50Us: of((m) => m.p50Us),
    p99Us: of((m) => m.p99Us),
    meanUs: of((m) => m.meanUs),
    // Every error counts, not the median round's.
    errors: rounds.reduce((sum, m) => sum + m.errors, 0),
  };
  const cpu = {
    brokerCpuUsPerRequest: optional((m) => m.brokerCpuUsPerRequest),
    upstreamCpuUsPerRequest: optional((m) => m.upstreamCpuUsPerRequest),
    generatorCpuCores: optional((m) => m.generatorCpuCores),
    otherCpuCores: optional((m) => m.otherCpuCores),
  };
  for (const [key, value] of Object.entries(cpu) as Array<[keyof typeof cpu, number | undefined]>) {
    if (value !== undefined) summary[key] = value;
  }
  return summary;
}

function overheadOf(invoke: TaskSummary, upstream: TaskSummary): Overhead {
  return {
    connections: invoke.connections,
    p50Ms: invoke.p50Ms - upstream.p50Ms,
    p99Ms: invoke.p99Ms - upstream.p99Ms,
    p50Us: invoke.p50Us - upstream.p50Us,
    p99Us: invoke.p99Us - upstream.p99Us,
    meanUs: invoke.meanUs - upstream.meanUs,
  };
}

function printMeasurements(rows: Array<TaskSummary & { round: string }>): void {
  const header = [
    'target',
    'conns',
    'round',
    'req/s',
    'p50 ms',
    'p99 ms',
    'mean ms',
    'p50 µs',
    'p99 µs',
    'mean µs',
    'broker µs/req',
    'upstream µs/req',
    'autocannon cpu',
    'other cpu',
    'errors',
  ];
  const cells = rows.map((r) => [
    r.target,
    String(r.connections),
    r.round,
    r.requestsPerSec.toFixed(0),
    r.p50Ms.toFixed(2),
    r.p99Ms.toFixed(2),
    r.meanMs.toFixed(2),
    r.p50Us.toFixed(0),
    r.p99Us.toFixed(0),
    r.meanUs.toFixed(0),
    fixed(r.brokerCpuUsPerRequest, 1),
    fixed(r.upstreamCpuUsPerRequest, 1),
    fixed(r.generatorCpuCores, 2),
    fixed(r.otherCpuCores, 2),
    String(r.errors),
  ]);
  printTable(header, cells, 3);
}

function printOverheads(rows: Array<{ figure: string } & Overhead>): void {
  const signed = (value: number, digits: number, sign: boolean): string =>
    `${sign && value >= 0 ? '+' : ''}${value.toFixed(digits)}`;
  printTable(
    ['figure', 'conns', 'p50 ms', 'p99 ms', 'p50 µs', 'p99 µs', 'mean µs'],
    rows.map((r) => {
      const sign = r.figure.includes('−');
      return [
        r.figure,
        String(r.connections),
        signed(r.p50Ms, 0, sign),
        signed(r.p99Ms, 0, sign),
        signed(r.p50Us, 0, sign),
        signed(r.p99Us, 0, sign),
        signed(r.meanUs, 0, sign),
      ];
    }),
    2,
  );
}

/** Runs the part and returns its figures for BENCH_RESULT. */
export async function runHttpTaskPart(options: HttpTaskPartOptions): Promise<object> {
  const { pinning, seconds, rounds } = options;
  const started: ServerChild[] = [];
  const start = async (
    name: string,
    script: string,
    env: Record<string, string>,
  ): Promise<ServerChild> => {
    const server = await startServer(name, script, pinning, env);
    started.push(server);
    options.servers.push(server);
    return server;
  };
  try {
    const upstream = await start('upstream', 'bare-server.ts', { BENCH_BODY: UPSTREAM_BODY });
    const broker = await start('task broker', 'broker-server.ts', {
      BROKER_ALLOW_INSECURE_ENDPOINTS: 'true',
    });
    await createTaskConnection(urlOf(broker, ''));
    const upstreamUrl = urlOf(upstream, UPSTREAM_PATH);
    const taskBody = JSON.stringify({
      ApiEndpoint: upstreamUrl,
      Method: 'GET',
      Authentication: { ConnectionArn: TASK_CONNECTION },
    });
    // The broker answers res.json({Status, …}): Status is always the first key.
    const succeeded = (body: string): boolean => body.startsWith('{"Status":"SUCCEEDED"');
    const targets: Record<Target, LoadTarget> = {
      upstream: { url: upstreamUrl, method: 'GET', isSuccess: (body) => body === UPSTREAM_BODY },
      invoke: {
        url: urlOf(broker, '/v1/http-task/invoke'),
        method: 'POST',
        body: taskBody,
        isSuccess: succeeded,
      },
      prepare: {
        url: urlOf(broker, '/v1/http-task/prepare'),
        method: 'POST',
        body: taskBody,
        isSuccess: succeeded,
      },
    };
    await verifyTargets(targets, upstreamUrl);
    console.log(
      `\nHTTP Task: GET ${upstreamUrl} directly (${UPSTREAM_BODY}) vs POST /v1/http-task/invoke ` +
        `and /prepare with ${taskBody}; ${CONNECTION_COUNTS.join(' and ')} connection(s), ` +
        `pipelining ${PIPELINING}, ${WARM_UP_SECONDS} s warm-up + ${seconds} s × ${rounds} rounds, ` +
        (pinning === undefined
          ? 'CPUs not pinned'
          : `broker and upstream pinned to CPU ${pinning.serverCpu}`),
    );

    const measurements: TaskMeasurement[] = [];
    for (let round = 1; round <= rounds; round += 1) {
      for (const connections of CONNECTION_COUNTS) {
        for (const name of TARGETS) {
          measurements.push(
            await measure(name, targets[name], connections, round, seconds, { broker, upstream }),
          );
        }
      }
    }
    await verifyTargets(targets, upstreamUrl);

    const summaries = CONNECTION_COUNTS.flatMap((connections) =>
      TARGETS.map((target) => summarize(target, connections, measurements)),
    );
    const summaryOf = (target: Target, connections: number): TaskSummary =>
      summaries.find((s) => s.target === target && s.connections === connections)!;
    const byConnections = CONNECTION_COUNTS.map((connections) => ({
      connections,
      upstream: summaryOf('upstream', connections),
      invoke: summaryOf('invoke', connections),
      prepare: summaryOf('prepare', connections),
      invokeOverhead: overheadOf(
        summaryOf('invoke', connections),
        summaryOf('upstream', connections),
      ),
    }));

    printMeasurements([
      ...measurements.map((m) => ({ ...m, round: String(m.round) })),
      ...summaries.map((s) => ({ ...s, round: 'median' })),
    ]);
    console.log('');
    printOverheads(
      byConnections.flatMap((c) => [
        { figure: 'invoke − upstream', ...c.invokeOverhead },
        { figure: 'prepare', ...c.prepare },
      ]),
    );
    console.log(
      "(ms columns are autocannon's: each latency truncated to whole ms before it is recorded, so " +
        "its mean is at 1 ms resolution too; µs columns are the same responses at autocannon's " +
        "hrtime resolution; overheads are differences of the median rounds' figures)",
    );
    const errors = measurements.filter((m) => m.errors > 0);
    if (errors.length > 0) {
      console.log(
        `warning: errors (FAILED or non-2xx answers, socket errors) during ` +
          `${errors.map((m) => `${m.target} × ${m.connections} round ${m.round} (${m.errors})`).join(', ')}`,
      );
    }
    const noisy = measurements.filter((m) => (m.otherCpuCores ?? 0) > NOISY_NEIGHBOUR_CORES);
    if (noisy.length > 0) {
      console.log(
        `warning: other processes used > ${NOISY_NEIGHBOUR_CORES} cores during ` +
          `${noisy.map((m) => `${m.target} × ${m.connections} round ${m.round}`).join(', ')}: ` +
          'figures are disturbed',
      );
    }
    return {
      upstream: `GET ${UPSTREAM_PATH} -> 200 ${UPSTREAM_BODY}`,
      connection: TASK_CONNECTION,
      connections: CONNECTION_COUNTS,
      pipelining: PIPELINING,
      seconds,
      rounds,
      serverCpu: pinning?.serverCpu ?? null,
      latencyResolution: { ms: 'autocannon, whole ms (truncated)', us: 'autocannon hrtime' },
      byConnections,
      measurements,
    };
  } finally {
    await Promise.all(started.map(stopServer));
  }
}
