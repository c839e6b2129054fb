import type { TokenResult } from './token-port.js';
import { refreshAtMs } from './authorization-parameters.js';
import {
  hasCompleteCredentials,
  mergeCredentials,
  mergeHttpParameters,
  assertOnlyBlockFor,
  assertSendable,
  type Credentials,
  type UpdateConnectionInput,
} from './connection-input.js';
import type {
  Connection,
  ConnectionCommon,
  HttpParameters,
  OAuthConnection,
} from './connection.js';

/**
 * Every change a connection goes through, as pure functions from one value to the next: no
 * store, no clock, no token endpoint. The generation (what an executor reports a 401/407
 * against) moves here and nowhere else; the state machine is EventBridge's (README, Connection
 * states).
 */

const STATE_REASON_MAX = 512;

export function truncateReason(text: string): string {
  return text.length <= STATE_REASON_MAX ? text : `${text.slice(0, STATE_REASON_MAX - 1)}…`;
}

/** The credentials an executor receives changed: reports against older ones are stale. */
function nextGeneration(c: Connection): number {
  return c.generation + 1;
}

/** The fields every connection has, without its credentials, token or lease. */
export function commonFields(c: Connection): ConnectionCommon {
  switch (c.authorizationType) {
    case 'BASIC': {
      const { authorizationType: _type, basic: _basic, ...common } = c;
      return common;
    }
    case 'API_KEY': {
      const { authorizationType: _type, apiKey: _apiKey, ...common } = c;
      return common;
    }
    case 'OAUTH_CLIENT_CREDENTIALS': {
      const {
        authorizationType: _type,
        oauth: _oauth,
        token: _token,
        refreshLease: _lease,
        ...common
      } = c;
      return common;
    }
  }
}

export function withCredentials(c: Connection, credentials: Credentials): Connection {
  return { ...commonFields(c), ...credentials };
}

export interface NewConnection {
  name: string;
  description?: string;
  credentials: Credentials;
  invocationHttpParameters?: HttpParameters;
  uuid: string;
  secretUuid: string;
}

/** OAuth connections start AUTHORIZING (a token is requested next); the others AUTHORIZED. */
export function newConnection(input: NewConnection, nowMs: number): Connection {
  const isOAuth = input.credentials.authorizationType === 'OAUTH_CLIENT_CREDENTIALS';
  const common: ConnectionCommon = {
    name: input.name,
    uuid: input.uuid,
    secretUuid: input.secretUuid,
    state: isOAuth ? 'AUTHORIZING' : 'AUTHORIZED',
    creationTimeMs: nowMs,
    lastModifiedTimeMs: nowMs,
    generation: 1,
    ...(input.description !== undefined && { description: input.description }),
    ...(!isOAuth && { lastAuthorizedTimeMs: nowMs }),
    ...(input.invocationHttpParameters !== undefined && {
      invocationHttpParameters: input.invocationHttpParameters,
    }),
  };
  return { ...common, ...input.credentials };
}

export function deauthorized(c: Connection, reason: string): Connection {
  const next = { ...c, state: 'DEAUTHORIZED' as const, stateReason: truncateReason(reason) };
  if (next.authorizationType === 'OAUTH_CLIENT_CREDENTIALS') {
    delete next.token;
    delete next.refreshLease;
  }
  return next;
}

/** DeauthorizeConnection: the secret goes; the non-secret fields and invocation parameters stay. */
export function deauthorizedByCaller(c: Connection, nowMs: number): Connection {
  const dropped: Credentials =
    c.authorizationType === 'BASIC'
      ? { authorizationType: 'BASIC', basic: { username: c.basic.username } }
      : c.authorizationType === 'API_KEY'
        ? { authorizationType: 'API_KEY', apiKey: { apiKeyName: c.apiKey.apiKeyName } }
        : {
            authorizationType: 'OAUTH_CLIENT_CREDENTIALS',
            oauth: (({ clientSecret: _dropped, ...rest }) => rest)(c.oauth),
          };
  return {
    ...withCredentials(c, dropped),
    state: 'DEAUTHORIZED',
    stateReason: 'Deauthorized by DeauthorizeConnection.',
    generation: nextGeneration(c),
    lastModifiedTimeMs: nowMs,
  };
}

/** EventBridge: a 401/407 to unchanged BASIC or API_KEY credentials deauthorizes the connection. */
export function rejectedByApi(c: Connection, statusCode: number): Connection {
  const reason = `The API answered HTTP ${statusCode} to the stored credentials.`;
  return { ...deauthorized(c, reason), generation: nextGeneration(c) };
}

