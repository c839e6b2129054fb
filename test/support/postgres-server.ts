/**
 * A throwaway PostgreSQL cluster for the tests of the PostgreSQL store: `initdb` into a fresh
 * temporary folder, the postmaster on a free port of 127.0.0.1 (TCP there only; its unix socket
 * inside the folder), password (SCRAM) authentication on every connection, a superuser for the
 * test itself and a non-superuser role `broker` that owns a database `broker`, the way the broker
 * connects in production. With the `tls` option the server also speaks TLS with a given
 * certificate, and can be told to refuse TCP without it. The server programs come from
 * scripts/ensure-postgres.sh (which prints their bin directory); a test that needs them fails
 * loudly when they cannot be had, never skips.
 *
 * PostgreSQL refuses to run as root (PostgreSQL docs, "The PostgreSQL User Account"), so when the
 * tests run as root, as CI does, initdb and postgres run as an unprivileged account (`nobody`)
 * through setpriv, and the folder is handed to that account.
 *
 * Nothing outlives the test process where that can be helped: the postmaster is started by
 * setpriv with a parent-death signal (it is SIGKILLed when this process dies, however it dies), a
 * process exit hook kills it and removes the folder, and dynamic shared memory lives in the data
 * folder (`dynamic_shared_memory_type=mmap`); the small System V segment a killed postmaster
 * leaves is removed by cleanup() and by the exit hook. What a test process killed outright leaves
 * (its folder in the temporary directory) is removed by the next startPostgres() of any run.
 */

import { execFile, execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, openSync, readFileSync, rmSync } from 'node:fs';
import { chmod, chown, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Client, type ClientConfig } from 'pg';
import { findFreePort } from './loopback.js';

const PROJECT_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const ENSURE_SCRIPT = 'scripts/ensure-postgres.sh';
/** A first run installs Debian's postgresql package: apt-get update and install, about a minute. */
const ENSURE_TIMEOUT_MS = 300_000;
const INITDB_TIMEOUT_MS = 60_000;
const DEFAULT_START_TIMEOUT_MS = 30_000;
/** A fast shutdown (SIGINT) takes well under a second; past this the postmaster is SIGKILLed. */
const STOP_TIMEOUT_MS = 15_000;
/** Backends leave within milliseconds of their postmaster's death; bounded all the same. */
const BACKENDS_GONE_TIMEOUT_MS = 10_000;
const CONNECT_TIMEOUT_MS = 2_000;
/** CREATE DATABASE copies template1: a fraction of a second, seconds on a loaded machine. */
const SETUP_QUERY_TIMEOUT_MS = 30_000;
/** A port found free can be taken before the postmaster binds it; try a few times. */
const START_ATTEMPTS = 3;
const HOST = '127.0.0.1';
const FOLDER_PREFIX = 'broker-pg-';
const OWNER_FILE = 'owner.pid';
const SUPERUSER = 'postgres';
const BROKER_ROLE = 'broker';
const BROKER_DATABASE = 'broker';
/** In the cluster's folder, beside the data directory, removed with it. */
const TLS_CERT_FILE = 'server.crt';
const TLS_KEY_FILE = 'server.key';

const execFileAsync = promisify(execFile);

export interface PostgresOptions {
  /** The OS account initdb and postgres run as when this process is root; default `nobody`. */
  osUser?: string;
  /** More server settings, passed as `-c name=value` (e.g. `{ max_connections: '20' }`). */
  settings?: Readonly<Record<string, string>>;
  /** How long the postmaster may take to accept connections; default 30 s. */
  startTimeoutMs?: number;
  /** TLS on the server (`ssl=on`); absent, the server speaks plain TCP only, as before. */
  tls?: PostgresTlsOptions;
}

/**
 * The server's certificate and key, copied into the cluster's folder: PostgreSQL refuses a key
 * that others may read, and when the tests run as root the server's account could not reach a
 * file in the caller's folder anyway (PostgreSQL docs, "Secure TCP/IP Connections with SSL").
 */
export interface PostgresTlsOptions {
  /** PEM certificate (and any intermediates) the server presents. */
  certFile: string;
  /** Its unencrypted PEM private key. */
  keyFile: string;
  /**
   * Only `hostssl` lines in pg_hba.conf: a TCP connection without TLS is refused. Then `url` and
   * `adminUrl` need TLS settings added to connect (they name none).
   */
  hostsslOnly?: boolean;
}

