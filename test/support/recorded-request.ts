import type { IncomingMessage } from 'node:http';

/** One HTTP request as seen on the wire by a test fixture server. */
export interface RecordedRequest {
  method: string;
  /** Raw request target, e.g. `/oauth/token?grant_type=client_credentials`. */
  url: string;
  /** `url` without the query string. */
  path: string;
  /** Query string parameters (last value wins for repeated keys). */
  query: Record<string, string>;
  /** Header names lower-cased; repeated headers joined with `, `. */
  headers: Record<string, string>;
  /** Raw body text (UTF-8), `''` when there was none. */
  body: string;
  /** Parsed body when the content type is `application/x-www-form-urlencoded`, else `{}`. */
  form: Record<string, string>;
}

function toRecord(params: URLSearchParams): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of params) {
    out[key] = value;
  }
  return out;
}

export function normaliseHeaders(req: IncomingMessage): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(req.headers)) {
    if (value === undefined) continue;
    headers[name.toLowerCase()] = Array.isArray(value) ? value.join(', ') : value;
  }
  return headers;
}

export function isFormUrlEncoded(headers: Record<string, string>): boolean {
  const contentType = headers['content-type'];
  if (contentType === undefined) return false;
  const mediaType = contentType.split(';')[0]?.trim().toLowerCase();
  return mediaType === 'application/x-www-form-urlencoded';
}

/** Builds a RecordedRequest from the request line/headers and the full body text. */
export function buildRecordedRequest(
  method: string,
  url: string,
  headers: Record<string, string>,
  body: string,
): RecordedRequest {
  const parsed = new URL(url, 'http://fixture.invalid');
  return {
    method,
    url,
    path: parsed.pathname,
    query: toRecord(parsed.searchParams),
    headers: { ...headers },
    body,
    form: isFormUrlEncoded(headers) ? toRecord(new URLSearchParams(body)) : {},
  };
}

/** Reads the whole request body as UTF-8 text. */
export async function readBodyText(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) {
    chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk)));
  }
  return Buffer.concat(chunks).toString('utf8');
}
