import qs from 'qs';
import type { components } from '../openapi-types.js';
import { HEADER_RULES, headerRefusal, nullPrototypeRecord } from '../connections/http-fields.js';
import { TaskFailure } from './task-failure.js';

/** An HTTP Task's resolved `Parameters` and the exact request they make (AWS Step Functions, "Call third-party APIs"). */

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

/** Step Functions' Range: the first 256 KiB (bytes 0 to 262144 inclusive). */
export const RESPONSE_RANGE = 'bytes=0-262144';
export const MAX_RESPONSE_BYTES = 262_145;

const QS_ARRAY_FORMAT: Record<ArrayFormat, 'indices' | 'repeat' | 'comma' | 'brackets'> = {
  INDICES: 'indices',
  REPEAT: 'repeat',
  COMMAS: 'comma',
  BRACKETS: 'brackets',
};

/**
 * The task's own headers: valid fields, none on the forbidden list (Step Functions' rules, one
 * module for every source of headers: src/connections/http-fields.ts).
 */
export function assertAllowedHeaders(headers: Record<string, string>): void {
  const refused: string[] = [];
  for (const [name, value] of Object.entries(headers)) {
    const refusal = headerRefusal(name, value, 'task');
    if (refusal === 'name' || refusal === 'value') {
      throw new TaskFailure(
        'States.Runtime',
        `The 'Headers' field contains an invalid header name or value: [${JSON.stringify(name)}]`,
      );
    }
    if (refusal === 'forbidden') refused.push(name.toLowerCase());
  }
  if (refused.length > 0) {
    throw new TaskFailure(
      'States.Runtime',
      `The 'Headers' field contains unsupported values: [${refused.join(', ')}]`,
    );
  }
}

/**
 * What a connection adds, checked again when it is used: a record stored before the rule (or
 * written by another broker) must not put a Host or a CR/LF on the wire.
 */
export function assertSendableConnectionHeaders(headers: Record<string, string>): void {
  for (const [name, value] of Object.entries(headers)) {
    const refusal = headerRefusal(name, value, 'connection');
    if (refusal !== undefined) {
      throw new TaskFailure(
        'States.Runtime',
        `The connection's header ${JSON.stringify(name.slice(0, 64))} ${HEADER_RULES[refusal]}; update the connection.`,
      );
    }
  }
}

/** Adds `extra` to `base`; a key present in both, compared case-insensitively, takes extra's value. */
function mergeHeaders(
  base: Record<string, string>,
  extra: Record<string, string>,
): Record<string, string> {
  const merged = Object.assign(nullPrototypeRecord<string>(), base);
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
    // COMMAS joins the values with literal commas, as Step Functions' own example shows ("Call third-party APIs").
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
  try {
    return buildRequest(parameters, connection, options);
  } catch (error) {
    // encodeURIComponent and qs throw URIError on a lone surrogate, which JSON can carry.
    if (error instanceof URIError) {
      throw new TaskFailure(
        'States.Runtime',
        'The QueryParameters or RequestBody contain text that is not valid Unicode (a lone surrogate) and cannot be URL-encoded.',
      );
    }
    throw error;
  }
}

function buildRequest(
  parameters: HttpTaskParameters,
  connection: ConnectionParameters,
  options: RequestOptions,
): PreparedRequest {
  const given = nullPrototypeRecord<string>();
  for (const [name, value] of Object.entries(parameters.Headers ?? {})) given[name] = String(value);
  assertAllowedHeaders(given);
  // `Accept` and `ACCEPT` are one header: one of them is sent, not both.
  const taskHeaders = mergeHeaders(nullPrototypeRecord<string>(), given);
  assertSendableConnectionHeaders(connection.headers);
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
  const query = Object.assign(
    nullPrototypeRecord<QueryValue>(),
    parameters.QueryParameters as Record<string, QueryValue> | undefined, // the schema's shape
    connection.queryParameters,
  );
  return {
    Method: parameters.Method,
    Url: appendQuery(parameters.ApiEndpoint, query),
    Headers: headers,
    Body: serialized.text,
  };
}
