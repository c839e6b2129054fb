import { createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';

/**
 * A raw TCP server on loopback that plays a hostile or broken HTTP peer (a token endpoint or an
 * upstream API): after a request's head and body arrive, it writes whatever bytes the scripted
 * behaviour says, so it can send what no well-behaved HTTP library would.
 */
export type PeerBehaviour =
  /** Exactly these bytes, then the socket ends. */
  | { kind: 'raw'; bytes: string | Buffer }
  /** `head`, then `chunk` over and over until `maxBytes` or the broker hangs up. */
  | { kind: 'stream'; head: string; chunk: Buffer; maxBytes: number }
  /** `head`, then one chunk every `everyMs` until the broker hangs up. */
  | { kind: 'trickle'; head: string; chunk: string; everyMs: number }
  /** A TCP reset as soon as the request arrived. */
  | { kind: 'reset' }
  /** `head` and part of a body, then a reset. */
  | { kind: 'cut'; head: string; partial: string };

export interface HostilePeer {
  url: string;
  /** The behaviour for every request from now on. */
  behave(behaviour: PeerBehaviour): void;
  /** Bytes of the last answer that the broker accepted before hanging up. */
  lastBytesAccepted(): number;
  /** Resolves when the last answer's socket closed (the broker hung up, or the script ended). */
  lastClosed(): Promise<void>;
  requests(): number;
  close(): Promise<void>;
}

function requestComplete(buffer: Buffer): boolean {
  const headEnd = buffer.indexOf('\r\n\r\n');
  if (headEnd === -1) return false;
  const head = buffer.subarray(0, headEnd).toString('latin1');
  const length = /\r\ncontent-length:\s*(\d+)/i.exec(head)?.[1];
  return buffer.length >= headEnd + 4 + Number(length ?? '0');
}

function writeAll(socket: Socket, data: string | Buffer): Promise<boolean> {
  return new Promise((resolve) => {
    if (socket.destroyed) {
      resolve(false);
      return;
    }
    socket.write(data, (error) => resolve(error == null));
  });
}

export async function startHostilePeer(path = '/'): Promise<HostilePeer> {
  let behaviour: PeerBehaviour = { kind: 'raw', bytes: 'HTTP/1.1 204 No Content\r\n\r\n' };
  let accepted = 0;
  let closed: Promise<void> = Promise.resolve();
  let count = 0;
  const sockets = new Set<Socket>();

  const answer = async (socket: Socket, script: PeerBehaviour): Promise<void> => {
    switch (script.kind) {
      case 'raw':
        await writeAll(socket, script.bytes);
        socket.end();
        return;
      case 'reset':
        socket.resetAndDestroy();
        return;
      case 'cut':
        await writeAll(socket, script.head + script.partial);
        socket.resetAndDestroy();
        return;
      case 'stream': {
        if (!(await writeAll(socket, script.head))) return;
        // Bounded either way: maxBytes, or the broker closing the socket.
        while (accepted < script.maxBytes && !socket.destroyed) {
          if (!(await writeAll(socket, script.chunk))) return;
          accepted += script.chunk.length;
        }
        socket.end();
        return;
      }
      case 'trickle': {
        if (!(await writeAll(socket, script.head))) return;
        for (let i = 0; i < 10_000 && !socket.destroyed; i += 1) {
          await new Promise((resolve) => setTimeout(resolve, script.everyMs));
          if (!(await writeAll(socket, script.chunk))) return;
          accepted += script.chunk.length;
        }
        socket.end();
        return;
      }
    }
  };

  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
    let received = Buffer.alloc(0);
    let answered = false;
    const whenClosed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.once('close', () => sockets.delete(socket));
    socket.on('data', (chunk: Buffer) => {
      if (answered) return;
      received = Buffer.concat([received, chunk]);
      if (!requestComplete(received)) return;
      answered = true;
      count += 1;
      accepted = 0;
      closed = whenClosed;
      void answer(socket, behaviour);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}${path}`,
    behave: (next) => {
      behaviour = next;
    },
    lastBytesAccepted: () => accepted,
    lastClosed: () => closed,
    requests: () => count,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** An HTTP/1.1 head with these header lines and a Content-Length when `body` is given. */
export function responseHead(
  status: string,
  headers: ReadonlyArray<readonly [string, string]>,
  bodyLength?: number,
): string {
  const lines = [`HTTP/1.1 ${status}`, ...headers.map(([name, value]) => `${name}: ${value}`)];
  if (bodyLength !== undefined) lines.push(`Content-Length: ${bodyLength}`);
  return `${lines.join('\r\n')}\r\n\r\n`;
}

/** A complete answer with a body. */
export function rawAnswer(
  status: string,
  headers: ReadonlyArray<readonly [string, string]>,
  body: string,
): PeerBehaviour {
  return {
    kind: 'raw',
    bytes: responseHead(status, headers, Buffer.byteLength(body)) + body,
  };
}

/** Socket buffers between a peer and the broker: what may be in flight when the broker hangs up. */
export const IN_FLIGHT_SLACK_BYTES = 8 * 1024 * 1024;

/**
 * A chunked answer that never ends (up to `maxBytes`): `opening`, as its own chunk, then 64 KiB
 * chunks of `fill`. A JSON opening such as `{"access_token":"` makes an endless token.
 */
export function endlessChunked(
  headers: ReadonlyArray<readonly [string, string]>,
  maxBytes: number,
  { opening = '', fill = 'a' }: { opening?: string; fill?: string } = {},
): PeerBehaviour {
  const head = responseHead('200 OK', [...headers, ['Transfer-Encoding', 'chunked']]);
  const first =
    opening === '' ? '' : `${Buffer.byteLength(opening).toString(16)}\r\n${opening}\r\n`;
  return {
    kind: 'stream',
    head: head + first,
    chunk: Buffer.from(`10000\r\n${fill.repeat(0x10000)}\r\n`),
    maxBytes,
  };
}
