import type { components } from '../openapi-types.js';
import type { OptionSpecs, OptionValues } from './args.js';
import { parseChoice } from './args.js';
import { UsageError } from './exit-codes.js';
import type { InputFiles } from './input-files.js';

type Schemas = components['schemas'];
export type AuthorizationType = Schemas['AuthorizationType'];
export type CreateConnectionRequest = Schemas['CreateConnectionRequest'];
export type UpdateConnectionRequest = Schemas['UpdateConnectionRequest'];
type UpdateAuthParameters = Schemas['UpdateConnectionAuthParameters'];

const AUTHORIZATION_TYPES = [
  'API_KEY',
  'BASIC',
  'OAUTH_CLIENT_CREDENTIALS',
] as const satisfies readonly AuthorizationType[];
const OAUTH_METHODS = [
  'GET',
  'POST',
  'PUT',
] as const satisfies readonly Schemas['OAuthHttpMethod'][];

/** The flags that build a CreateConnection or UpdateConnection body; secrets only as files. */
export const CONNECTION_BODY_OPTIONS = {
  file: { type: 'string', short: 'f' },
  'authorization-type': { type: 'string' },
  description: { type: 'string' },
  'api-key-name': { type: 'string' },
  'api-key-value-file': { type: 'string' },
  'basic-username': { type: 'string' },
  'basic-password-file': { type: 'string' },
  'oauth-client-id': { type: 'string' },
  'oauth-client-secret-file': { type: 'string' },
  'oauth-endpoint': { type: 'string' },
  'oauth-method': { type: 'string' },
} as const satisfies OptionSpecs;

export const CONNECTION_BODY_HELP = [
  ['-f, --file PATH|-', 'the whole JSON body of the REST API (instead of the flags below)'],
  [
    '--authorization-type TYPE',
    'API_KEY, BASIC or OAUTH_CLIENT_CREDENTIALS (inferred from the flags)',
  ],
  ['--description TEXT', ''],
  ['--api-key-name NAME', 'API_KEY: the header that carries the key, e.g. X-Api-Key'],
  ['--api-key-value-file PATH|-', 'API_KEY: the key, from a file or stdin'],
  ['--basic-username NAME', 'BASIC'],
  ['--basic-password-file PATH|-', 'BASIC: the password, from a file or stdin'],
  ['--oauth-client-id ID', 'OAUTH_CLIENT_CREDENTIALS'],
  [
    '--oauth-client-secret-file PATH|-',
    'OAUTH_CLIENT_CREDENTIALS: the client secret, from a file or stdin',
  ],
  ['--oauth-endpoint URL', 'OAUTH_CLIENT_CREDENTIALS: the token endpoint'],
  ['--oauth-method GET|POST|PUT', 'OAUTH_CLIENT_CREDENTIALS: default POST on create'],
] as const;

type BodyValues = OptionValues<typeof CONNECTION_BODY_OPTIONS>;
type TypeFlag = Exclude<
  keyof typeof CONNECTION_BODY_OPTIONS,
  'file' | 'authorization-type' | 'description'
>;

/** The flags of each authorization type, and those a create cannot do without. */
const TYPE_FLAGS: Record<
  AuthorizationType,
  { all: readonly TypeFlag[]; required: readonly TypeFlag[] }
> = {
  API_KEY: {
    all: ['api-key-name', 'api-key-value-file'],
    required: ['api-key-name', 'api-key-value-file'],
  },
  BASIC: {
    all: ['basic-username', 'basic-password-file'],
    required: ['basic-username', 'basic-password-file'],
  },
  OAUTH_CLIENT_CREDENTIALS: {
    all: ['oauth-client-id', 'oauth-client-secret-file', 'oauth-endpoint', 'oauth-method'],
    required: ['oauth-client-id', 'oauth-client-secret-file', 'oauth-endpoint'],
  },
};

/** Each type's AuthParameters member from the flags given (update: any subset of them). */
const BUILD_AUTH_PARAMETERS: Record<
  AuthorizationType,
  (values: BodyValues, files: InputFiles, isCreate: boolean) => Promise<UpdateAuthParameters>
