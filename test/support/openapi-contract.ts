import assert from 'node:assert/strict';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import { listOperations, loadOpenApiDocument } from '../../src/http/openapi-document.js';

const addFormats = addFormatsModule as unknown as typeof addFormatsModule.default;

interface ResponseSpec {
  content?: Record<string, { schema: object }>;
  $ref?: string;
}

const document = loadOpenApiDocument();
const ajv = new Ajv2020({ strict: false, allErrors: true });
addFormats(ajv);
ajv.addFormat('password', true);
ajv.addSchema(document, 'openapi');
const compiled = new Map<string, ValidateFunction>();

function responseSpec(operationId: string, status: number): ResponseSpec {
  const found = listOperations(document).find((o) => o.operation.operationId === operationId);
  assert.ok(found, `openapi.yaml has no operation ${operationId}`);
  const spec = found.operation.responses[String(status)] as ResponseSpec | undefined;
  assert.ok(spec, `openapi.yaml: ${operationId} does not document status ${status}`);
  if (spec.$ref === undefined) return spec;
  const name = spec.$ref.replace('#/components/responses/', '');
  return (
    (document.components as unknown as { responses: Record<string, ResponseSpec> }).responses[
      name
    ] ?? {}
  );
}

/**
 * What assertMatchesSpec reads of a response. A supertest response is one; a fetch-based test
 * passes `{ status, headers: { 'content-type': … }, body: parsedJson, text }` or the fetch
 * Headers themselves.
 */
export interface ContractResponse {
  status: number;
  /** Lower-case header names (node:http, supertest), or a fetch `Headers`. */
  headers:
    | Readonly<Record<string, string | readonly string[] | undefined>>
    | { get(name: string): string | null | undefined };
  /** The parsed JSON body; checked for every media type but text/plain. */
  body?: unknown;
  /** The body as text; checked for text/plain. */
  text?: string;
}

function contentTypeOf(headers: ContractResponse['headers']): string {
  const value: unknown =
    typeof headers.get === 'function'
      ? (headers as { get(name: string): unknown }).get('content-type')
      : (headers as Readonly<Record<string, unknown>>)['content-type'];
  if (Array.isArray(value)) return String(value[0] ?? '');
  return typeof value === 'string' ? value : '';
}

/** Asserts that a response's status, media type and body are what openapi.yaml documents. */
export function assertMatchesSpec(operationId: string, res: ContractResponse): void {
  const spec = responseSpec(operationId, res.status);
  const mediaType = contentTypeOf(res.headers).split(';')[0] ?? '';
  const content = spec.content?.[mediaType];
  assert.ok(content, `${operationId} ${res.status}: undocumented media type '${mediaType}'`);
  const key = `${operationId} ${res.status} ${mediaType}`;
  let validate = compiled.get(key);
  if (validate === undefined) {
    const schema = JSON.parse(
      JSON.stringify(content.schema).replaceAll('"#/components/', '"openapi#/components/'),
    ) as object;
    validate = ajv.compile(schema);
    compiled.set(key, validate);
  }
  const body: unknown = mediaType === 'text/plain' ? res.text : res.body;
  assert.ok(
    validate(body),
    `${key} does not match openapi.yaml: ${ajv.errorsText(validate.errors)}\n${JSON.stringify(body)}`,
  );
}
