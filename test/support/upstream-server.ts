import { createServer } from 'node:http';
import { cancellableDelays, listenOnLoopback } from './loopback.js';
import { waitFor } from './wait.js';
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';

/** One request as it arrived on the wire. */
export interface UpstreamRequest {
  method: string;
  /** The raw request target, e.g. `/path?QueryParam=x`. */
  url: string;
  /** Names as sent (case kept) and values, alternating, as Node received them. */
  rawHeaders: string[];
  /** Header names lower-cased; repeated headers joined with `, `. */
  headers: Record<string, string>;
  /** The exact body bytes. */
  body: Buffer;
}

/**
 * How the upstream answers one request.
 *
 * - `respond`: `status` (with an optional reason phrase), `headers` (an array value sends the
 *   header once per item), `body` bytes; Content-Length is set from the body unless `chunked`.
 *   A HEAD request gets the headers only. `delayMs` waits first; `gate` waits for a promise.
 * - `hang`: never answers; `close()` destroys the socket.
 * - `destroy`: destroys the socket once the request body has been read.
 * - `truncate`: sends the headers with Content-Length `declaredLength` and `body` (shorter),
 *   then destroys the socket.
 */
export type UpstreamAnswer =
  | {
      kind: 'respond';
      status: number;
      statusText?: string;
      headers?: Record<string, string | string[]>;
      body?: string | Buffer;
      chunked?: boolean;
      delayMs?: number;
      gate?: Promise<void>;
    }
  | { kind: 'hang' }
  | { kind: 'destroy' }
  | {
      kind: 'truncate';
      status: number;
      headers?: Record<string, string | string[]>;
      declaredLength: number;
      body: string | Buffer;
    };

/** An answer, or a function choosing one from the request (e.g. by its Authorization header). */
export type UpstreamScript = UpstreamAnswer | ((request: UpstreamRequest) => UpstreamAnswer);

export interface UpstreamServer {
  /** `http://127.0.0.1:PORT`; every path is answered. */
  origin: string;
  port: number;
  /** Queues answers, one per request in arrival order; when empty the default is used. */
  script(...answers: UpstreamScript[]): void;
  /** Replaces the default answer (initially 200 `{"ok":true}` as application/json). */
  setDefault(answer: UpstreamScript): void;
  /** Empties the queue and the recorded requests, and restores the initial default. */
  reset(): void;
  /** Snapshot of the requests received so far (recorded once their body was read). */
  requests(): UpstreamRequest[];
  requestCount(): number;
  /** Resolves once `count` requests were recorded; rejects after `timeoutMs`. */
  waitForRequests(count: number, timeoutMs?: number): Promise<void>;
  /** Destroys every socket (hanging ones included), cancels delays, stops listening. */
  close(): Promise<void>;
}

/** A JSON answer. */
export function jsonAnswer(
  status: number,
  value: unknown,
  headers: Record<string, string | string[]> = {},
): UpstreamAnswer {
  return {
    kind: 'respond',
    status,
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(value),
  };
}

/** Every value of a header, by case-insensitive name, in the order received. */
export function headerValues(request: UpstreamRequest, name: string): string[] {
  const values: string[] = [];
  for (let i = 0; i + 1 < request.rawHeaders.length; i += 2) {
    if (request.rawHeaders[i]!.toLowerCase() === name.toLowerCase()) {
      values.push(request.rawHeaders[i + 1]!);
    }
  }
  return values;
}

const INITIAL_DEFAULT: UpstreamAnswer = jsonAnswer(200, { ok: true });

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function lowerCaseHeaders(req: IncomingMessage): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(req.headers)) {
    if (value === undefined) continue;
    headers[name] = Array.isArray(value) ? value.join(', ') : value;
  }
  return headers;
}

export async function startUpstreamServer(): Promise<UpstreamServer> {
  const queue: UpstreamScript[] = [];
  let defaultAnswer: UpstreamScript = INITIAL_DEFAULT;
  let recorded: UpstreamRequest[] = [];
  const delays = cancellableDelays();
  let closing: Promise<void> | undefined;

  const wait = delays.wait;

  const respond = (
    req: IncomingMessage,
    res: ServerResponse,
    answer: Extract<UpstreamAnswer, { kind: 'respond' }>,
  ): void => {
    if (res.destroyed || res.writableEnded) return;
    const body = Buffer.from(answer.body ?? '');
    const headers: OutgoingHttpHeaders = { ...answer.headers };
    if (answer.chunked !== true) headers['content-length'] = body.length;
    if (answer.statusText === undefined) res.writeHead(answer.status, headers);
    else res.writeHead(answer.status, answer.statusText, headers);
    res.end(req.method === 'HEAD' ? undefined : body);
  };

  const handle = async (
    req: IncomingMessage,
    res: ServerResponse,
    planned: UpstreamScript,
  ): Promise<void> => {
    const request: UpstreamRequest = {
      method: req.method ?? 'GET',
      url: req.url ?? '/',
      rawHeaders: [...req.rawHeaders],
      headers: lowerCaseHeaders(req),
      body: await readBody(req),
    };
    recorded.push(request);
    const answer = typeof planned === 'function' ? planned(request) : planned;
    switch (answer.kind) {
      case 'hang':
        return; // left open until close() destroys the socket
      case 'destroy':
        req.socket.destroy();
        return;
      case 'truncate': {
        res.writeHead(answer.status, {
          ...answer.headers,
          'content-length': answer.declaredLength,
        });
        res.write(Buffer.from(answer.body), () => req.socket.destroy());
        return;
      }
      case 'respond':
        if (answer.gate !== undefined) await answer.gate;
        if (answer.delayMs !== undefined && answer.delayMs > 0) await wait(answer.delayMs);
        respond(req, res, answer);
        return;
    }
  };

  const server = createServer((req, res) => {
    // Dequeue synchronously so answers follow arrival order.
    const planned = queue.shift() ?? defaultAnswer;
    handle(req, res, planned).catch(() => {
      if (!res.destroyed) res.destroy();
    });
  });
  // A client that goes away mid-answer (e.g. the broker's response-size cap) is not an error here.
  server.on('clientError', (_error, socket) => socket.destroy());

  const port = await listenOnLoopback(server);

  return {
    origin: `http://127.0.0.1:${port}`,
    port,
    script(...answers) {
      queue.push(...answers);
    },
    setDefault(answer) {
      defaultAnswer = answer;
    },
    reset() {
      queue.length = 0;
      recorded = [];
      defaultAnswer = INITIAL_DEFAULT;
    },
    requests() {
      return recorded.map((r) => ({
        ...r,
        rawHeaders: [...r.rawHeaders],
        headers: { ...r.headers },
        body: Buffer.from(r.body),
      }));
    },
    requestCount() {
      return recorded.length;
    },
    async waitForRequests(count, timeoutMs = 5000) {
      await waitFor(() => recorded.length >= count, {
        timeoutMs,
        intervalMs: 5,
        message: () => `upstream: ${recorded.length} of ${count} requests`,
      });
    },
    close() {
      closing ??= new Promise<void>((resolve) => {
        delays.cancelAll();
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
