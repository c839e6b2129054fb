import { BrokerError, invalidMember, missingMember } from '../errors.js';
import { HEADER_RULES, headerRefusal } from './http-fields.js';
import type { components, operations } from '../openapi-types.js';
import type {
  ApiKeyAuth,
  AuthorizationType,
  BasicAuth,
  Connection,
  HttpParameter,
  HttpParameters,
  OAuthAuth,
} from './connection.js';

/** From the API's EventBridge-shaped input to the domain's credentials, for create and update. */

type Schemas = components['schemas'];
export type CreateConnectionInput = Schemas['CreateConnectionRequest'];
export type UpdateConnectionInput = Schemas['UpdateConnectionRequest'];
type ApiHttpParameters = Schemas['ConnectionHttpParameters'];
type ApiParameter = { Key: string; Value: string; IsValueSecret?: boolean };
type UpdateAuthParameters = Schemas['UpdateConnectionAuthParameters'];

const BLOCK_FOR_TYPE: Record<AuthorizationType, keyof UpdateAuthParameters> = {
  BASIC: 'BasicAuthParameters',
  API_KEY: 'ApiKeyAuthParameters',
  OAUTH_CLIENT_CREDENTIALS: 'OAuthParameters',
};

function toParameter(p: ApiParameter): HttpParameter {
  // An omitted IsValueSecret counts as secret (CloudFormation's default).
  return { key: p.Key, value: p.Value, isValueSecret: p.IsValueSecret ?? true };
}

/** A supplied list replaces the stored one; an omitted list is kept. */
export function mergeHttpParameters(
  stored: HttpParameters | undefined,
  input: ApiHttpParameters,
): HttpParameters {
  const merged: HttpParameters = { ...stored };
  if (input.HeaderParameters) merged.headerParameters = input.HeaderParameters.map(toParameter);
  if (input.QueryStringParameters) {
    merged.queryStringParameters = input.QueryStringParameters.map(toParameter);
  }
  if (input.BodyParameters) merged.bodyParameters = input.BodyParameters.map(toParameter);
  return merged;
}

export type Credentials =
  | { authorizationType: 'BASIC'; basic: BasicAuth }
  | { authorizationType: 'API_KEY'; apiKey: ApiKeyAuth }
  | { authorizationType: 'OAUTH_CLIENT_CREDENTIALS'; oauth: OAuthAuth };

/** Only the block of the chosen type may be given (EventBridge: "only give the parameters for the AuthorizationType you chose"). */
export function assertOnlyBlockFor(
  type: AuthorizationType,
  auth: UpdateAuthParameters | undefined,
): void {
  for (const [other, block] of Object.entries(BLOCK_FOR_TYPE)) {
    if (other !== type && auth?.[block] !== undefined) {
      throw new BrokerError(
        'ValidationException',
        `AuthParameters.${block} cannot be used with AuthorizationType ${type}; give only ${BLOCK_FOR_TYPE[type]}.`,
      );
    }
  }
}

/**
 * Applies an update's block to the stored credentials of the same type (or to none, for a new
 * type); every member is optional, but the result must be complete.
 */
export function mergeCredentials(
  type: AuthorizationType,
  stored: Connection | undefined,
  auth: UpdateAuthParameters | undefined,
): Credentials {
  const same = stored?.authorizationType === type ? stored : undefined;
  switch (type) {
    case 'BASIC': {
      const input = auth?.BasicAuthParameters;
      const base = same?.authorizationType === 'BASIC' ? same.basic : undefined;
      const username = input?.Username ?? base?.username;
      if (username === undefined)
        throw missingMember('authParameters.basicAuthParameters.username');
      const password = input?.Password ?? base?.password;
      return {
        authorizationType: 'BASIC',
        basic: { username, ...(password !== undefined && { password }) },
      };
    }
    case 'API_KEY': {
      const input = auth?.ApiKeyAuthParameters;
      const base = same?.authorizationType === 'API_KEY' ? same.apiKey : undefined;
      const apiKeyName = input?.ApiKeyName ?? base?.apiKeyName;
      if (apiKeyName === undefined)
        throw missingMember('authParameters.apiKeyAuthParameters.apiKeyName');
      const apiKeyValue = input?.ApiKeyValue ?? base?.apiKeyValue;
      return {
        authorizationType: 'API_KEY',
        apiKey: { apiKeyName, ...(apiKeyValue !== undefined && { apiKeyValue }) },
      };
    }
    case 'OAUTH_CLIENT_CREDENTIALS': {
      const input = auth?.OAuthParameters;
      const base = same?.authorizationType === 'OAUTH_CLIENT_CREDENTIALS' ? same.oauth : undefined;
      const clientId = input?.ClientParameters?.ClientID ?? base?.clientId;
      const clientSecret = input?.ClientParameters?.ClientSecret ?? base?.clientSecret;
      const authorizationEndpoint = input?.AuthorizationEndpoint ?? base?.authorizationEndpoint;
      const httpMethod = input?.HttpMethod ?? base?.httpMethod;
      if (clientId === undefined) {
        throw missingMember('authParameters.oAuthParameters.clientParameters.clientID');
      }
      if (authorizationEndpoint === undefined) {
        throw missingMember('authParameters.oAuthParameters.authorizationEndpoint');
      }
      if (httpMethod === undefined)
        throw missingMember('authParameters.oAuthParameters.httpMethod');
      const oauthHttpParameters = input?.OAuthHttpParameters
        ? mergeHttpParameters(base?.oauthHttpParameters, input.OAuthHttpParameters)
        : base?.oauthHttpParameters;
      return {
        authorizationType: 'OAUTH_CLIENT_CREDENTIALS',
        oauth: {
          clientId,
          authorizationEndpoint,
          httpMethod,
          ...(clientSecret !== undefined && { clientSecret }),
          ...(oauthHttpParameters !== undefined && { oauthHttpParameters }),
        },
      };
    }
  }
}

