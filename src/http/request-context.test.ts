import assert from 'node:assert/strict';
import { IncomingMessage, ServerResponse } from 'node:http';
import { Socket } from 'node:net';
import { describe, it } from 'node:test';
import { OPEN_PRINCIPAL } from '../auth/policy.js';
import {
  callerFor,
  decisionsFor,
  errorCodeFor,
  noteDecision,
  requestIdFor,
  setCaller,
  setErrorCode,
} from './request-context.js';

function response(headers: Record<string, string> = {}): ServerResponse {
  const req = new IncomingMessage(new Socket());
  req.headers = headers;
  return new ServerResponse(req);
}

describe('request context', () => {
  it('when nothing was recorded, then there is no caller, no decision and no error code', () => {
    const res = response();
    assert.equal(callerFor(res), undefined);
    assert.deepEqual(decisionsFor(res), []);
    assert.equal(errorCodeFor(res), undefined);
  });

  it('when the caller sent a safe X-Request-Id, then it is the request id, asked once or twice', () => {
    const res = response({ 'x-request-id': 'trace-1:abc' });
    assert.equal(requestIdFor(res), 'trace-1:abc');
    assert.equal(requestIdFor(res), 'trace-1:abc');
  });

  it('when the X-Request-Id is unsafe to echo, then a fresh id is made once and kept', () => {
    const res = response({ 'x-request-id': 'line\nbreak' });
    const id = requestIdFor(res);
    assert.match(id, /^[0-9a-f-]{36}$/);
    assert.equal(requestIdFor(res), id);
    assert.notEqual(requestIdFor(response()), id, 'each response has its own');
  });

  it('when the caller, decisions and error code are recorded, then they are read back in order, per response', () => {
    const res = response();
    const other = response();
    setCaller(res, { principal: OPEN_PRINCIPAL, via: 'open' });
    noteDecision(res, { action: 'RevealSecrets', connection: 'stripe' });
    noteDecision(res, { action: 'InvokeHttpTask', connection: 'stripe' });
    setErrorCode(res, 'AccessDeniedException');
    assert.equal(callerFor(res)?.via, 'open');
    assert.deepEqual(decisionsFor(res), [
      { action: 'RevealSecrets', connection: 'stripe' },
      { action: 'InvokeHttpTask', connection: 'stripe' },
    ]);
    assert.equal(errorCodeFor(res), 'AccessDeniedException');
    assert.equal(callerFor(other), undefined);
    assert.deepEqual(decisionsFor(other), []);
  });
});
