/**
 * The one rule for header names and values that reach the wire, whatever their source: an HTTP
 * Task's Headers, a connection's header parameters (invocation and OAuth), an API key's name, a
 * token from an identity provider. Field grammar is RFC 9110 §5.1 (names) and §5.5 (values).
 */

// RFC 9110 §5.6.2: a field name is a token.
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// RFC 9110 §5.5 without obs-text: visible ASCII, with spaces and tabs only inside. Bytes above
// 0x7E are read differently by different servers (Latin-1, UTF-8, refused), so none are sent.
const FIELD_VALUE = /^[\x21-\x7E](?:[\t\x20-\x7E]*[\x21-\x7E])?$/;

/** Longest header name the broker sends: the API's own limit on header parameter keys. */
export const MAX_FIELD_NAME_LENGTH = 512;

/**
 * The Step Functions HTTP Task's forbidden headers (AWS Step Functions, "Call third-party APIs",
 * https://docs.aws.amazon.com/step-functions/latest/dg/call-https-apis.html), plus the
 * hop-by-hop fields it leaves out (RFC 9110 §7.6.1): none may come from a task or a connection.
 */
const FORBIDDEN = new Set(
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
    'Keep-Alive',
    'Max-Forwards',
    'Origin',
    'Pragma',
    'Proxy-Authorization',
    'Proxy-Connection',
    'Referer',
    'Server',
    'TE',
    'Trailer',
    'Transfer-Encoding',
    'Upgrade',
    'Via',
    'Warning',
  ].map((name) => name.toLowerCase()),
);
const FORBIDDEN_PREFIXES = ['x-forwarded-', 'x-amz-', 'x-amzn-'];

/**
 * Where a header comes from. A task may not carry credentials (Step Functions' advice: they belong in the
 * connection) and its Content-Length is replaced by the body's real length; a connection is
 * where authentication belongs, and it has no body length to give.
 */
export type HeaderSource = 'task' | 'connection';

const ALLOWED_FROM_CONNECTION = new Set(['authorization', 'proxy-authorization']);
const REFUSED_FROM_CONNECTION = new Set(['content-length']);

export function isFieldName(name: string): boolean {
  return name.length <= MAX_FIELD_NAME_LENGTH && TOKEN.test(name);
}

export function isFieldValue(value: string): boolean {
  return FIELD_VALUE.test(value);
}

/** Whether the rule forbids this (valid) name from this source; case-insensitive. */
export function isForbiddenHeader(name: string, source: HeaderSource): boolean {
  const lower = name.toLowerCase();
  if (source === 'connection') {
    if (ALLOWED_FROM_CONNECTION.has(lower)) return false;
    if (REFUSED_FROM_CONNECTION.has(lower)) return true;
  }
  return FORBIDDEN.has(lower) || FORBIDDEN_PREFIXES.some((prefix) => lower.startsWith(prefix));
}

/** Why a header cannot be sent, in words for an error message; undefined when it can. */
export function headerRefusal(
  name: string,
  value: string,
  source: HeaderSource,
): 'name' | 'forbidden' | 'value' | undefined {
  if (!isFieldName(name)) return 'name';
  if (isForbiddenHeader(name, source)) return 'forbidden';
  if (!isFieldValue(value)) return 'value';
  return undefined;
}

export const HEADER_RULES = {
  name: "is not a valid HTTP header name (RFC 9110 token: letters, digits and !#$%&'*+-.^_`|~, at most 512)",
  forbidden:
    'is a header the broker sets itself or that controls the connection (Host, Content-Length, Transfer-Encoding, hop-by-hop fields, the HTTP Task forbidden list)',
  value:
    'is not a valid HTTP header value (visible ASCII characters, spaces and tabs only between them)',
} as const;

/** A map from names that came from outside: no prototype, so `__proto__` is just a key. */
export function nullPrototypeRecord<V>(): Record<string, V> {
  return Object.create(null) as Record<string, V>; // Object.create is typed `any`; the shape is ours
}
