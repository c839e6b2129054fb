/**
 * The one bounded polling loop of the tests: every wait for something another party does (a
 * broker process, a fleet replica, a loopback server) goes through it.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { inspect } from 'node:util';

export interface WaitForOptions {
  timeoutMs: number;
  /** Pause between two calls of the predicate; default 100 ms. */
  intervalMs?: number;
  /** Added to the timeout error, e.g. what was last observed. */
  message?: string | (() => string);
}

/**
 * Calls `predicate` until it answers true, at most until `timeoutMs` has passed (a predicate that
 * throws counts as false; its last error is in the timeout error). Each call of the predicate
 * must bound its own I/O. Answers the milliseconds it took.
 */
export async function waitFor(
  predicate: () => boolean | Promise<boolean>,
  options: WaitForOptions,
): Promise<number> {
  const intervalMs = options.intervalMs ?? 100;
  const started = Date.now();
  const deadline = started + options.timeoutMs;
  let lastError: unknown;
  let calls = 0;
  for (;;) {
    calls += 1;
    try {
      if (await predicate()) return Date.now() - started;
      lastError = undefined;
    } catch (error) {
      lastError = error;
    }
    const remaining = deadline - Date.now();
    if (remaining <= 0) break;
    await delay(Math.min(intervalMs, remaining));
  }
  const message = typeof options.message === 'function' ? options.message() : options.message;
  const parts = [`not true within ${options.timeoutMs} ms (${calls} calls)`];
  if (message !== undefined) parts.push(message);
  if (lastError !== undefined) {
    parts.push(
      `last error: ${lastError instanceof Error ? lastError.message : inspect(lastError)}`,
    );
  }
  throw new Error(parts.join('; '));
}
