/**
 * What the fleet tests share: bounded HTTP calls to a broker process (one at a time, as one
 * caller, or many over a keep-alive agent), assertions against openapi.yaml, the response
 * shapes, Prometheus exposition parsing, and starting the replicas.
 */

import assert from 'node:assert/strict';
import { request as httpRequest, type Agent } from 'node:http';

import { assertMatchesSpec } from '../support/openapi-contract.js';
import { startBrokerProcess, type BrokerProcess } from '../support/broker-process.js';
import { waitFor } from '../support/wait.js';

export const REQUEST_TIMEOUT_MS = 15_000;

// ---------------------------------------------------------------------------------------------
// Response shapes (openapi.yaml)

export interface StateResponse {
  ConnectionArn: string;
  ConnectionState: string;
  CreationTime: string;
  LastModifiedTime: string;
}

export interface ConnectionDescription extends StateResponse {
  Name: string;
  Description?: string;
  StateReason?: string;
  AuthorizationType: string;
  SecretArn: string;
  AuthParameters: Record<string, unknown>;
}

export interface ConnectionSummary extends StateResponse {
  Name: string;
  AuthorizationType: string;
}

export interface AuthorizationParameters {
  ConnectionArn: string;
  AuthorizationType: string;
  Headers: Record<string, string>;
  QueryParameters: Record<string, string>;
  BodyParameters: Record<string, string>;
  TokenGeneration: number;
  TokenExpiresAt?: string;
}

export interface Problem {
  status: number;
  code: string;
  detail: string;
}

export interface Readiness {
  status: string;
  store: { kind: string; reachedSinceStart: boolean; healthy: boolean; lastError?: string };
}

// ---------------------------------------------------------------------------------------------
// HTTP helpers

export interface Answer {
  status: number;
  contentType: string;
  text: string;
  /** The parsed body when it is JSON, else undefined. */
  json: unknown;
  elapsedMs: number;
  retryAfter: string | null;
}

/**
 * One bounded request; a network failure or timeout throws. `headers` are sent as given (e.g. a
 * caller's `authorization` for a broker with a policy file).
 */
export async function call(
  baseUrl: string,
  method: string,
  route: string,
  body?: unknown,
  timeoutMs = REQUEST_TIMEOUT_MS,
  headers: Readonly<Record<string, string>> = {},
): Promise<Answer> {
  const started = performance.now();
  const response = await fetch(`${baseUrl}${route}`, {
    method,
    headers: {
      ...headers,
      ...(body !== undefined && { 'content-type': 'application/json' }),
    },
    ...(body !== undefined && { body: JSON.stringify(body) }),
    signal: AbortSignal.timeout(timeoutMs),
  });
  const text = await response.text();
  const elapsedMs = performance.now() - started;
  const contentType = response.headers.get('content-type') ?? '';
  let json: unknown;
  if (/json/.test(contentType)) {
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
  }
  return {
    status: response.status,
    contentType,
    text,
    json,
    elapsedMs,
    retryAfter: response.headers.get('retry-after'),
  };
}

/** Like call(), but a network failure becomes status 0 with the error as text. */
export async function callSafely(
  baseUrl: string,
  method: string,
  route: string,
  body?: unknown,
  timeoutMs = REQUEST_TIMEOUT_MS,
  headers: Readonly<Record<string, string>> = {},
): Promise<Answer> {
  const started = performance.now();
  try {
    return await call(baseUrl, method, route, body, timeoutMs, headers);
  } catch (error) {
    return {
      status: 0,
      contentType: '',
      text: error instanceof Error ? `${error.name}: ${error.message}` : String(error),
      json: undefined,
      elapsedMs: performance.now() - started,
      retryAfter: null,
    };
  }
}

export function conformsToSpec(operationId: string, answer: Answer): void {
  assertMatchesSpec(operationId, {
    status: answer.status,
    headers: { 'content-type': answer.contentType },
    body: answer.json,
    text: answer.text,
  });
}

export function brief(answer: Answer): string {
  return `${answer.status} ${answer.text.slice(0, 400)}`;
}

/** Asserts a JSON success answer that matches openapi.yaml, and answers its body. */
export function expectOk<T>(operationId: string, answer: Answer, status = 200): T {
  assert.equal(answer.status, status, `${operationId}: expected ${status}, got ${brief(answer)}`);
  assert.match(answer.contentType, /^application\/json/, `${operationId}: ${answer.contentType}`);
  assert.ok(answer.json !== undefined, `${operationId}: the body is not JSON: ${answer.text}`);
  conformsToSpec(operationId, answer);
  return answer.json as T;
}

