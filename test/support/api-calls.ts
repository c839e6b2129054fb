/**
 * The REST API's connection and HTTP Task calls through supertest, each bounded and checked
 * against openapi.yaml (README, Endpoints): shared by the tests of test/api/.
 */
import type { Response } from 'supertest';
import type { Harness } from './broker-harness.js';
import { assertMatchesSpec } from './openapi-contract.js';

/** Every call is bounded; the brokers' own token and invoke timeouts are shorter. */
export const REQUEST_TIMEOUT_MS = 10_000;

let sequence = 0;
/** A connection name not used before in this test process: `prefix-1`, `prefix-2`, … */
export const uniqueName = (prefix: string): string => `${prefix}-${++sequence}`;

export async function createConnection(h: Harness, body: object): Promise<Response> {
  const res = await h.request.post('/v1/connections').send(body).timeout(REQUEST_TIMEOUT_MS);
  assertMatchesSpec('CreateConnection', res);
  return res;
}

export async function describeConnection(h: Harness, name: string): Promise<Response> {
  const res = await h.request.get(`/v1/connections/${name}`).timeout(REQUEST_TIMEOUT_MS);
  assertMatchesSpec('DescribeConnection', res);
  return res;
}

export async function updateConnection(h: Harness, name: string, body: object): Promise<Response> {
  const res = await h.request
    .patch(`/v1/connections/${name}`)
    .send(body)
    .timeout(REQUEST_TIMEOUT_MS);
  assertMatchesSpec('UpdateConnection', res);
  return res;
}

/** POST /v1/http-task/prepare; `query` carries e.g. inspectionLevel and revealSecrets. */
export async function prepareTask(
  h: Harness,
  parameters: object,
  query: Record<string, string> = {},
): Promise<Response> {
  const res = await h.request
    .post('/v1/http-task/prepare')
    .query(query)
    .send(parameters)
    .timeout(REQUEST_TIMEOUT_MS);
  assertMatchesSpec('PrepareHttpTask', res);
  return res;
}

/** POST /v1/http-task/invoke; `query` as for prepareTask. */
export async function invokeTask(
  h: Harness,
  parameters: object,
  query: Record<string, string> = {},
): Promise<Response> {
  const res = await h.request
    .post('/v1/http-task/invoke')
    .query(query)
    .send(parameters)
    .timeout(REQUEST_TIMEOUT_MS);
  assertMatchesSpec('InvokeHttpTask', res);
  return res;
}
