import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { BrokerMetrics } from '../metrics.js';

const CALLER_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** A caller's X-Request-Id when it is safe to echo and log, otherwise a fresh one. */
export function requestIdOf(req: IncomingMessage): string {
  const given = req.headers['x-request-id'];
  return typeof given === 'string' && CALLER_REQUEST_ID.test(given) ? given : randomUUID();
}

export const AUTHORIZATION_ROUTE = '/v1/connections/:name/authorization';

/** The one writer of authorization answers, for the hot path and the express route alike. */
export function sendAuthorization(res: ServerResponse, body: Buffer, requestId: string): void {
  res.writeHead(200, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': body.length,
    'cache-control': 'no-store',
    'x-request-id': requestId,
  });
  res.end(body);
}

export function observeRequest(
  metrics: Pick<BrokerMetrics, 'httpRequestDuration'>,
  route: string,
  method: string,
  status: number,
  startedMs: number,
): void {
  metrics.httpRequestDuration.observe(
    { route, method, status: String(status) },
    (performance.now() - startedMs) / 1000,
  );
}
