import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { listOperations, loadOpenApiDocument } from '../../src/http/openapi-document.js';
import { startBroker, type Harness } from '../support/broker-harness.js';
import { assertMatchesSpec } from '../support/openapi-contract.js';

/** Regression tests for what schemathesis (test/contract/schemathesis.test.ts) found. */

function documentedStatuses(operationId: string): string[] {
  const found = listOperations(loadOpenApiDocument()).find(
    (o) => o.operation.operationId === operationId,
  );
  assert.ok(found, `openapi.yaml has no operation ${operationId}`);
  return Object.keys(found.operation.responses);
}

describe('contract regressions', () => {
  let h: Harness;
  before(async () => {
    h = await startBroker({ env: { BROKER_BODY_LIMIT_BYTES: '1024' } });
  });
  after(async () => {
    await h.close();
  });

  it('when a documented path is called with an undocumented method, then 405 with Allow, not 404', async () => {
    const res = await h.request.put('/v1/connections/stripe');
    assert.equal(res.status, 405);
    assert.equal(res.headers['allow'], 'DELETE, GET, HEAD, PATCH');
    assert.equal(res.headers['content-type'], 'application/problem+json');
    assert.deepEqual(res.body, {
      type: 'urn:connection-broker:problem:MethodNotAllowedException',
      title: 'Method not allowed',
      status: 405,
      detail: 'PUT is not allowed on /v1/connections/stripe; use DELETE, GET, HEAD, PATCH.',
      code: 'MethodNotAllowedException',
      requestId: res.headers['x-request-id'],
    });
  });

  it('when a public probe is called with an undocumented method, then 405 with Allow', async () => {
    const res = await h.request.post('/healthz');
    assert.equal(res.status, 405);
    assert.equal(res.headers['allow'], 'GET, HEAD');
  });

  it('when a path is not documented at all, then still 404 ResourceNotFoundException', async () => {
    const res = await h.request.put('/v1/nothing-here');
    assert.equal(res.status, 404);
    assert.equal(res.body.code, 'ResourceNotFoundException');
    assert.equal(res.headers['allow'], undefined);
  });

  it('when a body exceeds BROKER_BODY_LIMIT_BYTES, then 413 as openapi.yaml documents it', async () => {
    const res = await h.request
      .post('/v1/connections')
      .set('content-type', 'application/json')
      .send(JSON.stringify({ Name: 'x', Description: 'd'.repeat(2048) }));
    assert.equal(res.status, 413);
    assertMatchesSpec('CreateConnection', res);
    for (const operationId of [
      'CreateConnection',
      'UpdateConnection',
      'RefreshAuthorization',
      'PrepareHttpTask',
      'InvokeHttpTask',
    ]) {
      assert.ok(documentedStatuses(operationId).includes('413'), `${operationId} documents 413`);
    }
  });

  it('when the request line exceeds Node’s header limit, then 431 as openapi.yaml documents it', async () => {
    // 1,600 four-byte characters, percent-encoded: 19 KB, within the name's maxLength.
    const name = encodeURIComponent('\u{10FFFF}'.repeat(1600));
    const res = await h.request.get(`/v1/connections/${name}`);
    assert.equal(res.status, 431);
    assert.ok(documentedStatuses('DescribeConnection').includes('431'));
    assert.ok(documentedStatuses('ListConnections').includes('431'));
  });
});
