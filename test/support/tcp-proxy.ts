/**
 * A loopback TCP proxy in front of one upstream (e.g. moto), for simulating a network partition
 * rather than a refused connection.
 *
 * - `forward`: bytes pass both ways unchanged.
 * - `swallow`: the proxy still accepts connections and reads what arrives, but forwards nothing
 *   and answers nothing, in either direction, as a partition that drops packets would. This holds
 *   for connections that were already open when the mode flipped (e.g. a client's keep-alive
 *   pool), not only for new ones.
 *
 * A connection that lost bytes while swallowing can never be trusted again (its streams are out
 * of step), so it stays swallowed after the proxy flips back to `forward`, until either side
 * closes it; connections that lost nothing resume. close() destroys every socket.
 */

import { connect, createServer } from 'node:net';
import type { AddressInfo, Socket } from 'node:net';

export type TcpProxyMode = 'forward' | 'swallow';

export interface TcpProxyStats {
  /** Connections accepted since start. */
  accepted: number;
  /** Connections open now. */
  open: number;
  /** Bytes from clients (or the upstream) that the proxy dropped while swallowing. */
  swallowedBytes: number;
  /** Connections that lost bytes and therefore stay swallowed. */
  poisoned: number;
}

export interface TcpProxy {
  /** `http://127.0.0.1:<port>`, for an HTTP upstream. */
  url: string;
  port: number;
  mode(): TcpProxyMode;
  setMode(mode: TcpProxyMode): void;
  stats(): TcpProxyStats;
  /** Destroys every socket and stops listening. */
  close(): Promise<void>;
}

interface Pair {
  client: Socket;
  upstream: Socket;
  /** Bytes were dropped on this connection: it stays swallowed. */
  poisoned: boolean;
}

/** Starts a proxy on a free loopback port in front of `upstream` (`http://host:port` or host:port). */
export async function startTcpProxy(
  upstream: string,
  initialMode: TcpProxyMode = 'forward',
): Promise<TcpProxy> {
  const target = parseTarget(upstream);
  let mode: TcpProxyMode = initialMode;
  const pairs = new Set<Pair>();
  let accepted = 0;
  let swallowedBytes = 0;

  const server = createServer((client) => {
    accepted += 1;
    const upstreamSocket = connect({ host: target.host, port: target.port });
    const pair: Pair = { client, upstream: upstreamSocket, poisoned: false };
    pairs.add(pair);

    const destroyBoth = (): void => {
      pairs.delete(pair);
      client.destroy();
      upstreamSocket.destroy();
    };
    // Either side gone: so is the connection (no half-open forwarding, none is needed for HTTP).
    client.on('error', destroyBoth).on('close', destroyBoth);
    const upstreamGone = (): void => {
      // A partition hides the upstream's failure or close too: a swallowed client keeps waiting.
      if (mode === 'forward' && !pair.poisoned) destroyBoth();
      else pair.poisoned = true;
    };
    upstreamSocket.on('error', upstreamGone).on('close', upstreamGone);
    client.setNoDelay(true);
    upstreamSocket.setNoDelay(true);

    relay(client, upstreamSocket, pair);
    relay(upstreamSocket, client, pair);
  });

  /** Forwards `from` → `to` while forwarding; reads and drops otherwise. */
  function relay(from: Socket, to: Socket, pair: Pair): void {
    from.on('data', (chunk: Buffer) => {
      if (mode === 'swallow' || pair.poisoned) {
        swallowedBytes += chunk.length;
        pair.poisoned = true;
        return;
      }
      if (to.destroyed) return;
      // Backpressure: stop reading until the other side drains.
      if (!to.write(chunk)) {
        from.pause();
        to.once('drain', () => from.resume());
      }
    });
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  let closing: Promise<void> | undefined;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    mode: () => mode,
    setMode: (next) => {
      mode = next;
    },
    stats: () => ({
      accepted,
      open: pairs.size,
      swallowedBytes,
      poisoned: [...pairs].filter((p) => p.poisoned).length,
    }),
    close: () => {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const pair of pairs) {
          pair.client.destroy();
          pair.upstream.destroy();
        }
        pairs.clear();
      });
      return closing;
    },
  };
}

function parseTarget(upstream: string): { host: string; port: number } {
  const url = new URL(upstream.includes('://') ? upstream : `tcp://${upstream}`);
  const port = Number(url.port);
  if (!Number.isInteger(port) || port <= 0) throw new Error(`no port in upstream ${upstream}`);
  return { host: url.hostname.replace(/^\[|\]$/g, ''), port };
}
