import createClient from 'openapi-fetch';
import type { Client } from 'openapi-fetch';
import type { components, paths } from '../openapi-types.js';
import { BrokerUnreachableError, unwrap } from './broker-api-error.js';

/** The typed openapi-fetch client for every path of openapi.yaml. */
export type BrokerClient = Client<paths>;

export type ConnectionSummary = components['schemas']['ConnectionSummary'];
export type ListConnectionsQuery = NonNullable<
  paths['/v1/connections']['get']['parameters']['query']
>;

export interface BrokerClientOptions {
  /** e.g. `http://127.0.0.1:8080`; the API's paths start with /v1. */
  baseUrl: string;
  /** Sent as `Authorization: Bearer <apiKey>` (an API key or a JWT). */
  apiKey?: string | undefined;
  /** Defaults to the global fetch. */
  fetch?: ((request: Request) => Promise<Response>) | undefined;
  /** Abort a request that has not answered within this time (none by default). */
  timeoutMs?: number | undefined;
}

/** RFC 6750's b64token, so a key never needs quoting and never breaks a header line. */
const BEARER_TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;

/**
 * A typed client for the broker's REST API (openapi-fetch over the generated `paths`). Error
 * answers come back as `{ error, response }`; `unwrap()` turns them into a BrokerApiError. A
 * broker that cannot be reached rejects with BrokerUnreachableError.
 */
export function createBrokerClient(options: BrokerClientOptions): BrokerClient {
  const baseUrl = options.baseUrl.replace(/\/+$/, '');
  const headers: Record<string, string> = {};
  if (options.apiKey !== undefined) {
    // Checked here so that Headers' own error, which quotes the value, never carries the key.
    if (!BEARER_TOKEN.test(options.apiKey)) {
      throw new TypeError('the API key must be a bearer token: letters, digits and -._~+/ only');
    }
    headers['Authorization'] = `Bearer ${options.apiKey}`;
  }
  const send = options.fetch ?? ((request: Request) => globalThis.fetch(request));
  const timeoutMs = options.timeoutMs;
  return createClient<paths>({
    baseUrl,
    headers,
    fetch: async (request) => {
      const bounded =
        timeoutMs === undefined
          ? request
          : new Request(request, {
              signal: AbortSignal.any([request.signal, AbortSignal.timeout(timeoutMs)]),
            });
      try {
        return await send(bounded);
      } catch (error) {
        throw translateFetchError(baseUrl, error, timeoutMs);
      }
    },
  });
}

/** Every connection matching `query`, following NextToken from page to page. */
export async function* listAllConnections(
  client: BrokerClient,
  query: ListConnectionsQuery = {},
): AsyncGenerator<ConnectionSummary, void, undefined> {
  let nextToken = query.NextToken;
  do {
    const page = unwrap(
      await client.GET('/v1/connections', {
        params: { query: { ...query, ...(nextToken !== undefined && { NextToken: nextToken }) } },
      }),
    );
    yield* page.Connections;
    nextToken = page.NextToken;
  } while (nextToken !== undefined);
}

function translateFetchError(baseUrl: string, error: unknown, timeoutMs?: number): unknown {
  if (error instanceof Error && error.name === 'TimeoutError') {
    return new BrokerUnreachableError(baseUrl, `no answer within ${timeoutMs} ms`, error);
  }
  // undici rejects every network failure with TypeError('fetch failed') and the reason as cause.
  if (error instanceof TypeError) {
    return new BrokerUnreachableError(baseUrl, describeNetworkError(error), error);
  }
  return error;
}

function describeNetworkError(error: TypeError): string {
  const cause: unknown = error.cause;
  if (typeof cause === 'object' && cause !== null) {
    const code = 'code' in cause ? cause.code : undefined;
    const message = 'message' in cause ? cause.message : undefined;
    if (typeof code === 'string') return code === 'ECONNREFUSED' ? 'connection refused' : code;
    if (typeof message === 'string') return message;
  }
  return error.message;
}