export interface PostgresServer {
  /** libpq URL of the `broker` role on its database: what the broker is given. */
  url: string;
  /** libpq URL of the superuser on the `postgres` database: for the test itself. */
  adminUrl: string;
  host: string;
  port: number;
  /** The broker role's database, user and password (the parts of `url`). */
  database: string;
  user: string;
  password: string;
  /** The temporary folder (data directory, unix socket, server log); cleanup() removes it. */
  dir: string;
  /** Whether the postmaster is running (started and not yet stopped, killed or exited). */
  running(): boolean;
  /** Fast shutdown (SIGINT: sessions rolled back, clean checkpoint); no-op when not running. */
  stop(): Promise<void>;
  /** Starts the postmaster again after stop() or kill(): same data, same port. */
  start(): Promise<void>;
  /** SIGKILLs the postmaster, for outage tests; resolves once it and its backends are gone. */
  kill(): Promise<void>;
  /** Stops the server and removes the folder; idempotent. */
  cleanup(): Promise<void>;
}

/** An OS account's ids, for setpriv. */
interface Identity {
  uid: number;
  gid: number;
}

/** Clusters not yet cleaned up, for the exit hook. */
const live = new Set<() => void>();
let exitHookInstalled = false;
let binDirCache: string | undefined;

/**
 * Runs scripts/ensure-postgres.sh (a look-up when PostgreSQL is installed) and answers the bin
 * directory it prints. With ENSURE_TOOLS_CHECK_ONLY=1 the script only checks.
 */
export function ensurePostgresBinDir(): string {
  if (binDirCache !== undefined) return binDirCache;
  const result = spawnSync('bash', [path.join(PROJECT_ROOT, ENSURE_SCRIPT)], {
    cwd: PROJECT_ROOT,
    encoding: 'utf8',
    timeout: ENSURE_TIMEOUT_MS,
    killSignal: 'SIGKILL',
  });
  const binDir = result.stdout.trim();
  if (result.error !== undefined || result.status !== 0 || binDir === '') {
    const why = result.error?.message ?? `exit ${result.status ?? result.signal}`;
    const output = result.stderr.trim().split('\n').slice(-5).join(' | ');
    const verb =
      process.env.ENSURE_TOOLS_CHECK_ONLY === '1' ? 'is not installed' : 'could not be installed';
    throw new Error(
      `PostgreSQL ${verb} (${why}${output === '' ? '' : `: ${output}`}); run \`bash ${ENSURE_SCRIPT}\``,
    );
  }
  binDirCache = binDir;
  return binDir;
}

