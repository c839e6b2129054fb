/**
 * Request bodies in the JSON shape of EventBridge's CreateConnection (README, API by example),
 * one builder per authorization type, and a plain HTTP Task (README, HTTP Tasks: prepare and
 * invoke), so that a test states only its values. The secrets are the caller's, so each test can
 * grep for its own in logs and answers.
 */

/** One header, query string or body parameter (README, API by example). */
export interface HttpParameter {
  Key: string;
  Value?: string;
  IsValueSecret?: boolean;
}

export interface HttpParameters {
  HeaderParameters?: HttpParameter[];
  QueryStringParameters?: HttpParameter[];
  BodyParameters?: HttpParameter[];
}

/** What any authorization type may add: a description and the invocation parameters. */
export interface InputExtras {
  description?: string;
  invocation?: HttpParameters;
}

export interface OAuthInput {
  endpoint: string;
  clientId: string;
  clientSecret: string;
  httpMethod?: 'GET' | 'POST' | 'PUT';
  oauthHttpParameters?: HttpParameters;
}

function connectionInput(
  name: string,
  authorizationType: 'API_KEY' | 'BASIC' | 'OAUTH_CLIENT_CREDENTIALS',
  authParameters: Record<string, unknown>,
  extras: InputExtras,
): Record<string, unknown> {
  return {
    Name: name,
    ...(extras.description !== undefined && { Description: extras.description }),
    AuthorizationType: authorizationType,
    AuthParameters: {
      ...authParameters,
      ...(extras.invocation !== undefined && { InvocationHttpParameters: extras.invocation }),
    },
  };
}

/** An API_KEY connection whose key travels in header `keyName` (e.g. `x-api-key`). */
export const apiKeyInput = (
  name: string,
  key: { keyName: string; value: string },
  extras: InputExtras = {},
): Record<string, unknown> =>
  connectionInput(
    name,
    'API_KEY',
    { ApiKeyAuthParameters: { ApiKeyName: key.keyName, ApiKeyValue: key.value } },
    extras,
  );

export const basicInput = (
  name: string,
  credentials: { username: string; password: string },
  extras: InputExtras = {},
): Record<string, unknown> =>
  connectionInput(
    name,
    'BASIC',
    {
      BasicAuthParameters: { Username: credentials.username, Password: credentials.password },
    },
    extras,
  );

/** An OAUTH_CLIENT_CREDENTIALS connection; HttpMethod defaults to POST. */
export const oauthInput = (
  name: string,
  oauth: OAuthInput,
  extras: InputExtras = {},
): Record<string, unknown> =>
  connectionInput(
    name,
    'OAUTH_CLIENT_CREDENTIALS',
    {
      OAuthParameters: {
        AuthorizationEndpoint: oauth.endpoint,
        HttpMethod: oauth.httpMethod ?? 'POST',
        ClientParameters: { ClientID: oauth.clientId, ClientSecret: oauth.clientSecret },
        ...(oauth.oauthHttpParameters !== undefined && {
          OAuthHttpParameters: oauth.oauthHttpParameters,
        }),
      },
    },
    extras,
  );

/** The parameters of an HTTP Task that GETs `endpoint` with connection `connection` (an ARN or a name). */
export const getTaskInput = (connection: string, endpoint: string): Record<string, unknown> => ({
  ApiEndpoint: endpoint,
  Method: 'GET',
  Authentication: { ConnectionArn: connection },
});
