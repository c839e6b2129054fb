/**
 * Per-principal token buckets: `ratePerSecond` sustained, `burst` at once. Synchronous on
 * purpose: the credential hot path decides without awaiting (the usual libraries, such as
 * rate-limiter-flexible, answer through promises). One bucket per principal name, so the
 * number of buckets is bounded by the policy.
 */
export class PrincipalRateLimiter {
  private readonly buckets = new Map<string, { tokens: number; updatedMs: number }>();

  constructor(
    private readonly ratePerSecond: number,
    private readonly burst: number,
    private readonly now: () => number = Date.now,
  ) {}

  get enabled(): boolean {
    return this.ratePerSecond > 0;
  }

  /** Undefined when the request may go ahead; otherwise the seconds to wait (Retry-After). */
  take(principal: string): number | undefined {
    if (!this.enabled) return undefined;
    const nowMs = this.now();
    const bucket = this.buckets.get(principal) ?? { tokens: this.burst, updatedMs: nowMs };
    bucket.tokens = Math.min(
      this.burst,
      bucket.tokens + ((nowMs - bucket.updatedMs) / 1000) * this.ratePerSecond,
    );
    bucket.updatedMs = nowMs;
    this.buckets.set(principal, bucket);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return undefined;
    }
    return Math.max(1, Math.ceil((1 - bucket.tokens) / this.ratePerSecond));
  }
}
