import * as client from 'openid-client';
import { Agent, fetch as undiciFetch, type Dispatcher } from 'undici';
import type { HttpParameter, OAuthAuth } from '../connections/connection.js';
import type { TokenClient } from '../connections/token-port.js';
import { headerRefusal, isFieldValue, nullPrototypeRecord } from '../connections/http-fields.js';
import { findOutboundRefusal, OutboundPolicy } from '../net/outbound-policy.js';

// The port this module implements is the domain's (src/connections/token-port.ts), so the
// domain never imports this adapter.
export type { TokenClient, TokenResult } from '../connections/token-port.js';

export interface TokenClientOptions {
  timeoutMs: number;
  allowInsecureEndpoints: boolean;
  userAgent: string;
  /**
   * Where token requests may go (README, Outbound safety); checked on the URL before each request
   * and on every resolved address before connecting. Defaults to allowInsecureEndpoints' rules
   * with no BROKER_ALLOWED_ENDPOINTS.
   */
  outboundPolicy?: OutboundPolicy;
  /** The largest token response body read; a longer one is not a token. */
  maxResponseBytes?: number;
  /** The longest access_token accepted. */
  maxAccessTokenLength?: number;
  now?: () => number;
}

/** Secrets Manager's own limit on one secret: a token response larger than that is not a token. */
export const DEFAULT_TOKEN_RESPONSE_MAX_BYTES = 65_536;
/** Twice what large JWT access tokens reach; servers refuse longer header blocks anyway. */
export const DEFAULT_ACCESS_TOKEN_MAX_LENGTH = 16_384;
/**
 * expires_in is clamped to [1 s, 366 days]: a larger one (1e13) is no date at all, and a token
 * that claims to live forever should still be refreshed once a year.
 */
export const MAX_TOKEN_LIFETIME_SECONDS = 366 * 24 * 3600;

interface Observed {
  status?: number;
  /** RFC 6749 §5.2 `error` code of a non-2xx answer; never its description, which may echo input. */
  oauthError?: string;
  /** Why the answer was not read at all (too large, not an HTTP answer a fetch can hold). */
  unreadable?: string;
}

class UnreadableAnswer extends Error {
  override name = 'UnreadableAnswer';
}

// RFC 6749 §5.2: error codes use this charset; anything else is not echoed.
const OAUTH_ERROR_CODE = /^[\x20\x21\x23-\x5B\x5D-\x7E]{1,64}$/;

