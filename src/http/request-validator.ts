import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import type { Request } from 'express';
import { BrokerError } from '../errors.js';
import { formatValidationErrors } from './validation-message.js';
import {
  listOperations,
  resolveParameter,
  type OpenApiDocument,
  type OpenApiParameter,
} from './openapi-document.js';

// ajv-formats ships CommonJS with a default export property.
const addFormats = addFormatsModule as unknown as typeof addFormatsModule.default; // at run time the import is the plugin itself

export interface ValidatedRequest<TBody = unknown> {
  params: Record<string, unknown>;
  query: Record<string, unknown>;
  body: TBody;
}

interface OperationValidators {
  params: ValidateFunction;
  query: ValidateFunction;
  assertKnownQuery: (operationId: string, query: Record<string, unknown>) => void;
  body?: { required: boolean; validate: ValidateFunction };
}

const DOCUMENT_ID = 'openapi';

function createAjv(coerceTypes: boolean, document: OpenApiDocument): Ajv2020 {
  // strict is off because the document carries OpenAPI keywords around the schemas.
  const ajv = new Ajv2020({
    strict: false,
    allErrors: true,
    verbose: true,
    coerceTypes,
    useDefaults: true,
  });
  addFormats(ajv);
  ajv.addFormat('password', true);
  ajv.addSchema(document, DOCUMENT_ID);
  return ajv;
}

function rebaseRefs(schema: object): object {
  return JSON.parse(
    JSON.stringify(schema).replaceAll('"#/components/', `"${DOCUMENT_ID}#/components/`),
  ) as object; // a copy of an object made just above
}

/**
 * Unknown query parameters are refused like unknown body fields: a misspelt `limit` would
 * otherwise be ignored without a word.
 */
function knownQueryCheck(
  names: readonly string[],
): (operationId: string, query: Record<string, unknown>) => void {
  const known = new Set(names);
  return (operationId, query) => {
    const unknown = Object.keys(query).filter((name) => !known.has(name));
    if (unknown.length === 0) return;
    const takes = names.length === 0 ? 'it takes none' : `it takes ${[...names].sort().join(', ')}`;
    throw new BrokerError(
      'ValidationException',
      `Query parameter '${unknown[0]?.slice(0, 64) ?? ''}' is not supported by ${operationId}; ${takes}.`,
    );
  };
}

function parametersSchema(parameters: OpenApiParameter[]): object {
  return {
    type: 'object',
    properties: Object.fromEntries(parameters.map((p) => [p.name, rebaseRefs(p.schema)])),
    required: parameters.filter((p) => p.required === true).map((p) => p.name),
  };
}

/** Request validation compiled from openapi.yaml: the only schema of the API's inputs. */
export class RequestValidator {
  private readonly operations = new Map<string, OperationValidators>();
  /** Each documented path as express matches it (any case, optional trailing slash). */
  private readonly methodsByPath = new Map<string, { pattern: RegExp; methods: Set<string> }>();

  constructor(document: OpenApiDocument) {
    const bodyAjv = createAjv(false, document);
    const paramAjv = createAjv(true, document);
    for (const { path, method, operation } of listOperations(document)) {
      this.addMethod(path, method);
      const parameters = (operation.parameters ?? []).map((p) => resolveParameter(document, p));
      const queryNames = parameters.filter((p) => p.in === 'query').map((p) => p.name);
      const validators: OperationValidators = {
        params: paramAjv.compile(parametersSchema(parameters.filter((p) => p.in === 'path'))),
        query: paramAjv.compile(parametersSchema(parameters.filter((p) => p.in === 'query'))),
        assertKnownQuery: knownQueryCheck(queryNames),
      };
      const json = operation.requestBody?.content['application/json'];
      if (json !== undefined) {
        validators.body = {
          required: operation.requestBody?.required === true,
          validate: bodyAjv.compile(rebaseRefs(json.schema)),
        };
      }
      this.operations.set(operation.operationId, validators);
    }
  }

  /**
   * The methods openapi.yaml documents for a request path (HEAD with GET, as express serves it),
   * sorted; undefined for a path it does not document. For 405 answers' Allow header.
   */
  allowedMethods(requestPath: string): string[] | undefined {
    const found = [...this.methodsByPath.values()].find(({ pattern }) => pattern.test(requestPath));
    return found === undefined ? undefined : [...found.methods].sort();
  }

  private addMethod(path: string, method: string): void {
    let entry = this.methodsByPath.get(path);
    if (entry === undefined) {
      const source = path
        .split(/\{[^}]+\}/)
        .map((literal) => literal.replace(/[.*+?^$()|[\]\\]/g, '\\$&'))
        .join('[^/]+');
      entry = { pattern: new RegExp(`^${source}/?$`, 'i'), methods: new Set() };
      this.methodsByPath.set(path, entry);
    }
    entry.methods.add(method.toUpperCase());
    if (method === 'get') entry.methods.add('HEAD');
  }

  /** Validates and returns copies with defaults applied; throws ValidationException in AWS's words. */
  validate<TBody = undefined>(operationId: string, req: Request): ValidatedRequest<TBody> {
    const validators = this.operations.get(operationId);
    if (validators === undefined) throw new Error(`no operation ${operationId} in openapi.yaml`);
    const params: Record<string, unknown> = { ...req.params };
    const query: Record<string, unknown> = { ...(req.query as Record<string, unknown>) }; // express's parsed query: string keys
    validators.assertKnownQuery(operationId, query);
    const errors: ErrorObject[] = [];
    if (!validators.params(params)) errors.push(...(validators.params.errors ?? []));
    if (!validators.query(query)) errors.push(...(validators.query.errors ?? []));
    let body: unknown = undefined;
    if (validators.body !== undefined) {
      body = this.readBody(req, validators.body.required);
      if (body !== undefined && !validators.body.validate(body)) {
        errors.push(...(validators.body.validate.errors ?? []));
      }
    }
    if (errors.length > 0) {
      throw new BrokerError('ValidationException', formatValidationErrors(errors));
    }
    return { params, query, body: body as TBody }; // validated against the operation's schema
  }

  private readBody(req: Request, required: boolean): unknown {
    if (req.body !== undefined) {
      const body = req.body as unknown; // express types it any: read it as unknown
      if (typeof body !== 'object' || body === null || Array.isArray(body)) {
        const kind = body === null ? 'null' : Array.isArray(body) ? 'an array' : `a ${typeof body}`;
        throw new BrokerError(
          'ValidationException',
          `The request body must be a JSON object ({"Name": …}), not ${kind}.`,
        );
      }
      return structuredClone(body);
    }
    // A body that is not JSON never gets here: src/http/app.ts answers 415 first.
    if (required) throw new BrokerError('ValidationException', 'A JSON request body is required.');
    return undefined;
  }
}
