import { validateHeaderName, validateHeaderValue } from 'node:http';
import qs from 'qs';
import type { components } from '../openapi-types.js';
import { TaskFailure } from './task-failure.js';

/** An HTTP Task's resolved `Parameters` and the exact request they make (the seed's rules). */

export type HttpTaskParameters = components['schemas']['HttpTaskParameters'];
type ArrayFormat = NonNullable<
  NonNullable<HttpTaskParameters['Transform']>['RequestEncodingOptions']
>['ArrayFormat'];

/** What the connection adds to every call; on a duplicate key its value wins. */
export interface ConnectionParameters {
  headers: Record<string, string>;
  queryParameters: Record<string, string>;
  bodyParameters: Record<string, string>;
}

/** In the API's spelling: it is the body of prepare's answer. */
export interface PreparedRequest {
  Method: string;
  Url: string;
  Headers: Record<string, string>;
  /** The exact body bytes as text, or null. */
  Body: string | null;
}

export interface RequestOptions {
  userAgent: string;
}

/** The seed's list; matched case-insensitively. Authorization belongs in the connection. */
const FORBIDDEN_HEADERS = new Set(
  [
    'A-IM',
    'Accept-Charset',
    'Accept-Datetime',
    'Accept-Encoding',
    'Authorization',
    'Cache-Control',
    'Connection',
    'Content-Encoding',
    'Content-MD5',
    'Date',
    'Expect',
    'Forwarded',
    'From',
    'Host',
    'HTTP2-Settings',
    'If-Match',
    'If-Modified-Since',
    'If-None-Match',
    'If-Range',
    'If-Unmodified-Since',
    'Max-Forwards',
    'Origin',
    'Pragma',
    'Proxy-Authorization',
    'Referer',
    'Server',
    'TE',
    'Trailer',
    'Transfer-Encoding',
    'Upgrade',
    'Via',
    'Warning',
  ].map((h) => h.toLowerCase()),
);
const FORBIDDEN_PREFIXES = ['x-forwarded-', 'x-amz-', 'x-amzn-'];

/** Step Functions' Range: the first 256 KiB (bytes 0 to 262144 inclusive). */
export const RESPONSE_RANGE = 'bytes=0-262144';
export const MAX_RESPONSE_BYTES = 262_145;

const QS_ARRAY_FORMAT: Record<ArrayFormat, 'indices' | 'repeat' | 'comma' | 'brackets'> = {
  INDICES: 'indices',
  REPEAT: 'repeat',
  COMMAS: 'comma',
  BRACKETS: 'brackets',
};

/** Node's own header grammar checks: a name that is not a token, or CR/LF in a value. */
function assertValidHeader(name: string, value: string): void {
  try {
    validateHeaderName(name);
    validateHeaderValue(name, value);
  } catch {
    throw new TaskFailure(
      'States.Runtime',
      `The 'Headers' field contains an invalid header name or value: [${JSON.stringify(name)}]`,
    );
  }
}

export function assertAllowedHeaders(headers: Record<string, string>): void {
  for (const [name, value] of Object.entries(headers)) assertValidHeader(name, value);
  const refused = Object.keys(headers)
    .map((name) => name.toLowerCase())
    .filter(
      (name) => FORBIDDEN_HEADERS.has(name) || FORBIDDEN_PREFIXES.some((p) => name.startsWith(p)),
    );
  if (refused.length > 0) {
    throw new TaskFailure(
      'States.Runtime',
      `The 'Headers' field contains unsupported values: [${refused.join(', ')}]`,
    );
  }
}

/** Adds `extra` to `base`; a key present in both, compared case-insensitively, takes extra's value. */
function mergeHeaders(
  base: Record<string, string>,
  extra: Record<string, string>,
): Record<string, string> {
  const merged: Record<string, string> = { ...base };
  for (const [name, value] of Object.entries(extra)) {
    for (const existing of Object.keys(merged)) {
      if (existing.toLowerCase() === name.toLowerCase()) delete merged[existing];
    }
    merged[name] = value;
  }
  return merged;
}

function hasHeader(headers: Record<string, string>, name: string): boolean {
  return Object.keys(headers).some((h) => h.toLowerCase() === name);
}

