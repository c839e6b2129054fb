import { stat } from 'node:fs/promises';
import { createServer, type ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { createBroker } from './broker.js';
import {
  ConfigError,
  isLoopbackHost,
  loadConfig,
  type BrokerConfig,
  type KeyRingSource,
} from './config.js';
import { errorMessage } from './errors.js';
import { createLogger, stdoutDestination } from './logger.js';
import {
  loadOrCreateDevKeyFile,
  parseMasterKey,
  parseMasterKeyRing,
  readMasterKeyFile,
  type MasterKey,
} from './secret-store/master-key.js';

/** After the drain: how long the store may take to close (the Helm chart's grace allows 5 s). */
const CLOSE_TIMEOUT_SECONDS = 5;
/** A request's head must arrive within this; its body within REQUEST_TIMEOUT_MS. */
const HEADERS_TIMEOUT_MS = 10_000;
const REQUEST_TIMEOUT_MS = 30_000;

/** The file store's key ring, newest first, from the one source the configuration chose. */
async function resolveMasterKeys(
  source: KeyRingSource,
  dataDir: string,
  logger: Logger,
): Promise<MasterKey[]> {
  switch (source.kind) {
    case 'none':
      return [];
    case 'ring':
      return parseMasterKeyRing(source.base64, 'BROKER_MASTER_KEYS');
    case 'key':
      return [parseMasterKey(source.base64, 'BROKER_MASTER_KEY')];
    case 'file':
      await warnIfReadableByOthers(source.path, logger);
      return readMasterKeyFile(source.path);
    case 'development': {
      const dev = await loadOrCreateDevKeyFile(dataDir);
      logger.warn(
        { path: dev.path, created: dev.created },
        'using a master key file in the data directory: fine for development, not for production (set BROKER_MASTER_KEY or BROKER_MASTER_KEY_FILE)',
      );
      return [dev.key];
    }
  }
}

/** Like ssh with a private key: a key file others can read is said out loud (not refused: a
 * Kubernetes Secret volume without defaultMode mounts files 0644). */
async function warnIfReadableByOthers(file: string, logger: Logger): Promise<void> {
  try {
    const mode = (await stat(file)).mode & 0o777;
    if ((mode & 0o077) !== 0) {
      logger.warn(
        { path: file, mode: `0${mode.toString(8)}` },
        'the master key file can be read by other users: chmod 600 it (on Kubernetes, set the Secret volume defaultMode to 0400)',
      );
    }
  } catch {
    // readMasterKeyFile reports a missing or unreadable file with its own message.
  }
}

async function main(): Promise<void> {
  let config: BrokerConfig;
  try {
    config = loadConfig();
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`connection-broker: ${error.message}\n`);
    process.exit(2);
  }
  const logger = createLogger(config.logLevel, stdoutDestination());
  const masterKeys = await resolveMasterKeys(config.keyRing, config.dataDir, logger);
  // Only a ring read from a file can change without a restart.
  const keyFile = config.keyRing.kind === 'file' ? config.keyRing.path : undefined;
  const broker = await createBroker({
    config,
    logger,
    masterKeys,
    ...(keyFile !== undefined && {
      masterKeyFile: keyFile,
      reloadMasterKeys: () => readMasterKeyFile(keyFile),
    }),
    collectDefaultMetrics: true,
  });
  if (broker.policy === undefined) {
    logger.warn(
      // `auth` is what callers meet (BROKER_AUTH=policy without a policy file is open too).
      { host: config.host, auth: 'open' },
      isLoopbackHost(config.host)
        ? 'RUNNING OPEN: no BROKER_POLICY_FILE, so every local process can read every credential; set a policy before anything else shares this machine'
        : 'RUNNING OPEN (BROKER_AUTH=none): anyone who reaches this port can read every credential',
    );
  }
  // SIGHUP re-reads the policy and the key ring (each is also watched for changes).
  process.on('SIGHUP', () => {
    void broker.policy?.reload();
    void broker.keys?.rotateAndLog('SIGHUP');
  });
  // Responses still being answered, so shutdown can end their connections after them.
  const inFlight = new Set<ServerResponse>();
  let phase: 'serving' | 'delaying' | 'draining' = 'serving';
  // Bounds on what callers can hold, given here because Node reads them when the server is made:
  // a slow request head or body ends with a 408, checked every second (Node's default is 30 s).
  const server = createServer(
    {
      connectionsCheckingInterval: 1_000,
      headersTimeout: HEADERS_TIMEOUT_MS,
      requestTimeout: REQUEST_TIMEOUT_MS,
    },
    (req, res) => {
      inFlight.add(res);
      res.once('close', () => {
        inFlight.delete(res);
        // A response whose headers went out before SIGTERM leaves its connection idle, not closed.
        if (phase === 'draining') setImmediate(() => server.closeIdleConnections());
      });
      // During shutdown every answer ends its connection: keep-alive clients reconnect elsewhere.
      if (phase !== 'serving') res.setHeader('connection', 'close');
      broker.handler(req, res);
    },
  );
  server.keepAliveTimeout = 65_000;
  // Sockets past the cap are closed on arrival, so idle callers cannot exhaust descriptors; and
  // near the cap, idle keep-alive sockets (which a caller can hold for keepAliveTimeout) are
  // closed first, so open sockets cannot shut out new callers either.
  server.maxConnections = config.maxSockets;
  const crowdedAt = Math.floor(config.maxSockets * 0.9);
  let sockets = 0;
  server.on('connection', (socket) => {
    sockets += 1;
    socket.once('close', () => {
      sockets -= 1;
    });
    if (sockets >= crowdedAt) server.closeIdleConnections();
  });
  server.on('error', (error: NodeJS.ErrnoException) => {
    const where = `${config.host}:${config.port}`;
    const hint =
      error.code === 'EADDRINUSE'
        ? 'the address is in use by another process: set PORT (or HOST) to a free one'
        : error.code === 'EACCES'
          ? 'permission denied: use a PORT above 1023, or run with the right to bind it'
          : error.code === 'EADDRNOTAVAIL'
            ? 'this machine has no such address: set HOST to one of its addresses'
            : (error.code ?? error.message);
    process.stderr.write(`connection-broker: cannot listen on ${where}: ${hint}\n`);
    // Configuration errors exit 2 (README, Configuration); the store is closed first.
    void broker.close().finally(() => process.exit(2));
  });
  server.listen(config.port, config.host, () => {
    const address = server.address();
    const port = typeof address === 'object' && address !== null ? address.port : config.port;
    logger.info(
      {
        host: config.host,
        port,
        // What SIGHUP (reload) and SIGTERM go to: `npm start` has a parent process too.
        pid: process.pid,
        store: broker.store.kind,
        ...(broker.store.kind === 'file' && { dataDir: config.dataDir }),
      },
      `connection broker listening on http://${config.host}:${port}`,
    );
  });

  const { shutdownDelaySeconds, drainTimeoutSeconds } = config;
  let delayTimer: NodeJS.Timeout | undefined;
  let signalledAtMs = 0;
  const drain = (): void => {
    phase = 'draining';
    clearTimeout(delayTimer);
    logger.info(
      { inFlight: inFlight.size, drainTimeoutSeconds },
      'no longer accepting connections; in-flight requests finish',
    );
    const forced = setTimeout(() => {
      logger.warn(
        { inFlight: inFlight.size, drainTimeoutSeconds },
        'drain timeout: closing the connections of requests still in flight',
      );
      server.closeAllConnections();
    }, drainTimeoutSeconds * 1000);
    forced.unref();
    server.close(() => {
      clearTimeout(forced);
      // A store that hangs (a stuck fsync, an unreachable Secrets Manager) must not keep the pod
      // alive until the kubelet's SIGKILL; the records it wrote are complete either way.
      const stuck = setTimeout(() => {
        logger.error({ closeTimeoutSeconds: CLOSE_TIMEOUT_SECONDS }, 'closing the store timed out');
        process.exit(1);
      }, CLOSE_TIMEOUT_SECONDS * 1000);
      stuck.unref();
      broker
        .close()
        .then(() => {
          logger.info({ afterMs: Date.now() - signalledAtMs }, 'shut down');
          process.exit(0);
        })
        .catch((error: unknown) => {
          logger.error({ error: errorMessage(error) }, 'close failed');
          process.exit(1);
        });
    });
    server.closeIdleConnections();
  };
  // Kubernetes keeps routing to a pod for a few seconds after its readiness fails: serve them.
  const shutdown = (signal: NodeJS.Signals): void => {
    if (phase === 'draining') {
      logger.info({ signal }, 'already draining');
      return;
    }
    if (phase === 'delaying') {
      logger.info({ signal }, 'second signal: the shutdown delay is cut short');
      drain();
      return;
    }
    phase = 'delaying';
    signalledAtMs = Date.now();
    broker.beginShutdown();
    for (const res of inFlight) if (!res.headersSent) res.setHeader('connection', 'close');
    // Ctrl-C comes from a person at a terminal, not an orchestrator still routing traffic here.
    const delaySeconds = signal === 'SIGINT' ? 0 : shutdownDelaySeconds;
    logger.info(
      { signal, shutdownDelaySeconds: delaySeconds, drainTimeoutSeconds },
      'shutting down: readiness fails now, requests are served for the shutdown delay, then in-flight ones finish',
    );
    if (delaySeconds === 0) drain();
    else delayTimer = setTimeout(drain, delaySeconds * 1000);
  };
  // `on`, not `once`: a second signal must not fall through to the default handler and kill.
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
}

main().catch((error: unknown) => {
  process.stderr.write(`connection-broker: failed to start: ${errorMessage(error)}\n`);
  process.exit(1);
});
