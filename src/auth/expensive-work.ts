import { BrokerError } from '../errors.js';
import { PrincipalRateLimiter } from './rate-limiter.js';

/**
 * Work whose every call reaches a token endpoint or an upstream API (create, update and HTTP Task
 * invoke, on REST and on the wire protocol) costs far more than a cached credential:
 * a socket held up to 60 s, buffers up to the response limits. Per principal it takes from a
 * smaller token bucket, and at most `maxInFlight` such requests run at once, so no caller can
 * turn the broker into a load generator or hold every socket with slow upstreams.
 */
export class ExpensiveWorkGate {
  private readonly limiter: PrincipalRateLimiter;
  private readonly inFlight = new Map<string, number>();

  constructor(
    ratePerSecond: number,
    burst: number,
    private readonly maxInFlight: number,
    now?: () => number,
  ) {
    this.limiter = new PrincipalRateLimiter(ratePerSecond, burst, now);
  }

  /** A release function to call once when the work ends; throws ThrottlingException when over. */
  admit(principal: string): () => void {
    const running = this.inFlight.get(principal) ?? 0;
    if (this.maxInFlight > 0 && running >= this.maxInFlight) {
      throw new BrokerError(
        'ThrottlingException',
        `${principal} already has ${running} requests that call token endpoints or APIs in flight (BROKER_EXPENSIVE_MAX_IN_FLIGHT); wait for some to finish.`,
        { retryAfterSeconds: 1 },
      );
    }
    const wait = this.limiter.take(principal);
    if (wait !== undefined) {
      throw new BrokerError(
        'ThrottlingException',
        `Rate exceeded for ${principal} on requests that call token endpoints or APIs (BROKER_EXPENSIVE_RATE_LIMIT_PER_SECOND).`,
        { retryAfterSeconds: wait },
      );
    }
    this.inFlight.set(principal, running + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.inFlight.get(principal) ?? 1) - 1;
      // Entries exist only while work runs: the map is bounded by the callers active now.
      if (left <= 0) this.inFlight.delete(principal);
      else this.inFlight.set(principal, left);
    };
  }
}