/** Asserts an RFC 9457 problem answer with the given status and code. */
export function expectProblem(
  operationId: string,
  answer: Answer,
  status: number,
  code: string,
): Problem {
  assert.equal(
    answer.status,
    status,
    `${operationId}: expected ${status} ${code}, got ${brief(answer)}`,
  );
  assert.match(
    answer.contentType,
    /^application\/problem\+json/,
    `${operationId}: ${answer.contentType}`,
  );
  assert.ok(answer.json !== undefined, `${operationId}: the problem is not JSON: ${answer.text}`);
  conformsToSpec(operationId, answer);
  const problem = answer.json as Problem;
  assert.equal(problem.code, code, `${operationId}: ${answer.text}`);
  assert.equal(problem.status, status);
  return problem;
}

export const connectionPath = (name: string): string =>
  `/v1/connections/${encodeURIComponent(name)}`;
export const authorizationPath = (name: string): string => `${connectionPath(name)}/authorization`;
export const refreshPath = (name: string): string => `${authorizationPath(name)}/refresh`;

export function isProblem(answer: Answer, status: number, code: string): boolean {
  return (
    answer.status === status &&
    answer.contentType.startsWith('application/problem+json') &&
    (answer.json as Partial<Problem> | undefined)?.code === code
  );
}

export function authorizationHeader(answer: Answer): string | undefined {
  if (answer.status !== 200 || answer.json === undefined) return undefined;
  return (answer.json as Partial<AuthorizationParameters>).Headers?.['Authorization'];
}

export function basicHeaderValue(username: string, password: string): string {
  return Buffer.from(`${username}:${password}`).toString('base64');
}

/**
 * A GET over a keep-alive agent answering status and body text; a network failure or timeout
 * becomes status 0. Far cheaper per request than fetch, so that load loops measure the brokers
 * more than the test's own client.
 */
export function getOver(
  agent: Agent,
  url: string,
  headers: Readonly<Record<string, string>> = {},
  timeoutMs = REQUEST_TIMEOUT_MS,
): Promise<{ status: number; text: string; elapsedMs: number }> {
  const started = performance.now();
  return new Promise((resolve) => {
    const failed = (error: Error): void =>
      resolve({
        status: 0,
        text: `${error.name}: ${error.message}`,
        elapsedMs: performance.now() - started,
      });
    const req = httpRequest(url, { agent, timeout: timeoutMs, headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('error', failed);
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, text, elapsedMs: performance.now() - started }),
      );
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', failed);
    req.end();
  });
}

/** The Headers of an authorization answer as JSON text, or undefined when it is not one. */
export function servedHeaders(text: string): string | undefined {
  try {
    const parsed = JSON.parse(text) as Partial<AuthorizationParameters>; // Headers checked next
    const headers = parsed.Headers;
    return headers === undefined ? undefined : JSON.stringify(headers);
  } catch {
    return undefined;
  }
}

type ReplicaRequest = (
  on: Replica,
  method: string,
  route: string,
  body?: unknown,
  timeoutMs?: number,
) => Promise<Answer>;

/**
 * What the tests ask of a replica, every request carrying the same headers: a policy file's
 * caller key, or none. Properties, not methods, so that a test can destructure them.
 */
export interface FleetCalls {
  /** call() to `on` with the caller's headers. */
  api: ReplicaRequest;
  /** callSafely() to `on` with the caller's headers. */
  apiSafely: ReplicaRequest;
  /**
   * A request that must be answered within `limitMs` (during an outage, say). It may itself
   * take 10 s longer, so that a slow answer fails on its measured time rather than as an abort;
   * a network failure is status 0, for the caller's check of the answer to report.
   */
  apiWithin: (
    limitMs: number,
    on: Replica,
    method: string,
    route: string,
    body?: unknown,
  ) => Promise<Answer>;
  /** CreateConnection through `via`, asserted to answer 201. */
  createConnection: (via: Replica, input: unknown) => Promise<StateResponse>;
  getAuthorization: (on: Replica, name: string) => Promise<AuthorizationParameters>;
  describeOn: (on: Replica, name: string) => Promise<ConnectionDescription>;
  /** The Prometheus exposition of `on`, asserted to answer 200. */
  metricsOf: (on: Replica) => Promise<string>;
}

/**
 * The requests of one caller. `metricsMatchSpec` also checks every /metrics answer against
 * openapi.yaml (GetMetrics), as the Secrets Manager fleet always has.
 */
