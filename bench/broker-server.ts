/**
 * The real broker (file store in a temp dir removed on exit) on 127.0.0.1:0, logging at info
 * level into /dev/null: each credential retrieval's audit line is part of what is measured.
 * Prints `{"port"}` once listening; bench/run.ts creates the connection it loads.
 * BROKER_ALLOW_INSECURE_ENDPOINTS is passed on (default false): the HTTP Task part sets it for
 * its broker only, whose upstream is http://127.0.0.1.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createBroker } from '../src/broker.js';
import { loadConfig } from '../src/config.js';
import { pino } from 'pino';
import { createLogger } from '../src/logger.js';
import { masterKeyFromBytes } from '../src/secret-store/master-key.js';
import { announceReady, exitOnStop, listenOnLoopback } from './server-lifecycle.js';

const dataDir = await mkdtemp(path.join(tmpdir(), 'broker-bench-'));
const removeDataDir = (): Promise<void> => rm(dataDir, { recursive: true, force: true });
try {
  const broker = await createBroker({
    config: loadConfig({
      BROKER_DATA_DIR: dataDir,
      LOG_LEVEL: 'info',
      // The bench is one principal far beyond any sensible per-caller rate.
      BROKER_RATE_LIMIT_PER_SECOND: '0',
      BROKER_EXPENSIVE_RATE_LIMIT_PER_SECOND: '0',
      BROKER_EXPENSIVE_MAX_IN_FLIGHT: '0',
      BROKER_ALLOW_INSECURE_ENDPOINTS: process.env['BROKER_ALLOW_INSECURE_ENDPOINTS'] ?? 'false',
    }),
    // Asynchronous, as main.ts writes standard output.
    logger: createLogger('info', pino.destination({ dest: '/dev/null', sync: false })),
    masterKeys: [masterKeyFromBytes(randomBytes(32))],
  });
  const server = createServer(broker.handler);
  exitOnStop(server, async () => {
    await broker.close();
    await removeDataDir();
  });
  announceReady({ port: await listenOnLoopback(server) });
} catch (error) {
  await removeDataDir();
  throw error;
}
