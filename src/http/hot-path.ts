import type { IncomingMessage, ServerResponse } from 'node:http';
import { parseConnectionReference } from '../connections/arn.js';
import type { ConnectionCache } from '../connections/connection-cache.js';
import type { BrokerMetrics } from '../metrics.js';
import type { Authenticator } from '../auth/authenticator.js';
import type { AuditLog } from '../auth/audit.js';
import type { PrincipalRateLimiter } from '../auth/rate-limiter.js';
import { AUTHORIZATION_ROUTE, requestIdOf, sendAuthorization } from './request-context.js';

const PREFIX = '/v1/connections/';
const SUFFIX = '/authorization';

export interface HotPathDeps {
  cache: ConnectionCache;
  metrics: Pick<BrokerMetrics, 'httpRequestDuration' | 'connectionCache'>;
  authenticator: Authenticator;
  rateLimiter: PrincipalRateLimiter;
  audit: AuditLog;
  now?: () => number;
}

function referenceFromUrl(url: string): string | undefined {
  // A query string is express's to validate (it refuses parameters the route does not take).
  if (url.includes('?')) return undefined;
  if (!url.startsWith(PREFIX) || !url.endsWith(SUFFIX)) return undefined;
  const segment = url.slice(PREFIX.length, url.length - SUFFIX.length);
  if (segment.length === 0 || segment.includes('/')) return undefined;
  if (!segment.includes('%')) return segment;
  try {
    return decodeURIComponent(segment);
  } catch {
    return undefined;
  }
}

/**
 * `GET /v1/connections/{name}/authorization` for a cached connection whose credentials can be
 * served as they are, without express's per-request cost. It answers only what the express route
 * would answer byte for byte; anything else (a miss, a token near expiry, an error) falls
 * through to express, which stays the one place for validation, errors and refreshes.
 */
export function createHotPath(
  deps: HotPathDeps,
): (req: IncomingMessage, res: ServerResponse) => boolean {
  const now = deps.now ?? Date.now;
  const duration = deps.metrics.httpRequestDuration.labels(AUTHORIZATION_ROUTE, 'GET', '200');
  const hits = deps.metrics.connectionCache.labels('hit');
  return (req, res) => {
    if (req.method !== 'GET' || req.url === undefined) return false;
    const startedMs = performance.now();
    const nameOrArn = referenceFromUrl(req.url);
    if (nameOrArn === undefined) return false;
    const reference = parseConnectionReference(nameOrArn);
    // Anyone not plainly allowed (no key, a JWT, a denial) gets express's answer and audit line.
    const caller = deps.authenticator.callerNow(req.headers.authorization);
    if (caller?.principal.can('RetrieveConnectionCredentials', reference.name) !== true) {
      return false;
    }
    const body = deps.cache.freshAuthorization(reference.name, reference.uuid, now());
    if (body === undefined) return false;
    // Over its rate: express answers the 429 (and the audit line).
    if (deps.rateLimiter.take(caller.principal.name) !== undefined) return false;
    hits.inc();
    const requestId = requestIdOf(req);
    sendAuthorization(res, body, requestId);
    deps.audit({
      requestId,
      principal: caller.principal.name,
      action: 'RetrieveConnectionCredentials',
      connection: reference.name,
      outcome: 'success',
    });
    duration.observe((performance.now() - startedMs) / 1000);
    return true;
  };
}
