import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer } from 'node:net';
import type { AddressInfo, Server, Socket } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';

import { startTcpProxy } from './tcp-proxy.js';
import type { TcpProxy } from './tcp-proxy.js';
import { waitFor } from './wait.js';

/** How long "no answer" is watched for. */
const SILENCE_MS = 300;

/** An echo server that counts the bytes it received. */
async function startEcho(): Promise<{ port: number; received: () => number; server: Server }> {
  let received = 0;
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    socket.on('data', (chunk) => {
      received += chunk.length;
      socket.write(chunk);
    });
  });
  server.on('close', () => sockets.forEach((s) => s.destroy()));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: (server.address() as AddressInfo).port, received: () => received, server };
}

interface Client {
  socket: Socket;
  /** Everything received so far. */
  text: () => string;
  /** Resolves with the text once it contains `expected`; rejects after `ms`. */
  waitFor: (expected: string, ms?: number) => Promise<string>;
}

async function open(port: number): Promise<Client> {
  const socket = connect({ host: '127.0.0.1', port });
  socket.on('error', () => undefined);
  await once(socket, 'connect');
  let text = '';
  socket.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
  return {
    socket,
    text: () => text,
    waitFor: async (expected, ms = 2_000) => {
      await waitFor(() => text.includes(expected), {
        timeoutMs: ms,
        intervalMs: 10,
        message: () => `no '${expected}' yet: '${text}'`,
      });
      return text;
    },
  };
}

describe('the loopback TCP proxy', () => {
  let echo: Awaited<ReturnType<typeof startEcho>>;
  let proxy: TcpProxy;

  before(async () => {
    echo = await startEcho();
    proxy = await startTcpProxy(`http://127.0.0.1:${echo.port}`);
  });
  after(async () => {
    await proxy.close();
    await new Promise<void>((resolve) => echo.server.close(() => resolve()));
  });

  it('forwards both ways, swallows on open and new connections alike, and resumes the ones that lost nothing', async () => {
    const busy = await open(proxy.port);
    const idle = await open(proxy.port);
    busy.socket.write('one');
    idle.socket.write('two');
    await busy.waitFor('one');
    await idle.waitFor('two');
    assert.equal(proxy.mode(), 'forward');

    proxy.setMode('swallow');
    const receivedBefore = echo.received();
    busy.socket.write('lost');
    const fresh = await open(proxy.port); // still accepted
    fresh.socket.write('also lost');
    await delay(SILENCE_MS);
    assert.equal(busy.text(), 'one', 'an open connection got an answer while swallowing');
    assert.equal(fresh.text(), '', 'a new connection got an answer while swallowing');
    assert.equal(echo.received(), receivedBefore, 'the upstream got bytes while swallowing');
    assert.equal(busy.socket.destroyed, false);
    assert.equal(fresh.socket.destroyed, false);
    assert.equal(proxy.stats().swallowedBytes, 'lost'.length + 'also lost'.length);
    assert.equal(proxy.stats().poisoned, 2);

    proxy.setMode('forward');
    idle.socket.write('three');
    await idle.waitFor('three');
    const later = await open(proxy.port);
    later.socket.write('four');
    await later.waitFor('four');
    busy.socket.write('still lost');
    await delay(SILENCE_MS);
    assert.equal(busy.text(), 'one', 'a connection that lost bytes came back');

    const closed = [busy, idle, fresh, later].map((c) => once(c.socket, 'close'));
    await proxy.close();
    await Promise.all(closed);
    assert.equal(proxy.stats().open, 0);
  });
});
