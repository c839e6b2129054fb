import { readFile } from 'node:fs/promises';
import { unwatchFile, watchFile, type Stats } from 'node:fs';
import type { Logger } from 'pino';
import { errorMessage } from '../errors.js';
import { Policy, PolicyError } from './policy.js';

/** Polling survives the symlink swaps by which Kubernetes updates mounted Secrets. */
const WATCH_INTERVAL_MS = 2_000;

/**
 * The policy file, reloaded when it changes or on demand (SIGHUP). A broken new version is
 * refused with a log line and the last good policy stays in force: a typo must not lock
 * everyone out, nor let everyone in.
 */
export class PolicySource {
  private watching = false;
  private queue: Promise<void> = Promise.resolve();

  private constructor(
    private readonly path: string,
    private readonly logger: Logger,
    private current: Policy,
  ) {}

  /** Fails when the file cannot be read or is not a valid policy: the broker must not start. */
  static async open(path: string, logger: Logger): Promise<PolicySource> {
    return new PolicySource(path, logger, await readPolicy(path));
  }

  get policy(): Policy {
    return this.current;
  }

  /** Reloads run one after another, so an older read never replaces a newer one. */
  reload(): Promise<boolean> {
    const next = this.queue.then(() => this.reloadNow());
    this.queue = next.then(() => undefined);
    return next;
  }

  private async reloadNow(): Promise<boolean> {
    try {
      this.current = await readPolicy(this.path);
      this.logger.info({ policyFile: this.path }, 'policy reloaded');
      return true;
    } catch (error) {
      this.logger.error(
        { policyFile: this.path, error: errorMessage(error) },
        'policy reload refused; the previous policy stays in force',
      );
      return false;
    }
  }

  watch(intervalMs = WATCH_INTERVAL_MS): void {
    if (this.watching) return;
    this.watching = true;
    watchFile(
      this.path,
      { interval: intervalMs, persistent: false },
      (now: Stats, before: Stats) => {
        if (now.mtimeMs !== before.mtimeMs || now.size !== before.size || now.ino !== before.ino) {
          void this.reload();
        }
      },
    );
  }

  close(): void {
    if (this.watching) unwatchFile(this.path);
    this.watching = false;
  }
}

async function readPolicy(path: string): Promise<Policy> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    const code = error instanceof Error && 'code' in error ? error.code : undefined;
    throw new PolicyError(
      `BROKER_POLICY_FILE (${path}) cannot be read: ${typeof code === 'string' ? code : 'error'}`,
    );
  }
  return Policy.parse(text, `BROKER_POLICY_FILE (${path})`);
}