/** Starts a fresh cluster with the `broker` role and database; see the module comment. */
export async function startPostgres(options: PostgresOptions = {}): Promise<PostgresServer> {
  const binDir = ensurePostgresBinDir();
  const identity = await unprivilegedIdentity(options.osUser ?? 'nobody');
  const tls = options.tls;
  // The harness's own connections (readiness, role setup) must pass a hostssl-only pg_hba.conf.
  // It does not verify the certificate: it talks to the server it just started on loopback, and
  // verifying is what the tests that ask for TLS check, with their own settings.
  const adminSsl: ClientConfig['ssl'] =
    tls === undefined ? undefined : { rejectUnauthorized: false };
  const startTimeoutMs = options.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS;
  await sweepAbandoned();
  const dir = await mkdtemp(path.join(tmpdir(), FOLDER_PREFIX));
  // Who owns the folder, for sweepAbandoned() in a later run should this process be killed.
  await writeFile(path.join(dir, OWNER_FILE), `${process.pid}\n`);
  const dataDir = path.join(dir, 'data');
  const logFile = path.join(dir, 'postgres.log');
  const adminPassword = randomBytes(18).toString('hex');
  const password = randomBytes(18).toString('hex');

  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  let port = 0;
  let cleanedUp = false;

  const isRunning = (): boolean =>
    child !== undefined && child.exitCode === null && child.signalCode === null;

  /** Synchronous, for the exit hook: SIGKILL, release what a killed postmaster leaves, remove. */
  const forget = (): void => {
    if (isRunning()) child?.kill('SIGKILL');
    try {
      removeLeftSharedMemory(dataDir);
      rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
    } catch {
      // Best effort while the process exits: nothing can be reported from here.
    }
  };
  live.add(forget);
  installExitHook();

  const run = (program: string, args: string[]): [string, string[]] =>
    wrap(identity, path.join(binDir, program), args);

  const spawnPostmaster = async (): Promise<void> => {
    const logStart = (await stat(logFile).catch(() => undefined))?.size ?? 0;
    const settings: Record<string, string> = {
      listen_addresses: HOST,
      unix_socket_directories: dir,
      // Tests only: a lost OS page cache is no concern here (PostgreSQL docs, "Non-Durable
      // Settings"). synchronous_commit stays on, so a commit survives kill() as in production.
      fsync: 'off',
      full_page_writes: 'off',
      // Dynamic shared memory in the data folder, removed with it, where /dev/shm would keep what
      // a killed postmaster leaves (PostgreSQL docs, "Resource Consumption").
      dynamic_shared_memory_type: 'mmap',
      ...(tls !== undefined && {
        ssl: 'on',
        ssl_cert_file: path.join(dir, TLS_CERT_FILE),
        ssl_key_file: path.join(dir, TLS_KEY_FILE),
      }),
      ...options.settings,
    };
    const args = ['-D', dataDir, '-p', String(port)];
    for (const [name, value] of Object.entries(settings)) args.push('-c', `${name}=${value}`);
    const [file, argv] = run('postgres', args);
    const log = openSync(logFile, 'a');
    let spawned: ChildProcess;
    try {
      spawned = spawn(file, argv, { stdio: ['ignore', log, log], env: serverEnv() });
    } finally {
      closeSync(log);
    }
    // The postmaster's life is bounded by stop(), kill(), cleanup(), the exit hook and its
    // parent-death signal, not by this process's event loop: a test that forgets cleanup() ends
    // rather than hangs.
    spawned.unref();
    let spawnError: Error | undefined;
    spawned.once('error', (error) => (spawnError = error));
    child = spawned;
    exited = new Promise((resolve) => spawned.once('exit', () => resolve()));

    const adminUrl = libpqUrl(SUPERUSER, adminPassword, port, 'postgres');
    const deadline = Date.now() + startTimeoutMs;
    for (;;) {
      if (spawnError !== undefined || !isRunning()) {
        await waitExited(exited, 1_000);
        const tail = await logTail(logFile, logStart);
        const why = spawnError?.message ?? `exited with ${spawned.exitCode ?? spawned.signalCode}`;
        throw new PostmasterStartError(`postgres on port ${port} ${why}: ${tail}`, tail);
      }
      if (await acceptsConnections(adminUrl, adminSsl)) return;
      if (Date.now() > deadline) {
        await killAndWait();
        throw new Error(
          `postgres on port ${port} did not accept connections within ${startTimeoutMs} ms: ${await logTail(logFile, logStart)}`,
        );
      }
      await delay(100);
    }
  };

  const killAndWait = async (): Promise<void> => {
    if (isRunning()) child?.kill('SIGKILL');
    if (!(await waitExited(exited, STOP_TIMEOUT_MS))) {
      throw new Error(`postgres (pid ${child?.pid}) did not exit after SIGKILL`);
    }
    await waitBackendsGone(dataDir);
  };

  const stop = async (): Promise<void> => {
    if (!isRunning()) return;
    // SIGINT is a fast shutdown, pg_ctl's default mode (PostgreSQL docs, "Shutting Down the
    // Server"): sessions are ended and the server checkpoints and removes its lock file.
    child?.kill('SIGINT');
    if (!(await waitExited(exited, STOP_TIMEOUT_MS))) await killAndWait();
  };

  const start = async (): Promise<void> => {
    if (cleanedUp) throw new Error('this PostgreSQL cluster was cleaned up');
    if (isRunning()) return;
    await spawnPostmaster();
  };

  const kill = async (): Promise<void> => {
    if (!isRunning()) return;
    await killAndWait();
  };

  const cleanup = async (): Promise<void> => {
    if (cleanedUp) return;
    cleanedUp = true;
    try {
      await stop();
      // After a kill(), or a stop() that had to kill: what a clean shutdown would have removed.
      removeLeftSharedMemory(dataDir);
    } finally {
      live.delete(forget);
      await rm(dir, { recursive: true, force: true, maxRetries: 3 });
    }
  };

  try {
    if (identity !== undefined) await chown(dir, identity.uid, identity.gid);
    const passwordFile = path.join(dir, 'superuser-password');
    await writeFile(passwordFile, `${adminPassword}\n`, { mode: 0o600 });
    if (identity !== undefined) await chown(passwordFile, identity.uid, identity.gid);
    const [file, argv] = run('initdb', [
      '-D',
      dataDir,
      '-U',
      SUPERUSER,
      `--pwfile=${passwordFile}`,
      // Passwords on every connection, local and TCP, as the broker's database will ask for them
      // (PostgreSQL docs, "Password Authentication").
      '--auth=scram-sha-256',
      '--encoding=UTF8',
      '--no-locale',
      // Tests only (PostgreSQL docs, initdb: "--no-sync").
      '--no-sync',
    ]);
    try {
      await execFileAsync(file, argv, {
        env: serverEnv(),
        timeout: INITDB_TIMEOUT_MS,
        killSignal: 'SIGKILL',
      });
    } catch (error) {
      throw new Error(`initdb failed: ${describeExecError(error)}`, { cause: error });
    }
    await rm(passwordFile);
    if (tls !== undefined) await installTls(tls, dir, dataDir, identity);

    for (let attempt = 1; ; attempt += 1) {
      port = await findFreePort();
      try {
        await spawnPostmaster();
        break;
      } catch (error) {
        const portTaken =
          error instanceof PostmasterStartError &&
          /could not bind|address already in use/i.test(error.log);
        if (!portTaken || attempt >= START_ATTEMPTS) throw error;
      }
    }

    await createBrokerRole(
      libpqUrl(SUPERUSER, adminPassword, port, 'postgres'),
      password,
      adminSsl,
    );
  } catch (error) {
    await cleanup().catch(() => undefined);
    throw error;
  }

  return {
    url: libpqUrl(BROKER_ROLE, password, port, BROKER_DATABASE),
    adminUrl: libpqUrl(SUPERUSER, adminPassword, port, 'postgres'),
    host: HOST,
    port,
    database: BROKER_DATABASE,
    user: BROKER_ROLE,
    password,
    dir,
    running: isRunning,
    stop,
    start,
    kill,
    cleanup,
  };
}

