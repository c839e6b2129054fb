/**
 * What the fleet tests share: bounded HTTP calls to a broker process, assertions against
 * openapi.yaml, the response shapes, and Prometheus exposition parsing.
 */

import assert from 'node:assert/strict';

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

// ---------------------------------------------------------------------------------------------
// Prometheus exposition

/** The value of one sample (`name` or `name{labels}`) in a Prometheus exposition. */
export function metricValue(exposition: string, sample: string): number | undefined {
  const escaped = sample.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const match = new RegExp(`^${escaped} (\\S+)$`, 'm').exec(exposition);
  return match?.[1] === undefined ? undefined : Number(match[1]);
}

/** A counter's samples with exactly one label, summed by that label's value. */
export function samplesByLabel(
  exposition: string,
  metric: string,
  label: string,
): Record<string, number> {
  const sums: Record<string, number> = {};
  const pattern = new RegExp(`^${metric}\\{${label}="([^"]*)"\\} (\\S+)$`, 'gm');
  for (const [, value, count] of exposition.matchAll(pattern)) {
    sums[value!] = (sums[value!] ?? 0) + Number(count);
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
