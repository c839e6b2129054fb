import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import { BrokerError } from '../../errors.js';
import { listOperations, resolveParameter, type OpenApiDocument } from '../openapi-document.js';
import { formatValidationErrors } from '../validation-message.js';
import { OAUTH_HTTP_METHODS } from '../../connections/connection.js';
import type { WireOperation } from './wire-operations.js';

// ajv-formats ships CommonJS with a default export property.
const addFormats = addFormatsModule as unknown as typeof addFormatsModule.default; // at run time the import is the plugin itself

const DOCUMENT_ID = 'openapi';
const schemaRef = (name: string): object => ({
  $ref: `${DOCUMENT_ID}#/components/schemas/${name}`,
});

function rebaseRefs(schema: object): object {
  return JSON.parse(
    JSON.stringify(schema).replaceAll('"#/components/', `"${DOCUMENT_ID}#/components/`),
  ) as object; // a copy of an object made just above
}

const NAME_ONLY = {
  type: 'object',
  additionalProperties: false,
  required: ['Name'],
  properties: { Name: schemaRef('ConnectionName') },
};

/**
 * EventBridge's HttpsEndpoint (1..2048 and this pattern), which needs no scheme: AWS accepts
 * "replace_this" and the authorization fails afterwards. REST keeps `format: uri`. Anchored
 * twice: the formatter drops one pair, and AWS prints this pattern with its anchors.
 */
const HTTPS_ENDPOINT = {
  type: 'string',
  minLength: 1,
  maxLength: 2048,
  pattern: "^^((%[0-9A-Fa-f]{2}|[-()_.!~*';/?:@&=+$,A-Za-z0-9])+)([).!';/?:,])?$$",
};

/** The document with the wire protocol's own member rules where they differ from REST's. */
function wireDocument(document: OpenApiDocument): OpenApiDocument {
  const copy = structuredClone(document);
  copy.components.schemas['AuthorizationEndpoint'] = HTTPS_ENDPOINT;
  return copy;
}

/** AWS accepts the OAuth HttpMethod in any casing ("put"); it is stored in upper case. */
function normalizeHttpMethod(input: Record<string, unknown>): void {
  const oauth = memberAt(input, ['AuthParameters', 'OAuthParameters']);
  if (typeof oauth !== 'object' || oauth === null) return;
  const method: unknown = (oauth as Record<string, unknown>)['HttpMethod']; // an object, checked above
  // ASCII letters only: 'poſt'.toUpperCase() is 'POST'.
  if (typeof method !== 'string' || !/^[A-Za-z]{3,4}$/.test(method)) return;
  const upper = method.toUpperCase();
  const known: readonly string[] = OAUTH_HTTP_METHODS;
  if (known.includes(upper)) {
    (oauth as Record<string, unknown>)['HttpMethod'] = upper; // an object, checked above
  }
}

/** Members of EventBridge's model the broker refuses, with the reason the caller reads. */
const UNSUPPORTED: ReadonlyArray<{ path: readonly string[]; reason: string }> = [
  {
    path: ['InvocationConnectivityParameters'],
    reason:
      'private APIs (VPC Lattice resource configurations) cannot be reached from this broker; connect to a public endpoint',
  },
  {
    path: ['AuthParameters', 'ConnectivityParameters'],
    reason:
      'a private OAuth endpoint (VPC Lattice resource configuration) cannot be reached from this broker',
  },
  {
    path: ['KmsKeyIdentifier'],
    reason:
      "every secret is encrypted with the broker's own key (BROKER_MASTER_KEY or BROKER_KMS_KEY_ID); omit it or send an empty string",
  },
];

function memberAt(input: Record<string, unknown>, path: readonly string[]): unknown {
  let value: unknown = input;
  for (const key of path) {
    if (typeof value !== 'object' || value === null) return undefined;
    value = (value as Record<string, unknown>)[key]; // an object, checked on the line above
  }
  return value;
}

/**
 * Validation of the wire operations' inputs against openapi.yaml's schemas (the REST API's), in
 * AWS's words through the same formatter: one description of what a valid connection is.
 */
export class WireValidator {
  private readonly validators: Record<WireOperation, ValidateFunction[]>;
  private readonly name: ValidateFunction;

  constructor(document: OpenApiDocument) {
    // As src/http/request-validator.ts: no coercion for JSON bodies; verbose for the messages.
    const ajv = new Ajv2020({ strict: false, allErrors: true, verbose: true, useDefaults: true });
    addFormats(ajv);
    ajv.addFormat('password', true);
    ajv.addSchema(wireDocument(document), DOCUMENT_ID);
    const list = listOperations(document).find(
      (o) => o.operation.operationId === 'ListConnections',
    );
    if (list === undefined) throw new Error('openapi.yaml has no ListConnections');
    const query = (list.operation.parameters ?? [])
      .map((p) => resolveParameter(document, p))
      .filter((p) => p.in === 'query');
    const listSchema = {
      type: 'object',
      additionalProperties: false,
      properties: Object.fromEntries(query.map((p) => [p.name, rebaseRefs(p.schema)])),
    };
    this.name = ajv.compile(NAME_ONLY);
    this.validators = {
      CreateConnection: [ajv.compile(schemaRef('CreateConnectionRequest'))],
      DescribeConnection: [this.name],
      ListConnections: [ajv.compile(listSchema)],
      // Name is checked on its own: the REST body schema has no Name (it is in the path).
      UpdateConnection: [ajv.compile(schemaRef('UpdateConnectionRequest'))],
      DeleteConnection: [this.name],
      DeauthorizeConnection: [this.name],
    };
  }

  /** The input with defaults applied; ValidationException listing every violation otherwise. */
  validate<T>(operation: WireOperation, input: Record<string, unknown>): T {
    assertSupported(input);
    const candidate = structuredClone(input);
    if (candidate['KmsKeyIdentifier'] === '') delete candidate['KmsKeyIdentifier'];
    normalizeHttpMethod(candidate);
    const errors: ErrorObject[] = [];
    if (operation === 'UpdateConnection') {
      const { Name, ...rest } = candidate;
      if (!this.name({ Name })) errors.push(...(this.name.errors ?? []));
      const [body] = this.validators.UpdateConnection;
      if (body !== undefined && !body(rest)) errors.push(...(body.errors ?? []));
      if (errors.length > 0) throw validationError(errors);
      return { ...rest, Name } as T; // both parts validated against the operation's schema
    }
    for (const validate of this.validators[operation]) {
      if (!validate(candidate)) errors.push(...(validate.errors ?? []));
    }
    if (errors.length > 0) throw validationError(errors);
    return candidate as T; // validated against the operation's schema
  }
}

function validationError(errors: readonly ErrorObject[]): BrokerError {
  return new BrokerError('ValidationException', formatValidationErrors(errors));
}

function assertSupported(input: Record<string, unknown>): void {
  for (const { path, reason } of UNSUPPORTED) {
    const value = memberAt(input, path);
    if (value === undefined || value === '') continue;
    throw new BrokerError(
      'ValidationException',
      `${path.join('.')} is not supported by this broker: ${reason}.`,
    );
  }
}
