import type { ErrorObject } from 'ajv';

const REDACTED = '*** Sensitive Data Redacted ***';

/** `/AuthParameters/HeaderParameters/0/Key` → `authParameters.headerParameters.1.member.key`, as AWS writes it. */
export function toMemberPath(instancePath: string, child?: string): string {
  const segments = instancePath.split('/').filter((s) => s !== '');
  if (child !== undefined) segments.push(child);
  return segments
    .map((segment) =>
      /^\d+$/.test(segment)
        ? `${Number(segment) + 1}.member`
        : segment.charAt(0).toLowerCase() + segment.slice(1),
    )
    .join('.');
}

function isSensitive(error: ErrorObject): boolean {
  const schema = error.parentSchema as { format?: string; writeOnly?: boolean } | undefined; // a schema of openapi.yaml
  return schema?.format === 'password' || schema?.writeOnly === true;
}

function showValue(error: ErrorObject): string {
  if (isSensitive(error)) return `Value '${REDACTED}'`;
  const data: unknown = error.data;
  if (typeof data === 'string' || typeof data === 'number' || typeof data === 'boolean') {
    return `Value '${String(data)}'`;
  }
  return 'Value';
}

function displayPattern(pattern: string): string {
  // JSON Schema patterns are unanchored, so ours carry ^…$; AWS prints them without.
  return pattern.replace(/^\^/, '').replace(/\$$/, '');
}

function constraint(error: ErrorObject): string {
  const params = error.params as Record<string, unknown>; // Ajv's params: an object per keyword
  switch (error.keyword) {
    case 'pattern':
      return `Member must satisfy regular expression pattern: ${displayPattern(String(params['pattern']))}`;
    case 'maxLength':
    case 'maxItems':
      return `Member must have length less than or equal to ${String(params['limit'])}`;
    case 'minLength':
    case 'minItems':
      return `Member must have length greater than or equal to ${String(params['limit'])}`;
    case 'minimum':
      return `Member must have value greater than or equal to ${String(params['limit'])}`;
    case 'maximum':
      return `Member must have value less than or equal to ${String(params['limit'])}`;
    case 'enum':
      return `Member must satisfy enum value set: [${(params['allowedValues'] as unknown[]).join(', ')}]`; // Ajv's enum params
    case 'type':
      return `Member must be of type ${String(params['type'])}`;
    case 'format':
      return `Member must be a valid ${String(params['format'])}`;
    default:
      return `Member ${error.message ?? 'is invalid'}`;
  }
}

function describe(error: ErrorObject): string {
  const params = error.params as Record<string, unknown>; // Ajv's params: an object per keyword
  if (error.keyword === 'required') {
    const member = toMemberPath(error.instancePath, String(params['missingProperty']));
    return `Value null at '${member}' failed to satisfy constraint: Member must not be null`;
  }
  if (error.keyword === 'additionalProperties') {
    const member = toMemberPath(error.instancePath, String(params['additionalProperty']));
    return `Field '${member}' is not supported`;
  }
  return `${showValue(error)} at '${toMemberPath(error.instancePath)}' failed to satisfy constraint: ${constraint(error)}`;
}

// AWS lists a member's pattern before its length (eventbridge-semantics.md §1.1).
const KEYWORD_ORDER: Record<string, number> = { pattern: 0, minLength: 1, maxLength: 1 };

/** How many problems one answer lists. */
export const MAX_LISTED_ERRORS = 10;

/** `N validation error(s) detected: …; …` in AWS's words. */
export function formatValidationErrors(errors: readonly ErrorObject[]): string {
  const byPath = new Map<string, ErrorObject[]>();
  for (const error of errors) {
    byPath.set(error.instancePath, [...(byPath.get(error.instancePath) ?? []), error]);
  }
  const ordered = [...byPath.values()].flatMap((group) =>
    [...group].sort((a, b) => (KEYWORD_ORDER[a.keyword] ?? 2) - (KEYWORD_ORDER[b.keyword] ?? 2)),
  );
  const messages = [...new Set(ordered.map(describe))];
  const count = messages.length;
  // A large invalid body can break thousands of rules; the answer names the first few.
  const shown = messages.slice(0, MAX_LISTED_ERRORS);
  const more = count > shown.length ? `; and ${count - shown.length} more` : '';
  return `${count} validation error${count === 1 ? '' : 's'} detected: ${shown.join('; ')}${more}`;
}
