/**
 * The broker of the scale part: the file store in BENCH_SCALE_DATA_DIR, which it neither creates
 * nor removes (bench/scale-part.ts does both, and starts this twice on the same directory), with
 * the master key BENCH_SCALE_MASTER_KEY (base64) so the second start opens what the first wrote.
 * Rate limits are raised far beyond the bench's one principal, so the bulk creates are never
 * answered 429. Logs at info level into /dev/null, as bench/broker-server.ts does. Prints
 * `{"port"}` once listening. On SIGUSR2 it writes its heap figures (`process.memoryUsage()`,
 * then heap used after a full GC when started with --expose-gc) as JSON to
 * BENCH_SCALE_MEMORY_FILE, so the bench can say what its RSS is made of.
 */
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { pino } from 'pino';
import { createBroker } from '../src/broker.js';
import { loadConfig } from '../src/config.js';
import { createLogger } from '../src/logger.js';
import { parseMasterKey } from '../src/secret-store/master-key.js';
import { announceReady, exitOnStop, listenOnLoopback } from './server-lifecycle.js';

const dataDir = process.env['BENCH_SCALE_DATA_DIR'];
const keyBase64 = process.env['BENCH_SCALE_MASTER_KEY'];
if (dataDir === undefined || keyBase64 === undefined) {
  throw new Error('scale-server needs BENCH_SCALE_DATA_DIR and BENCH_SCALE_MASTER_KEY');
}
const RAISED = '1000000';
const broker = await createBroker({
  config: loadConfig({
    BROKER_DATA_DIR: dataDir,
    LOG_LEVEL: 'info',
    BROKER_RATE_LIMIT_PER_SECOND: RAISED,
    BROKER_RATE_LIMIT_BURST: RAISED,
    BROKER_EXPENSIVE_RATE_LIMIT_PER_SECOND: RAISED,
    BROKER_EXPENSIVE_RATE_LIMIT_BURST: RAISED,
    BROKER_ALLOW_INSECURE_ENDPOINTS: 'false',
  }),
  logger: createLogger('info', pino.destination({ dest: '/dev/null', sync: false })),
  masterKeys: [parseMasterKey(keyBase64, 'BENCH_SCALE_MASTER_KEY')],
});
const server = createServer(broker.handler);
exitOnStop(server, () => broker.close());
const memoryFile = process.env['BENCH_SCALE_MEMORY_FILE'];
if (memoryFile !== undefined) {
  process.on('SIGUSR2', () => {
    const before = process.memoryUsage();
    globalThis.gc?.();
    const after = process.memoryUsage();
    writeFileSync(memoryFile, JSON.stringify({ before, heapUsedAfterGc: after.heapUsed }));
  });
}
announceReady({ port: await listenOnLoopback(server) });
