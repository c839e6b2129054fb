import http from 'node:http';
import https from 'node:https';
import { findOutboundRefusal, type OutboundPolicy } from '../net/outbound-policy.js';
import { MAX_RESPONSE_BYTES, type PreparedRequest } from './http-task-request.js';
import { nullPrototypeRecord } from '../connections/http-fields.js';
import { TaskFailure, type TaskErrorName } from './task-failure.js';

/** The raw answer of the upstream API, as read (at most MAX_RESPONSE_BYTES). */
export interface RawResponse {
  httpVersion: string;
  statusCode: number;
  statusText: string;
  /** Header name (lower-case) to every value received. */
  headers: Record<string, string[]>;
  body: Buffer;
}

export interface HttpTaskOutput {
  ResponseBody: unknown;
  Headers: Record<string, string[]>;
  StatusCode: number;
  StatusText: string;
}

/** Upstream sockets open at once, over all tasks. */
export const MAX_UPSTREAM_SOCKETS = 1024;

/** The HTTP Task's 60-second cap. */
export const INVOKE_TIMEOUT_MS = 60_000;

const UNSUPPORTED_TYPES = [/^application\/octet-stream\b/, /^image\//, /^video\//, /^audio\//];

/** How many header lines of an upstream answer are kept; a longer block fails the task. */
export const MAX_RESPONSE_HEADERS = 200;
/** The size of an upstream answer's header block (Node's own default, made explicit). */
export const MAX_RESPONSE_HEADER_BYTES = 16_384;

/** Names are the upstream's bytes: a null-prototype map, so `__proto__` is only a header. */
function headersOf(response: http.IncomingMessage): Record<string, string[]> {
  const headers = nullPrototypeRecord<string[]>();
  const raw = response.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = (raw[i] ?? '').toLowerCase();
    (headers[name] ??= []).push(raw[i + 1] ?? '');
  }
  return headers;
}

interface Agents {
  http: http.Agent;
  https: https.Agent;
}

const agentsByPolicy = new WeakMap<OutboundPolicy, Agents>();

/** Keep-alive agents like Node's global ones, whose sockets connect through the policy's lookup. */
function agentsFor(policy: OutboundPolicy): Agents {
  let agents = agentsByPolicy.get(policy);
  if (agents === undefined) {
    // A bound on upstream sockets for the whole process; callers beyond it queue (each within
    // its 60 s cap), and each principal's in-flight cap keeps one caller from taking them all.
    const options = {
      keepAlive: true,
      timeout: 5_000,
      lookup: policy.lookup,
      maxTotalSockets: MAX_UPSTREAM_SOCKETS,
    };
    agents = { http: new http.Agent(options), https: new https.Agent(options) };
    agentsByPolicy.set(policy, agents);
  }
  return agents;
}

export interface SendOptions {
  /** Where the request may go: checked on the URL, and on every resolved address. */
  outboundPolicy: OutboundPolicy;
  /** Defaults to the 60-second cap. */
  timeoutMs?: number | undefined;
}

/**
 * Sends the request once. Redirects are not followed (a 3xx is the task's answer), the body is
 * read up to the Range the request asked for, and socket errors, the 60 s cap and an address the
 * outbound policy refuses fail the task with States.Http.Socket.
 */
