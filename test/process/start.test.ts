import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { spawnBroker } from '../support/broker-process.js';

interface Started {
  child: ChildProcess;
  url: string;
  output: () => string;
}

/** Starts the broker as `npm start` does and waits (bounded) for its listening line. */
async function start(env: Record<string, string>): Promise<Started> {
  const { child, output } = spawnBroker(env);
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`no listening line in 20 s:\n${output()}`)),
      20_000,
    );
    const check = (): void => {
      const match = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(output());
      if (match?.[1] !== undefined) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    };
    child.stdout?.on('data', check);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`exited with ${code}:\n${output()}`));
    });
  });
  return { child, url, output };
}

async function exitOf(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null) return child.exitCode;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no exit within 15 s')), 15_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve(code);
    });
  });
}

async function failedStart(
  env: Record<string, string>,
): Promise<{ code: number | null; stderr: string }> {
  const { child, stderr } = spawnBroker(env);
  return { code: await exitOf(child), stderr: stderr() };
}

describe('starting the broker as a process', () => {
  let dataDir: string;
  before(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'broker-start-'));
  });
  after(async () => {
    await rm(dataDir, { recursive: true, force: true });
  });

  it('when a variable is invalid, then start-up stops with a message naming it', async () => {
    const cases: Array<[Record<string, string>, RegExp]> = [
      [{ PORT: 'eighty' }, /PORT must be integer/],
      [
        { BROKER_ALLOW_INSECURE_ENDPOINTS: 'yes' },
        /BROKER_ALLOW_INSECURE_ENDPOINTS must be one of: 1, 0, true, false, '' \(empty\)/,
      ],
      [{ BROKER_ACCOUNT_ID: '12' }, /BROKER_ACCOUNT_ID must match pattern/],
    ];
    for (const [env, message] of cases) {
      const { code, stderr } = await failedStart({ BROKER_DATA_DIR: dataDir, ...env });
      assert.equal(code, 2, stderr);
      assert.match(stderr, message);
    }
  });

  it('when the master key is not 32 bytes of base64, then start-up fails naming the variable but not the value', async () => {
    const { code, stderr } = await failedStart({
      BROKER_DATA_DIR: dataDir,
      BROKER_MASTER_KEY: 'c2hvcnQta2V5',
    });
    assert.equal(code, 1);
    assert.match(stderr, /BROKER_MASTER_KEY/);
    assert.ok(!stderr.includes('c2hvcnQta2V5'));
  });

  it('when no key is configured, then a 0600 dev key file is created with a warning, and a restart reuses it', async () => {
    const first = await start({ BROKER_DATA_DIR: dataDir });
    assert.match(first.output(), /fine for development, not for production/);
    const keyFile = await stat(path.join(dataDir, 'master.key'));
    assert.equal(keyFile.mode & 0o777, 0o600);
    const created = await fetch(`${first.url}/v1/connections`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        Name: 'survivor',
        AuthorizationType: 'API_KEY',
        AuthParameters: {
          ApiKeyAuthParameters: { ApiKeyName: 'x-api-key', ApiKeyValue: 'kept-across-restarts' },
        },
      }),
      signal: AbortSignal.timeout(5000),
    });
    assert.equal(created.status, 201);
    const key = await readFile(path.join(dataDir, 'master.key'), 'utf8');
    first.child.kill('SIGTERM');
    assert.equal(await exitOf(first.child), 0, 'SIGTERM drains and exits 0');

    const second = await start({ BROKER_DATA_DIR: dataDir });
    try {
      assert.equal(await readFile(path.join(dataDir, 'master.key'), 'utf8'), key);
      const auth = await fetch(`${second.url}/v1/connections/survivor/authorization`, {
        signal: AbortSignal.timeout(5000),
      });
      assert.equal(auth.status, 200);
      const body = (await auth.json()) as { Headers: Record<string, string> };
      assert.equal(body.Headers['x-api-key'], 'kept-across-restarts');
    } finally {
      second.child.kill('SIGTERM');
      await exitOf(second.child);
    }
  });

  it('when a second broker opens a data directory in use, then it refuses to start', async () => {
    const first = await start({ BROKER_DATA_DIR: dataDir });
    try {
      const { code, stderr } = await failedStart({ BROKER_DATA_DIR: dataDir });
      assert.equal(code, 1);
      assert.match(stderr, /in use by process/);
    } finally {
      first.child.kill('SIGTERM');
      await exitOf(first.child);
    }
  });

  it('when the port is in use, then start-up stops with one line naming the address and PORT, exit 2', async () => {
    const first = await start({ BROKER_DATA_DIR: dataDir });
    const port = new URL(first.url).port;
    const otherDir = await mkdtemp(path.join(tmpdir(), 'broker-start-busy-'));
    try {
      const { code, stderr } = await failedStart({ BROKER_DATA_DIR: otherDir, PORT: port });
      assert.equal(code, 2, stderr);
      assert.match(
        stderr,
        new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port}: the address is in use.*set PORT`),
      );
      assert.ok(!stderr.includes('Unhandled'), stderr);
      assert.equal(stderr.trim().split('\n').length, 1, stderr);
    } finally {
      first.child.kill('SIGTERM');
      await exitOf(first.child);
      await rm(otherDir, { recursive: true, force: true });
    }
  });

  it('when the master key file can be read by other users, then start-up warns with the path and how to fix it', async () => {
    const keyDir = await mkdtemp(path.join(tmpdir(), 'broker-key-mode-'));
    const keyFile = path.join(keyDir, 'master.key');
    await writeFile(keyFile, `${randomBytes(32).toString('base64')}\n`, { mode: 0o644 });
    await chmod(keyFile, 0o644);
    const started = await start({ BROKER_DATA_DIR: keyDir, BROKER_MASTER_KEY_FILE: keyFile });
    try {
      const warning = started
        .output()
        .split('\n')
        .find((line) => line.includes('can be read by other users'));
      assert.ok(warning !== undefined, started.output());
      assert.match(warning, /"mode":"0644"/);
      assert.match(warning, /chmod 600/);
    } finally {
      started.child.kill('SIGTERM');
      await exitOf(started.child);
      await rm(keyDir, { recursive: true, force: true });
    }
  });

  it(
    'when callers hold every socket the broker allows with half-sent requests, then new sockets are turned away and the held ones are closed after the headers timeout',
    { timeout: 60_000 },
    async () => {
      const started = await start({ BROKER_DATA_DIR: dataDir, BROKER_MAX_SOCKETS: '16' });
      const { port } = new URL(started.url);
      const held: Socket[] = [];
      try {
        for (let i = 0; i < 16; i += 1) {
          const socket = connect(Number(port), '127.0.0.1');
          socket.on('error', () => undefined);
          // Read what the broker sends (its 408), so the socket can end on this side too.
          socket.resume();
          await new Promise((resolve) => socket.once('connect', resolve));
          socket.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ');
          held.push(socket);
        }
        const closedAll = Promise.all(
          held.map((s) => new Promise((resolve) => s.once('close', resolve))),
        );
        // Over the cap: the broker closes the socket at once, and is not starved of descriptors.
        const extra = connect(Number(port), '127.0.0.1');
        extra.on('error', () => undefined);
        let answered = '';
        extra.on('data', (chunk: Buffer) => (answered += chunk.toString()));
        extra.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
        await new Promise((resolve) => extra.once('close', resolve));
        assert.equal(answered, '');
        // The headers timeout (10 s) ends the held ones; then the broker answers again.
        await closedAll;
        const healthy = await fetch(`${started.url}/healthz`, {
          signal: AbortSignal.timeout(5000),
        });
        assert.equal(healthy.status, 200);
      } finally {
        for (const socket of held) socket.destroy();
        started.child.kill('SIGTERM');
        await exitOf(started.child);
      }
    },
  );

  it(
    'when a caller holds idle keep-alive sockets up to the cap, then the broker closes idle ones and still answers a new caller',
    { timeout: 60_000 },
    async () => {
      const started = await start({ BROKER_DATA_DIR: dataDir, BROKER_MAX_SOCKETS: '20' });
      const { port } = new URL(started.url);
      const held: Socket[] = [];
      try {
        // Each socket finishes one request, then sits idle under the 65 s keep-alive.
        for (let i = 0; i < 20; i += 1) {
          const socket = connect(Number(port), '127.0.0.1');
          socket.on('error', () => undefined);
          const answered = new Promise((resolve) => socket.once('data', resolve));
          await new Promise((resolve) => socket.once('connect', resolve));
          socket.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
          await answered;
          socket.resume();
          held.push(socket);
        }
        const healthy = await fetch(`${started.url}/healthz`, {
          signal: AbortSignal.timeout(5000),
        });
        assert.equal(healthy.status, 200);
        assert.ok(held.some((socket) => socket.destroyed || socket.readableEnded));
      } finally {
        for (const socket of held) socket.destroy();
        started.child.kill('SIGTERM');
        await exitOf(started.child);
      }
    },
  );

  it('when the data directory holds connections sealed by a configured key and a start forgets the key, then it stops naming the variables and makes no development key', async () => {
    const ownDir = await mkdtemp(path.join(tmpdir(), 'broker-start-forgotten-key-'));
    const key = randomBytes(32).toString('base64');
    const first = await start({ BROKER_DATA_DIR: ownDir, BROKER_MASTER_KEY: key });
    try {
      const created = await fetch(`${first.url}/v1/connections`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          Name: 'sealed',
          AuthorizationType: 'API_KEY',
          AuthParameters: { ApiKeyAuthParameters: { ApiKeyName: 'x-api-key', ApiKeyValue: 'v' } },
        }),
        signal: AbortSignal.timeout(5000),
      });
      assert.equal(created.status, 201);
    } finally {
      first.child.kill('SIGTERM');
      await exitOf(first.child);
    }
    const { code, stderr } = await failedStart({ BROKER_DATA_DIR: ownDir });
    assert.equal(code, 1, stderr);
    assert.match(stderr, /holds connections but no development key.*BROKER_MASTER_KEY_FILE/);
    await assert.rejects(stat(path.join(ownDir, 'master.key')), { code: 'ENOENT' });
    await rm(ownDir, { recursive: true, force: true });
  });
});
