/**
 * The throwaway PostgreSQL cluster the PostgreSQL store's tests stand on: the broker role connects
 * with its password and creates tables without being a superuser, and stop(), start(), kill() and
 * cleanup() do what outage tests need of them.
 */

import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Client } from 'pg';
import { startPostgres, type PostgresServer } from './postgres-server.js';

const CONNECT_TIMEOUT_MS = 2_000;

async function withClient<T>(url: string, use: (client: Client) => Promise<T>): Promise<T> {
  const client = new Client({ connectionString: url, connectionTimeoutMillis: CONNECT_TIMEOUT_MS });
  client.on('error', () => undefined);
  await client.connect();
  try {
    return await use(client);
  } finally {
    await client.end();
  }
}

/** The error code a connection attempt to `url` fails with (e.g. ECONNREFUSED, 28P01). */
async function connectError(url: string): Promise<string | undefined> {
  try {
    await withClient(url, (client) => client.query('SELECT 1'));
    return undefined;
  } catch (error) {
    return error instanceof Error && 'code' in error ? String(error.code) : String(error);
  }
}

/** The postmaster's pid, from the first line of its lock file (PostgreSQL docs, "Database File Layout"). */
function postmasterPid(server: PostgresServer): number {
  const lockFile = path.join(server.dir, 'data', 'postmaster.pid');
  return Number(readFileSync(lockFile, 'utf8').split('\n')[0]);
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function timed(action: () => Promise<unknown>): Promise<number> {
  const started = performance.now();
  await action();
  return Math.round(performance.now() - started);
}

describe('a throwaway PostgreSQL cluster', () => {
  let server: PostgresServer;
  let startMs: number;

  before(async () => {
    const started = performance.now();
    server = await startPostgres();
    startMs = Math.round(performance.now() - started);
  });

  after(async () => {
    await server?.cleanup();
  });

  it('lets the broker role in with its password, on loopback, as a non-superuser', async (t) => {
    t.diagnostic(`initdb + start + roles: ${startMs} ms`);
    const url = new URL(server.url);
    assert.equal(url.hostname, '127.0.0.1');
    assert.equal(Number(url.port), server.port);
    assert.equal(url.pathname, `/${server.database}`);
    assert.equal(decodeURIComponent(url.username), server.user);
    assert.equal(decodeURIComponent(url.password), server.password);

    const row = await withClient(server.url, async (client) => {
      const result = await client.query<{ now: Date; user: string; superuser: boolean }>(
        'SELECT now() AS now, current_user AS user, rolsuper AS superuser FROM pg_roles WHERE rolname = current_user',
      );
      return result.rows[0];
    });
    assert.ok(row?.now instanceof Date);
    assert.equal(row.user, 'broker');
    assert.equal(row.superuser, false);

    const wrong = new URL(server.url);
    wrong.password = 'not-the-password';
    assert.equal(await connectError(wrong.href), '28P01'); // invalid_password
  });

  it('runs the server as an unprivileged account when the tests run as root', (t) => {
    if (process.getuid?.() !== 0) {
      t.diagnostic('not root: the server runs as this account');
      return;
    }
    const status = readFileSync(`/proc/${postmasterPid(server)}/status`, 'utf8');
    const uid = /^Uid:\s+(\d+)/m.exec(status)?.[1];
    assert.notEqual(uid, undefined);
    assert.notEqual(uid, '0');
    assert.equal(statSync(server.dir).uid, Number(uid));
  });

  it('lets the broker role create and use tables in its database', async () => {
    await withClient(server.url, async (client) => {
      await client.query('CREATE TABLE probe (id integer PRIMARY KEY, note text NOT NULL)');
      await client.query('INSERT INTO probe VALUES (1, $1)', ['before the outages']);
      const result = await client.query<{ note: string }>('SELECT note FROM probe WHERE id = 1');
      assert.equal(result.rows[0]?.note, 'before the outages');
    });
  });

  it('refuses connections after stop() and serves the same data on the same port after start()', async (t) => {
    const stopMs = await timed(() => server.stop());
    assert.equal(server.running(), false);
    assert.equal(await connectError(server.url), 'ECONNREFUSED');

    const port = server.port;
    const restartMs = await timed(() => server.start());
    t.diagnostic(`stop: ${stopMs} ms, start after stop: ${restartMs} ms`);
    assert.equal(server.port, port);
    const note = await withClient(server.url, async (client) => {
      const result = await client.query<{ note: string }>('SELECT note FROM probe WHERE id = 1');
      await client.query('INSERT INTO probe VALUES (2, $1)', ['committed before the kill']);
      return result.rows[0]?.note;
    });
    assert.equal(note, 'before the outages');
  });

  it('refuses connections after kill(), even with a session open, and recovers on start()', async (t) => {
    const open = new Client({
      connectionString: server.url,
      connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    });
    open.on('error', () => undefined);
    await open.connect();
    const pid = postmasterPid(server);

    const killMs = await timed(() => server.kill());
    assert.equal(processAlive(pid), false);
    assert.equal(server.running(), false);
    assert.equal(await connectError(server.url), 'ECONNREFUSED');
    await assert.rejects(open.query('SELECT 1'));
    await open.end().catch(() => undefined);

    const restartMs = await timed(() => server.start());
    t.diagnostic(`kill: ${killMs} ms, start after kill (crash recovery): ${restartMs} ms`);
    const notes = await withClient(server.url, async (client) => {
      const result = await client.query<{ note: string }>('SELECT note FROM probe ORDER BY id');
      return result.rows.map((r) => r.note);
    });
    // A commit survives the kill: the tests' non-durable settings leave synchronous_commit on.
    assert.deepEqual(notes, ['before the outages', 'committed before the kill']);
  });

  it('cleanup() stops the server and removes its folder, and is idempotent', async (t) => {
    const pid = postmasterPid(server);
    const cleanupMs = await timed(() => server.cleanup());
    t.diagnostic(`cleanup: ${cleanupMs} ms`);
    assert.equal(processAlive(pid), false);
    assert.equal(existsSync(server.dir), false);
    assert.equal(await connectError(server.url), 'ECONNREFUSED');
    await server.cleanup();
    await assert.rejects(server.start(), /cleaned up/);
  });

  it('cleans up after a kill() without leaving its shared memory behind', async () => {
    const killed = await startPostgres();
    try {
      const segment = readFileSync(path.join(killed.dir, 'data', 'postmaster.pid'), 'utf8')
        .split('\n')[6]
        ?.trim()
        .split(/\s+/)[1];
      assert.match(segment ?? '', /^\d+$/);
      await killed.kill();
      await killed.cleanup();
      const segments = readFileSync('/proc/sysvipc/shm', 'utf8')
        .split('\n')
        .slice(1)
        .map((line) => line.trim().split(/\s+/)[1]);
      assert.equal(segments.includes(segment), false);
      assert.equal(existsSync(killed.dir), false);
    } finally {
      await killed.cleanup();
    }
  });
});
