/**
 * `broker keys status` and `broker keys rotate` against a real broker process whose master key
 * ring comes from BROKER_MASTER_KEY_FILE: the rotation runbook, end to end.
 */

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createBrokerClient, unwrap } from '../../src/client/index.js';
import type { MasterKey } from '../../src/secret-store/master-key.js';
import { startBrokerProcess, type BrokerProcess } from '../support/broker-process.js';
import { newMasterKey, writeKeyRing } from '../support/master-keys.js';
import { newApiKey } from '../support/policy-file.js';
import { explain, runCli, writePolicy } from './cli-process.js';

const BOUNDED = { timeout: 60_000 } as const;

describe('broker keys (CLI against a real broker with a key file)', () => {
  const opsKey = newApiKey();
  const readerKey = newApiKey();
  const oldKey = newMasterKey();
  const newerKey = newMasterKey();
  let dir: string;
  let keyFile: string;
  let broker: BrokerProcess;
  let env: Record<string, string>;

  const writeRing = (keys: MasterKey[]): Promise<void> => writeKeyRing(keyFile, keys);
  const allKeysBase64 = (): string[] => [oldKey, newerKey].map((key) => key.key.toString('base64'));

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'broker-cli-keys-'));
    keyFile = path.join(dir, 'master.keys');
    await writeRing([oldKey]);
    const policyFile = path.join(dir, 'policy.json');
    await writePolicy(policyFile, { ops: opsKey, reader: readerKey });
    broker = await startBrokerProcess({
      BROKER_POLICY_FILE: policyFile,
      BROKER_MASTER_KEY_FILE: keyFile,
    });
    env = { BROKER_URL: broker.url, BROKER_API_KEY: opsKey };
    const client = createBrokerClient({ baseUrl: broker.url, apiKey: opsKey });
    for (const name of ['rotate-a', 'rotate-b']) {
      unwrap(
        await client.POST('/v1/connections', {
          body: {
            Name: name,
            AuthorizationType: 'API_KEY',
            AuthParameters: { ApiKeyAuthParameters: { ApiKeyName: 'k', ApiKeyValue: `v-${name}` } },
          },
        }),
      );
    }
  });

  after(async () => {
    await broker?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it(
    'when the ring has one key, then keys status shows it active with every record, as a table and as json',
    BOUNDED,
    async () => {
      const table = await runCli(['keys', 'status'], { env });
      assert.deepEqual(
        table,
        {
          code: 0,
          stdout: [
            'Store:       file',
            `Active key:  ${oldKey.id}`,
            '',
            'KEY ID            ROLE    RECORDS',
            `${oldKey.id}  active  2`,
            '',
          ].join('\n'),
          stderr: '',
        },
        explain(table),
      );
      const json = await runCli(['keys', 'status', '-o', 'json'], { env });
      assert.deepEqual(JSON.parse(json.stdout), {
        Store: 'file',
        ActiveKeyId: oldKey.id,
        KeyIds: [oldKey.id],
        RecordsByKeyId: { [oldKey.id]: 2 },
      });
    },
  );

  it(
    'when a new key is put first in the key file, then keys rotate re-encrypts every record under it, and after the old key leaves the file a second rotate drops it',
    BOUNDED,
    async () => {
      await writeRing([newerKey, oldKey]);
      const rotated = await runCli(['keys', 'rotate'], { env });
      // The broker also applies a changed key file by itself (polled every 2 s), so it may have
      // re-encrypted the records before this call: then the call finds none left to rewrite.
      const [firstLine = '', ...ring] = rotated.stdout.split('\n');
      assert.match(
        firstLine,
        new RegExp(
          `^Re-encrypted [02] records under ${newerKey.id}( \\(\\d+ already under it\\))?\\.$`,
        ),
      );
      assert.deepEqual(
        { ...rotated, stdout: ring.join('\n') },
        {
          code: 0,
          stdout: [
            '',
            'Store:       file',
            `Active key:  ${newerKey.id}`,
            '',
            'KEY ID            ROLE          RECORDS',
            `${newerKey.id}  active        2`,
            `${oldKey.id}  decrypt only  0`,
            '',
          ].join('\n'),
          stderr: '',
        },
        explain(rotated),
      );

      await writeRing([newerKey]);
      const dropped = await runCli(['keys', 'rotate', '--output', 'json'], { env });
      assert.equal(dropped.code, 0, explain(dropped));
      assert.deepEqual(JSON.parse(dropped.stdout), {
        Store: 'file',
        ActiveKeyId: newerKey.id,
        KeyIds: [newerKey.id],
        RecordsByKeyId: { [newerKey.id]: 2 },
        Reencrypted: 0,
      });
      for (const output of [rotated.stdout, dropped.stdout]) {
        for (const key of allKeysBase64()) assert.ok(!output.includes(key), 'no key material');
      }
    },
  );

  it(
    'when the key file drops the key that encrypts the records, then keys rotate exits 1 with the InvalidStateException and the ring stays',
    BOUNDED,
    async () => {
      await writeRing([newMasterKey()]);
      const refused = await runCli(['keys', 'rotate'], { env });
      assert.equal(refused.code, 1, explain(refused));
      assert.equal(refused.stdout, '');
      assert.match(
        refused.stderr,
        new RegExp(
          `^broker: InvalidStateException: .*${newerKey.id} \\(2 records\\).*\\(HTTP 409, request [-0-9a-f]+\\)\\n$`,
        ),
      );
      const status = await runCli(['keys', 'status', '-o', 'json'], { env });
      assert.equal(JSON.parse(status.stdout).ActiveKeyId, newerKey.id);
      await writeRing([newerKey]);
    },
  );

  it(
    'when the caller may only look at connections, then keys status exits 1 with AccessDeniedException',
    BOUNDED,
    async () => {
      const denied = await runCli(['keys', 'status'], {
        env: { BROKER_URL: broker.url, BROKER_API_KEY: readerKey },
      });
      assert.equal(denied.code, 1, explain(denied));
      assert.match(denied.stderr, /^broker: AccessDeniedException: .*\(HTTP 403/);
    },
  );
});
