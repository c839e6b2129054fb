import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import supertest from 'supertest';
import { createBroker, type Broker } from '../../src/broker.js';
import { loadConfig, type BrokerConfig } from '../../src/config.js';
import { createLogger } from '../../src/logger.js';
import {
  masterKeyFromBytes,
  readMasterKeyFile,
  type MasterKey,
} from '../../src/secret-store/master-key.js';
import type { SecretStore } from '../../src/secret-store/secret-store.js';

/** Every log line any harness wrote in this process, for the "no secret in logs" checks. */
export const allLogLines: string[] = [];

export interface Harness {
  broker: Broker;
  request: ReturnType<typeof supertest>;
  dataDir: string;
  masterKey: MasterKey;
  logs(): string[];
  /** Closes the broker, keeping the data directory (for restart tests). */
  stop(): Promise<void>;
  /** Stops and removes the data directory. */
  close(): Promise<void>;
}

export interface HarnessOptions {
  env?: Record<string, string>;
  dataDir?: string;
  masterKey?: MasterKey;
  /** A key ring, newest first; wins over masterKey. */
  masterKeys?: MasterKey[];
  now?: () => number;
  /** Instead of the file store in dataDir. */
  store?: SecretStore;
  /** The ring comes from this key file (as BROKER_MASTER_KEY_FILE): rotations re-read it. */
  keyFile?: string;
}

/** A real broker (file store in a temp dir, real token client) behind supertest. */
export async function startBroker(options: HarnessOptions = {}): Promise<Harness> {
  const dataDir = options.dataDir ?? (await mkdtemp(path.join(tmpdir(), 'broker-test-')));
  const masterKey = options.masterKey ?? masterKeyFromBytes(randomBytes(32));
  const config: Readonly<BrokerConfig> = loadConfig({
    BROKER_DATA_DIR: dataDir,
    BROKER_ALLOW_INSECURE_ENDPOINTS: 'true',
    BROKER_TOKEN_TIMEOUT_MS: '1500',
    LOG_LEVEL: 'debug',
    ...options.env,
  });
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      const text = chunk.toString('utf8');
      lines.push(text);
      allLogLines.push(text);
      callback();
    },
  });
  const broker = await createBroker({
    config,
    logger: createLogger(config.logLevel, sink),
    masterKeys:
      options.keyFile !== undefined
        ? await readMasterKeyFile(options.keyFile)
        : (options.masterKeys ?? [masterKey]),
    ...(options.keyFile !== undefined && {
      masterKeyFile: options.keyFile,
      reloadMasterKeys: () => readMasterKeyFile(options.keyFile as string),
    }),
    ...(options.now !== undefined && { now: options.now }),
    ...(options.store !== undefined && { store: options.store }),
  });
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await broker.close();
  };
  return {
    broker,
    request: supertest(broker.handler),
    dataDir,
    masterKey,
    logs: () => [...lines],
    stop,
    close: async () => {
      await stop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}
