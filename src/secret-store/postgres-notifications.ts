import pg from 'pg';
import type { Logger } from 'pino';
import { errorMessage } from '../errors.js';
import type { RecordChange } from './secret-store.js';
import { CONNECTION_NAME_PATTERN } from './store-rules.js';

/** The channel every write notifies in the same transaction (PostgreSQL docs, NOTIFY). */
export const CHANGE_CHANNEL = 'connection_broker_changes';

const RECONNECT_MIN_MS = 250;
const RECONNECT_MAX_MS = 10_000;

/**
 * `name version` for a write, `name` alone for a deletion. Anything else on the channel (another
 * program, a hand-typed NOTIFY) is ignored: notifications only ever drop cache entries, and a
 * malformed one must not become an exception.
 */
export function parseChange(payload: string | undefined): RecordChange | undefined {
  if (payload === undefined || payload.length > 100) return undefined;
  const [name, version, extra] = payload.split(' ');
  if (name === undefined || extra !== undefined || !CONNECTION_NAME_PATTERN.test(name)) {
    return undefined;
  }
  if (version === undefined) return { name };
  return /^[1-9][0-9]{0,15}$/.test(version) ? { name, version } : undefined;
}

export interface ChangeListenerOptions {
  clientConfig: pg.ClientConfig;
  logger: Logger;
  onChange: (change: RecordChange) => void;
  /** The connection was lost and is back: changes in between are unknown. */
  onResync: () => void;
}

/**
 * One dedicated connection that LISTENs for changes; when it drops, it reconnects with backoff
 * and asks for a full revalidation, since notifications sent meanwhile are lost.
 */
export class ChangeListener {
  private client: pg.Client | undefined;
  private stopped = false;
  private attempt = 0;
  private timer: NodeJS.Timeout | undefined;

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
    const client = this.client;
    this.client = undefined;
    await client?.end().catch(() => undefined);
  }

  private async connect(afterLoss: boolean): Promise<void> {
    if (this.stopped) return;
    const client = new pg.Client(this.options.clientConfig);
    // Errors arrive as events on an idle connection: without a listener they would crash the
    // process.
    client.on('error', (error) => this.lost(client, error));
    client.on('end', () => this.lost(client, undefined));
    client.on('notification', (message) => {
      if (message.channel !== CHANGE_CHANNEL) return;
      const change = parseChange(message.payload);
      if (change !== undefined) this.options.onChange(change);
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
    if (afterLoss) this.options.onResync();
  }

  private lost(client: pg.Client, error: unknown): void {
    if (this.stopped || (this.client !== undefined && this.client !== client)) return;
    if (this.timer !== undefined && this.client === undefined) return;
    this.client = undefined;
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
