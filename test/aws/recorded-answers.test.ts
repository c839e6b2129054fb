/**
 * Where real EventBridge answers (LocalStack's AWS-validated recordings, eventbridge-semantics.md)
 * differ from a strict reading of the model: LastAuthorizedTime while AUTHORIZING, and an OAuth
 * HttpMethod or AuthorizationEndpoint that AWS accepts and then fails to authorize. Driven by the
 * AWS SDK against a real broker on loopback; REST keeps its stricter checks.
 */

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  CreateConnectionCommand,
  type CreateConnectionCommandInput,
  DescribeConnectionCommand,
  ListConnectionsCommand,
  UpdateConnectionCommand,
  type EventBridgeClient,
} from '@aws-sdk/client-eventbridge';
import { createTokenClient } from '../../src/oauth/token-client.js';
import {
  startScriptedTokenEndpoint,
  type ScriptedTokenEndpoint,
} from '../support/scripted-token-endpoint.js';
import {
  callWire,
  eventBridge,
  sdkError,
  startWireBroker,
  waitForState,
  type WireBroker,
} from './wire-support.js';

const CLIENT_SECRET = 'recorded-client-secret-Tq52';
const NOT_A_URL_REASON =
  "Authorization failed: AuthorizationEndpoint 'replace_this' is not an absolute https:// URL.";

/** The OAuth block of LocalStack's AWS-validated API destination test: AWS accepted it as is. */
const AWS_ACCEPTED_OAUTH = {
  AuthorizationEndpoint: 'replace_this',
  ClientParameters: { ClientID: 'id', ClientSecret: CLIENT_SECRET },
  HttpMethod: 'put',
  OAuthHttpParameters: {
    BodyParameters: [{ Key: 'oauthbody', Value: 'value1' }],
    HeaderParameters: [{ Key: 'oauthheader', Value: 'value2' }],
    QueryStringParameters: [{ Key: 'oauthquery', Value: 'value3' }],
  },
};

function createOAuth(name: string, oauth: object): CreateConnectionCommand {
  // The SDK's types say 'GET' | 'POST' | 'PUT'; the wire carries whatever the caller sends.
  const input = {
    Name: name,
    AuthorizationType: 'OAUTH_CLIENT_CREDENTIALS',
    AuthParameters: { OAuthParameters: oauth },
  };
  return new CreateConnectionCommand(input as CreateConnectionCommandInput);
}

