import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { MemorySecretStore } from '../secret-store/memory-secret-store.js';
import type { StoredRecord } from '../secret-store/secret-store.js';
import {
  ManualClock,
  oauthInput,
  serviceUnderTest,
} from '../../test/support/connection-service-fixture.js';

/**
 * A shared store with leases of its own whose next read of one name is held on its way back:
 * the record is read at once, delivered when the test says. That is a replica whose read of the
 * record is overtaken by another replica's refresh.
 */
class HeldReadStore extends MemorySecretStore {
  private heldRead: { name: string; delivered: Promise<void> } | undefined;

  /** Holds the next get(name); answers what lets it through. */
  holdNextRead(name: string): () => void {
    let deliver = (): void => undefined;
    const delivered = new Promise<void>((resolve) => (deliver = resolve));
    this.heldRead = { name, delivered };
    return deliver;
  }

  override async get(name: string): Promise<StoredRecord | undefined> {
    const held = this.heldRead;
    if (held?.name !== name) return super.get(name);
    this.heldRead = undefined;
    const record = await super.get(name);
    await held.delivered;
    return record;
  }
}

describe('refresh leases the store keeps', () => {
  it('when another replica refreshed and released its lease between a read and a claim, then the claim finds the work done and makes no token request', async () => {
    const clock = new ManualClock();
    const store = new HeldReadStore({ shared: true, leaseClock: clock.now });
    const a = serviceUnderTest({ store, clock });
    const c = serviceUnderTest({ store, clock });
    const created = await a.service.create(oauthInput('overtaken'));
    await c.service.getAuthorization('overtaken');

    // C's refresh reads the record (the reported generation) and its answer is held back ...
    const deliver = store.holdNextRead('overtaken');
    const onC = c.service.reportRejection('overtaken', 401, created.generation);
    await new Promise((resolve) => setTimeout(resolve, 20));
    // ... while A refreshes the same generation, saves the new token and releases its lease.
    const onA = await a.service.reportRejection('overtaken', 401, created.generation);
    assert.equal(onA.generation, created.generation + 1);
    assert.equal(a.tokens.count, 2, "A's create and refresh");

    deliver();
    const answer = await onC;
    assert.equal(c.tokens.count, 0, 'C requested a token for a generation already replaced');
    assert.equal(answer.generation, onA.generation);
    assert.deepEqual(
      await store.leases?.claim('overtaken', 'someone-else', onA.generation, 5_000),
      { granted: true },
      'C left no lease behind',
    );
  });
});