type QueryValue = string | number | boolean | Array<string | number | boolean>;

function appendQuery(endpoint: string, query: Record<string, QueryValue>): string {
  const url = new URL(endpoint);
  const pairs: string[] = [];
  for (const [key, value] of Object.entries(query)) {
    for (const item of Array.isArray(value) ? value : [value]) {
      pairs.push(`${encodeURIComponent(key)}=${encodeURIComponent(String(item))}`);
    }
  }
  if (pairs.length === 0) return url.href;
  // Appended after any query already in ApiEndpoint, spaces as %20 like the body.
  const existing = url.search.length > 1 ? `${url.search}&` : '?';
  return `${url.origin}${url.pathname}${existing}${pairs.join('&')}${url.hash}`;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function mergeBody(requestBody: unknown, connectionBody: Record<string, string>): unknown {
  if (Object.keys(connectionBody).length === 0) return requestBody;
  if (requestBody === undefined || requestBody === null) return { ...connectionBody };
  if (!isPlainObject(requestBody)) {
    throw new TaskFailure(
      'States.Runtime',
      'The RequestBody cannot be merged with the connection body parameters: it is not a JSON object.',
    );
  }
  return { ...requestBody, ...connectionBody };
}

function encodeForm(body: unknown, arrayFormat: ArrayFormat): string {
  if (typeof body === 'string') return body;
  if (!isPlainObject(body)) {
    throw new TaskFailure('States.Runtime', 'URL_ENCODED needs a JSON object RequestBody.');
  }
  return qs.stringify(body, {
    arrayFormat: QS_ARRAY_FORMAT[arrayFormat],
    format: 'RFC3986',
    // COMMAS joins the values with literal commas, as the seed's example shows.
    ...(arrayFormat === 'COMMAS' && {
      encoder: (text: string, encode: (s: string) => string, _charset: string, type: string) =>
        type === 'value' ? encode(text).replaceAll('%2C', ',') : encode(text),
    }),
  });
}

function serializeBody(
  body: unknown,
  parameters: HttpTaskParameters,
): { text: string | null; contentType: string } {
  const transform = parameters.Transform;
  if (transform?.RequestBodyEncoding === 'URL_ENCODED') {
    const arrayFormat = transform.RequestEncodingOptions?.ArrayFormat ?? 'INDICES';
    return {
      text: body === undefined ? null : encodeForm(body, arrayFormat),
      contentType: 'application/x-www-form-urlencoded',
    };
  }
  const text = body === undefined ? null : typeof body === 'string' ? body : JSON.stringify(body);
  return { text, contentType: 'application/json; charset=UTF-8' };
}

/**
 * Merges the task's Parameters with the connection's parameters into the one request to send:
 * connection values win on duplicate keys, its credential header is applied last, the body is
 * merged before it is serialized, and the broker sets User-Agent and Range.
 */
export function buildHttpTaskRequest(
  parameters: HttpTaskParameters,
  connection: ConnectionParameters,
  options: RequestOptions,
): PreparedRequest {
  const taskHeaders = Object.fromEntries(
    Object.entries(parameters.Headers ?? {}).map(([k, v]) => [k, String(v)]),
  );
  assertAllowedHeaders(taskHeaders);
  const body = mergeBody(parameters.RequestBody, connection.bodyParameters);
  const serialized = serializeBody(body, parameters);
  let headers = mergeHeaders(taskHeaders, connection.headers);
  if (serialized.text !== null && !hasHeader(headers, 'content-type')) {
    headers['Content-Type'] = serialized.contentType;
  }
  // The broker's own headers, as Step Functions sets them; Content-Length comes from the body.
  headers = mergeHeaders(headers, { 'User-Agent': options.userAgent, Range: RESPONSE_RANGE });
  for (const name of Object.keys(headers)) {
    if (name.toLowerCase() === 'content-length') delete headers[name];
  }
  const query: Record<string, QueryValue> = {
    ...(parameters.QueryParameters as Record<string, QueryValue> | undefined),
    ...connection.queryParameters,
  };
  return {
    Method: parameters.Method,
    Url: appendQuery(parameters.ApiEndpoint, query),
    Headers: headers,
    Body: serialized.text,
  };
}
