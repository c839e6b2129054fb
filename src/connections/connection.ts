/** The decrypted connection: lives in memory only, never leaves the process as is. */

export const AUTHORIZATION_TYPES = ['BASIC', 'OAUTH_CLIENT_CREDENTIALS', 'API_KEY'] as const;
export type AuthorizationType = (typeof AUTHORIZATION_TYPES)[number];

export const CONNECTION_STATES = [
  'CREATING',
  'UPDATING',
  'DELETING',
  'AUTHORIZED',
  'DEAUTHORIZED',
  'AUTHORIZING',
  'DEAUTHORIZING',
] as const;
export type ConnectionState = (typeof CONNECTION_STATES)[number];

export const OAUTH_HTTP_METHODS = ['GET', 'POST', 'PUT'] as const;
export type OAuthHttpMethod = (typeof OAUTH_HTTP_METHODS)[number];

export interface HttpParameter {
  key: string;
  value: string;
  isValueSecret: boolean;
}

export interface HttpParameters {
  headerParameters?: HttpParameter[];
  queryStringParameters?: HttpParameter[];
  bodyParameters?: HttpParameter[];
}

export interface BasicAuth {
  username: string;
  /** Absent after DeauthorizeConnection. */
  password?: string;
}

export interface ApiKeyAuth {
  apiKeyName: string;
  /** Absent after DeauthorizeConnection. */
  apiKeyValue?: string;
}

export interface OAuthAuth {
  clientId: string;
  /** Absent after DeauthorizeConnection. */
  clientSecret?: string;
  authorizationEndpoint: string;
  httpMethod: OAuthHttpMethod;
  oauthHttpParameters?: HttpParameters;
}

export interface OAuthToken {
  accessToken: string;
  tokenType: string;
  /** Absent when the token endpoint gave no expires_in: the token lives until the API rejects it. */
  expiresAtMs?: number;
  obtainedAtMs: number;
  /**
   * An executor reported that an API answered 401/407 to this token and no new one could be
   * had yet: it is not handed out again, even before it expires.
   */
  rejected?: true;
}

/** What every connection has, whatever its authorization type. */
export interface ConnectionCommon {
  name: string;
  /** The uuid in the connection ARN. */
  uuid: string;
  /** The uuid in the secret's name; a different one, as on AWS. */
  secretUuid: string;
  description?: string;
  state: ConnectionState;
  stateReason?: string;
  creationTimeMs: number;
  lastModifiedTimeMs: number;
  lastAuthorizedTimeMs?: number;
  invocationHttpParameters?: HttpParameters;
  /** Bumped whenever the credentials an executor receives change (rotation, new token). */
  generation: number;
  /** The secret's ARN as the store reports it (Secrets Manager); derived when absent. */
  secretArn?: string;
}

export interface BasicConnection extends ConnectionCommon {
  authorizationType: 'BASIC';
  basic: BasicAuth;
}

export interface ApiKeyConnection extends ConnectionCommon {
  authorizationType: 'API_KEY';
  apiKey: ApiKeyAuth;
}

export interface OAuthConnection extends ConnectionCommon {
  authorizationType: 'OAUTH_CLIENT_CREDENTIALS';
  oauth: OAuthAuth;
  token?: OAuthToken;
  /** A replica of a fleet is refreshing the token of `generation`; the others wait for it. */
  refreshLease?: RefreshLease;
}

export interface RefreshLease {
  holder: string;
  generation: number;
  expiresAtMs: number;
}

export type Connection = BasicConnection | ApiKeyConnection | OAuthConnection;

export function isOAuth(connection: Connection): connection is OAuthConnection {
  return connection.authorizationType === 'OAUTH_CLIENT_CREDENTIALS';
}
