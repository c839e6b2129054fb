/**
 * The PostgreSQL store over TLS, as the broker's settings configure it (poolConfigFrom: a CA file
 * asks for the server's certificate and name to be verified, libpq's verify-full): the store opens
 * over TLS when the server's certificate chains to the CA and names the host, and refuses to open
 * when either fails.
 *
 * A CA made here with openssl signs the servers' certificates (test/support/test-certificate.ts
 * makes self-signed certificates only, where the tests need a CA apart from what it signs, and a
 * second, unrelated CA). Three throwaway clusters, started together: one with a certificate for
 * localhost and 127.0.0.1 that also takes plain TCP, one whose certificate names `db.example`
 * only, and one that refuses TCP without TLS (pg_hba.conf `hostssl` lines only).
 */

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { inspect } from 'node:util';

import pg from 'pg';
import { pino } from 'pino';

import { isBrokerError } from '../../src/errors.js';
import { poolConfigFrom, type DatabaseSettings } from '../../src/secret-store/postgres-config.js';
import { PostgresSecretStore } from '../../src/secret-store/postgres-store.js';
import { newMasterKey } from '../support/master-keys.js';
import {
  startPostgres,
  type PostgresServer,
  type PostgresTlsOptions,
} from '../support/postgres-server.js';
import { sampleSecret } from '../support/secret-store-contract.js';

