/**
 * What the fleet suites share beyond single HTTP calls: the secrets a suite hands the brokers
 * (for the final check that no broker logged one), fixture accessors and stopping a fleet, the
 * refresh storm and the concurrent credential retrievals (one workload, so that the fleets'
 * figures compare), and the arithmetic of their measurements.
 */

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Agent } from 'node:http';

import {
  authorizationHeader,
  authorizationPath,
  brief,
  callSafely,
  getOver,
  refreshPath,
  servedHeaders,
  type Answer,
  type AuthorizationParameters,
  type Replica,
} from './fleet-http.js';

// ---------------------------------------------------------------------------------------------
// Secrets, and that no broker wrote one to its output

/** A random value that names its use: distinctive in a log, and unlike any other test's. */
export function randomSecret(label: string): string {
  return `${label}-${randomBytes(12).toString('hex')}`;
}

export interface SecretsUsed {
  /** Label → value of every secret a suite gave the brokers or the brokers were issued. */
  secretsUsed: Map<string, string>;
  /** A new random secret, recorded under `label`. */
  newSecret: (label: string) => string;
}

/**
 * A record of a suite's own: were it this module's, two suites run in one process
 * (--test-isolation=none) would each check the other's secrets as well.
 */
export function trackSecrets(): SecretsUsed {
  const secretsUsed = new Map<string, string>();
  return {
    secretsUsed,
    newSecret: (label) => {
      const value = randomSecret(label);
      secretsUsed.set(label, value);
      return value;
    },
  };
}

/**
 * Asserts that `output` is a broker's (it said where it listens) and holds none of the values
 * of `secrets`; a failure names the labels, never the values. `whose` leads the message.
 */
export function assertNoSecretIn(
  output: string,
  secrets: ReadonlyMap<string, string>,
  whose: string,
): void {
  assert.match(output, /listening on http:\/\/127\.0\.0\.1:/);
  const leaked = [...secrets].filter(([, value]) => output.includes(value)).map(([label]) => label);
  assert.deepEqual(leaked, [], `${whose} output contains: ${leaked.join(', ')}`);
}

// ---------------------------------------------------------------------------------------------
// Fixtures

/** `value`, asserted present: a fixture `before` did not start fails each test that needs it. */
export function required<T>(value: T | undefined, message: string): T {
  assert.ok(value !== undefined, message);
  return value;
}

/** The replica called `name`, asserted started. */
export function replicaNamed<R extends Replica>(replicas: readonly R[], name: string): R {
  return required(
    replicas.find((r) => r.name === name),
    `replica ${name} did not start`,
  );
}

/**
 * Stops every broker process at once, then runs `cleanup` whatever the stops did, then throws
 * the first stop's failure: one process that does not stop cleanly leaves nothing else running.
 */
export async function stopFleet(
  replicas: readonly Replica[],
  cleanup: () => Promise<void>,
): Promise<void> {
  const stopped = await Promise.allSettled(replicas.map((r) => r.process.stop()));
  await cleanup();
  const failure = stopped.find((result) => result.status === 'rejected');
  if (failure !== undefined) throw failure.reason;
}

// ---------------------------------------------------------------------------------------------
// The refresh storm

export const STORM_REPORTS_PER_REPLICA = 100;
/** Holds the storm's token answer back, so the 300 reports overlap the token request. */
export const STORM_TOKEN_DELAY_MS = 250;

export interface RefreshStorm {
  reports: Array<{ replica: string; answer: Answer }>;
  /** From the first report sent to the last answer. */
  durationMs: number;
  /** Replica → status → how many answers. */
  statusesByReplica: Record<string, Record<number, number>>;
  /** The distinct Authorization headers the answers carried. */
  authorizationHeaders: Set<string>;
  /** TokenGeneration → how many 200 answers carried it. */
  generationsServed: Map<number, number>;
}

/**
 * `perReplica` executors on each replica report a 401 or a 407 (alternately) for `generation`
 * of `name`, all at once, each allowed 60 s; answers what came back, counted.
 */
export async function refreshStorm(
  replicas: readonly Replica[],
  name: string,
  generation: number,
  perReplica: number,
  headers: Readonly<Record<string, string>> = {},
): Promise<RefreshStorm> {
  const started = performance.now();
  const reports = await Promise.all(
    replicas.flatMap((r) =>
      Array.from({ length: perReplica }, (_, i) =>
        callSafely(
          r.url,
          'POST',
          refreshPath(name),
          { StatusCode: i % 2 === 0 ? 401 : 407, TokenGeneration: generation },
          60_000,
          headers,
        ).then((answer) => ({ replica: r.name, answer })),
      ),
    ),
  );
  const durationMs = performance.now() - started;

  const statusesByReplica: Record<string, Record<number, number>> = {};
  const authorizationHeaders = new Set<string>();
  const generationsServed = new Map<number, number>();
  for (const { replica: from, answer } of reports) {
    const byStatus = (statusesByReplica[from] ??= {});
    byStatus[answer.status] = (byStatus[answer.status] ?? 0) + 1;
    const header = authorizationHeader(answer);
    if (header !== undefined) authorizationHeaders.add(header);
    const body = answer.json as Partial<AuthorizationParameters> | undefined; // checked next
    const served = body?.TokenGeneration;
    if (answer.status === 200 && served !== undefined) {
      generationsServed.set(served, (generationsServed.get(served) ?? 0) + 1);
    }
  }
  return { reports, durationMs, statusesByReplica, authorizationHeaders, generationsServed };
}

