import { BrokerError } from '../errors.js';
import { connectionArn, type ArnContext } from './arn.js';
import { HEADER_RULES, headerRefusal, nullPrototypeRecord } from './http-fields.js';
import type {
  ApiKeyConnection,
  AuthorizationType,
  BasicConnection,
  Connection,
  HttpParameter,
  OAuthConnection,
  OAuthToken,
} from './connection.js';

/** What an executor applies to its request: ready to send, pre-serialized once per generation. */
export interface PreparedAuthorization {
  /** What the connection adds to a request, credential header included. */
  parameters: {
    headers: Record<string, string>;
    queryParameters: Record<string, string>;
    bodyParameters: Record<string, string>;
  };
  /** The JSON response body. */
  body: Buffer;
  /** After this instant the token must be refreshed first; Infinity for BASIC and API_KEY. */
  freshUntilMs: number;
  generation: number;
}

/** EventBridge refreshes a token with under 60 seconds left before using it. */
export const PROACTIVE_REFRESH_MS = 60_000;

/**
 * When a token must be refreshed before it is served: 60 s before it expires, or halfway
 * through a shorter life, so a 30-second token is not fetched again on every call.
 */
export function refreshAtMs(token: OAuthToken): number {
  if (token.rejected === true) return 0;
  if (token.expiresAtMs === undefined) return Infinity;
  const lifetimeMs = Math.max(0, token.expiresAtMs - token.obtainedAtMs);
  return token.expiresAtMs - Math.min(PROACTIVE_REFRESH_MS, lifetimeMs / 2);
}

type CredentialHeaders = {
  [T in AuthorizationType]: (
    connection: Extract<Connection, { authorizationType: T }>,
  ) => [string, string];
};

const credentialHeader: CredentialHeaders = {
  BASIC: (c: BasicConnection) => [
    'Authorization',
    `Basic ${Buffer.from(`${c.basic.username}:${c.basic.password ?? ''}`).toString('base64')}`,
  ],
  API_KEY: (c: ApiKeyConnection) => [c.apiKey.apiKeyName, c.apiKey.apiKeyValue ?? ''],
  OAUTH_CLIENT_CREDENTIALS: (c: OAuthConnection) => [
    'Authorization',
    `${c.token?.tokenType ?? 'Bearer'} ${c.token?.accessToken ?? ''}`,
  ],
};

function toMap(parameters: readonly HttpParameter[] | undefined): Record<string, string> {
  const map = nullPrototypeRecord<string>();
  for (const p of parameters ?? []) map[p.key] = p.value;
  return map;
}

function headerFor(connection: Connection): [string, string] {
  switch (connection.authorizationType) {
    case 'BASIC':
      return credentialHeader.BASIC(connection);
    case 'API_KEY':
      return credentialHeader.API_KEY(connection);
    case 'OAUTH_CLIENT_CREDENTIALS':
      return credentialHeader.OAUTH_CLIENT_CREDENTIALS(connection);
  }
}

function freshUntil(connection: Connection): number {
  if (connection.authorizationType !== 'OAUTH_CLIENT_CREDENTIALS') return Infinity;
  return connection.token === undefined ? 0 : refreshAtMs(connection.token);
}

/**
 * A stored connection whose headers could not be sent as they are (stored before the rule of
 * src/connections/http-fields.ts, or written by another broker): never handed out.
 */
export class UnsendableConnectionError extends BrokerError {
  constructor(name: string, header: string, rule: string) {
    super(
      'InvalidConnectionStateException',
      `Connection '${name}' cannot be used: its header ${JSON.stringify(header.slice(0, 64))} ${rule}. Update the connection's parameters or credentials.`,
    );
  }
}

function assertStoredHeadersSendable(
  connection: Connection,
  headers: Record<string, string>,
): void {
  for (const [name, value] of Object.entries(headers)) {
    const refusal = headerRefusal(name, value, 'connection');
    if (refusal !== undefined) {
      throw new UnsendableConnectionError(connection.name, name, HEADER_RULES[refusal]);
    }
  }
}

/**
 * The credential is applied last, so it wins over an invocation header of the same name. Throws
 * UnsendableConnectionError for headers that break the field rules.
 */
export function prepareAuthorization(
  arn: ArnContext,
  connection: Connection,
): PreparedAuthorization {
  const invocation = connection.invocationHttpParameters;
  const headers = toMap(invocation?.headerParameters);
  const [name, value] = headerFor(connection);
  // Header names are case-insensitive: an invocation header spelled `authorization` must not
  // ride along beside (and, merged later, win over) the credential's `Authorization`.
  for (const existing of Object.keys(headers)) {
    if (existing.toLowerCase() === name.toLowerCase()) delete headers[existing];
  }
  headers[name] = value;
  assertStoredHeadersSendable(connection, headers);
  const expiresAtMs =
    connection.authorizationType === 'OAUTH_CLIENT_CREDENTIALS'
      ? connection.token?.expiresAtMs
      : undefined;
  const body = {
    ConnectionArn: connectionArn(arn, connection.name, connection.uuid),
    AuthorizationType: connection.authorizationType,
    Headers: headers,
    QueryParameters: toMap(invocation?.queryStringParameters),
    BodyParameters: toMap(invocation?.bodyParameters),
    TokenGeneration: connection.generation,
    ...(expiresAtMs !== undefined && { TokenExpiresAt: new Date(expiresAtMs).toISOString() }),
  };
  return {
    parameters: {
      headers,
      queryParameters: body.QueryParameters,
      bodyParameters: body.BodyParameters,
    },
    body: Buffer.from(JSON.stringify(body)),
    freshUntilMs: freshUntil(connection),
    generation: connection.generation,
  };
}