> = {
  API_KEY: async (values, files) => ({
    ApiKeyAuthParameters: {
      ...(values['api-key-name'] !== undefined && { ApiKeyName: values['api-key-name'] }),
      ...(values['api-key-value-file'] !== undefined && {
        ApiKeyValue: await files.readSecret(values['api-key-value-file'], '--api-key-value-file'),
      }),
    },
  }),
  BASIC: async (values, files) => ({
    BasicAuthParameters: {
      ...(values['basic-username'] !== undefined && { Username: values['basic-username'] }),
      ...(values['basic-password-file'] !== undefined && {
        Password: await files.readSecret(values['basic-password-file'], '--basic-password-file'),
      }),
    },
  }),
  OAUTH_CLIENT_CREDENTIALS: async (values, files, isCreate) => {
    const httpMethod =
      parseChoice(values['oauth-method'], '--oauth-method', OAUTH_METHODS) ??
      (isCreate ? 'POST' : undefined);
    const hasClient =
      values['oauth-client-id'] !== undefined || values['oauth-client-secret-file'] !== undefined;
    return {
      OAuthParameters: {
        ...(hasClient && {
          ClientParameters: {
            ...(values['oauth-client-id'] !== undefined && { ClientID: values['oauth-client-id'] }),
            ...(values['oauth-client-secret-file'] !== undefined && {
              ClientSecret: await files.readSecret(
                values['oauth-client-secret-file'],
                '--oauth-client-secret-file',
              ),
            }),
          },
        }),
        ...(values['oauth-endpoint'] !== undefined && {
          AuthorizationEndpoint: values['oauth-endpoint'],
        }),
        ...(httpMethod !== undefined && { HttpMethod: httpMethod }),
      },
    };
  },
};

/** The CreateConnection body from `--file`, or from `--name` and the type's flags. */
export async function buildCreateRequest(
  values: BodyValues & { name?: string },
  files: InputFiles,
): Promise<CreateConnectionRequest> {
  if (values.file !== undefined) {
    refuseFlagsWithFile(values);
    // The CLI passes the body on as it is.
    return (await files.readJsonObject(values.file, '--file')) as CreateConnectionRequest; // the broker validates it against the same schema
  }
  if (values.name === undefined) throw new UsageError('--name is required (or --file)');
  const type = resolveType(values);
  if (type === undefined) {
    throw new UsageError(
      '--authorization-type is required, or the flags of one type (e.g. --api-key-name and --api-key-value-file)',
    );
  }
  const missing = TYPE_FLAGS[type].required.filter((flag) => values[flag] === undefined);
  if (missing.length > 0) {
    throw new UsageError(`${type} needs ${missing.map((flag) => `--${flag}`).join(', ')}`);
  }
  // Every member the schema requires is set: the required flags were checked just above.
  const authParameters = (await BUILD_AUTH_PARAMETERS[type](
    values,
    files,
    true,
  )) as CreateConnectionRequest['AuthParameters']; // the builder of `type` makes that type's parameters
  return {
    Name: values.name,
    AuthorizationType: type,
    AuthParameters: authParameters,
    ...(values.description !== undefined && { Description: values.description }),
  };
}

/** The UpdateConnection body from `--file`, or from the flags given (at least one). */
export async function buildUpdateRequest(
  values: BodyValues,
  files: InputFiles,
): Promise<UpdateConnectionRequest> {
  if (values.file !== undefined) {
    refuseFlagsWithFile(values);
    // Every member is optional, so any object is one; the broker validates it.
    return files.readJsonObject(values.file, '--file');
  }
  const type = resolveType(values);
  const explicitType = parseChoice(
    values['authorization-type'],
    '--authorization-type',
    AUTHORIZATION_TYPES,
  );
  const usesTypeFlags =
    type !== undefined && TYPE_FLAGS[type].all.some((flag) => values[flag] !== undefined);
  const request: UpdateConnectionRequest = {
    ...(values.description !== undefined && { Description: values.description }),
    ...(explicitType !== undefined && { AuthorizationType: explicitType }),
    ...(type !== undefined &&
      usesTypeFlags && { AuthParameters: await BUILD_AUTH_PARAMETERS[type](values, files, false) }),
  };
  if (Object.keys(request).length === 0) {
    throw new UsageError('nothing to update: give --description, credentials flags or --file');
  }
  return request;
}

/** The explicit --authorization-type, else the one type whose flags were given. */
function resolveType(values: BodyValues): AuthorizationType | undefined {
  const explicit = parseChoice(
    values['authorization-type'],
    '--authorization-type',
    AUTHORIZATION_TYPES,
  );
  const used = AUTHORIZATION_TYPES.filter((type) =>
    TYPE_FLAGS[type].all.some((flag) => values[flag] !== undefined),
  );
  if (used.length > 1 || (explicit !== undefined && used.some((type) => type !== explicit))) {
    const flags = used.flatMap((type) =>
      TYPE_FLAGS[type].all.filter((flag) => values[flag] !== undefined),
    );
    throw new UsageError(
      `${flags.map((flag) => `--${flag}`).join(', ')} mix authorization types${explicit === undefined ? '' : ` (--authorization-type ${explicit})`}`,
    );
  }
  return explicit ?? used[0];
}

function refuseFlagsWithFile(values: BodyValues & { name?: string }): void {
  const others = Object.keys(values).filter(
    (flag) => flag === 'name' || (flag !== 'file' && flag in CONNECTION_BODY_OPTIONS),
  );
  if (others.length > 0) {
    throw new UsageError(
      `--file holds the whole body; drop ${others.map((flag) => `--${flag}`).join(', ')} (or drop --file)`,
    );
  }
}
