import { connectionArn, secretArn, type ArnContext } from './arn.js';
import type { Connection, HttpParameter, HttpParameters } from './connection.js';

/** API views of a connection. The only place that decides what leaves the broker: no secrets. */

export type TimeFormat<T> = (ms: number) => T;
export const isoTime: TimeFormat<string> = (ms) => new Date(ms).toISOString();

export interface DescribedParameter {
  Key: string;
  Value?: string;
  IsValueSecret: boolean;
}

export interface DescribedParameters {
  HeaderParameters?: DescribedParameter[];
  QueryStringParameters?: DescribedParameter[];
  BodyParameters?: DescribedParameter[];
}

function describeParameter(p: HttpParameter): DescribedParameter {
  return p.isValueSecret
    ? { Key: p.key, IsValueSecret: true }
    : { Key: p.key, Value: p.value, IsValueSecret: false };
}

function describeParameters(p: HttpParameters): DescribedParameters {
  const view: DescribedParameters = {};
  if (p.headerParameters) view.HeaderParameters = p.headerParameters.map(describeParameter);
  if (p.queryStringParameters) {
    view.QueryStringParameters = p.queryStringParameters.map(describeParameter);
  }
  if (p.bodyParameters) view.BodyParameters = p.bodyParameters.map(describeParameter);
  return view;
}

function describeAuthParameters(connection: Connection): Record<string, unknown> {
  const view: Record<string, unknown> = {};
  switch (connection.authorizationType) {
    case 'BASIC':
      view['BasicAuthParameters'] = { Username: connection.basic.username };
      break;
    case 'API_KEY':
      view['ApiKeyAuthParameters'] = { ApiKeyName: connection.apiKey.apiKeyName };
      break;
    case 'OAUTH_CLIENT_CREDENTIALS': {
      const oauth = connection.oauth;
      view['OAuthParameters'] = {
        ClientParameters: { ClientID: oauth.clientId },
        AuthorizationEndpoint: oauth.authorizationEndpoint,
        HttpMethod: oauth.httpMethod,
        ...(oauth.oauthHttpParameters && {
          OAuthHttpParameters: describeParameters(oauth.oauthHttpParameters),
        }),
      };
      break;
    }
  }
  if (connection.invocationHttpParameters) {
    view['InvocationHttpParameters'] = describeParameters(connection.invocationHttpParameters);
  }
  return view;
}

export function stateView<T>(arn: ArnContext, connection: Connection, time: TimeFormat<T>) {
  return {
    ConnectionArn: connectionArn(arn, connection.name, connection.uuid),
    ConnectionState: connection.state,
    CreationTime: time(connection.creationTimeMs),
    LastModifiedTime: time(connection.lastModifiedTimeMs),
    ...(connection.lastAuthorizedTimeMs !== undefined && {
      LastAuthorizedTime: time(connection.lastAuthorizedTimeMs),
    }),
  };
}

export function summaryView<T>(arn: ArnContext, connection: Connection, time: TimeFormat<T>) {
  const { ConnectionArn, ConnectionState, CreationTime, LastModifiedTime, ...rest } = stateView(
    arn,
    connection,
    time,
  );
  return {
    ConnectionArn,
    Name: connection.name,
    ConnectionState,
    ...(connection.stateReason !== undefined && { StateReason: connection.stateReason }),
    AuthorizationType: connection.authorizationType,
    CreationTime,
    LastModifiedTime,
    ...rest,
  };
}

export function describeView<T>(arn: ArnContext, connection: Connection, time: TimeFormat<T>) {
  return {
    ...summaryView(arn, connection, time),
    ...(connection.description !== undefined && { Description: connection.description }),
    SecretArn: connection.secretArn ?? secretArn(arn, connection.name, connection.secretUuid),
    AuthParameters: describeAuthParameters(connection),
  };
}
