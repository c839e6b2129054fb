import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Caller } from '../auth/authenticator.js';
import type { Action } from '../auth/policy.js';
import type { BrokerMetrics } from '../metrics.js';

const CALLER_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** A caller's X-Request-Id when it is safe to echo and log, otherwise a fresh one. */
export function requestIdOf(req: IncomingMessage): string {
  const given = req.headers['x-request-id'];
  return typeof given === 'string' && CALLER_REQUEST_ID.test(given) ? given : randomUUID();
}

/** One access decision of a request, audited when its response ends (src/http/access.ts). */
export interface AuditNote {
  action: Action | 'Authenticate';
  connection?: string;
}

/**
 * What one handler learns about a request and a later one reads (the id, the caller, its access
 * decisions, the error code answered), kept beside the response in a WeakMap, so it is typed and
 * goes with the response, rather than under res.locals' untyped keys.
 */
interface RequestState {
  readonly requestId: string;
  caller: Caller | undefined;
  readonly decisions: AuditNote[];
  errorCode: string | undefined;
}

const states = new WeakMap<ServerResponse, RequestState>();

function stateOf(res: ServerResponse): RequestState {
  let state = states.get(res);
  if (state === undefined) {
    const requestId = requestIdOf(res.req);
    state = { requestId, caller: undefined, decisions: [], errorCode: undefined };
    states.set(res, state);
  }
  return state;
}

/** The request's id, fixed when first asked for (by the express app's first middleware). */
export function requestIdFor(res: ServerResponse): string {
  return stateOf(res).requestId;
}

export function setCaller(res: ServerResponse, caller: Caller): void {
  stateOf(res).caller = caller;
}

/** Undefined until the request is authenticated, and on the routes anyone may call. */
export function callerFor(res: ServerResponse): Caller | undefined {
  return states.get(res)?.caller;
}

/** Decisions are kept in order: an invoke that reveals secrets makes two. */
export function noteDecision(res: ServerResponse, decision: AuditNote): void {
  stateOf(res).decisions.push(decision);
}

export function decisionsFor(res: ServerResponse): readonly AuditNote[] {
  return states.get(res)?.decisions ?? [];
}

/** The error code the request was answered with (a problem's or the wire protocol's). */
export function setErrorCode(res: ServerResponse, code: string): void {
  stateOf(res).errorCode = code;
}

export function errorCodeFor(res: ServerResponse): string | undefined {
  return states.get(res)?.errorCode;
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
