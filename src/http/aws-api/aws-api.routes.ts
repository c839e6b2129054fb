import express, {
  Router,
  type ErrorRequestHandler,
  type Request,
  type RequestHandler,
} from 'express';
import type { Logger } from 'pino';
import type { AuditLog } from '../../auth/audit.js';
import type { Authenticator, Caller } from '../../auth/authenticator.js';
import type { PrincipalRateLimiter } from '../../auth/rate-limiter.js';
import { SigV4Error, SigV4Verifier } from '../../auth/sigv4-verifier.js';
import type { ArnContext } from '../../connections/arn.js';
import type { ConnectionService } from '../../connections/connection-service.js';
import { BrokerError, causeOf } from '../../errors.js';
import { assertJsonDepth } from '../json-depth.js';
import { loadOpenApiDocument } from '../openapi-document.js';
import { requestIdFor, setCaller, setErrorCode } from '../request-context.js';
import { sendWire, sendWireError, toWireError, WireProtocolError } from './wire-errors.js';
import { isWireOperation, runWireOperation, type WireOperation } from './wire-operations.js';
import { WireValidator } from './wire-validator.js';
import type { ExpensiveWorkGate } from '../../auth/expensive-work.js';

export interface AwsApiDeps {
  service: ConnectionService;
  arn: ArnContext;
  authenticator: Authenticator;
  rateLimiter: PrincipalRateLimiter;
  /** Creates and updates request tokens: they take from the same gate as REST's. */
  expensiveWork?: ExpensiveWorkGate;
  audit: AuditLog;
  logger: Logger;
  bodyLimitBytes: number;
}

const TOKEN_REQUESTING: ReadonlySet<WireOperation> = new Set([
  'CreateConnection',
  'UpdateConnection',
]);

/** SigV4's service name for EventBridge, and its JSON protocol's target prefix. */
const SIGNING_SERVICE = 'events';
const TARGET_PREFIX = 'AWSEvents.';
const AMZ_JSON_TYPE = /^application\/x-amz-json-1\.[01]\b/i;

/** AWS's clients mark their calls with a target or the protocol's content type. */
function isWireRequest(req: Request): boolean {
  return (
    req.headers['x-amz-target'] !== undefined ||
    AMZ_JSON_TYPE.test(req.headers['content-type'] ?? '')
  );
}

function operationOf(target: string | string[] | undefined): WireOperation {
  const text = typeof target === 'string' ? target : '';
  const name = text.startsWith(TARGET_PREFIX) ? text.slice(TARGET_PREFIX.length) : '';
  if (isWireOperation(name)) return name;
  const shown =
    text === '' ? 'no X-Amz-Target' : `'${text.slice(0, 128).replace(/[^\x20-\x7e]/g, '?')}'`;
  throw new WireProtocolError(
    'UnknownOperationException',
    `Unknown operation (${shown}); this broker serves AWSEvents.CreateConnection, DescribeConnection, ListConnections, UpdateConnection, DeleteConnection and DeauthorizeConnection.`,
  );
}

function parseInput(body: Buffer): Record<string, unknown> {
  // The AWS CLI sends `{}` for no parameters; an empty body means the same.
  if (body.length === 0) return {};
  assertJsonDepth(body);
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    throw new WireProtocolError('SerializationException', 'The request body is not valid JSON.');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new WireProtocolError(
      'SerializationException',
      'The request body must be a JSON object.',
    );
  }
  return parsed as Record<string, unknown>; // a JSON object (checked above): its keys are strings
}

/**
 * EventBridge's connection API over AWS's own wire protocol (JSON 1.1 at `POST /`, SigV4), for
 * the AWS CLI and SDKs. Requests that are not AWS-shaped pass on to the REST routes.
 */
export function awsApiRoutes(deps: AwsApiDeps): Router {
  const router = Router();
  const validator = new WireValidator(loadOpenApiDocument());
  const verifier = new SigV4Verifier({
    region: deps.arn.region,
    service: SIGNING_SERVICE,
    credentialFor: (accessKeyId) => deps.authenticator.awsCredential(accessKeyId),
    signedWhenPresent: ['x-amz-target'],
  });

  /** Without a policy (loopback only) signatures are not checked, as local emulators do. */
  const openCaller = (): Caller | undefined => {
    const open = deps.authenticator.callerNow(undefined);
    return open !== undefined && deps.authenticator.open ? open : undefined;
  };
  const authenticate = async (req: Request, body: Buffer): Promise<Caller> => {
    const open = openCaller();
    if (open !== undefined) return open;
    const [path = '/', query = ''] = req.originalUrl.split(/\?(.*)/s, 2);
    return verifier.verify({ method: req.method, path, query, headers: req.headers, body });
  };

  const errors: ErrorRequestHandler = (error: unknown, req, res, _next) => {
    const wire = toWireError(error);
    const requestId = requestIdFor(res);
    setErrorCode(res, wire.code);
    if (error instanceof SigV4Error) {
      deps.audit({ requestId, principal: undefined, action: 'Authenticate', outcome: wire.code });
    }
    if (wire.status >= 500) {
      // Picked fields only: foreign errors carry upstream bodies.
      deps.logger.error(
        {
          requestId,
          target: req.headers['x-amz-target'],
          code: wire.code,
          cause: causeOf(wire),
        },
        wire.message,
      );
    }
    if (res.headersSent) return;
    sendWireError(res, wire, requestId);
  };

  const onlyWire: RequestHandler = (req, _res, next) => {
    next(isWireRequest(req) ? undefined : 'route');
  };
  // Raw: the signature covers the exact bytes. No inflation: a compressed body would be signed
  // as sent, so an encoded one is refused rather than checked against other bytes.
  const rawBody = express.raw({ type: () => true, limit: deps.bodyLimitBytes, inflate: false });
  // The body is read only for a caller whose headers pass: a known access key, in scope, fresh.
  const checkHeaders: RequestHandler = (req, _res, next) => {
    if (openCaller() === undefined) verifier.checkHeaders(req.headers);
    next();
  };
  const handle: RequestHandler = async (req, res) => {
    const body = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
    const caller = await authenticate(req, body);
    setCaller(res, caller);
    const wait = deps.rateLimiter.take(caller.principal.name);
    if (wait !== undefined) {
      throw new BrokerError('ThrottlingException', 'Rate exceeded', { retryAfterSeconds: wait });
    }
    // As on REST, a body that is not the protocol's JSON is refused (an HTML form's would be).
    const type = req.headers['content-type'] ?? '';
    if (!AMZ_JSON_TYPE.test(type) && !/^application\/json\b/i.test(type)) {
      throw new BrokerError(
        'UnsupportedMediaTypeException',
        'Send the call with Content-Type: application/x-amz-json-1.1.',
      );
    }
    const operation = operationOf(req.headers['x-amz-target']);
    if (deps.expensiveWork !== undefined && TOKEN_REQUESTING.has(operation)) {
      res.once('close', deps.expensiveWork.admit(caller.principal.name));
    }
    const output = await runWireOperation(operation, parseInput(body), {
      service: deps.service,
      validator,
      arn: deps.arn,
      res,
    });
    sendWire(res, 200, output, requestIdFor(res));
  };
  router.post('/', onlyWire, checkHeaders, rawBody, handle, errors);
  return router;
}
