import express, { type ErrorRequestHandler, type Request, type RequestHandler } from 'express';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { ArnContext } from '../connections/arn.js';
import type { ConnectionService } from '../connections/connection-service.js';
import type { ConnectionCache } from '../connections/connection-cache.js';
import type { HttpTaskService } from '../http-task/http-task-service.js';
import type { KeyRotation } from '../secret-store/key-rotation.js';
import { BrokerError, causeOf } from '../errors.js';
import type { BrokerMetrics } from '../metrics.js';
import type { StoreHealth } from '../secret-store/instrumented-store.js';
import type { Authenticator } from '../auth/authenticator.js';
import type { AuditLog } from '../auth/audit.js';
import type { ExpensiveWorkGate } from '../auth/expensive-work.js';
import type { PrincipalRateLimiter } from '../auth/rate-limiter.js';
import { auditFinished, authenticate, limitExpensiveWork } from './access.js';
import { awsApiRoutes } from './aws-api/aws-api.routes.js';
import { assertJsonDepth } from './json-depth.js';
import { connectionsRoutes } from './connections.routes.js';
import { httpTaskRoutes } from './http-task.routes.js';
import { keysRoutes } from './keys.routes.js';
import { createHotPath } from './hot-path.js';
import { createOpenModeGuard } from './open-mode-guard.js';
import { operationsRoutes } from './operations.routes.js';
import { sendProblem, toBrokerError } from './problem.js';
import { observeRequest, requestIdFor, requestIdOf, setErrorCode } from './request-context.js';
import type { RequestValidator } from './request-validator.js';

export interface AppDeps {
  service: ConnectionService;
  httpTasks: HttpTaskService;
  /** The file store's key ring; undefined on Secrets Manager. */
  keys: KeyRotation | undefined;
  cache: ConnectionCache;
  validator: RequestValidator;
  metrics: BrokerMetrics;
  logger: Logger;
  storeHealth: StoreHealth;
  arn: ArnContext;
  bodyLimitBytes: number;
  isShuttingDown: () => boolean;
  authenticator: Authenticator;
  rateLimiter: PrincipalRateLimiter;
  /** The smaller bucket and in-flight cap for token requests and outbound calls. */
  expensiveWork?: ExpensiveWorkGate;
  audit: AuditLog;
  /** Whether /metrics needs an authenticated caller. */
  metricsAuth: boolean;
  /** More Host names an open broker answers to (BROKER_ALLOWED_HOSTS); loopback names always. */
  allowedHosts?: readonly string[];
  now?: () => number;
}

/** The route express matched (its pattern, e.g. `/v1/connections/:name`), for metrics and logs. */
function routePathOf(req: Request): string | undefined {
  // Express types req.route as any: read it as the unknown it is.
  const route: unknown = req.route;
  if (typeof route !== 'object' || route === null || !('path' in route)) return undefined;
  return typeof route.path === 'string' ? route.path : undefined;
}

const requestContext =
  (deps: Pick<AppDeps, 'metrics' | 'audit'>): RequestHandler =>
  (req, res, next) => {
    const startedMs = performance.now();
    res.setHeader('x-request-id', requestIdFor(res));
    res.on('finish', () => {
      const route = routePathOf(req) ?? 'unmatched';
      observeRequest(deps.metrics, route, req.method, res.statusCode, startedMs);
    });
    // 'close' also fires when the caller hangs up before the answer: the work may be done.
    res.on('close', () => auditFinished(res, deps.audit));
    next();
  };

const errorHandler =
  (deps: Pick<AppDeps, 'logger'>): ErrorRequestHandler =>
  (error: unknown, req, res, _next) => {
    const brokerError = toBrokerError(error);
    const requestId = requestIdFor(res);
    setErrorCode(res, brokerError.code);
    if (brokerError.status >= 500) {
      // Log picked fields only: foreign errors carry upstream bodies.
      deps.logger.error(
        {
          requestId,
          method: req.method,
          route: routePathOf(req),
          code: brokerError.code,
          cause: causeOf(brokerError),
        },
        brokerError.message,
      );
    }
    if (res.headersSent) return;
    sendProblem(res, brokerError, requestId);
  };

const STATE_CHANGING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/**
 * A body that is not JSON is refused before any route reads it: an HTML form (urlencoded,
 * multipart, text/plain) is the one body a browser sends cross-site without asking first.
 */
const jsonBodiesOnly: RequestHandler = (req, _res, next) => {
  const hasBody =
    req.headers['content-type'] !== undefined ||
    req.headers['transfer-encoding'] !== undefined ||
    Number(req.headers['content-length'] ?? '0') > 0;
  if (
    !STATE_CHANGING.has(req.method) ||
    !hasBody ||
    req.is('application/json') === 'application/json'
  ) {
    next();
    return;
  }
  next(
    new BrokerError(
      'UnsupportedMediaTypeException',
      `${req.method} ${req.path.slice(0, 200)} takes a JSON body: send it with Content-Type: application/json.`,
    ),
  );
};

/** The express app: every route but the hot path's cache hits. Never listens. */
export function createApp(deps: AppDeps): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.disable('etag');
  app.use(requestContext(deps));
  // AWS's wire protocol (POST / with X-Amz-Target) authenticates by SigV4 and parses its own body.
  app.use(awsApiRoutes(deps));
  app.use(authenticate(deps));
  if (deps.expensiveWork !== undefined) app.use(limitExpensiveWork(deps.expensiveWork));
  app.use(jsonBodiesOnly);
  app.use(
    express.json({
      limit: deps.bodyLimitBytes,
      type: 'application/json',
      // Any JSON value parses; the validator then says "must be a JSON object" (null, [1]).
      strict: false,
      verify: (_req, _res, body) => assertJsonDepth(body),
    }),
  );
  app.use(operationsRoutes(deps));
  app.use(connectionsRoutes(deps));
  app.use(httpTaskRoutes(deps));
  app.use(keysRoutes(deps));
  app.use((req, res, next) => {
    // RFC 9110 §15.5.6: a documented path with another method is 405, listing its methods.
    const allowed = deps.validator.allowedMethods(req.path);
    if (allowed === undefined) {
      next(new BrokerError('ResourceNotFoundException', `No route for ${req.method} ${req.path}.`));
      return;
    }
    res.setHeader('allow', allowed.join(', '));
    next(
      new BrokerError(
        'MethodNotAllowedException',
        `${req.method} is not allowed on ${req.path}; use ${allowed.join(', ')}.`,
      ),
    );
  });
  app.use(errorHandler(deps));
  return app;
}

/** The server's request handler: the hot path first, express for everything else. */
export function createRequestHandler(
  deps: AppDeps,
): (req: IncomingMessage, res: ServerResponse) => void {
  const app = createApp(deps);
  const hotPath = createHotPath(deps);
  const guard = deps.authenticator.open ? createOpenModeGuard(deps.allowedHosts ?? []) : undefined;
  return (req, res) => {
    const refusal = guard?.refusalOf(req);
    if (refusal !== undefined) {
      sendProblem(res, refusal, requestIdOf(req));
      return;
    }
    if (!hotPath(req, res)) app(req, res);
  };
}
