import type {
  StoredHttpParameter,
  StoredHttpParameters,
  StoredSecret,
  StoredToken,
} from '../secret-store/secret-store.js';
import {
  CONNECTION_STATES,
  type Connection,
  type ConnectionState,
  type HttpParameter,
  type HttpParameters,
  type OAuthHttpMethod,
  type OAuthToken,
} from './connection.js';

/** Between the decrypted connection and the stored secret's EventBridge snake_case JSON. */

const iso = (ms: number): string => new Date(ms).toISOString();
const ms = (text: string): number => Date.parse(text);

function encodeParameter(p: HttpParameter): StoredHttpParameter {
  return { key: p.key, value: p.value, is_value_secret: p.isValueSecret };
}

function decodeParameter(p: StoredHttpParameter): HttpParameter {
  return { key: p.key, value: p.value, isValueSecret: p.is_value_secret };
}

function encodeParameters(p: HttpParameters): StoredHttpParameters {
  const stored: StoredHttpParameters = {};
  if (p.headerParameters) stored.header_parameters = p.headerParameters.map(encodeParameter);
  if (p.queryStringParameters) {
    stored.query_string_parameters = p.queryStringParameters.map(encodeParameter);
  }
  if (p.bodyParameters) stored.body_parameters = p.bodyParameters.map(encodeParameter);
  return stored;
}

function decodeParameters(p: StoredHttpParameters): HttpParameters {
  const decoded: HttpParameters = {};
  if (p.header_parameters) decoded.headerParameters = p.header_parameters.map(decodeParameter);
  if (p.query_string_parameters) {
    decoded.queryStringParameters = p.query_string_parameters.map(decodeParameter);
  }
  if (p.body_parameters) decoded.bodyParameters = p.body_parameters.map(decodeParameter);
  return decoded;
}

function encodeToken(token: OAuthToken): StoredToken {
  const stored: StoredToken = {
    access_token: token.accessToken,
    token_type: token.tokenType,
    obtained_at: iso(token.obtainedAtMs),
  };
  if (token.expiresAtMs !== undefined) stored.expires_at = iso(token.expiresAtMs);
  if (token.rejected === true) stored.rejected = true;
  return stored;
}

function decodeToken(token: StoredToken): OAuthToken {
  const decoded: OAuthToken = {
    accessToken: token.access_token,
    tokenType: token.token_type,
    obtainedAtMs: ms(token.obtained_at),
  };
  if (token.expires_at !== undefined) decoded.expiresAtMs = ms(token.expires_at);
  if (token.rejected === true) decoded.rejected = true;
  return decoded;
}

export function encodeConnection(connection: Connection): StoredSecret {
  const secret: StoredSecret = {
    broker: {
      schema: 1,
      name: connection.name,
      uuid: connection.uuid,
      secret_uuid: connection.secretUuid,
      authorization_type: connection.authorizationType,
      state: connection.state,
      creation_time: iso(connection.creationTimeMs),
      last_modified_time: iso(connection.lastModifiedTimeMs),
      generation: connection.generation,
    },
  };
  const broker = secret.broker;
  if (connection.description !== undefined) broker.description = connection.description;
  if (connection.stateReason !== undefined) broker.state_reason = connection.stateReason;
  if (connection.lastAuthorizedTimeMs !== undefined) {
    broker.last_authorized_time = iso(connection.lastAuthorizedTimeMs);
  }
  if (connection.invocationHttpParameters !== undefined) {
    secret.invocation_http_parameters = encodeParameters(connection.invocationHttpParameters);
  }
  switch (connection.authorizationType) {
    case 'BASIC':
      secret.username = connection.basic.username;
      if (connection.basic.password !== undefined) secret.password = connection.basic.password;
      break;
    case 'API_KEY':
      secret.api_key_name = connection.apiKey.apiKeyName;
      if (connection.apiKey.apiKeyValue !== undefined) {
        secret.api_key_value = connection.apiKey.apiKeyValue;
      }
      break;
    case 'OAUTH_CLIENT_CREDENTIALS': {
      const oauth = connection.oauth;
      secret.client_id = oauth.clientId;
      if (oauth.clientSecret !== undefined) secret.client_secret = oauth.clientSecret;
      secret.authorization_endpoint = oauth.authorizationEndpoint;
      secret.http_method = oauth.httpMethod;
      if (oauth.oauthHttpParameters !== undefined) {
        secret.oauth_http_parameters = encodeParameters(oauth.oauthHttpParameters);
      }
      if (connection.token !== undefined) broker.token = encodeToken(connection.token);
      if (connection.refreshLease !== undefined) {
        const lease = connection.refreshLease;
        broker.refresh_lease = {
          holder: lease.holder,
          generation: lease.generation,
          expires_at: iso(lease.expiresAtMs),
        };
      }
      break;
    }
  }
  return secret;
}

export function decodeState(state: string): ConnectionState {
  return (CONNECTION_STATES as readonly string[]).includes(state)
    ? (state as ConnectionState)
    : 'DEAUTHORIZED';
}

export function decodeConnection(secret: StoredSecret): Connection {
  const b = secret.broker;
  const common = {
    name: b.name,
    uuid: b.uuid,
    secretUuid: b.secret_uuid,
    state: decodeState(b.state),
    creationTimeMs: ms(b.creation_time),
    lastModifiedTimeMs: ms(b.last_modified_time),
    generation: b.generation,
    ...(b.description !== undefined && { description: b.description }),
    ...(b.state_reason !== undefined && { stateReason: b.state_reason }),
    ...(b.last_authorized_time !== undefined && {
      lastAuthorizedTimeMs: ms(b.last_authorized_time),
    }),
    ...(secret.invocation_http_parameters !== undefined && {
      invocationHttpParameters: decodeParameters(secret.invocation_http_parameters),
    }),
  };
  switch (b.authorization_type) {
    case 'BASIC':
      return {
        ...common,
        authorizationType: 'BASIC',
        basic: {
          username: secret.username ?? '',
          ...(secret.password !== undefined && { password: secret.password }),
        },
      };
    case 'API_KEY':
      return {
        ...common,
        authorizationType: 'API_KEY',
        apiKey: {
          apiKeyName: secret.api_key_name ?? '',
          ...(secret.api_key_value !== undefined && { apiKeyValue: secret.api_key_value }),
        },
      };
    case 'OAUTH_CLIENT_CREDENTIALS':
      return {
        ...common,
        authorizationType: 'OAUTH_CLIENT_CREDENTIALS',
        oauth: {
          clientId: secret.client_id ?? '',
          authorizationEndpoint: secret.authorization_endpoint ?? '',
          httpMethod: (secret.http_method ?? 'POST') as OAuthHttpMethod,
          ...(secret.client_secret !== undefined && { clientSecret: secret.client_secret }),
          ...(secret.oauth_http_parameters !== undefined && {
            oauthHttpParameters: decodeParameters(secret.oauth_http_parameters),
          }),
        },
        ...(b.token !== undefined && { token: decodeToken(b.token) }),
        ...(b.refresh_lease !== undefined && {
          refreshLease: {
            holder: b.refresh_lease.holder,
            generation: b.refresh_lease.generation,
            expiresAtMs: ms(b.refresh_lease.expires_at),
          },
        }),
      };
    default:
      // Written by a newer broker, or altered: the type decides every other field.
      throw new Error(
        `stored connection '${b.name}' has an unknown authorization type; update this broker or delete the connection`,
      );
  }
}
