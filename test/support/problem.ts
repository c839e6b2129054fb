import assert from 'node:assert/strict';
import type { Response } from 'supertest';
import type { ErrorCode } from '../../src/errors.js';
import { PROBLEM_TITLES } from '../../src/http/problem.js';

/**
 * Asserts an RFC 9457 problem document (README, Errors) as a whole: its media type, every member
 * and nothing else, the title the broker gives `code`, and a `detail` matching the pattern.
 */
export function assertProblem(
  res: Response,
  status: number,
  code: ErrorCode,
  detail: RegExp,
): void {
  assert.equal(res.status, status, res.text);
  assert.equal(String(res.headers['content-type']).split(';')[0], 'application/problem+json');
  const body = res.body as Record<string, unknown>;
  assert.match(String(body['detail']), detail);
  assert.equal(typeof body['requestId'], 'string');
  assert.deepEqual(body, {
    type: `urn:connection-broker:problem:${code}`,
    title: PROBLEM_TITLES[code],
    status,
    code,
    detail: body['detail'],
    requestId: body['requestId'],
  });
}
