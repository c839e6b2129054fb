import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';

import { plaintextToRemoteHost, poolConfigFrom } from './postgres-config.js';

const base = { url: undefined, passwordFile: undefined, caFile: undefined, poolMax: 7 };

describe('PostgreSQL pool settings', () => {
  it('when only a URL is given, then the pool takes its parts with bounded size and timeouts', async () => {
    const config = await poolConfigFrom({ ...base, url: 'postgresql://broker@db:5433/broker' });
    assert.equal(config.host, 'db');
    assert.equal(config.port, 5433);
    assert.equal(config.user, 'broker');
    assert.equal(config.database, 'broker');
    assert.equal('connectionString' in config, false, 'nothing for the driver to merge over');
    assert.equal(config.max, 7);
    assert.ok((config.connectionTimeoutMillis ?? 0) > 0);
    assert.ok((config.query_timeout ?? 0) > 0);
    assert.equal(config.password, undefined);
  });

  it('when nothing is given, then no host or password is set and libpq variables apply', async () => {
    const config = await poolConfigFrom(base);
    assert.equal(config.host, undefined);
    assert.equal(config.password, undefined);
  });

  it('when the URL holds a password and no file is given, then the password in the URL is used', async () => {
    const config = await poolConfigFrom({ ...base, url: 'postgresql://broker:from-url@db/broker' });
    assert.equal(config.password, 'from-url');
  });

  it('when a password file and a CA file are given, then the password is read without its newline and TLS verifies the server', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'pg-config-'));
    try {
      const passwordFile = path.join(dir, 'password');
      await writeFile(passwordFile, 's3cret with spaces\n');
      const caFile = path.join(dir, 'ca.pem');
      await writeFile(
        caFile,
        '-----BEGIN CERTIFICATE-----\nnot really\n-----END CERTIFICATE-----\n',
      );
      const config = await poolConfigFrom({
        ...base,
        url: 'postgresql://broker:url-password@db/broker',
        passwordFile,
        caFile,
      });
      // The file wins over the URL: a mounted Secret is what operators rotate.
      assert.equal(config.password, 's3cret with spaces');
      assert.ok(typeof config.ssl === 'object' && config.ssl !== null);
      assert.match(String(config.ssl.ca), /not really/);
      assert.equal(config.ssl.rejectUnauthorized, true);
      assert.equal(plaintextToRemoteHost(config, {}), false);
      await assert.rejects(
        poolConfigFrom({ ...base, url: 'postgresql://db/broker?sslmode=disable', caFile }),
        /turns TLS off/,
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('when the URL is not a connection string, then the error does not quote it', async () => {
    await assert.rejects(
      poolConfigFrom({ ...base, url: 'postgresql://broker:hunter2@[not-a-host/broker' }),
      (error: unknown) =>
        error instanceof Error &&
        !JSON.stringify(error).includes('hunter2') &&
        !error.message.includes('hunter2'),
    );
  });

  it('when the server is remote and TLS is off, then it is flagged; a loopback or socket server is not', async () => {
    const remote = await poolConfigFrom({ ...base, url: 'postgresql://broker@db.example/broker' });
    assert.equal(plaintextToRemoteHost(remote, {}), true);
    assert.equal(plaintextToRemoteHost(remote, { PGSSLMODE: 'verify-full' }), false);
    const local = await poolConfigFrom({ ...base, url: 'postgresql://broker@127.0.0.1/broker' });
    assert.equal(plaintextToRemoteHost(local, {}), false);
    assert.equal(
      plaintextToRemoteHost(await poolConfigFrom(base), { PGHOST: '/var/run/postgresql' }),
      false,
    );
    const unchecked = await poolConfigFrom({
      ...base,
      url: 'postgresql://broker@db.example/broker?uselibpqcompat=true&sslmode=require',
    });
    assert.equal(plaintextToRemoteHost(unchecked, {}), true, 'encrypted but not verified');
    const verified = await poolConfigFrom({
      ...base,
      url: 'postgresql://broker@db.example/broker?sslmode=verify-full',
    });
    assert.equal(plaintextToRemoteHost(verified, {}), false);
  });

  it('when the CA file cannot be read, then the settings fail naming no secret', async () => {
    await assert.rejects(
      poolConfigFrom({
        ...base,
        url: 'postgresql://broker:pw@db/broker',
        caFile: '/no/such/ca.pem',
      }),
      (error: unknown) => error instanceof Error && !error.message.includes('pw@'),
    );
  });
});
