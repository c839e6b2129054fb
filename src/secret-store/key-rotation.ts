/**
 * Master key rotation for a store sealed by the key ring while it serves: reload the ring, re-encrypt every
 * record under the newest key, report which keys still encrypt what.
 */

import { unwatchFile, watchFile, type Stats } from 'node:fs';
import type { Logger } from 'pino';

import { BrokerError, errorMessage, keyRotationStopped } from '../errors.js';
import type { KeyRingStatus } from './file-key-ring.js';
import type { MasterKey } from './master-key.js';

export type { KeyRingStatus };

/** Polling survives the symlink swaps by which Kubernetes updates mounted Secrets. */
const WATCH_INTERVAL_MS = 2_000;

export interface KeyRotationResult extends KeyRingStatus {
  reencrypted: number;
}

/** A store that seals records with the broker's key ring (the file and PostgreSQL stores). */
export interface KeyedStore {
  /** `file` or `postgres`: what DescribeKeys reports. */
  readonly kind: string;
  keyRing(): KeyRingStatus;
  /** Refuses a ring that drops a key records or writes in flight still use. */
  replaceKeys(keys: readonly MasterKey[]): void;
  /** Re-seals every record under the newest key; stops between records when aborted. */
  reencryptAll(signal?: AbortSignal): Promise<number>;
  /**
   * Counts again which keys seal what, when other writers (a fleet's replicas) may have
   * written since: what keyRing() reports and replaceKeys() checks must be current.
   */
  refreshKeyRing?(): Promise<void>;
}

export interface KeyRotationOptions {
  store: KeyedStore;
  /** Reads the ring again (the key file); undefined when the ring cannot change (environment). */
  loadKeys: (() => Promise<MasterKey[]>) | undefined;
  /** Watched for changes when the ring comes from a file. */
  keyFile: string | undefined;
  logger: Logger;
}

export class KeyRotation {
  private queue: Promise<unknown> = Promise.resolve();
  private watching = false;
  /** Aborted by close(): a re-encryption stops between records (the next rotation resumes it). */
  private readonly stopping = new AbortController();

  constructor(private readonly options: KeyRotationOptions) {}

  /** Whether the ring can change while the broker runs (it comes from a key file). */
  get reloadable(): boolean {
    return this.options.loadKeys !== undefined;
  }

  /** The store whose ring this is. */
  get storeKind(): string {
    return this.options.store.kind;
  }

  async status(): Promise<KeyRingStatus> {
    await this.options.store.refreshKeyRing?.();
    return this.options.store.keyRing();
  }

  /**
   * Rotations run one after another, so an older key file never replaces a newer ring. A ring
   * that cannot be read or drops a key in use is refused and the current ring stays.
   */
  rotate(): Promise<KeyRotationResult> {
    if (this.stopping.signal.aborted) return Promise.reject(keyRotationStopped());
    const next = this.queue.then(() => this.rotateNow());
    this.queue = next.catch(() => undefined);
    return next;
  }

  /** Rotates when the key file changes, logging the outcome (Kubernetes Secret updates). */
  watch(intervalMs = WATCH_INTERVAL_MS): void {
    const { keyFile } = this.options;
    if (keyFile === undefined || this.watching) return;
    this.watching = true;
    watchFile(keyFile, { interval: intervalMs, persistent: false }, (now: Stats, before: Stats) => {
      if (now.mtimeMs !== before.mtimeMs || now.size !== before.size || now.ino !== before.ino) {
        void this.rotateAndLog('key file changed');
      }
    });
  }

  /** For start-up, SIGHUP and file changes: failures are logged, never thrown. */
  async rotateAndLog(reason: string): Promise<void> {
    const { logger } = this.options;
    // A SIGHUP or a file change during shutdown: the next start applies the ring.
    if (this.stopping.signal.aborted) return;
    try {
      const result = await this.rotate();
      logger.info(
        {
          reason,
          activeKeyId: result.activeKeyId,
          keyIds: result.keyIds,
          reencrypted: result.reencrypted,
          recordsByKeyId: result.recordsByKeyId,
        },
        'master key ring applied: records re-encrypted under the newest key; keys with no records (recordsByKeyId) can leave the ring',
      );
    } catch (error) {
      logger.error(
        { reason, error: errorMessage(error) },
        'master key rotation refused or interrupted; the current ring stays in force',
      );
    }
  }

  /** Stops watching and interrupts a running re-encryption after its current record. */
  close(): Promise<unknown> {
    if (this.watching && this.options.keyFile !== undefined) unwatchFile(this.options.keyFile);
    this.watching = false;
    this.stopping.abort();
    return this.queue;
  }

  private async rotateNow(): Promise<KeyRotationResult> {
    const { store, loadKeys } = this.options;
    const { signal } = this.stopping;
    if (signal.aborted) throw keyRotationStopped();
    if (loadKeys !== undefined) {
      const ring = await loadRing(loadKeys);
      await store.refreshKeyRing?.();
      store.replaceKeys(ring);
    }
    const reencrypted = await store.reencryptAll(signal);
    const ring = store.keyRing();
    const isComplete = Object.keys(ring.recordsByKeyId).every((id) => id === ring.activeKeyId);
    if (signal.aborted && !isComplete) throw keyRotationStopped(reencrypted);
    return { ...ring, reencrypted };
  }
}

async function loadRing(loadKeys: () => Promise<MasterKey[]>): Promise<MasterKey[]> {
  try {
    return await loadKeys();
  } catch (error) {
    // The key parsers never echo key material, so their messages are safe to return.
    throw new BrokerError(
      'InvalidStateException',
      `The key ring could not be reloaded: ${errorMessage(error)}. The current ring stays in force.`,
      { cause: error },
    );
  }
}