function oauthErrorOf(bytes: Uint8Array): string | undefined {
  try {
    const body: unknown = JSON.parse(Buffer.from(bytes).toString('utf8'));
    const error: unknown =
      typeof body === 'object' && body !== null && Object.hasOwn(body, 'error')
        ? (body as { error: unknown }).error // hasOwn just checked it
        : undefined;
    return typeof error === 'string' && OAUTH_ERROR_CODE.test(error) ? error : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The body, read up to `maxBytes`: a token endpoint chosen by whoever creates a connection may
 * stream without end. The reader is cancelled (closing the socket) as soon as the limit is passed.
 */
async function readBounded(response: Response, maxBytes: number): Promise<Uint8Array> {
  const tooLarge = () =>
    new UnreadableAnswer(
      `the token endpoint's answer exceeds ${maxBytes} bytes (BROKER_TOKEN_RESPONSE_MAX_BYTES)`,
    );
  const declared = Number(response.headers.get('content-length') ?? '0');
  // A fetch body is a byte stream (the Fetch standard); the DOM typings leave its chunks `any`.
  const reader: ReadableStreamDefaultReader<Uint8Array> | undefined = response.body?.getReader();
  if (reader === undefined) return new Uint8Array(0);
  if (declared > maxBytes) {
    await reader.cancel().catch(() => undefined);
    throw tooLarge();
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > maxBytes) {
      await reader.cancel().catch(() => undefined);
      throw tooLarge();
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks);
}

/** A Response over bytes already read; statuses without a body keep none (fetch's own rule). */
function responseOver(response: Response, bytes: Uint8Array): Response {
  const nullBody = [204, 205, 304].includes(response.status);
  try {
    return new Response(nullBody ? null : bytes, {
      status: response.status,
      statusText: response.statusText,
      headers: response.headers,
    });
  } catch {
    throw new UnreadableAnswer(
      `the token endpoint's answer is not a usable HTTP response (status ${response.status})`,
    );
  }
}

function withQuery(endpoint: string, parameters: readonly HttpParameter[] | undefined): string {
  const url = new URL(endpoint);
  for (const p of parameters ?? []) url.searchParams.append(p.key, p.value);
  return url.href;
}

/**
 * Why an AuthorizationEndpoint is no URL at all, or undefined when it parses. The wire protocol
 * stores what EventBridge's model accepts ("replace_this"); its authorization then fails here.
 */
function unparsableEndpoint(endpoint: string): string | undefined {
  if (URL.canParse(endpoint)) return undefined;
  const shown = endpoint.slice(0, 128).replace(/[^\x20-\x7e]/g, '?');
  return `AuthorizationEndpoint '${shown}' is not an absolute https:// URL`;
}

function isTimeout(error: unknown): boolean {
  for (let e: unknown = error, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    if (e.name === 'TimeoutError' || e.name === 'AbortError') return true;
    if (e instanceof client.ClientError && e.code === 'OAUTH_TIMEOUT') return true;
  }
  return false;
}

function networkReason(error: unknown): string {
  if (isTimeout(error)) return 'the token endpoint did not answer in time';
  const refusal = findOutboundRefusal(error);
  if (refusal !== undefined) return `the token endpoint's host ${refusal.message}`;
  const cause =
    error instanceof Error ? (error.cause as { code?: unknown } | undefined) : undefined;
  const code = typeof cause?.code === 'string' ? ` (${cause.code})` : '';
  return `the token endpoint could not be reached${code}`;
}

/** RFC 6749 says token_type is required; EventBridge-era endpoints often omit it. */
function withDefaultTokenType(response: Response, bytes: Uint8Array): Uint8Array {
  if (!response.ok || !(response.headers.get('content-type') ?? '').includes('json')) {
    return bytes;
  }
  let body: unknown;
  try {
    body = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch {
    return bytes;
  }
  if (typeof body === 'object' && body !== null && !Object.hasOwn(body, 'token_type')) {
    return Buffer.from(JSON.stringify({ ...body, token_type: 'Bearer' }));
  }
  return bytes;
}

function methodFetch(
  oauth: OAuthAuth,
  options: TokenClientOptions,
  observed: Observed,
  dispatcher: Dispatcher,
  maxResponseBytes: number,
) {
  // openid-client always POSTs; EventBridge lets the connection choose GET, POST or PUT.
  return async (url: string, init: client.CustomFetchOptions): Promise<Response> => {
    const headers = new Headers(init.headers);
    headers.set('user-agent', options.userAgent);
    for (const p of oauth.oauthHttpParameters?.headerParameters ?? []) headers.set(p.key, p.value);
    let target = url;
    let body: client.CustomFetchOptions['body'] | undefined = init.body;
    if (oauth.httpMethod === 'GET') {
      const query = new URL(url);
      const form = init.body instanceof URLSearchParams ? init.body : new URLSearchParams();
      for (const [key, value] of form) {
        query.searchParams.append(key, value);
      }
      target = query.href;
      body = undefined;
      headers.delete('content-type');
    }
    // undici's own fetch, for its dispatcher: the policy's lookup checks every address before
    // connecting. A redirect is not followed: a 3xx is the token endpoint's (rejected) answer.
    const response = (await undiciFetch(target, {
      method: oauth.httpMethod,
      headers: [...headers],
      redirect: 'manual',
      dispatcher,
      ...(body !== undefined && { body }),
      ...(init.signal !== undefined && { signal: init.signal }),
    })) as unknown as Response;
    observed.status = response.status;
    try {
      const bytes = await readBounded(response, maxResponseBytes);
      if (!response.ok) {
        const oauthError = oauthErrorOf(bytes);
        if (oauthError !== undefined) observed.oauthError = oauthError;
      }
      return responseOver(response, withDefaultTokenType(response, bytes));
    } catch (error) {
      // openid-client wraps what customFetch throws: the reason is kept here for the outcome.
      if (error instanceof UnreadableAnswer) observed.unreadable = error.message;
      throw error;
    }
  };
}

function rejectionReason(error: unknown, observed: Observed): string {
  if (observed.status !== undefined && (observed.status < 200 || observed.status > 299)) {
    const code = observed.oauthError === undefined ? '' : ` (${observed.oauthError})`;
    return `the token endpoint answered HTTP ${observed.status}${code}`;
  }
  const code = error instanceof client.ClientError ? ` (${error.code ?? 'invalid response'})` : '';
  return `the token endpoint's answer was not a valid token response${code}`;
}

function isTransientStatus(status: number | undefined): boolean {
  return status !== undefined && (status >= 500 || status === 429 || status === 408);
}

/**
 * HTTP Basic with the id and secret as they are. openid-client form-encodes them first
 * (RFC 6749 §2.3.1), which many token endpoints do not decode; EventBridge forbids ':' in both,
 * the one character that would make the raw form ambiguous.
 */
function rawClientSecretBasic(clientId: string, clientSecret: string): client.ClientAuth {
  const credentials = Buffer.from(`${clientId}:${clientSecret}`).toString('base64');
  return (_as, _client, _body, headers) => {
    headers.set('authorization', `Basic ${credentials}`);
  };
}

/** Why an access_token cannot be stored and handed out as a header value; never its content. */
function accessTokenProblem(token: string, maxLength: number): string | undefined {
  if (token.length > maxLength) {
    return `the token endpoint's access_token is longer than ${maxLength} characters (BROKER_ACCESS_TOKEN_MAX_LENGTH)`;
  }
  if (!isFieldValue(token)) {
    return "the token endpoint's access_token is not a valid HTTP header value (visible ASCII only, no CR/LF)";
  }
  return undefined;
}

/** The raw expires_in (openid-client's expiresIn() rounds against its own clock), clamped. */
function lifetimeSeconds(expiresIn: unknown): number | undefined {
  if (typeof expiresIn !== 'number' || !Number.isFinite(expiresIn)) return undefined;
  return Math.min(Math.max(expiresIn, 1), MAX_TOKEN_LIFETIME_SECONDS);
}

export function createTokenClient(options: TokenClientOptions): TokenClient {
  const now = options.now ?? Date.now;
  const policy =
    options.outboundPolicy ?? new OutboundPolicy({ allowInsecure: options.allowInsecureEndpoints });
  const dispatcher = new Agent({ connect: { lookup: policy.lookup } });
  const maxResponseBytes = options.maxResponseBytes ?? DEFAULT_TOKEN_RESPONSE_MAX_BYTES;
  const maxAccessTokenLength = options.maxAccessTokenLength ?? DEFAULT_ACCESS_TOKEN_MAX_LENGTH;
  return {
    async requestToken(oauth) {
      const startedMs = now();
      const observed: Observed = {};
      const elapsed = () => now() - startedMs;
      // Before any URL is built: `new URL` throws on such a value, and this must not throw.
      const unparsable = unparsableEndpoint(oauth.authorizationEndpoint);
      if (unparsable !== undefined) {
        return { outcome: 'rejected', reason: unparsable, durationMs: 0 };
      }
      const tokenEndpoint = withQuery(
        oauth.authorizationEndpoint,
        oauth.oauthHttpParameters?.queryStringParameters,
      );
      if (oauth.clientSecret === undefined) {
        return {
          outcome: 'rejected',
          reason: 'the connection has no client secret',
          durationMs: 0,
        };
      }
      // Stored before the policy or the header rules changed (or written by another broker):
      // refused, not sent.
      const refusal = policy.refusalOf(tokenEndpoint);
      if (refusal !== undefined) {
        return { outcome: 'rejected', reason: `AuthorizationEndpoint ${refusal}`, durationMs: 0 };
      }
      const unsendable = oauth.oauthHttpParameters?.headerParameters?.find(
        (p) => headerRefusal(p.key, p.value, 'connection') !== undefined,
      );
      if (unsendable !== undefined) {
        const header = JSON.stringify(unsendable.key.slice(0, 64));
        const reason = `the connection's token request header ${header} cannot be sent`;
        return { outcome: 'rejected', reason, durationMs: 0 };
      }
      const config = new client.Configuration(
        { issuer: new URL(tokenEndpoint).origin, token_endpoint: tokenEndpoint },
        oauth.clientId,
        undefined,
        rawClientSecretBasic(oauth.clientId, oauth.clientSecret),
      );
      if (policy.allowInsecure) client.allowInsecureRequests(config);
      config.timeout = options.timeoutMs / 1000;
      config[client.customFetch] = methodFetch(
        oauth,
        options,
        observed,
        dispatcher,
        maxResponseBytes,
      );
      const body = nullPrototypeRecord<string>();
      for (const p of oauth.oauthHttpParameters?.bodyParameters ?? []) body[p.key] = p.value;
      const grantType = body['grant_type'] ?? 'client_credentials';
      delete body['grant_type'];
      try {
        const response = await client.genericGrantRequest(config, grantType, body);
        const problem = accessTokenProblem(response.access_token, maxAccessTokenLength);
        if (problem !== undefined) {
          return { outcome: 'rejected', reason: problem, durationMs: elapsed() };
        }
        const expiresIn = lifetimeSeconds(response.expires_in);
        const obtainedAtMs = now();
        return {
          outcome: 'issued',
          durationMs: elapsed(),
          token: {
            accessToken: response.access_token,
            tokenType: 'Bearer',
            obtainedAtMs,
            ...(expiresIn !== undefined && { expiresAtMs: obtainedAtMs + expiresIn * 1000 }),
          },
        };
      } catch (error) {
        if (isTimeout(error)) {
          // Also mid-body: a token endpoint that trickles its answer is not answering.
          const reason = 'the token endpoint did not answer in time';
          return { outcome: 'unavailable', reason, durationMs: elapsed() };
        }
        if (observed.unreadable !== undefined) {
          // A huge 503 page is an outage; a huge 200 is not a token.
          const outcome = isTransientStatus(observed.status) ? 'unavailable' : 'rejected';
          return { outcome, reason: observed.unreadable, durationMs: elapsed() };
        }
        if (observed.status === undefined && findOutboundRefusal(error) !== undefined) {
          // A policy refusal is definitive: retrying reaches the same address.
          return { outcome: 'rejected', reason: networkReason(error), durationMs: elapsed() };
        }
        if (observed.status === undefined) {
          return { outcome: 'unavailable', reason: networkReason(error), durationMs: elapsed() };
        }
        if (isTransientStatus(observed.status)) {
          const reason = `the token endpoint answered HTTP ${observed.status}`;
          return { outcome: 'unavailable', reason, durationMs: elapsed() };
        }
        return {
          outcome: 'rejected',
          reason: rejectionReason(error, observed),
          durationMs: elapsed(),
        };
      }
    },
  };
}
