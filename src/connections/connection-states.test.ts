import assert from 'node:assert/strict';
import { beforeEach, describe, it } from 'node:test';

import { ConnectionStates } from './connection-states.js';

describe('ConnectionStates', () => {
  let states: ConnectionStates;

  beforeEach(() => {
    states = new ConnectionStates();
  });

  describe('counts', () => {
    it('when nothing was observed, then counts is empty', () => {
      assert.deepEqual(states.counts(), new Map());
    });

    it('when connections are observed, then counts has one entry per state seen, without zeros', () => {
      states.observe('a', 'v1', 'AUTHORIZED', 0);
      states.observe('b', 'v1', 'AUTHORIZED', 0);
      states.observe('c', 'v1', 'DEAUTHORIZED', 0);
      assert.deepEqual(
        states.counts(),
        new Map([
          ['AUTHORIZED', 2],
          ['DEAUTHORIZED', 1],
        ]),
      );
    });

    it('when a caller mutates the counts it got, then the next counts are unaffected', () => {
      states.observe('a', 'v1', 'AUTHORIZED', 0);
      states.counts().set('AUTHORIZED', 99);
      assert.deepEqual(states.counts(), new Map([['AUTHORIZED', 1]]));
    });
  });

  describe('observe', () => {
    it('when a connection is observed again, then its latest state replaces the earlier one', () => {
      states.observe('a', 'v1', 'AUTHORIZING', 0);
      states.observe('a', 'v2', 'AUTHORIZED', 0);
      assert.deepEqual(states.counts(), new Map([['AUTHORIZED', 1]]));
      // The latest version is the one a listing is compared with.
      assert.deepEqual(states.reconcile(new Map([['a', 'v2']]), 1), []);
      assert.deepEqual(states.reconcile(new Map([['a', 'v1']]), 1), ['a']);
    });
  });

  describe('forget', () => {
    it('when a connection is forgotten, then it no longer counts', () => {
      states.observe('a', 'v1', 'AUTHORIZED', 0);
      states.observe('b', 'v1', 'DEAUTHORIZED', 0);
      states.forget('a');
      assert.deepEqual(states.counts(), new Map([['DEAUTHORIZED', 1]]));
      // Its version is forgotten too: a listing that has it again asks for a read.
      assert.deepEqual(
        states.reconcile(
          new Map([
            ['a', 'v1'],
            ['b', 'v1'],
          ]),
          1,
        ),
        ['a'],
      );
    });

    it('when an unknown name is forgotten, then nothing changes', () => {
      states.observe('a', 'v1', 'AUTHORIZED', 0);
      states.forget('never-seen');
      assert.deepEqual(states.counts(), new Map([['AUTHORIZED', 1]]));
    });
  });

  describe('reconcile', () => {
    it('when a listing is reconciled, then it forgets unlisted names and answers the new and changed ones in listing order', () => {
      states.observe('same', 'v1', 'AUTHORIZED', 0);
      states.observe('changed', 'v1', 'AUTHORIZED', 0);
      states.observe('gone', 'v1', 'DEAUTHORIZED', 0);

      const unseen = states.reconcile(
        new Map([
          ['new-b', 'v1'],
          ['changed', 'v2'],
          ['same', 'v1'],
          ['new-a', 'v1'],
        ]),
        1,
      );

      assert.deepEqual(unseen, ['new-b', 'changed', 'new-a']);
      // Changed names keep their last seen state until they are read again; new ones do not
      // count before they are read.
      assert.deepEqual(states.counts(), new Map([['AUTHORIZED', 2]]));
    });

    it('when the answered names are observed, then the same listing answers nothing', () => {
      const listing = new Map([
        ['a', 'v1'],
        ['b', 'v7'],
      ]);
      for (const name of states.reconcile(listing, 1)) {
        states.observe(name, listing.get(name)!, 'AUTHORIZED', 0);
      }
      assert.deepEqual(states.reconcile(listing, 1), []);
      assert.deepEqual(states.counts(), new Map([['AUTHORIZED', 2]]));
    });

    it('when the listing is empty, then everything is forgotten and nothing is answered', () => {
      states.observe('a', 'v1', 'AUTHORIZED', 0);
      states.observe('b', 'v1', 'DEAUTHORIZED', 0);
      assert.deepEqual(states.reconcile(new Map(), 1), []);
      assert.deepEqual(states.counts(), new Map());
    });

    it('when a name was observed after the listing started, then the listing neither forgets nor answers it', () => {
      states.observe('created-meanwhile', 'v1', 'AUTHORIZED', 5);
      states.observe('changed-meanwhile', 'v2', 'AUTHORIZED', 5);
      assert.deepEqual(states.reconcile(new Map([['changed-meanwhile', 'v1']]), 5), []);
      assert.deepEqual(states.counts(), new Map([['AUTHORIZED', 2]]));
    });

    it('when the caller consumes the answer, then the states are unaffected', () => {
      states.observe('a', 'v1', 'AUTHORIZED', 0);
      const unseen = states.reconcile(new Map([['a', 'v2']]), 1);
      // The store sweep pops names off the answer as it reads them.
      assert.equal(unseen.pop(), 'a');
      assert.deepEqual(states.reconcile(new Map([['a', 'v2']]), 1), ['a']);
      assert.deepEqual(states.counts(), new Map([['AUTHORIZED', 1]]));
    });
  });
});
