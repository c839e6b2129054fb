import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { ConnectionWork, workKeys } from './connection-work.js';

/** A promise the test settles by hand, so an operation stays "in flight" until told otherwise. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void; // assigned by the Promise executor, which runs at once
  const promise = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

/**
 * Lets every queued promise callback run: one turn of the event loop, no timer, so what has
 * not started by then is waiting on something (the previous run), not on time.
 */
function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

describe('ConnectionWork', () => {
  it('when writes to one connection are queued, then they run one after another while another connection runs in parallel', async () => {
    const work = new ConnectionWork<number>();
    const started: string[] = [];
    const first = gate();
    const other = gate();
    const run = (label: string, until: Promise<void>) => async () => {
      started.push(label);
      await until;
      return label;
    };

    const a1 = work.serialized('a', run('a1', first.promise));
    const a2 = work.serialized('a', run('a2', Promise.resolve()));
    const b1 = work.serialized('b', run('b1', other.promise));
    await settle();

    // b1 does not wait for a1; a2 does.
    assert.deepEqual(started, ['a1', 'b1']);
    first.open();
    assert.equal(await a1, 'a1');
    assert.equal(await a2, 'a2');
    assert.deepEqual(started, ['a1', 'b1', 'a2']);
    other.open();
    assert.equal(await b1, 'b1');
  });

  it('when a write to a connection fails, then the next write to it still runs', async () => {
    const work = new ConnectionWork<number>();
    const failing = work.serialized('a', () => Promise.reject(new Error('store down')));
    const next = work.serialized('a', () => Promise.resolve('written'));

    await assert.rejects(failing, /store down/);
    assert.equal(await next, 'written');
  });

  it('when callers share a key while its run is in flight, then they all join the one execution', async () => {
    const work = new ConnectionWork<number>();
    const release = gate();
    let executions = 0;
    const operation = async (): Promise<number> => {
      executions += 1;
      await release.promise;
      return executions;
    };

    const callers = Array.from({ length: 10 }, () =>
      work.shared(workKeys.refresh('a', 1), operation),
    );
    await settle();
    assert.equal(executions, 1);
    release.open();

    assert.deepEqual(
      await Promise.all(callers),
      Array.from({ length: 10 }, () => 1),
    );
    assert.equal(executions, 1);
  });

  it('when the run of a key has settled, then the next caller of that key runs it again', async () => {
    const work = new ConnectionWork<number>();
    let executions = 0;
    const operation = (): Promise<number> => Promise.resolve((executions += 1));

    assert.equal(await work.shared(workKeys.refresh('a', 1), operation), 1);
    assert.equal(await work.shared(workKeys.refresh('a', 1), operation), 2);
    assert.equal(executions, 2);
  });

  it('when keys of one connection differ, then each runs once, one after another', async () => {
    const work = new ConnectionWork<number>();
    const release = gate();
    const started: string[] = [];

    const refresh = work.shared(workKeys.refresh('a', 1), async () => {
      started.push('refresh');
      await release.promise;
      return 1;
    });
    const marked = work.shared(workKeys.markRejected('a', 1), () => {
      started.push('markRejected');
      return Promise.resolve(2);
    });
    await settle();

    // A different key is not joined to the refresh, but it is one of the connection's writes.
    assert.deepEqual(started, ['refresh']);
    release.open();
    assert.deepEqual(await Promise.all([refresh, marked]), [1, 2]);
    assert.deepEqual(started, ['refresh', 'markRejected']);
  });

  it('when shared work is asked for while a serialized write of the connection runs, then it starts after that write', async () => {
    const work = new ConnectionWork<number>();
    const write = gate();
    const events: string[] = [];

    const update = work.serialized('a', async () => {
      events.push('update started');
      await write.promise;
      events.push('update finished');
    });
    const authorize = work.shared(workKeys.authorize('a'), () => {
      events.push('authorize');
      return Promise.resolve(7);
    });
    await settle();
    assert.deepEqual(events, ['update started']);

    write.open();
    await update;
    assert.equal(await authorize, 7);
    assert.deepEqual(events, ['update started', 'update finished', 'authorize']);
  });

  it('when a shared run fails, then every joiner gets the error and the next run of the key starts afresh', async () => {
    const work = new ConnectionWork<number>();
    const release = gate();
    let executions = 0;
    const failing = async (): Promise<number> => {
      executions += 1;
      await release.promise;
      throw new Error('token endpoint unreachable');
    };

    const joiners = Array.from({ length: 5 }, () => work.shared(workKeys.refresh('a', 1), failing));
    await settle();
    release.open();
    const outcomes = await Promise.allSettled(joiners);

    assert.equal(executions, 1);
    for (const outcome of outcomes) {
      assert.equal(outcome.status, 'rejected');
      assert.match(String(outcome.status === 'rejected' && outcome.reason), /unreachable/);
    }
    const next = await work.shared(workKeys.refresh('a', 1), () => Promise.resolve(42));
    assert.equal(next, 42);
  });

  it('when idle is awaited, then it resolves only after the shared work in flight has settled', async () => {
    const work = new ConnectionWork<number>();
    const release = gate();
    let finished = false;
    const failing = work
      .shared(workKeys.authorize('a'), async () => {
        await release.promise;
        finished = true;
        throw new Error('rejected');
      })
      .catch(() => undefined);

    let idle = false;
    const waiting = work.idle().then(() => {
      idle = true;
    });
    await settle();
    assert.equal(idle, false);

    release.open();
    await waiting;
    // A failed run counts as settled: idle does not reject.
    assert.equal(finished, true);
    await failing;
  });
});
