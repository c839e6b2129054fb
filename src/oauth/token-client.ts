import * as client from 'openid-client';
import { Agent, fetch as undiciFetch, type Dispatcher } from 'undici';
import type { HttpParameter, OAuthAuth, OAuthToken } from '../connections/connection.js';
import { findOutboundRefusal, OutboundPolicy } from '../net/outbound-policy.js';

/**
 * One client-credentials token request. The outcome separates a definitive rejection (which
 * deauthorizes a connection) from an unreachable endpoint (which keeps a valid token in service).
 */
export type TokenResult =
  | { outcome: 'issued'; token: OAuthToken; durationMs: number }
  | { outcome: 'rejected'; reason: string; durationMs: number }
  | { outcome: 'unavailable'; reason: string; durationMs: number };

export interface TokenClient {
  requestToken(oauth: OAuthAuth): Promise<TokenResult>;
}

export interface TokenClientOptions {
  timeoutMs: number;
  allowInsecureEndpoints: boolean;
  userAgent: string;
  /**
   * Where token requests may go (issue 5's SSRF rules); checked on the URL before each request
   * and on every resolved address before connecting. Defaults to allowInsecureEndpoints' rules
   * with no BROKER_ALLOWED_ENDPOINTS.
   */
  outboundPolicy?: OutboundPolicy;
  now?: () => number;
}

interface Observed {
  status?: number;
  /** RFC 6749 §5.2 `error` code of a non-2xx answer; never its description, which may echo input. */
  oauthError?: string;
}

// RFC 6749 §5.2: error codes use this charset; anything else is not echoed.
const OAUTH_ERROR_CODE = /^[\x20\x21\x23-\x5B\x5D-\x7E]{1,64}$/;

async function oauthErrorOf(response: Response): Promise<string | undefined> {
  try {
    const body = (await response.clone().json()) as { error?: unknown };
    return typeof body.error === 'string' && OAUTH_ERROR_CODE.test(body.error)
      ? body.error
      : undefined;
  } catch {
    return undefined;
  }
}

function withQuery(endpoint: string, parameters: readonly HttpParameter[] | undefined): string {
  const url = new URL(endpoint);
  for (const p of parameters ?? []) url.searchParams.append(p.key, p.value);
  return url.href;
}

function isTimeout(error: unknown): boolean {
  for (let e: unknown = error, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    if (e.name === 'TimeoutError' || e.name === 'AbortError') return true;
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
async function defaultTokenType(response: Response): Promise<Response> {
  if (!response.ok || !(response.headers.get('content-type') ?? '').includes('json')) {
    return response;
  }
  const text = await response.text();
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return new Response(text, response);
  }
  if (typeof body === 'object' && body !== null && !('token_type' in body)) {
    return new Response(JSON.stringify({ ...body, token_type: 'Bearer' }), response);
  }
  return new Response(text, response);
}

function methodFetch(
  oauth: OAuthAuth,
  options: TokenClientOptions,
  observed: Observed,
  dispatcher: Dispatcher,
) {
  // openid-client always POSTs; EventBridge lets the connection choose GET, POST or PUT.
  return async (url: string, init: client.CustomFetchOptions): Promise<Response> => {
    const headers: Record<string, string> = { ...init.headers, 'user-agent': options.userAgent };
    for (const p of oauth.oauthHttpParameters?.headerParameters ?? []) headers[p.key] = p.value;
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
      delete headers['content-type'];
    }
    // undici's own fetch, for its dispatcher: the policy's lookup checks every address before
    // connecting. A redirect is not followed: a 3xx is the token endpoint's (rejected) answer.
    const response = (await undiciFetch(target, {
      method: oauth.httpMethod,
      headers,
      redirect: 'manual',
      dispatcher,
      ...(body !== undefined && { body }),
      ...(init.signal !== undefined && { signal: init.signal }),
    })) as unknown as Response;
    observed.status = response.status;
    if (!response.ok) {
      const oauthError = await oauthErrorOf(response);
      if (oauthError !== undefined) observed.oauthError = oauthError;
    }
    return defaultTokenType(response);
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

export function createTokenClient(options: TokenClientOptions): TokenClient {
  const now = options.now ?? Date.now;
  const policy =
    options.outboundPolicy ?? new OutboundPolicy({ allowInsecure: options.allowInsecureEndpoints });
  const dispatcher = new Agent({ connect: { lookup: policy.lookup } });
  return {
    async requestToken(oauth) {
      const startedMs = now();
      const observed: Observed = {};
      const elapsed = () => now() - startedMs;
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
      // Stored before the policy changed (or written by another broker): refused, not sent.
      const refusal = policy.refusalOf(tokenEndpoint);
      if (refusal !== undefined) {
        return { outcome: 'rejected', reason: `AuthorizationEndpoint ${refusal}`, durationMs: 0 };
      }
      const config = new client.Configuration(
        { issuer: new URL(tokenEndpoint).origin, token_endpoint: tokenEndpoint },
        oauth.clientId,
        undefined,
        rawClientSecretBasic(oauth.clientId, oauth.clientSecret),
      );
      if (policy.allowInsecure) client.allowInsecureRequests(config);
      config.timeout = options.timeoutMs / 1000;
      config[client.customFetch] = methodFetch(oauth, options, observed, dispatcher);
      const body: Record<string, string> = {};
      for (const p of oauth.oauthHttpParameters?.bodyParameters ?? []) body[p.key] = p.value;
      const grantType = body['grant_type'] ?? 'client_credentials';
      delete body['grant_type'];
      try {
        const response = await client.genericGrantRequest(config, grantType, body);
        // The raw expires_in: openid-client's expiresIn() rounds down against its own clock.
        const expiresIn = typeof response.expires_in === 'number' ? response.expires_in : undefined;
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
