import pg from 'pg';
import type { Logger } from 'pino';
import { errorMessage } from '../errors.js';
import type { RecordChange } from './secret-store.js';
import { CONNECTION_NAME_PATTERN, RECORD_VERSION_PATTERN } from './store-rules.js';

/** The channel every write notifies in the same transaction (PostgreSQL docs, NOTIFY). */
export const CHANGE_CHANNEL = 'connection_broker_changes';

const RECONNECT_MIN_MS = 250;
const RECONNECT_MAX_MS = 10_000;
/** A connection that died silently (a failover, a NAT drop) is found within this. */
const HEARTBEAT_MS = 10_000;
const HEARTBEAT_TIMEOUT_MS = 5_000;
/** Names confirmed per query; more pending than this and a full sweep is cheaper. */
const CONFIRM_BATCH = 500;
const MAX_PENDING = 5_000;

/**
 * `name version` for a write, `name` alone for a deletion. Anything else on the channel is
 * ignored: a notification is only a hint (see ChangeListener), and a malformed one must not
 * become an exception.
 */
export function parseChange(payload: string | undefined): RecordChange | undefined {
  if (payload === undefined || payload.length > 100) return undefined;
  const [name, version, extra] = payload.split(' ');
  if (name === undefined || extra !== undefined || !CONNECTION_NAME_PATTERN.test(name)) {
    return undefined;
  }
  if (version === undefined) return { name };
  return RECORD_VERSION_PATTERN.test(version) ? { name, version } : undefined;
}

export interface ChangeListenerOptions {
  clientConfig: pg.ClientConfig;
  logger: Logger;
  /**
   * Each named record's current version in the database (absent: deleted). Any role that may
   * connect can NOTIFY the channel, so what a notification says is confirmed here before a
   * cache entry is dropped: a forged one costs one batched query, never an eviction.
   */
  confirm: (names: readonly string[]) => Promise<ReadonlyMap<string, string>>;
  onChange: (change: RecordChange) => void;
  /** The connection was lost and is back, or too much arrived: changes may be unknown. */
  onResync: () => void;
}

/**
 * One dedicated connection that LISTENs for changes; when it drops (or stops answering the
 * heartbeat), it reconnects with backoff and asks for a full revalidation, since notifications
 * sent meanwhile are lost.
 */
export class ChangeListener {
  private client: pg.Client | undefined;
  private stopped = false;
  private attempt = 0;
  private timer: NodeJS.Timeout | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  /** Names notified and not yet confirmed, in arrival order; a Set bounds duplicates. */
  private readonly pending = new Set<string>();
  private confirming = false;

  constructor(private readonly options: ChangeListenerOptions) {}

  /**
   * Resolves once the first attempt is over: listening, or failed and retrying in the background
   * (the store opens either way; the sweep covers what is missed meanwhile).
   */
  start(): Promise<void> {
    return this.connect(false);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    clearInterval(this.heartbeat);
    const client = this.client;
    this.client = undefined;
    await client?.end().catch(() => undefined);
  }

  private async connect(afterLoss: boolean): Promise<void> {
    if (this.stopped) return;
    const client = new pg.Client({ ...this.options.clientConfig, keepAlive: true });
    // Errors arrive as events on an idle connection: without a listener they would crash the
    // process.
    client.on('error', (error) => this.lost(client, error));
    client.on('end', () => this.lost(client, undefined));
    client.on('notification', (message) => {
      if (message.channel !== CHANGE_CHANNEL) return;
      const change = parseChange(message.payload);
      if (change !== undefined) this.hint(change.name);
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${CHANGE_CHANNEL}`);
    } catch (error) {
      this.lost(client, error);
      return;
    }
    if (this.stopped) {
      await client.end().catch(() => undefined);
      return;
    }
    this.client = client;
    this.attempt = 0;
    clearInterval(this.heartbeat);
    this.heartbeat = setInterval(() => void this.beat(client), HEARTBEAT_MS);
    this.heartbeat.unref();
    if (afterLoss) this.options.onResync();
  }

  private async beat(client: pg.Client): Promise<void> {
    let timeout: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        client.query('SELECT 1'),
        new Promise((_, reject) => {
          timeout = setTimeout(
            () => reject(new Error('heartbeat timed out')),
            HEARTBEAT_TIMEOUT_MS,
          );
        }),
      ]);
    } catch (error) {
      this.lost(client, error);
    } finally {
      clearTimeout(timeout);
    }
  }

  private hint(name: string): void {
    if (this.pending.size >= MAX_PENDING) {
      // A flood (or a burst of real writes): one sweep instead of thousands of reads.
      this.pending.clear();
      this.options.onResync();
      return;
    }
    this.pending.add(name);
    if (!this.confirming) {
      this.confirming = true;
      setImmediate(() => void this.confirmPending());
    }
  }

  private async confirmPending(): Promise<void> {
    try {
      while (this.pending.size > 0 && !this.stopped) {
        const names = [...this.pending].slice(0, CONFIRM_BATCH);
        for (const name of names) this.pending.delete(name);
        const versions = await this.confirmed(names);
        for (const name of names) {
          const version = versions.get(name);
          this.options.onChange(version === undefined ? { name } : { name, version });
        }
      }
    } catch (error) {
      this.pending.clear();
      this.options.logger.warn(
        { error: errorMessage(error) },
        'could not confirm PostgreSQL change notifications; revalidating everything',
      );
      this.options.onResync();
    } finally {
      this.confirming = false;
    }
  }

  /** One retry: the first query after the database came back may meet a dead pooled socket. */
  private async confirmed(names: readonly string[]): Promise<ReadonlyMap<string, string>> {
    try {
      return await this.options.confirm(names);
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 100));
      return this.options.confirm(names);
    }
  }

  private lost(client: pg.Client, error: unknown): void {
    if (this.stopped || (this.client !== undefined && this.client !== client)) return;
    if (this.timer !== undefined && this.client === undefined) return;
    this.client = undefined;
    clearInterval(this.heartbeat);
    client.removeAllListeners('end');
    void client.end().catch(() => undefined);
    const delayMs = Math.min(RECONNECT_MAX_MS, RECONNECT_MIN_MS * 2 ** this.attempt);
    this.attempt += 1;
    this.options.logger.warn(
      { error: error === undefined ? 'connection ended' : errorMessage(error), retryInMs: delayMs },
      'lost the PostgreSQL change notifications; reconnecting (the periodic sweep covers the gap)',
    );
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.connect(true);
    }, delayMs);
    this.timer.unref();
  }
}
