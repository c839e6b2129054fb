import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PrincipalRateLimiter } from './rate-limiter.js';

describe('PrincipalRateLimiter', () => {
  it('when a principal spends its burst, then it waits for tokens at the sustained rate, and others are unaffected', () => {
    let nowMs = 0;
    const limiter = new PrincipalRateLimiter(2, 3, () => nowMs);
    assert.deepEqual(
      [1, 2, 3, 4].map(() => limiter.take('a')),
      [undefined, undefined, undefined, 1],
    );
    assert.equal(limiter.take('b'), undefined, 'another principal has its own bucket');
    nowMs += 499;
    assert.equal(limiter.take('a'), 1, 'not yet a whole token');
    nowMs += 1;
    assert.equal(limiter.take('a'), undefined, 'one token after half a second at 2/s');
    nowMs += 10_000;
    assert.deepEqual(
      [1, 2, 3, 4].map(() => limiter.take('a')),
      [undefined, undefined, undefined, 1],
      'refills up to the burst, no further',
    );
  });

  it('when the rate is 0, then nothing is limited', () => {
    const limiter = new PrincipalRateLimiter(0, 1);
    assert.equal(limiter.enabled, false);
    for (let i = 0; i < 100; i += 1) assert.equal(limiter.take('a'), undefined);
  });

  it('when the rate is below one per second, then Retry-After covers the wait for a whole token', () => {
    let nowMs = 0;
    const limiter = new PrincipalRateLimiter(0.25, 1, () => nowMs);
    assert.equal(limiter.take('slow'), undefined);
    assert.equal(limiter.take('slow'), 4);
    nowMs += 4_000;
    assert.equal(limiter.take('slow'), undefined);
  });
});
