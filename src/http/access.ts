import type { RequestHandler, Response } from 'express';
import { parseConnectionReference } from '../connections/arn.js';
import type { Authenticator, Caller } from '../auth/authenticator.js';
import type { ExpensiveWorkGate } from '../auth/expensive-work.js';
import type { PrincipalRateLimiter } from '../auth/rate-limiter.js';
import { accessDenied, throttled } from '../errors.js';
import type { AuditLog } from '../auth/audit.js';
import type { Action } from '../auth/policy.js';
import {
  callerFor,
  decisionsFor,
  errorCodeFor,
  noteDecision,
  requestIdFor,
  setCaller,
  type AuditNote,
} from './request-context.js';

/** Routes anyone may call: probes, and metrics unless configured otherwise. */
const PUBLIC_PATHS = new Set(['/healthz', '/readyz']);

/**
 * Authenticates every request but the probes; a failure answers 401 (and is audited). A caller
 * over its rate answers 429 with Retry-After.
 */
export function authenticate(deps: {
  authenticator: Authenticator;
  rateLimiter: PrincipalRateLimiter;
  metricsAuth: boolean;
}): RequestHandler {
  return (req, res, next) => {
    if (PUBLIC_PATHS.has(req.path) || (req.path === '/metrics' && !deps.metricsAuth)) {
      next();
      return;
    }
    deps.authenticator.caller(req.headers.authorization).then(
      (caller) => {
        setCaller(res, caller);
        const wait = deps.rateLimiter.take(caller.principal.name);
        next(wait === undefined ? undefined : throttled(caller.principal.name, wait));
      },
      (error: unknown) => {
        next(error);
      },
    );
  };
}

/**
 * Requests whose every call costs a token request or an outbound call: create, update, invoke.
 * Not refresh or prepare: their token requests are single-flighted per generation and backed off,
 * so a storm of 300 executors reporting one 401 is one token request, and must not be throttled.
 */
function isExpensive(method: string, path: string): boolean {
  if (method === 'POST') return path === '/v1/connections' || path === '/v1/http-task/invoke';
  return method === 'PATCH' && path.startsWith('/v1/connections/');
}

/**
 * Requests that reach a token endpoint or an upstream take from the principal's expensive-work
 * gate (src/auth/expensive-work.ts) for as long as they run. Runs after authenticate().
 */
export function limitExpensiveWork(gate: ExpensiveWorkGate): RequestHandler {
  return (req, res, next) => {
    const caller = callerFor(res);
    if (!isExpensive(req.method, req.path) || caller === undefined) {
      next();
      return;
    }
    let release: () => void;
    try {
      release = gate.admit(caller.principal.name);
    } catch (error) {
      next(error);
      return;
    }
    res.once('close', release);
    next();
  };
}

function authenticatedCaller(res: Response): Caller {
  const caller = callerFor(res);
  // authenticate() runs before every route that calls this.
  if (caller === undefined) throw new Error('no authenticated caller on this request');
  return caller;
}

/**
 * Checks that the caller may do `action` to the connection named (or ARN'd) by `nameOrArn`,
 * and records the decision for the audit line written when the response ends.
 */
export function authorize(
  res: Response,
  action: Action,
  nameOrArn: string,
  { audit = 'always' }: { audit?: 'always' | 'denial' } = {},
): void {
  const caller = authenticatedCaller(res);
  const connection = parseConnectionReference(nameOrArn).name;
  const allowed = caller.principal.can(action, connection);
  if (audit === 'always' || !allowed) noteDecision(res, { action, connection });
  if (!allowed) throw accessDenied(caller.principal.name, action, connection);
}

/** Whether the caller may do `action` to the connection, without deciding or auditing anything. */
export function may(res: Response, action: Action, nameOrArn: string): boolean {
  return authenticatedCaller(res).principal.can(action, parseConnectionReference(nameOrArn).name);
}

/** For listings: the caller needs the action somewhere; each connection is then filtered. */
export function authorizeSome(res: Response, action: Action): (connection: string) => boolean {
  const caller = authenticatedCaller(res);
  noteDecision(res, { action });
  if (!caller.principal.hasAction(action)) throw accessDenied(caller.principal.name, action, '*');
  return (connection) => caller.principal.can(action, connection);
}

/** For the broker's own resources (the key ring): the caller needs the action on `*`. */
export function authorizeOnAll(res: Response, action: Action): void {
  const caller = authenticatedCaller(res);
  noteDecision(res, { action });
  if (!caller.principal.canOnAll(action)) throw accessDenied(caller.principal.name, action, '*');
}

/**
 * The audit lines of a finished request: one per access decision it made, or one for a failed
 * authentication. Every decision shares the request's outcome; a denial ends the request, so it
 * is the last decision.
 */
export function auditFinished(res: Response, audit: AuditLog): void {
  const requestId = requestIdFor(res);
  const errorCode = errorCodeFor(res);
  const caller = callerFor(res);
  const decided = decisionsFor(res);
  const notes: readonly AuditNote[] =
    decided.length === 0 && errorCode === 'UnauthorizedException'
      ? [{ action: 'Authenticate' }]
      : decided;
  const outcome = !res.writableFinished
    ? 'ClientDisconnected'
    : res.statusCode < 400
      ? 'success'
      : (errorCode ?? String(res.statusCode));
  for (const decision of notes) {
    audit({
      requestId,
      principal: caller?.principal.name,
      action: decision.action,
      ...(decision.connection !== undefined && { connection: decision.connection }),
      outcome,
    });
  }
}