/** A postmaster that exited while starting; `log` is what it wrote. */
class PostmasterStartError extends Error {
  constructor(
    message: string,
    readonly log: string,
  ) {
    super(message);
  }
}

/**
 * The `broker` role as the broker will have it: LOGIN with a password, no superuser, no role or
 * database creation, owner of its database. Owning the database is all it needs to create its
 * tables: the owner may create schemas in it, and the `public` schema belongs to the database
 * owner from PostgreSQL 15 on (PostgreSQL docs, "Schemas", "The Public Schema"), while older
 * versions let every role create there.
 */
async function createBrokerRole(
  adminUrl: string,
  password: string,
  ssl: ClientConfig['ssl'],
): Promise<void> {
  const client = new Client({
    connectionString: adminUrl,
    ...(ssl !== undefined && { ssl }),
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    query_timeout: SETUP_QUERY_TIMEOUT_MS,
  });
  client.on('error', () => undefined);
  await client.connect();
  try {
    // Utility statements take no bind parameters; the password is escaped as a literal.
    await client.query(
      `CREATE ROLE ${BROKER_ROLE} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD ${client.escapeLiteral(password)}`,
    );
    await client.query(`CREATE DATABASE ${BROKER_DATABASE} OWNER ${BROKER_ROLE}`);
  } finally {
    await client.end();
  }
}

/**
 * The certificate and key into the cluster's folder, owned by the server's account; the key mode
 * 0600, since PostgreSQL refuses a key file its owner lets others read (or one neither its own nor
 * root's). With `hostsslOnly`, a pg_hba.conf that lets TCP in over TLS only (initdb wrote `host`
 * lines, which admit both): no line matches a plain TCP connection, so it is refused.
 */
