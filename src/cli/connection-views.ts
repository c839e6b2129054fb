import type { components } from '../openapi-types.js';
import { formatFields, formatTable, formatTime, nameFromArn } from './format.js';

type Schemas = components['schemas'];

/** `broker connections list`: one row per connection. */
export function formatConnectionList(connections: readonly Schemas['ConnectionSummary'][]): string {
  return formatTable(
    ['NAME', 'STATE', 'TYPE', 'LAST MODIFIED', 'LAST AUTHORIZED'],
    connections.map((connection) => [
      connection.Name,
      connection.ConnectionState,
      connection.AuthorizationType,
      formatTime(connection.LastModifiedTime),
      formatTime(connection.LastAuthorizedTime),
    ]),
  );
}

/** The answer of create, update, delete and deauthorize. */
export function formatConnectionState(state: Schemas['ConnectionStateResponse']): string {
  return formatTable(
    ['NAME', 'STATE', 'LAST MODIFIED', 'ARN'],
    [
      [
        nameFromArn(state.ConnectionArn),
        state.ConnectionState,
        formatTime(state.LastModifiedTime),
        state.ConnectionArn,
      ],
    ],
  );
}

/** `broker connections describe`: every field the broker describes (it never describes a secret). */
export function formatConnectionDescription(connection: Schemas['ConnectionDescription']): string {
  const auth = connection.AuthParameters;
  const oauth = auth.OAuthParameters;
  const fields = formatFields([
    ['Name', connection.Name],
    ['ARN', connection.ConnectionArn],
    ['State', connection.ConnectionState],
    ['State reason', connection.StateReason],
    ['Type', connection.AuthorizationType],
    ['Description', connection.Description],
    ['API key name', auth.ApiKeyAuthParameters?.ApiKeyName],
    ['Username', auth.BasicAuthParameters?.Username],
    ['Client ID', oauth?.ClientParameters.ClientID],
    ['Token endpoint', oauth?.AuthorizationEndpoint],
    ['Token method', oauth?.HttpMethod],
    ['Secret ARN', connection.SecretArn],
    ['Created', formatTime(connection.CreationTime)],
    ['Last modified', formatTime(connection.LastModifiedTime)],
    ['Last authorized', formatTime(connection.LastAuthorizedTime)],
  ]);
  const parameters = [
    ...parameterRows('invocation', auth.InvocationHttpParameters),
    ...parameterRows('oauth', oauth?.OAuthHttpParameters),
  ];
  if (parameters.length === 0) return fields;
  return `${fields}\nParameters:\n${indent(formatTable(['FOR', 'IN', 'KEY', 'VALUE'], parameters))}`;
}

function parameterRows(
  usedFor: string,
  parameters: Schemas['DescribedHttpParameters'] | undefined,
): string[][] {
  if (parameters === undefined) return [];
  const places = [
    ['header', parameters.HeaderParameters],
    ['query', parameters.QueryStringParameters],
    ['body', parameters.BodyParameters],
  ] as const;
  return places.flatMap(([place, list]) =>
    (list ?? []).map((parameter) => [
      usedFor,
      place,
      parameter.Key,
      // The broker describes a secret parameter without its value.
      parameter.IsValueSecret ? '(secret)' : (parameter.Value ?? ''),
    ]),
  );
}

function indent(text: string): string {
  return text
    .split('\n')
    .map((line) => (line === '' ? line : `  ${line}`))
    .join('\n');
}
