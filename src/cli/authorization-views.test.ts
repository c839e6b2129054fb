import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatAuthorization, maskAuthorization, maskValue } from './authorization-views.js';

const ARN =
  'arn:aws:events:us-east-1:000000000000:connection/stripe/7d8f0c5e-1b2a-4c3d-9e8f-0a1b2c3d4e5f';

describe('masked authorization values', () => {
  it('when a value is 12 characters or shorter, then only **** is shown; when longer, then **** and its last 4', () => {
    assert.equal(maskValue(''), '****');
    assert.equal(maskValue('Bearer tok-1'), '****');
    assert.equal(maskValue('Bearer tok-12'), '****k-12');
  });

  it('when a value ends in characters outside the BMP, then the mask counts and keeps whole characters', () => {
    assert.equal(maskValue('🔑'.repeat(12)), '****');
    assert.equal(maskValue(`${'x'.repeat(9)}🔑🔑🔑🔑`), '****🔑🔑🔑🔑');
  });

  it('when the answer is masked, then every map keeps its names and shape and a parameter named __proto__ stays a plain key', () => {
    const query = JSON.parse('{"__proto__":"query-secret-value"}') as Record<string, string>;
    const masked = maskAuthorization({
      ConnectionArn: ARN,
      AuthorizationType: 'API_KEY',
      Headers: { 'X-Api-Key': 'sk_live_0123456789abcdef', 'Stripe-Version': '2024-06-20' },
      QueryParameters: query,
      BodyParameters: {},
      TokenGeneration: 3,
    });
    assert.deepEqual(JSON.parse(JSON.stringify(masked)), {
      ConnectionArn: ARN,
      AuthorizationType: 'API_KEY',
      Headers: { 'X-Api-Key': '****cdef', 'Stripe-Version': '****' },
      QueryParameters: JSON.parse('{"__proto__":"****alue"}') as unknown,
      BodyParameters: {},
      TokenGeneration: 3,
    });
    assert.equal(Object.getPrototypeOf(masked.QueryParameters), Object.prototype);
  });

  it('when an authorization is formatted, then the fields come first and a value that could drive the terminal is escaped', () => {
    assert.equal(
      formatAuthorization({
        ConnectionArn: ARN,
        AuthorizationType: 'OAUTH_CLIENT_CREDENTIALS',
        Headers: { Authorization: 'Bearer \u001b[2J' },
        QueryParameters: {},
        BodyParameters: {},
        TokenGeneration: 2,
        TokenExpiresAt: '2026-11-22T11:12:09.123Z',
      }),
      [
        'Connection:        stripe',
        `ARN:               ${ARN}`,
        'Type:              OAUTH_CLIENT_CREDENTIALS',
        'Token generation:  2',
        'Token expires:     2026-11-22 11:12:09Z',
        '',
        'KIND    NAME           VALUE',
        'header  Authorization  Bearer \\u001b[2J',
        '',
      ].join('\n'),
    );
  });
});
