import { createServer } from 'node:http';
import { cancellableDelays, listenOnLoopback } from './loopback.js';
import type { IncomingMessage, ServerResponse } from 'node:http';

import { buildRecordedRequest, normaliseHeaders, readBodyText } from './recorded-request.js';
import type { RecordedRequest } from './recorded-request.js';

export type { RecordedRequest } from './recorded-request.js';

/**
 * How the scripted endpoint answers one request.
 *
 * - `token`: 200 JSON `{ access_token, expires_in, token_type }`. `accessToken` defaults to
 *   `tok-<n>` (n = 1, 2, … per fixture, counting only defaulted tokens); `expiresIn` defaults
 *   to 3600 and `tokenType` to `'Bearer'`; `null` omits the field.
 * - `status`: the given status; when `body` is given it is sent with `contentType`
 *   (default `application/json`), otherwise the body is empty.
 * - `hang`: never answers; the socket is destroyed by `close()`.
 * - `destroy`: destroys the socket after the request body has been read.
 * - `raw`: exactly the given status, body and content type.
 *
 * `headers` (extra response headers, e.g. `retry-after`) is an optional extension.
 */
export type TokenAnswer =
  | {
      kind: 'token';
      accessToken?: string;
      expiresIn?: number | null;
      tokenType?: string | null;
      delayMs?: number;
      headers?: Record<string, string>;
    }
  | {
      kind: 'status';
      status: number;
      body?: string;
      contentType?: string;
      delayMs?: number;
      headers?: Record<string, string>;
    }
  | { kind: 'hang' }
  | { kind: 'destroy' }
  | {
      kind: 'raw';
      status: number;
      body: string;
      contentType: string;
      headers?: Record<string, string>;
    };

export interface ScriptedTokenEndpoint {
  /** Base URL of the token endpoint, e.g. `http://127.0.0.1:PORT/oauth/token`. Any path is answered. */
  url: string;
  /** Queues answers, consumed one per request in arrival order; when empty the default is used. */
  script(...answers: TokenAnswer[]): void;
  /** Replaces the default answer (initially a `token` with expires_in 3600, token_type Bearer). */
  setDefault(answer: TokenAnswer): void;
  /** Snapshot of the requests received so far (recorded once their body was read). */
  requests(): RecordedRequest[];
  requestCount(): number;
  /** Destroys all sockets (including hanging ones), cancels pending delays, stops listening. */
  close(): Promise<void>;
}

const DEFAULT_ANSWER: TokenAnswer = { kind: 'token', expiresIn: 3600, tokenType: 'Bearer' };

export async function startScriptedTokenEndpoint(): Promise<ScriptedTokenEndpoint> {
  const queue: TokenAnswer[] = [];
  let defaultAnswer: TokenAnswer = DEFAULT_ANSWER;
  const recorded: RecordedRequest[] = [];
  const delays = cancellableDelays();
  let tokenCounter = 0;
  let closing: Promise<void> | undefined;

  const wait = delays.wait;

  const send = (
    res: ServerResponse,
    status: number,
    body: string,
    contentType: string | undefined,
    extraHeaders: Record<string, string> | undefined,
  ): void => {
    if (res.destroyed || res.writableEnded) return;
    const headers: Record<string, string | number> = {
      'cache-control': 'no-store',
      'content-length': Buffer.byteLength(body),
      ...extraHeaders,
    };
    if (contentType !== undefined) headers['content-type'] = contentType;
    res.writeHead(status, headers);
    res.end(body);
  };

  const answer = async (
    req: IncomingMessage,
    res: ServerResponse,
    planned: TokenAnswer,
  ): Promise<void> => {
    const body = await readBodyText(req);
    recorded.push(
      buildRecordedRequest(req.method ?? 'GET', req.url ?? '/', normaliseHeaders(req), body),
    );

    switch (planned.kind) {
      case 'hang':
        return; // left open until close() destroys the socket
      case 'destroy':
        req.socket.destroy();
        return;
      case 'raw':
        send(res, planned.status, planned.body, planned.contentType, planned.headers);
        return;
      case 'status':
        if (planned.delayMs !== undefined && planned.delayMs > 0) await wait(planned.delayMs);
        if (planned.body === undefined) {
          send(res, planned.status, '', undefined, planned.headers);
        } else {
          send(
            res,
            planned.status,
            planned.body,
            planned.contentType ?? 'application/json',
            planned.headers,
          );
        }
        return;
      case 'token': {
        if (planned.delayMs !== undefined && planned.delayMs > 0) await wait(planned.delayMs);
        const payload: Record<string, string | number> = {
          access_token: planned.accessToken ?? `tok-${++tokenCounter}`,
        };
        const expiresIn = planned.expiresIn === undefined ? 3600 : planned.expiresIn;
        if (expiresIn !== null) payload['expires_in'] = expiresIn;
        const tokenType = planned.tokenType === undefined ? 'Bearer' : planned.tokenType;
        if (tokenType !== null) payload['token_type'] = tokenType;
        send(res, 200, JSON.stringify(payload), 'application/json', planned.headers);
        return;
      }
    }
  };

  const server = createServer((req, res) => {
    // Dequeue synchronously so answers follow arrival order even when bodies arrive unevenly.
    const planned = queue.shift() ?? defaultAnswer;
    answer(req, res, planned).catch(() => {
      // Client went away mid-request (or close() ran); nothing to answer.
      if (!res.destroyed) res.destroy();
    });
  });

  const port = await listenOnLoopback(server);

  return {
    url: `http://127.0.0.1:${port}/oauth/token`,
    script(...answers) {
      queue.push(...answers);
    },
    setDefault(next) {
      defaultAnswer = next;
    },
    requests() {
      return recorded.map((r) => structuredClone(r));
    },
    requestCount() {
      return recorded.length;
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
