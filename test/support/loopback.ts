import http from 'node:http';
import https from 'node:https';
import { createServer as createTcpServer, type AddressInfo, type Server } from 'node:net';

/** Listens on 127.0.0.1 on a free port and answers that port (any server: TCP, HTTP, HTTPS). */
export async function listenOnLoopback(server: Server): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  return (server.address() as AddressInfo).port;
}

/** Delays that a test server's close() can cancel all at once. */
export function cancellableDelays(): {
  wait: (ms: number) => Promise<void>;
  cancelAll: () => void;
} {
  const timers = new Set<NodeJS.Timeout>();
  return {
    wait: (ms) =>
      new Promise((resolve) => {
        const timer = setTimeout(() => {
          timers.delete(timer);
          resolve();
        }, ms);
        timers.add(timer);
      }),
    cancelAll: () => {
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
    },
  };
}

/**
 * A port that was free a moment ago on 127.0.0.1, for a process that must be told its port
 * before it listens (it may be taken again in between: a caller retries).
 */
export async function findFreePort(): Promise<number> {
  const server = createTcpServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (typeof address !== 'object' || address === null) throw new Error('no port was assigned');
  return address.port;
}

/** An HTTP(S) server on 127.0.0.1 that counts what reaches it. */
export interface LoopbackServer {
  port: number;
  /** TCP connections accepted so far. */
  connections(): number;
  /** HTTP requests read so far (method and path). */
  requests(): string[];
  close(): Promise<void>;
}

/**
 * Starts a LoopbackServer answering with `handler` (default: 200 "reached"); over TLS with
 * `tls`. Counting TCP connections shows what a refusal prevented: nothing reaches the server.
 */
export async function startLoopbackServer(
  handler: (req: http.IncomingMessage, res: http.ServerResponse) => void = (_req, res) =>
    res.end('reached'),
  tls?: { cert: Buffer; key: Buffer },
): Promise<LoopbackServer> {
  let connections = 0;
  const requests: string[] = [];
  const listener = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    requests.push(`${req.method} ${req.url}`);
    handler(req, res);
  };
  const server =
    tls === undefined ? http.createServer(listener) : https.createServer(tls, listener);
  server.on('connection', () => (connections += 1));
  const port = await listenOnLoopback(server);
  return {
    port,
    connections: () => connections,
    requests: () => [...requests],
    close: async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
