import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';

import { poolConfigFrom } from './postgres-config.js';

const base = { url: undefined, passwordFile: undefined, caFile: undefined, poolMax: 7 };

describe('PostgreSQL pool settings', () => {
  it('when only a URL is given, then the pool uses it with bounded size and timeouts', async () => {
    const config = await poolConfigFrom({ ...base, url: 'postgresql://broker@db/broker' });
    assert.equal(config.connectionString, 'postgresql://broker@db/broker');
    assert.equal(config.max, 7);
    assert.ok((config.connectionTimeoutMillis ?? 0) > 0);
    assert.ok((config.query_timeout ?? 0) > 0);
    assert.equal(config.password, undefined);
  });

  it('when nothing is given, then no connection string is set and libpq variables apply', async () => {
    const config = await poolConfigFrom(base);
    assert.equal('connectionString' in config, false);
  });

  it('when a password file and a CA file are given, then the password is read without its newline and TLS verifies the server', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'pg-config-'));
    try {
      const passwordFile = path.join(dir, 'password');
      await writeFile(passwordFile, 's3cret with spaces\n');
      const config = await poolConfigFrom({
        ...base,
        url: 'postgresql://broker@db/broker',
        passwordFile,
        caFile: '/etc/ssl/db-ca.pem',
      });
      assert.equal(config.password, 's3cret with spaces');
      const url = new URL(config.connectionString ?? '');
      assert.equal(url.searchParams.get('sslrootcert'), '/etc/ssl/db-ca.pem');
      assert.equal(url.searchParams.get('sslmode'), 'verify-full');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('when the URL names its own sslmode, then a CA file keeps it', async () => {
    const config = await poolConfigFrom({
      ...base,
      url: 'postgresql://db/broker?sslmode=verify-ca',
      caFile: '/ca.pem',
    });
    assert.equal(new URL(config.connectionString ?? '').searchParams.get('sslmode'), 'verify-ca');
  });
});
