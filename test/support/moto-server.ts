/**
 * A real moto server (an AWS API emulator) on a free loopback port, for tests of the AWS
 * adapters. moto comes from scripts/ensure-moto.sh (into .venv); a test that needs it fails
 * loudly when it cannot be had, never skips.
 */

import { spawn } from 'node:child_process';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { isRunning } from './broker-process.js';
import { ensureTool } from './ensure-tool.js';
import { findFreePort } from './loopback.js';

const PROJECT_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const START_TIMEOUT_MS = 30_000;
const STOP_GRACE_MS = 5_000;
/** A port found free can be taken before moto binds it; try a few times. */
const START_ATTEMPTS = 3;

export interface MotoServer {
  /** e.g. `http://127.0.0.1:41234`; use as the SDK client's `endpoint`. */
  endpoint: string;
  /** SIGTERM, then SIGKILL after a grace period; resolves once the process is gone. */
  stop(): Promise<void>;
  /** SIGKILL, synchronously; for exit hooks. */
  kill(): void;
}

/**
 * An SDK client of the moto server at `endpoint` (or a proxy in front of it), in us-east-1 with
 * the dummy credentials awsStoreEnv gives brokers: what a test reads behind the brokers' backs.
 */
export function motoSecretsManager(endpoint: string, maxAttempts = 2): SecretsManagerClient {
  return new SecretsManagerClient({
    region: 'us-east-1',
    endpoint,
    credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
    maxAttempts,
  });
}

export async function startMotoServer(): Promise<MotoServer> {
  const motoServer = ensureTool({
    name: 'moto',
    script: 'scripts/ensure-moto.sh',
    binary: '.venv/bin/moto_server',
  });
  let lastError: unknown;
  for (let attempt = 0; attempt < START_ATTEMPTS; attempt += 1) {
    try {
      return await startOnce(motoServer, await findFreePort());
    } catch (error) {
      lastError = error;
    }
  }
  throw lastError instanceof Error ? lastError : new Error('moto server did not start');
}

/** Resets every moto backend (all regions): each test can start from an empty account. */
export async function resetMoto(endpoint: string): Promise<void> {
  const response = await fetch(`${endpoint}/moto-api/reset`, { method: 'POST' });
  await response.arrayBuffer();
  if (!response.ok) throw new Error(`moto reset failed with HTTP ${response.status}`);
}

async function startOnce(motoServer: string, port: number): Promise<MotoServer> {
  const endpoint = `http://127.0.0.1:${port}`;
  const child = spawn(motoServer, ['-H', '127.0.0.1', '-p', String(port)], {
    cwd: PROJECT_ROOT,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    // Keep the tail only: moto logs every request.
    stderr = `${stderr}${chunk}`.slice(-4_000);
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let spawnError: Error | undefined;
  child.once('error', (error) => (spawnError = error));

  const kill = (): void => {
    if (isRunning(child)) child.kill('SIGKILL');
  };
  // A test process that dies without stop() must not leave moto behind.
  process.once('exit', kill);

  const stop = async (): Promise<void> => {
    process.removeListener('exit', kill);
    if (isRunning(child)) {
      child.kill('SIGTERM');
      const timer = new AbortController();
      const graceful = await Promise.race([
        exited.then(() => true),
        delay(STOP_GRACE_MS, false, { signal: timer.signal }).catch(() => false),
      ]);
      timer.abort();
      if (!graceful) {
        kill();
        await exited;
      }
    }
  };

  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    if (spawnError !== undefined || !isRunning(child)) {
      await stop();
      const why = spawnError?.message ?? `exited with ${child.exitCode ?? child.signalCode}`;
      throw new Error(`moto_server on port ${port} ${why}: ${stderr.trim()}`);
    }
    if (await answers(endpoint)) return { endpoint, stop, kill };
    if (Date.now() > deadline) {
      await stop();
      throw new Error(
        `moto_server on port ${port} did not answer within ${START_TIMEOUT_MS} ms: ${stderr.trim()}`,
      );
    }
    await delay(100);
  }
}

async function answers(endpoint: string): Promise<boolean> {
  try {
    const response = await fetch(`${endpoint}/moto-api/`, { signal: AbortSignal.timeout(1_000) });
    await response.arrayBuffer();
    return true;
  } catch {
    return false;
  }
}