export function callsAs(
  headers: Readonly<Record<string, string>> = {},
  { metricsMatchSpec = false }: { metricsMatchSpec?: boolean } = {},
): FleetCalls {
  const api: ReplicaRequest = (on, method, route, body, timeoutMs) =>
    call(on.url, method, route, body, timeoutMs, headers);
  const apiSafely: ReplicaRequest = (on, method, route, body, timeoutMs) =>
    callSafely(on.url, method, route, body, timeoutMs, headers);
  return {
    api,
    apiSafely,
    apiWithin: async (limitMs, on, method, route, body) => {
      const answer = await apiSafely(on, method, route, body, limitMs + 10_000);
      assert.ok(
        answer.elapsedMs < limitMs,
        `${on.name} ${method} ${route} took ${Math.round(answer.elapsedMs)} ms (limit ${limitMs} ms)`,
      );
      return answer;
    },
    createConnection: async (via, input) =>
      expectOk<StateResponse>(
        'CreateConnection',
        await api(via, 'POST', '/v1/connections', input),
        201,
      ),
    getAuthorization: async (on, name) =>
      expectOk<AuthorizationParameters>(
        'GetAuthorization',
        await api(on, 'GET', authorizationPath(name)),
      ),
    describeOn: async (on, name) =>
      expectOk<ConnectionDescription>(
        'DescribeConnection',
        await api(on, 'GET', connectionPath(name)),
      ),
    metricsOf: async (on) => {
      const answer = await api(on, 'GET', '/metrics');
      assert.equal(answer.status, 200, `GET /metrics on ${on.name}: ${brief(answer)}`);
      if (metricsMatchSpec) conformsToSpec('GetMetrics', answer);
      return answer.text;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Prometheus exposition

/** The value of one sample (`name` or `name{labels}`) in a Prometheus exposition. */
export function metricValue(exposition: string, sample: string): number | undefined {
  const escaped = sample.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const match = new RegExp(`^${escaped} (\\S+)$`, 'm').exec(exposition);
  return match?.[1] === undefined ? undefined : Number(match[1]);
}

/**
 * A counter's samples summed by the value of one of its labels, whatever its other labels
 * (broker_secret_store_operations_total by op sums over outcome); samples without it are left out.
 */
export function samplesByLabel(
  exposition: string,
  metric: string,
  label: string,
): Record<string, number> {
  const sums: Record<string, number> = {};
  const sample = new RegExp(`^${metric}\\{([^}]*)\\} (\\S+)$`, 'gm');
  const labelValue = new RegExp(`(?:^|,)${label}="([^"]*)"`);
  for (const [, labels, count] of exposition.matchAll(sample)) {
    const value = labelValue.exec(labels ?? '')?.[1];
    if (value === undefined) continue;
    sums[value] = (sums[value] ?? 0) + Number(count);
  }
  return sums;
}

/**
 * Polls `probe` (true when the change is seen, else a description of what was seen) until it
 * sees the change, then asserts that happened within `boundMs` of `since`; polling goes on
 * `graceMs` longer so a late change reports how late it was.
 */
export async function observeWithin(
  what: string,
  since: number,
  probe: () => Promise<true | string>,
  { boundMs, graceMs }: { boundMs: number; graceMs: number },
): Promise<number> {
  let last = 'nothing yet';
  await waitFor(
    async () => {
      const seen = await probe();
      if (seen === true) return true;
      last = seen;
      return false;
    },
    {
      timeoutMs: Math.max(0, since + boundMs + graceMs - Date.now()),
      intervalMs: 100,
      message: () => `${what}; last seen: ${last}`,
    },
  );
  const elapsed = Date.now() - since;
  assert.ok(
    elapsed <= boundMs,
    `${what}: seen after ${elapsed} ms, more than the ${boundMs} ms bound`,
  );
  return elapsed;
}

export interface Replica<Name extends string = string> {
  name: Name;
  url: string;
  process: BrokerProcess;
}

/**
 * Starts one broker process per `[name, env]` at once. Every one that started is pushed onto
 * `into` before a failure is thrown, so the suite's `after` stops them all.
 */
export async function startReplicas<Name extends string>(
  planned: ReadonlyArray<readonly [Name, Record<string, string>]>,
  into: Array<Replica<Name>>,
): Promise<void> {
  const started = await Promise.allSettled(planned.map(([, env]) => startBrokerProcess(env)));
  started.forEach((result, index) => {
    if (result.status === 'fulfilled') {
      into.push({ name: planned[index]![0], url: result.value.url, process: result.value });
    }
  });
  const failed = started.find((result) => result.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
}