function assertSendableHeaderParameters(
  parameters: readonly HttpParameter[] | undefined,
  memberPrefix: string,
): void {
  (parameters ?? []).forEach((p, index) => {
    const refusal = headerRefusal(p.key, p.value, 'connection');
    if (refusal === undefined) return;
    const member = `${memberPrefix}.headerParameters.${index + 1}.member`;
    if (refusal === 'value') {
      throw invalidMember(`${member}.value`, REDACTED, HEADER_RULES.value);
    }
    throw invalidMember(`${member}.key`, p.key, HEADER_RULES[refusal]);
  });
}

const REDACTED = '*** Sensitive Data Redacted ***';

/**
 * Every header a connection will put on the wire follows the rules of src/connections/http-fields.ts,
 * so nothing stored can smuggle a Host, a Transfer-Encoding or a CR/LF into a request.
 */
export function assertSendable(
  credentials: Credentials,
  invocation: HttpParameters | undefined,
): void {
  assertSendableHeaderParameters(
    invocation?.headerParameters,
    'authParameters.invocationHttpParameters',
  );
  if (credentials.authorizationType === 'API_KEY') {
    const { apiKeyName, apiKeyValue } = credentials.apiKey;
    const refusal = headerRefusal(apiKeyName, apiKeyValue ?? 'x', 'connection');
    if (refusal === 'name' || refusal === 'forbidden') {
      throw invalidMember(
        'authParameters.apiKeyAuthParameters.apiKeyName',
        apiKeyName,
        HEADER_RULES[refusal],
      );
    }
    if (refusal === 'value') {
      throw invalidMember(
        'authParameters.apiKeyAuthParameters.apiKeyValue',
        REDACTED,
        HEADER_RULES.value,
      );
    }
  }
  if (credentials.authorizationType === 'OAUTH_CLIENT_CREDENTIALS') {
    assertSendableHeaderParameters(
      credentials.oauth.oauthHttpParameters?.headerParameters,
      'authParameters.oAuthParameters.oAuthHttpParameters',
    );
  }
}

export function hasCompleteCredentials(credentials: Credentials): boolean {
  switch (credentials.authorizationType) {
    case 'BASIC':
      return credentials.basic.password !== undefined;
    case 'API_KEY':
      return credentials.apiKey.apiKeyValue !== undefined;
    case 'OAUTH_CLIENT_CREDENTIALS':
      return credentials.oauth.clientSecret !== undefined;
  }
}

/** For create: the chosen type's block is required, as AWS requires it. */
export function requireBlockFor(type: AuthorizationType, auth: UpdateAuthParameters): void {
  const block = BLOCK_FOR_TYPE[type];
  if (auth[block] === undefined) {
    throw missingMember(`authParameters.${block.charAt(0).toLowerCase()}${block.slice(1)}`);
  }
}

/** ListConnections' parameters, as both APIs (REST and EventBridge's wire protocol) spell them. */
export type ListConnectionsInput = NonNullable<
  operations['ListConnections']['parameters']['query']
>;

/** The service's query for one page; `nameFilter` keeps only what the caller may list. */
export function toListQuery(
  input: ListConnectionsInput,
  nameFilter: (name: string) => boolean,
): {
  limit: number;
  namePrefix?: string;
  state?: string;
  nextToken?: string;
  nameFilter: (name: string) => boolean;
} {
  return {
    limit: input.Limit ?? 100,
    ...(input.NamePrefix !== undefined && { namePrefix: input.NamePrefix }),
    ...(input.ConnectionState !== undefined && { state: input.ConnectionState }),
    ...(input.NextToken !== undefined && { nextToken: input.NextToken }),
    nameFilter,
  };
}