export function sendHttpTaskRequest(
  request: PreparedRequest,
  options: SendOptions,
): Promise<RawResponse> {
  const timeoutMs = options.timeoutMs ?? INVOKE_TIMEOUT_MS;
  const url = new URL(request.Url);
  const secure = url.protocol === 'https:';
  const transport = secure ? https : http;
  const agents = agentsFor(options.outboundPolicy);
  const body = request.Body === null ? undefined : Buffer.from(request.Body, 'utf8');
  const headers: Record<string, string | number> = Object.assign(
    nullPrototypeRecord<string | number>(),
    request.Headers,
  );
  if (body !== undefined) headers['Content-Length'] = body.length;
  return new Promise((resolve, reject) => {
    // Every listener below runs on bytes from the upstream: the first outcome wins, and a
    // throw inside a listener becomes the task's failure instead of an uncaught exception.
    let settled = false;
    const settle = (outcome: () => RawResponse | TaskFailure): void => {
      if (settled) return;
      settled = true;
      let result: RawResponse | TaskFailure;
      try {
        result = outcome();
      } catch {
        result = new TaskFailure('States.Runtime', 'The response could not be read.');
      }
      if (result instanceof TaskFailure) reject(result);
      else resolve(result);
    };
    const fail = (error: TaskErrorName, message: string): void => {
      settle(() => new TaskFailure(error, message));
    };
    const socketFailure = (message: string): void => fail('States.Http.Socket', message);
    // Literal addresses never reach the lookup: checked here, whoever built the request.
    const refusal = options.outboundPolicy.refusalOf(url);
    if (refusal !== undefined) {
      socketFailure(`The connection to the API was refused: ApiEndpoint ${refusal}.`);
      return;
    }
    const outgoing = transport.request(url, {
      method: request.Method,
      headers,
      agent: secure ? agents.https : agents.http,
      signal: AbortSignal.timeout(timeoutMs),
      maxHeaderSize: MAX_RESPONSE_HEADER_BYTES,
    });
    // One more than the limit is kept, so a longer block is seen and refused, not cut.
    outgoing.maxHeadersCount = MAX_RESPONSE_HEADERS + 1;
    outgoing.on('response', (response) => {
      if (response.rawHeaders.length / 2 > MAX_RESPONSE_HEADERS) {
        response.destroy();
        fail('States.Runtime', `The response has more than ${MAX_RESPONSE_HEADERS} header lines.`);
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      response.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_RESPONSE_BYTES) {
          response.destroy();
          fail(
            'States.Runtime',
            `The response body exceeds ${MAX_RESPONSE_BYTES} bytes (the Range the request asked for).`,
          );
          return;
        }
        chunks.push(chunk);
      });
      response.on('error', () =>
        socketFailure('The connection was closed while reading the response.'),
      );
      // A socket closed before the end of the body leaves no 'end': the answer is incomplete.
      response.on('close', () => {
        if (!response.complete) {
          socketFailure('The connection was closed while reading the response.');
        }
      });
      response.on('end', () =>
        settle(() => ({
          httpVersion: response.httpVersion,
          statusCode: response.statusCode ?? 0,
          statusText: response.statusMessage ?? '',
          headers: headersOf(response),
          body: Buffer.concat(chunks),
        })),
      );
    });
    // A 101 hands the socket over to another protocol, which an HTTP Task does not speak.
    outgoing.on('upgrade', (_response, socket) => {
      socket.destroy();
      fail(
        'States.Runtime',
        'The API switched protocols (101); an HTTP Task needs an HTTP answer.',
      );
    });
    outgoing.on('error', (error: Error & { code?: string }) => {
      const refused = findOutboundRefusal(error);
      if (refused !== undefined) {
        socketFailure(`The connection to the API was refused: ${refused.message}.`);
      } else if (error.name === 'AbortError' || error.name === 'TimeoutError') {
        socketFailure(`The API did not answer within ${timeoutMs / 1000} seconds.`);
      } else if (error.code === 'HPE_HEADER_OVERFLOW') {
        fail('States.Runtime', `The response headers exceed ${MAX_RESPONSE_HEADER_BYTES} bytes.`);
      } else {
        socketFailure(`The connection to the API failed${error.code ? ` (${error.code})` : ''}.`);
      }
    });
    outgoing.end(body);
  });
}

function decodeBody(
  response: RawResponse,
  contentType: string,
): { body: unknown } | { problem: string } {
  if (UNSUPPORTED_TYPES.some((type) => type.test(contentType))) {
    return { problem: `The response content type '${contentType}' is not supported.` };
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(response.body);
  } catch {
    return { problem: 'The response body is not valid text.' };
  }
  if (!/[/+]json\b/.test(contentType) || text.length === 0) return { body: text };
  try {
    return { body: JSON.parse(text) as unknown }; // JSON.parse answers any: read it as unknown
  } catch {
    return { body: text };
  }
}

/**
 * Step Functions' rules for turning a response into the task's output or its failure. The status
 * decides first, so a 401 with a binary body still fails as States.Http.StatusCode.401.
 */
/** A server that honoured Range sends 206 with the first 256 KiB of a larger body. */
function isCutByRange(response: RawResponse): boolean {
  if (response.statusCode !== 206) return false;
  const total = /\/(\d+)\s*$/.exec(response.headers['content-range']?.[0] ?? '')?.[1];
  return total !== undefined && Number(total) > MAX_RESPONSE_BYTES;
}

export function toTaskOutput(response: RawResponse): HttpTaskOutput {
  const contentType = (response.headers['content-type']?.[0] ?? '').toLowerCase();
  const decoded = decodeBody(response, contentType);
  const output = {
    ResponseBody: 'body' in decoded ? decoded.body : null,
    Headers: response.headers,
    StatusCode: response.statusCode,
    StatusText: response.statusText,
  };
  if (response.statusCode < 200 || response.statusCode > 299) {
    throw new TaskFailure(`States.Http.StatusCode.${response.statusCode}`, JSON.stringify(output));
  }
  if ('problem' in decoded) throw new TaskFailure('States.Runtime', decoded.problem);
  if (isCutByRange(response)) {
    throw new TaskFailure(
      'States.Runtime',
      `The response body exceeds ${MAX_RESPONSE_BYTES} bytes; the API sent only the requested range.`,
    );
  }
  return output;
}