async function installTls(
  tls: PostgresTlsOptions,
  dir: string,
  dataDir: string,
  identity: Identity | undefined,
): Promise<void> {
  const certFile = path.join(dir, TLS_CERT_FILE);
  const keyFile = path.join(dir, TLS_KEY_FILE);
  await writeFile(certFile, await readFile(tls.certFile), { mode: 0o644 });
  await writeFile(keyFile, await readFile(tls.keyFile), { mode: 0o600 });
  // writeFile's mode is filtered by the umask; the key's must be exactly 0600 whatever it is.
  await chmod(keyFile, 0o600);
  if (identity !== undefined) {
    await chown(certFile, identity.uid, identity.gid);
    await chown(keyFile, identity.uid, identity.gid);
  }
  if (tls.hostsslOnly === true) {
    // Rewriting the file initdb made keeps its owner (the server's account) and mode.
    await writeFile(
      path.join(dataDir, 'pg_hba.conf'),
      [
        '# Written by test/support/postgres-server.ts: TCP over TLS only.',
        'local all all scram-sha-256',
        `hostssl all all ${HOST}/32 scram-sha-256`,
        '',
      ].join('\n'),
    );
  }
}

function libpqUrl(user: string, password: string, port: number, database: string): string {
  return `postgresql://${encodeURIComponent(user)}:${encodeURIComponent(password)}@${HOST}:${port}/${encodeURIComponent(database)}`;
}

/** Whether the server answers a query on `url` (a server still starting up refuses it). */
async function acceptsConnections(url: string, ssl: ClientConfig['ssl']): Promise<boolean> {
  const client = new Client({
    connectionString: url,
    ...(ssl !== undefined && { ssl }),
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    query_timeout: CONNECT_TIMEOUT_MS,
  });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * The ids of `osUser` when this process is root (PostgreSQL will not run as root), else
 * undefined: the server then runs as whoever runs the tests.
 */
async function unprivilegedIdentity(osUser: string): Promise<Identity | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  if (!hasSetpriv()) {
    throw new Error(
      'PostgreSQL cannot run as root and setpriv (util-linux) is missing to run it as another account',
    );
  }
  try {
    const uid = Number((await execFileAsync('id', ['-u', osUser])).stdout.trim());
    const gid = Number((await execFileAsync('id', ['-g', osUser])).stdout.trim());
    if (!Number.isInteger(uid) || !Number.isInteger(gid) || uid === 0) {
      throw new Error(`uid ${uid}, gid ${gid}`);
    }
    return { uid, gid };
  } catch (error) {
    throw new Error(
      `PostgreSQL cannot run as root, and the account ${osUser} to run it as is unusable: ${describeExecError(error)}`,
      { cause: error },
    );
  }
}

let setprivCache: boolean | undefined;
function hasSetpriv(): boolean {
  setprivCache ??= spawnSync('setpriv', ['--version'], { stdio: 'ignore' }).status === 0;
  return setprivCache;
}

/**
 * The command line that runs `program`: through setpriv where it exists, with a parent-death
 * signal (setpriv(1): --pdeathsig) so the server dies with this process, and as `identity` when
 * given (the account's own group only, none of root's).
 */
function wrap(identity: Identity | undefined, program: string, args: string[]): [string, string[]] {
  if (!hasSetpriv()) return [program, args];
  const as =
    identity === undefined
      ? []
      : [`--reuid=${identity.uid}`, `--regid=${identity.gid}`, '--clear-groups'];
  return ['setpriv', [...as, '--pdeathsig=SIGKILL', '--', program, ...args]];
}

/**
 * The server's environment: PATH and a neutral locale, none of the test process's PG* variables
 * (PGPORT, PGDATA, … would change what initdb and postgres do: PostgreSQL docs, "Environment
 * Variables").
 */
function serverEnv(): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'C' };
}

async function waitExited(exited: Promise<void>, ms: number): Promise<boolean> {
  const timer = new AbortController();
  try {
    return await Promise.race([
      exited.then(() => true),
      delay(ms, false, { signal: timer.signal }).catch(() => false),
    ]);
  } finally {
    timer.abort();
  }
}

/**
 * The System V segment a postmaster holds, from the lock file it leaves when it does not shut down
 * cleanly: its 7th line is "key id" (PostgreSQL docs, "Database File Layout": postmaster.pid).
 */
