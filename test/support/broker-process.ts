/**
 * The broker as a real process, started the way `npm start` runs it (`node --import tsx
 * src/main.ts`), listening on a free loopback port. For tests that need several brokers at once
 * (a fleet sharing one store) or a broker that can be killed.
 *
 * Every wait is bounded, and a test process that dies without stop() takes its brokers with it.
 */

import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

const PROJECT_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const MAIN = path.join(PROJECT_ROOT, 'src', 'main.ts');
const DEFAULT_START_TIMEOUT_MS = 30_000;
/** main.ts drains for at most 10 s (no shutdown delay in tests) before it closes connections. */
const DEFAULT_STOP_GRACE_MS = 15_000;
const KILL_WAIT_MS = 5_000;
const LISTENING = /listening on (http:\/\/127\.0\.0\.1:\d+)/;

export interface BrokerProcess {
  /** e.g. `http://127.0.0.1:41234`, from the broker's "listening on" log line. */
  url: string;
  pid: number;
  /** Everything the process wrote to stdout and stderr so far. */
  output(): string;
  /** SIGTERM, wait (bounded), SIGKILL fallback; resolves once the process is gone. */
  stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGKILL, synchronously (also for exit hooks). */
  kill(): void;
}

export interface BrokerProcessOptions {
  /** How long to wait for the listening line; default 30 s. */
  startTimeoutMs?: number;
  /** How long stop() waits after SIGTERM before SIGKILL; default 15 s. */
  stopGraceMs?: number;
}

/**
 * The environment of a broker on the AWS Secrets Manager store at `motoEndpoint` (a moto server),
 * allowing plain-http loopback token endpoints, with a 2-second cache max age.
 */
export function awsStoreEnv(
  motoEndpoint: string,
  overrides: Record<string, string> = {},
): Record<string, string> {
  return {
    BROKER_SECRET_STORE: 'aws',
    BROKER_REGION: 'us-east-1',
    BROKER_ACCOUNT_ID: '123456789012',
    AWS_ENDPOINT_URL: motoEndpoint,
    AWS_ACCESS_KEY_ID: 'testing',
    AWS_SECRET_ACCESS_KEY: 'testing',
    AWS_REGION: 'us-east-1',
    BROKER_ALLOW_INSECURE_ENDPOINTS: 'true',
    BROKER_CACHE_MAX_AGE_SECONDS: '2',
    LOG_LEVEL: 'info',
    HOST: '127.0.0.1',
    PORT: '0',
    ...overrides,
  };
}

/** A broker process as spawnBroker started it, with what it wrote so far. */
export interface BrokerRun {
  child: ChildProcess;
  /** stdout and stderr as written so far, interleaved. */
  output: () => string;
  /** stderr alone, as written so far. */
  stderr: () => string;
  /** Resolves once the process has exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * Spawns `node --import tsx src/main.ts` from the project folder, as `npm start` runs it, with
 * exactly PATH, `PORT=0`, `LOG_LEVEL=info`, no shutdown delay and `env` on top, and collects its
 * output. It waits for nothing: startBrokerProcess waits for the listening line; a test of a
 * start that must fail waits for `exited`.
 */
export function spawnBroker(env: Record<string, string>): BrokerRun {
  const child = spawn(process.execPath, ['--import', 'tsx', MAIN], {
    cwd: PROJECT_ROOT,
    env: {
      PATH: process.env['PATH'] ?? '',
      PORT: '0',
      LOG_LEVEL: 'info',
      // Tests stop brokers often; Kubernetes' routing delay means nothing here.
      BROKER_SHUTDOWN_DELAY_SECONDS: '0',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    output += chunk;
    stderr += chunk;
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  return { child, output: () => output, stderr: () => stderr, exited };
}

/**
 * Starts a broker with spawnBroker, with `HOST=127.0.0.1`, a fresh `BROKER_DATA_DIR` (removed by
 * stop()) and `env` on top, and waits (bounded) for its listening line. A process that exits
 * first, or stays silent, fails the start with its output in the message.
 */
export async function startBrokerProcess(
  env: Record<string, string>,
  options: BrokerProcessOptions = {},
): Promise<BrokerProcess> {
  const startTimeoutMs = options.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS;
  const stopGraceMs = options.stopGraceMs ?? DEFAULT_STOP_GRACE_MS;
  const ownDataDir =
    env['BROKER_DATA_DIR'] === undefined
      ? await mkdtemp(path.join(tmpdir(), 'broker-process-'))
      : undefined;

  const { child, output, exited } = spawnBroker({
    HOST: '127.0.0.1',
    ...(ownDataDir !== undefined && { BROKER_DATA_DIR: ownDataDir }),
    ...env,
  });
  let spawnError: Error | undefined;
  child.once('error', (error) => (spawnError = error));

  const kill = (): void => {
    if (isRunning(child)) child.kill('SIGKILL');
  };
  // A test process that dies without stop() must not leave a broker behind.
  process.once('exit', kill);

  let stopping: Promise<{ code: number | null; signal: NodeJS.Signals | null }> | undefined;
  const stop = (): Promise<{ code: number | null; signal: NodeJS.Signals | null }> => {
    stopping ??= (async () => {
      if (isRunning(child)) {
        child.kill('SIGTERM');
        const graceful = await raceWithTimeout(exited, stopGraceMs);
        if (graceful === undefined) {
          kill();
          const killed = await raceWithTimeout(exited, KILL_WAIT_MS);
          if (killed === undefined) {
            throw new Error(`broker process ${child.pid} survived SIGKILL for ${KILL_WAIT_MS} ms`);
          }
        }
      }
      process.removeListener('exit', kill);
      if (ownDataDir !== undefined) await rm(ownDataDir, { recursive: true, force: true });
      return { code: child.exitCode, signal: child.signalCode };
    })();
    return stopping;
  };

  const deadline = Date.now() + startTimeoutMs;
  for (;;) {
    const url = LISTENING.exec(output())?.[1];
    if (url !== undefined && child.pid !== undefined) {
      return { url, pid: child.pid, output, stop, kill };
    }
    if (spawnError !== undefined || !isRunning(child)) {
      await stop();
      const why = spawnError?.message ?? `exited with ${child.exitCode ?? child.signalCode}`;
      throw new Error(`broker process ${why} before listening:\n${output()}`);
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(
        `broker process did not log its listening line in ${startTimeoutMs} ms:\n${output()}`,
      );
    }
    await delay(50);
  }
}

/** Neither exited nor killed by a signal yet. */
export function isRunning(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

async function raceWithTimeout<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  const timer = new AbortController();
  try {
    return await Promise.race([
      promise,
      delay(ms, undefined, { signal: timer.signal }).catch(() => undefined),
    ]);
  } finally {
    timer.abort();
  }
}
