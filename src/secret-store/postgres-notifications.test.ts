import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { parseChange } from './postgres-notifications.js';

describe('PostgreSQL change payloads', () => {
  it('when a payload names a connection and a version, then it is a write; a name alone is a deletion', () => {
    assert.deepEqual(parseChange('orders-api 12'), { name: 'orders-api', version: '12' });
    assert.deepEqual(parseChange('orders-api'), { name: 'orders-api' });
  });

  it('when a payload is anything else, then it is ignored, never thrown', () => {
    for (const payload of [
      undefined,
      '',
      ' ',
      'a b c',
      '__proto__ 1',
      'name 0',
      'name -1',
      'name 1e3',
      'name 12345678901234567',
      'bad/name 1',
      'x'.repeat(101),
      'name\n1',
    ]) {
      const change = parseChange(payload);
      if (payload === '__proto__ 1') {
        // A valid connection name like any other: it is only ever a Map key.
        assert.deepEqual(change, { name: '__proto__', version: '1' });
      } else {
        assert.equal(change, undefined, JSON.stringify(payload));
      }
    }
  });
});