function leftSegment(dataDir: string): { key: string; id: string } | undefined {
  const lockFile = path.join(dataDir, 'postmaster.pid');
  if (!existsSync(lockFile)) return undefined;
  const [key, id] = (readFileSync(lockFile, 'utf8').split('\n')[6] ?? '').trim().split(/\s+/);
  if (key === undefined || id === undefined || !/^\d+$/.test(id)) return undefined;
  return { key, id };
}

/** Processes attached to System V segment `id` (Linux: /proc/sysvipc/shm), or undefined if gone. */
function attachedProcesses(segment: { key: string; id: string }): number | undefined {
  let table: string;
  try {
    table = readFileSync('/proc/sysvipc/shm', 'utf8');
  } catch {
    return undefined;
  }
  for (const line of table.split('\n').slice(1)) {
    // Columns: key shmid perms size cpid lpid nattch …
    const [key, id, , , , , nattch] = line.trim().split(/\s+/);
    if (key === segment.key && id === segment.id) return Number(nattch);
  }
  return undefined;
}

/**
 * Waits until no backend of a killed postmaster is attached to its shared memory: a postmaster
 * started on the same data before that refuses to ("pre-existing shared memory block is still in
 * use").
 */
async function waitBackendsGone(dataDir: string): Promise<void> {
  const segment = leftSegment(dataDir);
  if (segment === undefined) return;
  const deadline = Date.now() + BACKENDS_GONE_TIMEOUT_MS;
  while ((attachedProcesses(segment) ?? 0) > 0) {
    if (Date.now() > deadline) {
      throw new Error(
        `backends of the killed postgres still hold its shared memory after ${BACKENDS_GONE_TIMEOUT_MS} ms`,
      );
    }
    await delay(20);
  }
}

/**
 * Removes the System V segment of a postmaster that did not shut down cleanly (a clean shutdown
 * removes its own, and its lock file). Called once the postmaster is dead or being SIGKILLed: the
 * removal takes effect when the last process detaches (shmctl(2): IPC_RMID).
 */
function removeLeftSharedMemory(dataDir: string): void {
  const segment = leftSegment(dataDir);
  if (segment === undefined || attachedProcesses(segment) === undefined) return;
  execFileSync('ipcrm', ['-m', segment.id], { stdio: 'ignore', timeout: 5_000 });
}

/**
 * Removes the folders (and System V segments) of clusters whose test process died without its
 * exit hook running (SIGKILL, SIGTERM): their postmasters died with it (the parent-death signal),
 * what they left on disk did not. A folder whose owner is alive, or unknown, is left alone.
 */
async function sweepAbandoned(): Promise<void> {
  const entries = await readdir(tmpdir()).catch(() => []);
  for (const entry of entries) {
    if (!entry.startsWith(FOLDER_PREFIX)) continue;
    const dir = path.join(tmpdir(), entry);
    const owner = Number(await readFile(path.join(dir, OWNER_FILE), 'utf8').catch(() => ''));
    if (!Number.isInteger(owner) || owner <= 0 || processExists(owner)) continue;
    try {
      removeLeftSharedMemory(path.join(dir, 'data'));
      await rm(dir, { recursive: true, force: true, maxRetries: 3 });
    } catch {
      // Another test process may be sweeping the same folder; what is left waits for the next.
    }
  }
}

function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists, as another user's.
    return error instanceof Error && 'code' in error && error.code === 'EPERM';
  }
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // A test process that ends without cleanup() (a crash, a forgotten after()) must not leave a
  // server or its folder behind.
  process.once('exit', () => {
    for (const forget of live) forget();
    live.clear();
  });
}

async function logTail(logFile: string, from: number): Promise<string> {
  const text = await readFile(logFile, 'utf8').catch(() => '');
  return text.slice(from).trim().split('\n').slice(-10).join('\n');
}

function describeExecError(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  // execFile's error carries the output.
  const output = 'stderr' in error ? error.stderr : undefined;
  const tail = typeof output === 'string' ? output.trim().split('\n').slice(-5).join(' | ') : '';
  return tail === '' ? error.message : `${error.message}: ${tail}`;
}
