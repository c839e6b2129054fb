/** Errors of the broker client: the broker's problem+json answers, and a broker that never answered. */

import type { components } from '../openapi-types.js';

/** The RFC 9457 problem document every broker error answers with (openapi.yaml's Problem). */
export type Problem = components['schemas']['Problem'];

/** The broker answered with an error status; `code` is its AWS-style code (e.g. ResourceNotFoundException). */
export class BrokerApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly title: string;
  readonly detail: string;
  readonly requestId: string | undefined;
  /** Seconds from Retry-After (429, 503), when the broker sent one. */
  readonly retryAfterSeconds: number | undefined;

  constructor(problem: Problem, retryAfterSeconds?: number) {
    super(`${problem.code}: ${problem.detail}`);
    this.name = 'BrokerApiError';
    this.status = problem.status;
    this.code = problem.code;
    this.title = problem.title;
    this.detail = problem.detail;
    this.requestId = problem.requestId;
    this.retryAfterSeconds = retryAfterSeconds;
  }

  /** The problem document, as the broker sent it. */
  toProblem(): Problem {
    return {
      type: `urn:connection-broker:problem:${this.code}`,
      title: this.title,
      status: this.status,
      detail: this.detail,
      code: this.code,
      ...(this.requestId !== undefined && { requestId: this.requestId }),
    };
  }
}

/** The broker could not be reached (connection refused, DNS, TLS, timeout); `cause` is fetch's error. */
export class BrokerUnreachableError extends Error {
  readonly baseUrl: string;

  constructor(baseUrl: string, reason: string, cause: unknown) {
    super(`cannot reach the broker at ${baseUrl}: ${reason}`, { cause });
    this.name = 'BrokerUnreachableError';
    this.baseUrl = baseUrl;
  }
}

export function isProblem(value: unknown): value is Problem {
  if (typeof value !== 'object' || value === null) return false;
  const candidate = value as Record<string, unknown>; // an object, checked above; members read as unknown
  return (
    typeof candidate['code'] === 'string' &&
    typeof candidate['status'] === 'number' &&
    typeof candidate['title'] === 'string' &&
    typeof candidate['detail'] === 'string'
  );
}

/**
 * The BrokerApiError for an error answer. A body that is not a problem document (a proxy's HTML
 * page, an empty 502) becomes code `HttpError` with the status text; its body is not copied, since
 * nobody vouches for what it holds.
 */
export function toBrokerApiError(error: unknown, response: Response): BrokerApiError {
  const retryAfter = Number(response.headers.get('retry-after') ?? Number.NaN);
  const retryAfterSeconds = Number.isFinite(retryAfter) ? retryAfter : undefined;
  if (isProblem(error)) return new BrokerApiError(error, retryAfterSeconds);
  const statusText = response.statusText === '' ? 'no problem document' : response.statusText;
  return new BrokerApiError(
    {
      type: 'urn:connection-broker:problem:HttpError',
      title: statusText,
      status: response.status,
      detail: `the broker answered HTTP ${response.status} (${statusText}) without a problem document`,
      code: 'HttpError',
    },
    retryAfterSeconds,
  );
}

/**
 * The data of an openapi-fetch result, or a thrown BrokerApiError for an error answer:
 * `const description = unwrap(await client.GET('/v1/connections/{name}', …))`.
 */
export function unwrap<Data>(result: { data?: Data; error?: unknown; response: Response }): Data {
  if (result.response.ok && result.error === undefined) return result.data as Data; // openapi-fetch sets data on every 2xx answer
  throw toBrokerApiError(result.error, result.response);
}