describe('AWS wire protocol: answers as AWS recorded them', () => {
  let broker: WireBroker;
  let client: EventBridgeClient;
  let tokens: ScriptedTokenEndpoint;

  before(async () => {
    broker = await startWireBroker();
    client = eventBridge(broker.endpoint);
    tokens = await startScriptedTokenEndpoint();
  });

  after(async () => {
    client.destroy();
    await broker.close();
    await tokens.close();
  });

  describe('LastAuthorizedTime', () => {
    it('when an OAuth connection is still AUTHORIZING, then Describe and List carry LastAuthorizedTime equal to its creation time, and Create does not', async () => {
      tokens.script({ kind: 'token', accessToken: 'slow-token-1', delayMs: 1000 });
      const created = await callWire(broker.endpoint, {
        target: 'AWSEvents.CreateConnection',
        body: JSON.stringify({
          Name: 'still-authorizing',
          AuthorizationType: 'OAUTH_CLIENT_CREDENTIALS',
          AuthParameters: {
            OAuthParameters: {
              AuthorizationEndpoint: tokens.url,
              HttpMethod: 'POST',
              ClientParameters: { ClientID: 'slow-client', ClientSecret: CLIENT_SECRET },
            },
          },
        }),
      });
      assert.equal(created.status, 200);
      const { ConnectionArn, CreationTime } = created.body;
      assert.deepEqual(created.body, {
        ConnectionArn,
        ConnectionState: 'AUTHORIZING',
        CreationTime,
        LastModifiedTime: CreationTime,
      });

      const described = await callWire(broker.endpoint, {
        target: 'AWSEvents.DescribeConnection',
        body: JSON.stringify({ Name: 'still-authorizing' }),
      });
      assert.deepEqual(described.body, {
        ConnectionArn,
        Name: 'still-authorizing',
        ConnectionState: 'AUTHORIZING',
        AuthorizationType: 'OAUTH_CLIENT_CREDENTIALS',
        CreationTime,
        LastModifiedTime: CreationTime,
        LastAuthorizedTime: CreationTime,
        SecretArn: described.body['SecretArn'],
        AuthParameters: {
          OAuthParameters: {
            ClientParameters: { ClientID: 'slow-client' },
            AuthorizationEndpoint: tokens.url,
            HttpMethod: 'POST',
          },
        },
      });
      const listed = await client.send(
        new ListConnectionsCommand({ NamePrefix: 'still-authorizing' }),
      );
      const [summary] = listed.Connections ?? [];
      assert.ok(summary);
      assert.equal(summary.ConnectionState, 'AUTHORIZING');
      assert.equal(summary.LastAuthorizedTime?.getTime(), Number(CreationTime) * 1000);

      const authorized = await waitForState(client, 'still-authorizing', 'AUTHORIZED');
      assert.ok(
        (authorized.LastAuthorizedTime?.getTime() ?? 0) > Number(CreationTime) * 1000,
        'once authorized, LastAuthorizedTime is when the token arrived',
      );
    });
  });

  describe('what AWS accepts and then fails to authorize', () => {
    it('when CreateConnection has HttpMethod "put" and AuthorizationEndpoint "replace_this", then it answers AUTHORIZING and becomes DEAUTHORIZED with a StateReason naming the endpoint', async () => {
      const requestsBefore = tokens.requestCount();
      const created = await client.send(createOAuth('aws-accepted', AWS_ACCEPTED_OAUTH));
      assert.equal(created.ConnectionState, 'AUTHORIZING');

      const described = await waitForState(client, 'aws-accepted', 'DEAUTHORIZED');
      assert.equal(described.StateReason, NOT_A_URL_REASON);
      assert.deepEqual(described.AuthParameters?.OAuthParameters, {
        ClientParameters: { ClientID: 'id' },
        AuthorizationEndpoint: 'replace_this',
        HttpMethod: 'PUT',
        OAuthHttpParameters: {
          BodyParameters: [{ Key: 'oauthbody', IsValueSecret: true }],
          HeaderParameters: [{ Key: 'oauthheader', IsValueSecret: true }],
          QueryStringParameters: [{ Key: 'oauthquery', IsValueSecret: true }],
        },
      });
      assert.equal(tokens.requestCount(), requestsBefore, 'no token request was sent anywhere');

      const stored = await broker.harness.request.get('/v1/connections/aws-accepted');
      assert.equal(stored.status, 200);
      assert.equal(stored.body.AuthParameters.OAuthParameters.HttpMethod, 'PUT');
      const refused = await broker.harness.request.get(
        '/v1/connections/aws-accepted/authorization',
      );
      assert.equal(refused.body.code, 'InvalidConnectionStateException');
      assert.match(refused.body.detail, /not an absolute https:\/\/ URL/);
    });

    it('when HttpMethod is "post" and the token endpoint answers, then the connection is AUTHORIZED, stored and described as POST', async () => {
      tokens.script({ kind: 'token', accessToken: 'lower-case-token-1' });
      const requestsBefore = tokens.requestCount();
      const created = await client.send(
        createOAuth('lower-case-post', {
          AuthorizationEndpoint: tokens.url,
          HttpMethod: 'post',
          ClientParameters: { ClientID: 'lower-client', ClientSecret: CLIENT_SECRET },
        }),
      );
      assert.equal(created.ConnectionState, 'AUTHORIZING');
      const described = await waitForState(client, 'lower-case-post', 'AUTHORIZED');
      assert.equal(described.AuthParameters?.OAuthParameters?.HttpMethod, 'POST');
      assert.equal(tokens.requests()[requestsBefore]?.method, 'POST');

      const stored = await broker.harness.request.get('/v1/connections/lower-case-post');
      assert.equal(stored.body.AuthParameters.OAuthParameters.HttpMethod, 'POST');
      const auth = await broker.harness.request.get(
        '/v1/connections/lower-case-post/authorization',
      );
      assert.equal(auth.body.Headers.Authorization, 'Bearer lower-case-token-1');
    });

    it('when UpdateConnection sets HttpMethod "get", then it is stored as GET and the token request is a GET', async () => {
      tokens.script({ kind: 'token', accessToken: 'lower-case-token-2' });
      const requestsBefore = tokens.requestCount();
      const updated = await client.send(
        new UpdateConnectionCommand({
          Name: 'lower-case-post',
          AuthParameters: { OAuthParameters: { HttpMethod: 'get' as 'GET' } },
        }),
      );
      assert.equal(updated.ConnectionState, 'AUTHORIZING');
      const described = await waitForState(client, 'lower-case-post', 'AUTHORIZED');
      assert.equal(described.AuthParameters?.OAuthParameters?.HttpMethod, 'GET');
      assert.equal(tokens.requests()[requestsBefore]?.method, 'GET');
    });

    it('when HttpMethod is no casing of GET, POST or PUT, or the endpoint breaks AWS’s pattern, then ValidationException in AWS words', async () => {
      const patch = await sdkError(
        client.send(createOAuth('bad-method', { ...AWS_ACCEPTED_OAUTH, HttpMethod: 'patch' })),
      );
      assert.deepEqual(patch, {
        name: 'ValidationException',
        message:
          "1 validation error detected: Value 'patch' at 'authParameters.oAuthParameters.httpMethod' failed to satisfy constraint: Member must satisfy enum value set: [GET, POST, PUT]",
        status: 400,
      });
      const spaced = await sdkError(
        client.send(
          createOAuth('bad-endpoint', {
            ...AWS_ACCEPTED_OAUTH,
            AuthorizationEndpoint: 'replace this',
          }),
        ),
      );
      assert.deepEqual(spaced, {
        name: 'ValidationException',
        message:
          "1 validation error detected: Value 'replace this' at 'authParameters.oAuthParameters.authorizationEndpoint' failed to satisfy constraint: Member must satisfy regular expression pattern: ^((%[0-9A-Fa-f]{2}|[-()_.!~*';/?:@&=+$,A-Za-z0-9])+)([).!';/?:,])?$",
        status: 400,
      });
    });

    it('when REST gets HttpMethod "put" or AuthorizationEndpoint "replace_this", then it still answers 400 at once', async () => {
      const body = (oauth: object) => ({
        Name: 'rest-strict',
        AuthorizationType: 'OAUTH_CLIENT_CREDENTIALS',
        AuthParameters: {
          OAuthParameters: {
            AuthorizationEndpoint: tokens.url,
            HttpMethod: 'POST',
            ClientParameters: { ClientID: 'id', ClientSecret: CLIENT_SECRET },
            ...oauth,
          },
        },
      });
      const method = await broker.harness.request
        .post('/v1/connections')
        .send(body({ HttpMethod: 'put' }));
      assert.equal(method.status, 400);
      assert.equal(method.body.code, 'ValidationException');
      assert.match(method.body.detail, /at 'authParameters\.oAuthParameters\.httpMethod'/);
      const endpoint = await broker.harness.request
        .post('/v1/connections')
        .send(body({ AuthorizationEndpoint: 'replace_this' }));
      assert.equal(endpoint.status, 400);
      assert.equal(endpoint.body.code, 'ValidationException');
      assert.match(
        endpoint.body.detail,
        /Value 'replace_this' at 'authParameters\.oAuthParameters\.authorizationEndpoint'/,
      );
      const gone = await broker.harness.request.get('/v1/connections/rest-strict');
      assert.equal(gone.status, 404, 'nothing was created');
    });

    it('when the token client gets an endpoint that is no URL, then it returns a rejected outcome and does not throw', async () => {
      const client = createTokenClient({
        timeoutMs: 1000,
        allowInsecureEndpoints: false,
        userAgent: 'recorded-answers-test',
      });
      for (const endpoint of ['replace_this', '', 'a\u0000b']) {
        const result = await client.requestToken({
          clientId: 'id',
          clientSecret: CLIENT_SECRET,
          authorizationEndpoint: endpoint,
          httpMethod: 'PUT',
          oauthHttpParameters: {
            queryStringParameters: [{ key: 'q', value: 'v', isValueSecret: false }],
          },
        });
        assert.deepEqual(result, {
          outcome: 'rejected',
          reason: `AuthorizationEndpoint '${endpoint.replace('\u0000', '?')}' is not an absolute https:// URL`,
          durationMs: 0,
        });
      }
    });
  });
});

