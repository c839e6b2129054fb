/**
 * Per-connection exponential backoff after a token endpoint was unreachable, so a broken
 * identity provider is not hammered by every caller (1 s, 2 s, 4 s … capped at 60 s).
 */
export class RefreshBackoff {
  private readonly failures = new Map<string, { count: number; nextAttemptAtMs: number }>();

  constructor(
    private readonly baseMs = 1000,
    private readonly maxMs = 60_000,
  ) {}

  mayAttempt(name: string, nowMs: number): boolean {
    const entry = this.failures.get(name);
    return entry === undefined || nowMs >= entry.nextAttemptAtMs;
  }

  recordFailure(name: string, nowMs: number): void {
    const count = (this.failures.get(name)?.count ?? 0) + 1;
    const delayMs = Math.min(this.baseMs * 2 ** (count - 1), this.maxMs);
    this.failures.set(name, { count, nextAttemptAtMs: nowMs + delayMs });
  }

  retryAfterSeconds(name: string, nowMs: number): number {
    const entry = this.failures.get(name);
    if (entry === undefined) return 1;
    return Math.max(1, Math.ceil((entry.nextAttemptAtMs - nowMs) / 1000));
  }

  clear(name: string): void {
    this.failures.delete(name);
  }
}
