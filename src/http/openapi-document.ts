import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';

/** The package root's openapi.yaml: two levels up from both src/http and dist/http. */
export const OPENAPI_PATH = fileURLToPath(new URL('../../openapi.yaml', import.meta.url));

export interface OpenApiParameter {
  name: string;
  in: 'path' | 'query' | 'header' | 'cookie';
  required?: boolean;
  schema: object;
}

export interface OpenApiOperation {
  operationId: string;
  parameters?: Array<OpenApiParameter | { $ref: string }>;
  requestBody?: { required?: boolean; content: Record<string, { schema: object }> };
  responses: Record<string, unknown>;
}

export interface OpenApiDocument {
  paths: Record<string, Record<string, unknown> & { parameters?: OpenApiParameter[] }>;
  components: {
    schemas: Record<string, object>;
    parameters: Record<string, OpenApiParameter>;
  };
}

let cached: OpenApiDocument | undefined;

/** Parsed once per process; the document is the contract for requests and responses. */
export function loadOpenApiDocument(): OpenApiDocument {
  cached ??= parse(readFileSync(OPENAPI_PATH, 'utf8')) as OpenApiDocument; // the repository's openapi.yaml, linted by redocly
  return cached;
}

export const HTTP_METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options'] as const;

/** Every operation with its path, method and path-level parameters merged in. */
export function listOperations(
  document: OpenApiDocument,
): Array<{ path: string; method: string; operation: OpenApiOperation }> {
  const operations: Array<{ path: string; method: string; operation: OpenApiOperation }> = [];
  for (const [path, item] of Object.entries(document.paths)) {
    for (const method of HTTP_METHODS) {
      const operation = item[method] as OpenApiOperation | undefined; // a path item's method key holds an operation
      if (operation === undefined) continue;
      const parameters = [...(item.parameters ?? []), ...(operation.parameters ?? [])];
      operations.push({ path, method, operation: { ...operation, parameters } });
    }
  }
  return operations;
}

export function resolveParameter(
  document: OpenApiDocument,
  parameter: OpenApiParameter | { $ref: string },
): OpenApiParameter {
  if (!('$ref' in parameter)) return parameter;
  const name = parameter.$ref.replace('#/components/parameters/', '');
  const resolved = document.components.parameters[name];
  if (resolved === undefined) throw new Error(`openapi.yaml: unknown parameter ${parameter.$ref}`);
  return resolved;
}