/** Asserts that every report of the storm was answered 200; a failure shows the first three. */
export function assertEveryReportOk(storm: RefreshStorm): void {
  const failures = storm.reports.filter((report) => report.answer.status !== 200);
  assert.equal(
    failures.length,
    0,
    `${failures.length} of ${storm.reports.length} reports did not answer 200: ${JSON.stringify(storm.statusesByReplica)}; e.g. ${failures
      .slice(0, 3)
      .map((f) => `${f.replica}: ${brief(f.answer)}`)
      .join(' | ')}`,
  );
}

// ---------------------------------------------------------------------------------------------
// Concurrent credential retrievals

/** Credential retrievals spread over A, B and C to count the store calls they cost. */
export const RETRIEVALS = 10_000;
export const RETRIEVAL_CONCURRENCY = 32;

export interface Retrievals {
  /** Milliseconds per retrieval, in the order they were answered. */
  latencies: number[];
  /** Status → how many answers. */
  statuses: Record<number, number>;
  /** One line per retrieval not answered 200 with the expected Headers. */
  failures: string[];
  elapsedMs: number;
  /** The test process's own CPU time meanwhile: on a small machine a share of the cost. */
  cpu: NodeJS.CpuUsage;
}

/**
 * `count` GetAuthorization requests by `concurrency` workers over one keep-alive agent; the
 * request numbered `index` goes where `target(index)` says and must be answered 200 with
 * `expectedHeaders` (the Headers as JSON text).
 */
export async function retrieveConcurrently(
  count: number,
  concurrency: number,
  target: (index: number) => { on: Replica; name: string; expectedHeaders: string | undefined },
  headers: Readonly<Record<string, string>> = {},
): Promise<Retrievals> {
  const latencies: number[] = [];
  const statuses: Record<number, number> = {};
  const failures: string[] = [];
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) {
      const index = next;
      next += 1;
      const { on, name, expectedHeaders } = target(index);
      const answer = await getOver(agent, `${on.url}${authorizationPath(name)}`, headers);
      latencies.push(answer.elapsedMs);
      statuses[answer.status] = (statuses[answer.status] ?? 0) + 1;
      if (answer.status !== 200 || servedHeaders(answer.text) !== expectedHeaders) {
        failures.push(`${on.name} ${name}: ${answer.status} ${answer.text.slice(0, 400)}`);
      }
    }
  };
  const started = performance.now();
  const cpuBefore = process.cpuUsage();
  try {
    await Promise.all(Array.from({ length: concurrency }, worker));
  } finally {
    agent.destroy();
  }
  const elapsedMs = performance.now() - started;
  return { latencies, statuses, failures, elapsedMs, cpu: process.cpuUsage(cpuBefore) };
}

/** Asserts that every retrieval got the cached credentials; a failure shows the first three. */
export function assertEveryRetrievalOk({ latencies, statuses, failures }: Retrievals): void {
  assert.equal(
    failures.length,
    0,
    `${failures.length} of ${latencies.length} retrievals did not answer 200 with the cached credentials: ${JSON.stringify(statuses)}; e.g. ${failures.slice(0, 3).join(' | ')}`,
  );
}

// ---------------------------------------------------------------------------------------------
// Measurements

export interface Distribution {
  samples: number;
  min: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

/** Nearest-rank percentiles, rounded to 0.1 ms. */
export function distribution(values: readonly number[]): Distribution {
  const sorted = [...values].sort((x, y) => x - y);
  const at = (p: number): number => {
    const value = sorted[Math.max(0, Math.ceil(p * sorted.length) - 1)] ?? Number.NaN;
    return Math.round(value * 10) / 10;
  };
  return {
    samples: sorted.length,
    min: at(0),
    p50: at(0.5),
    p90: at(0.9),
    p99: at(0.99),
    max: at(1),
  };
}

/** What each count rose (or fell) by from `before` to `after`; unchanged ones left out. */
export function difference(
  after: Readonly<Record<string, number>>,
  before: Readonly<Record<string, number>>,
): Record<string, number> {
  const delta: Record<string, number> = {};
  for (const key of new Set([...Object.keys(before), ...Object.keys(after)])) {
    const change = (after[key] ?? 0) - (before[key] ?? 0);
    if (change !== 0) delta[key] = change;
  }
  return delta;
}

export const total = (counts: Readonly<Record<string, number>>): number =>
  Object.values(counts).reduce((sum, n) => sum + n, 0);