/** What the token endpoint answered, applied to the connection that asked. */
export function withTokenResult(c: OAuthConnection, result: TokenResult): Connection {
  if (result.outcome !== 'issued') {
    return deauthorized(c, `Token refresh was rejected: ${result.reason}.`);
  }
  const { stateReason: _cleared, refreshLease: _done, ...rest } = c;
  return {
    ...rest,
    state: 'AUTHORIZED',
    token: result.token,
    // The first token of an authorization is the generation the create or update started.
    generation: c.token === undefined ? c.generation : nextGeneration(c),
    lastAuthorizedTimeMs: result.token.obtainedAtMs,
  };
}

export function authorizationFailed(c: OAuthConnection, reason: string): Connection {
  return deauthorized(c, `Authorization failed: ${reason}.`);
}

/** Reported rejected while no new token could be had: not handed out again until replaced. */
export function withTokenMarkedRejected(c: OAuthConnection): OAuthConnection {
  return c.token === undefined ? c : { ...c, token: { ...c.token, rejected: true } };
}

export function withLease(
  c: OAuthConnection,
  holder: string,
  nowMs: number,
  leaseMs: number,
): OAuthConnection {
  return { ...c, refreshLease: { holder, generation: c.generation, expiresAtMs: nowMs + leaseMs } };
}

export function withoutLease(c: OAuthConnection): OAuthConnection {
  const { refreshLease: _released, ...rest } = c;
  return rest;
}

/** Whether a token saved for `asked` still applies to `current` (only a lease or text moved). */
export function sameTokenRequest(asked: OAuthConnection, current: Connection): boolean {
  return (
    current.authorizationType === 'OAUTH_CLIENT_CREDENTIALS' &&
    current.state === asked.state &&
    current.generation === asked.generation &&
    JSON.stringify(current.oauth) === JSON.stringify(asked.oauth)
  );
}

export function needsRefresh(c: OAuthConnection, nowMs: number): boolean {
  return c.token === undefined || nowMs >= refreshAtMs(c.token);
}

/** A connection whose credentials can be handed out now. */
export function isUsable(c: Connection, nowMs: number): boolean {
  if (c.authorizationType !== 'OAUTH_CLIENT_CREDENTIALS') return true;
  const token = c.token;
  return (
    token !== undefined &&
    token.rejected !== true &&
    (token.expiresAtMs === undefined || token.expiresAtMs > nowMs)
  );
}

export interface UpdatePlan {
  connection: Connection;
  /** A token must be requested before the connection is AUTHORIZED again. */
  reauthorize: boolean;
}

/**
 * UpdateConnection's rules: a description alone changes nothing else; new credentials move the
 * generation; new OAuth parameters re-authorize; credentials left incomplete deauthorize.
 * `assertEndpoint` checks a token endpoint before it is stored.
 */
export function applyUpdate(
  current: Connection,
  input: UpdateConnectionInput,
  nowMs: number,
  assertEndpoint: (credentials: Credentials) => void,
): UpdatePlan {
  const type = input.AuthorizationType ?? current.authorizationType;
  const auth = input.AuthParameters;
  assertOnlyBlockFor(type, auth);
  const typeChanged = type !== current.authorizationType;
  const touchesCredentials = typeChanged || auth !== undefined;
  const described: Connection = {
    ...current,
    lastModifiedTimeMs: nowMs,
    ...(input.Description !== undefined && { description: input.Description }),
  };
  if (!touchesCredentials) return { connection: described, reauthorize: false };

  const credentials = mergeCredentials(type, current, auth);
  assertEndpoint(credentials);
  let next = withCredentials(described, credentials);
  if (auth?.InvocationHttpParameters !== undefined) {
    next.invocationHttpParameters = mergeHttpParameters(
      current.invocationHttpParameters,
      auth.InvocationHttpParameters,
    );
  }
  assertSendable(credentials, next.invocationHttpParameters);
  next.generation = nextGeneration(current);
  delete next.stateReason;
  if (!hasCompleteCredentials(credentials)) {
    const reason = 'The connection has no credentials; update them to re-authorize.';
    return { connection: deauthorized(next, reason), reauthorize: false };
  }
  const oauthChanged =
    type === 'OAUTH_CLIENT_CREDENTIALS' &&
    (typeChanged || auth?.OAuthParameters !== undefined || current.state !== 'AUTHORIZED');
  if (oauthChanged) return { connection: { ...next, state: 'AUTHORIZING' }, reauthorize: true };
  if (
    next.authorizationType === 'OAUTH_CLIENT_CREDENTIALS' &&
    current.authorizationType === 'OAUTH_CLIENT_CREDENTIALS' &&
    current.token !== undefined
  ) {
    next = { ...next, token: current.token };
  }
  next = { ...next, state: 'AUTHORIZED' };
  if (type !== 'OAUTH_CLIENT_CREDENTIALS') next.lastAuthorizedTimeMs = nowMs;
  return { connection: next, reauthorize: false };
}