const OPENSSL_TIMEOUT_MS = 30_000;
const ADMIN_TIMEOUT_MS = 5_000;
/** What Node's TLS reports for a chain to a CA it was not given (the leaf is the whole chain). */
const UNTRUSTED_CHAIN_CODES = ['UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'SELF_SIGNED_CERT_IN_CHAIN'];
/** What Node's TLS reports for a certificate that does not name the host (tls.checkServerIdentity). */
const WRONG_NAME_CODE = 'ERR_TLS_CERT_ALTNAME_INVALID';

const key = newMasterKey();
const logger = pino({ level: 'silent' });

interface Pki {
  /** The CA the clusters' certificates chain to: what the broker is given. */
  caFile: string;
  /** A CA that signed none of them. */
  otherCaFile: string;
  /** For DNS localhost and IP 127.0.0.1. */
  loopback: PostgresTlsOptions;
  /** For DNS db.example only, signed by the same CA. */
  misnamed: PostgresTlsOptions;
  dir: string;
}

function openssl(args: readonly string[]): void {
  try {
    execFileSync('openssl', args, { stdio: 'pipe', timeout: OPENSSL_TIMEOUT_MS });
  } catch (error) {
    throw new Error(
      `openssl ${args[0] ?? ''} failed (scripts/ensure-test-tools.sh installs openssl)`,
      { cause: error },
    );
  }
}

/** A P-256 key pair as an unencrypted PEM key (`-nodes`): the server cannot be asked a passphrase. */
const NEW_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

function makeCa(dir: string, name: string): { certFile: string; keyFile: string } {
  const certFile = path.join(dir, `${name}.pem`);
  const keyFile = path.join(dir, `${name}.key`);
  openssl([
    'req',
    '-x509',
    ...NEW_KEY,
    '-keyout',
    keyFile,
    '-out',
    certFile,
    '-days',
    '2',
    '-subj',
    `/CN=Connection Broker test ${name}`,
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  return { certFile, keyFile };
}

/**
 * A server certificate signed by `ca`. `x509 -req` with an extension file, not `req -x509 -CA`:
 * the latter adds the configuration's CA extensions to the leaf.
 */
function makeServerCertificate(
  dir: string,
  name: string,
  ca: { certFile: string; keyFile: string },
  commonName: string,
  subjectAltName: string,
): PostgresTlsOptions {
  const certFile = path.join(dir, `${name}.crt`);
  const keyFile = path.join(dir, `${name}.key`);
  const requestFile = path.join(dir, `${name}.csr`);
  const extensionsFile = path.join(dir, `${name}.ext`);
  writeFileSync(
    extensionsFile,
    [
      'basicConstraints=critical,CA:FALSE',
      'keyUsage=critical,digitalSignature',
      'extendedKeyUsage=serverAuth',
      `subjectAltName=${subjectAltName}`,
      '',
    ].join('\n'),
  );
  openssl([
    'req',
    '-new',
    ...NEW_KEY,
    '-keyout',
    keyFile,
    '-out',
    requestFile,
    '-subj',
    `/CN=${commonName}`,
  ]);
  openssl([
    'x509',
    '-req',
    '-in',
    requestFile,
    '-CA',
    ca.certFile,
    '-CAkey',
    ca.keyFile,
    // A serial given rather than a serial file written beside the CA.
    '-set_serial',
    `0x${randomBytes(8).toString('hex')}`,
    '-days',
    '2',
    '-extfile',
    extensionsFile,
    '-out',
    certFile,
  ]);
  return { certFile, keyFile };
}

function makePki(): Pki {
  const dir = mkdtempSync(path.join(tmpdir(), 'broker-pg-tls-'));
  try {
    const ca = makeCa(dir, 'ca');
    const otherCa = makeCa(dir, 'other-ca');
    return {
      dir,
      caFile: ca.certFile,
      otherCaFile: otherCa.certFile,
      loopback: makeServerCertificate(
        dir,
        'loopback',
        ca,
        'localhost',
        'DNS:localhost,IP:127.0.0.1',
      ),
      misnamed: makeServerCertificate(dir, 'misnamed', ca, 'db.example', 'DNS:db.example'),
    };
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
}

/** Starts the clusters together; if one fails, those started are cleaned up before rethrowing. */
async function startAll(
  tls: readonly [PostgresTlsOptions, PostgresTlsOptions, PostgresTlsOptions],
): Promise<[PostgresServer, PostgresServer, PostgresServer]> {
  const results = await Promise.allSettled([
    startPostgres({ tls: tls[0] }),
    startPostgres({ tls: tls[1] }),
    startPostgres({ tls: tls[2] }),
  ]);
  const [first, second, third] = results;
  if (
    first.status === 'fulfilled' &&
    second.status === 'fulfilled' &&
    third.status === 'fulfilled'
  ) {
    return [first.value, second.value, third.value];
  }
  const started = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  await Promise.all(started.map((server) => server.cleanup().catch(() => undefined)));
  const failure = results.find((r) => r.status === 'rejected');
  throw failure?.reason;
}

/** `url` without its password: the broker's production shape is a URL plus a password file. */
function withoutPassword(url: string): string {
  const parsed = new URL(url);
  parsed.password = '';
  return parsed.href;
}

function withSslMode(url: string, sslmode: string): string {
  const parsed = new URL(url);
  parsed.searchParams.set('sslmode', sslmode);
  return parsed.href;
}

async function poolConfig(
  settings: Pick<DatabaseSettings, 'url'> & Partial<DatabaseSettings>,
): Promise<pg.PoolConfig> {
  return poolConfigFrom({ passwordFile: undefined, caFile: undefined, poolMax: 2, ...settings });
}

function storeOn(config: pg.PoolConfig): PostgresSecretStore {
  return new PostgresSecretStore({ poolConfig: config, keys: [key], logger });
}

/** Whether a session opened with `config` is encrypted, as the server sees it (pg_stat_ssl). */
async function sessionUsesTls(config: pg.PoolConfig): Promise<boolean> {
  const pool = new pg.Pool({ ...config, max: 1 });
  pool.on('error', () => undefined);
  try {
    const { rows } = await pool.query<{ ssl: boolean }>(
      'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()',
    );
    assert.equal(rows.length, 1);
    return rows[0]?.ssl === true;
  } finally {
    await pool.end();
  }
}

/** The error open() rejects with (failing the test if it opens), and how long it took. */
async function openFailure(store: PostgresSecretStore): Promise<{ error: unknown; ms: number }> {
  const started = performance.now();
  try {
    await store.open();
  } catch (error) {
    return { error, ms: performance.now() - started };
  } finally {
    await store.close();
  }
  assert.fail('open() succeeded where it had to be refused');
}

/** The `code` of each error along the `cause` chain, outermost first. */
function codesAlong(error: unknown): string[] {
  const codes: string[] = [];
  for (let e: unknown = error; e instanceof Error; e = e.cause) {
    if ('code' in e && typeof e.code === 'string') codes.push(e.code);
  }
  return codes;
}

/**
 * A store error fit to stop start-up: a BrokerError naming PostgreSQL and the driver's code (all
 * an operator sees: main.ts prints the message only), with no trace of the password anywhere,
 * causes and their properties included.
 */
function assertClearRefusal(
  error: unknown,
  expectedCodes: readonly string[],
  password: string,
): void {
  assert.ok(isBrokerError(error), `expected a BrokerError, got ${inspect(error)}`);
  assert.match(error.message, /PostgreSQL/);
  const code = codesAlong(error.cause).find((c) => expectedCodes.includes(c));
  assert.ok(code !== undefined, `no ${expectedCodes.join('/')} along ${inspect(error)}`);
  assert.ok(error.message.includes(code), `the message does not name ${code}: ${error.message}`);
  // The harness's passwords are hex: the same in a URL as in plain text.
  const everything = inspect(error, { depth: 10, showHidden: true });
  assert.equal(everything.includes(password), false, 'the password is in the error');
}

describe('the PostgreSQL store over TLS', () => {
  let pki: Pki;
  let loopback: PostgresServer;
  let misnamed: PostgresServer;
  let tlsOnly: PostgresServer;
  let passwordFile: string;

  before(async () => {
    pki = makePki();
    [loopback, misnamed, tlsOnly] = await startAll([
      pki.loopback,
      pki.misnamed,
      { ...pki.loopback, hostsslOnly: true },
    ]);
    passwordFile = path.join(pki.dir, 'database-password');
    // Every cluster has its own broker password; the file serves the loopback cluster.
    writeFileSync(passwordFile, `${loopback.password}\n`, { mode: 0o600 });
  });

  after(async () => {
    await Promise.all([loopback?.cleanup(), misnamed?.cleanup(), tlsOnly?.cleanup()]);
    if (pki !== undefined) rmSync(pki.dir, { recursive: true, force: true });
  });

  it('when the settings name the CA file, then the store opens over TLS and creates and gets', async (t) => {
    const config = await poolConfig({
      url: withoutPassword(loopback.url),
      passwordFile,
      caFile: pki.caFile,
    });
    const store = storeOn(config);
    try {
      await store.open();
      const secret = sampleSecret('tls-probe');
      const created = await store.create('tls-probe', secret);
      assert.equal(created.version, '1');
      const read = await store.get('tls-probe');
      assert.deepEqual(read, { name: 'tls-probe', version: '1', secret });

      assert.equal(await sessionUsesTls(config), true);
      // And the store's own sessions (pool and change listener), as the server lists them: the
      // superuser connects in plain here, which this cluster allows.
      const admin = new pg.Client({
        connectionString: loopback.adminUrl,
        connectionTimeoutMillis: ADMIN_TIMEOUT_MS,
        query_timeout: ADMIN_TIMEOUT_MS,
      });
      admin.on('error', () => undefined);
      await admin.connect();
      try {
        const { rows } = await admin.query<{ ssl: boolean }>(
          `SELECT s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
            WHERE a.usename = $1 AND a.application_name = 'connection-broker'`,
          [loopback.user],
        );
        assert.ok(rows.length >= 1, 'the store holds no session');
        t.diagnostic(`the store's sessions, as the server lists them: ${rows.length}`);
        assert.deepEqual(
          rows.map((row) => row.ssl),
          rows.map(() => true),
        );
      } finally {
        await admin.end();
      }
    } finally {
      await store.close();
    }
  });

  it('when the settings name no CA file and the URL no sslmode, then the session is plain', async () => {
    // The contrast that shows the pg_stat_ssl probe can answer false, and that the TLS above came
    // from the CA file: without it the driver does not ask for TLS at all.
    const config = await poolConfig({ url: loopback.url });
    assert.equal(await sessionUsesTls(config), false);
  });

  it("when the CA file is another CA's, then open() rejects with a clear error without the password", async (t) => {
    // The password in the URL, where an error quoting the connection string would show it.
    const config = await poolConfig({ url: loopback.url, caFile: pki.otherCaFile });
    const { error, ms } = await openFailure(storeOn(config));
    assertClearRefusal(error, UNTRUSTED_CHAIN_CODES, loopback.password);
    t.diagnostic(`open() refused in ${Math.round(ms)} ms`);
  });

  it('when the URL asks verify-full and the certificate does not name the host, then open() rejects', async (t) => {
    const url = withSslMode(misnamed.url, 'verify-full');
    const config = await poolConfig({ url, caFile: pki.caFile });
    const { error, ms } = await openFailure(storeOn(config));
    assertClearRefusal(error, [WRONG_NAME_CODE], misnamed.password);
    t.diagnostic(`open() refused in ${Math.round(ms)} ms`);

    // The default the CA file brings (no sslmode in the URL) checks the name just the same.
    const byDefault = await poolConfig({ url: misnamed.url, caFile: pki.caFile });
    assertClearRefusal(
      (await openFailure(storeOn(byDefault))).error,
      [WRONG_NAME_CODE],
      misnamed.password,
    );

    // Only the name failed: with the name check alone turned off, the chain to the CA holds.
    assert.equal(typeof config.ssl, 'object');
    const ssl = typeof config.ssl === 'object' ? config.ssl : {};
    assert.equal(
      await sessionUsesTls({ ...config, ssl: { ...ssl, checkServerIdentity: () => undefined } }),
      true,
    );
  });

  it('when pg_hba.conf admits TLS only, then a URL without TLS is refused and one with the CA opens', async () => {
    const plain = await poolConfig({ url: tlsOnly.url });
    const { error } = await openFailure(storeOn(plain));
    // invalid_authorization_specification: "no pg_hba.conf entry for host …, no encryption".
    assertClearRefusal(error, ['28000'], tlsOnly.password);

    const verified = await poolConfig({ url: tlsOnly.url, caFile: pki.caFile });
    const store = storeOn(verified);
    try {
      await store.open();
      const secret = sampleSecret('tls-only-probe');
      await store.create('tls-only-probe', secret);
      assert.deepEqual(await store.get('tls-only-probe'), {
        name: 'tls-only-probe',
        version: '1',
        secret,
      });
    } finally {
      await store.close();
    }
    assert.equal(await sessionUsesTls(verified), true);
  });
});
