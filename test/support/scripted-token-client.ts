import type { OAuthAuth } from '../../src/connections/connection.js';
import type { TokenClient, TokenResult } from '../../src/connections/token-port.js';

/** What the next token request answers; `hold` keeps it pending until `release()`. */
export type ScriptedAnswer =
  | { outcome: 'issued'; accessToken?: string; expiresInMs?: number | null }
  | { outcome: 'rejected'; reason?: string }
  | { outcome: 'unavailable'; reason?: string };

/**
 * The token client port answered from a script, in process: what the unit tests of the token
 * lifecycle run against (the HTTP adapter has its own tests against loopback servers). Answers
 * are taken in order; the last one repeats. Tokens are `tok-1`, `tok-2`, … unless named.
 */
export class ScriptedTokenClient implements TokenClient {
  readonly requests: OAuthAuth[] = [];
  private readonly answers: ScriptedAnswer[];
  private held: Array<() => void> | undefined;
  private issued = 0;

  constructor(
    answers: ScriptedAnswer[] = [{ outcome: 'issued' }],
    private readonly now: () => number = Date.now,
  ) {
    this.answers = [...answers];
  }

  /** Later answers replace the rest of the script. */
  script(...answers: ScriptedAnswer[]): void {
    this.answers.splice(0, this.answers.length, ...answers);
  }

  /** Requests made from now on wait until `release()`: what concurrency tests pile up behind. */
  hold(): void {
    this.held ??= [];
  }

  release(): void {
    const waiting = this.held ?? [];
    this.held = undefined;
    for (const resume of waiting) resume();
  }

  get count(): number {
    return this.requests.length;
  }

  async requestToken(oauth: OAuthAuth): Promise<TokenResult> {
    this.requests.push(structuredClone(oauth));
    const answer = this.answers.length > 1 ? this.answers.shift() : this.answers[0];
    if (this.held !== undefined) {
      const held = this.held;
      await new Promise<void>((resume) => held.push(resume));
    }
    const durationMs = 1;
    switch (answer?.outcome ?? 'issued') {
      case 'rejected':
        return {
          outcome: 'rejected',
          reason: (answer?.outcome === 'rejected' && answer.reason) || 'invalid_client',
          durationMs,
        };
      case 'unavailable':
        return {
          outcome: 'unavailable',
          reason: (answer?.outcome === 'unavailable' && answer.reason) || 'connection refused',
          durationMs,
        };
      case 'issued': {
        this.issued += 1;
        const issued = answer?.outcome === 'issued' ? answer : undefined;
        const obtainedAtMs = this.now();
        const expiresInMs = issued?.expiresInMs === undefined ? 3_600_000 : issued.expiresInMs;
        return {
          outcome: 'issued',
          token: {
            accessToken: issued?.accessToken ?? `tok-${this.issued}`,
            tokenType: 'Bearer',
            obtainedAtMs,
            ...(expiresInMs !== null && { expiresAtMs: obtainedAtMs + expiresInMs }),
          },
          durationMs,
        };
      }
    }
  }
}