describe('AWS wire protocol: the outbound policy still applies to a URL', () => {
  let broker: WireBroker;
  let client: EventBridgeClient;

  before(async () => {
    broker = await startWireBroker({ env: { BROKER_ALLOW_INSECURE_ENDPOINTS: 'false' } });
    client = eventBridge(broker.endpoint);
  });

  after(async () => {
    client.destroy();
    await broker.close();
  });

  it('when the endpoint is a URL the outbound policy refuses, then ValidationException as before and nothing is stored', async () => {
    const cases = [
      [
        'http://idp.example.com/oauth2/token',
        'AuthorizationEndpoint must use https:// (BROKER_ALLOW_INSECURE_ENDPOINTS allows http:// for development).',
      ],
      [
        'https://127.0.0.1/oauth2/token',
        'AuthorizationEndpoint must not name a loopback, private or link-local address (127.0.0.1 is a loopback address in 127.0.0.0/8). BROKER_ALLOWED_ENDPOINTS can allow a specific internal host or range.',
      ],
    ] as const;
    for (const [endpoint, message] of cases) {
      const refused = await sdkError(
        client.send(
          createOAuth('refused-url', { ...AWS_ACCEPTED_OAUTH, AuthorizationEndpoint: endpoint }),
        ),
      );
      assert.deepEqual(refused, { name: 'ValidationException', message, status: 400 }, endpoint);
    }
    const gone = await sdkError(
      client.send(new DescribeConnectionCommand({ Name: 'refused-url' })),
    );
    assert.equal(gone.name, 'ResourceNotFoundException');
  });

  it('when an update names a URL the policy refuses, then ValidationException; a value that is no URL at all deauthorizes instead', async () => {
    await client.send(createOAuth('update-target', AWS_ACCEPTED_OAUTH));
    await waitForState(client, 'update-target', 'DEAUTHORIZED');
    const refused = await sdkError(
      client.send(
        new UpdateConnectionCommand({
          Name: 'update-target',
          AuthParameters: {
            OAuthParameters: { AuthorizationEndpoint: 'https://169.254.169.254/latest' },
          },
        }),
      ),
    );
    assert.equal(refused.name, 'ValidationException');
    assert.match(
      refused.message,
      /^AuthorizationEndpoint must not name a loopback, private or link-local address/,
    );

    const updated = await client.send(
      new UpdateConnectionCommand({
        Name: 'update-target',
        AuthParameters: {
          OAuthParameters: { ClientParameters: { ClientSecret: 'another-secret-Zk19' } },
        },
      }),
    );
    assert.equal(updated.ConnectionState, 'AUTHORIZING');
    assert.ok(updated.LastAuthorizedTime instanceof Date, 'an AUTHORIZING answer carries it');
    const described = await waitForState(client, 'update-target', 'DEAUTHORIZED');
    assert.equal(described.StateReason, NOT_A_URL_REASON);
  });
});
