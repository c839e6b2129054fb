import type { components } from '../openapi-types.js';
import { formatFields, formatTable, formatTime, nameFromArn } from './format.js';

type AuthorizationParameters = components['schemas']['AuthorizationParameters'];

/** What `****` keeps of a value: its last characters, and only of a value longer than this. */
const MASK_KEEPS_TAIL_ABOVE = 12;
const MASK_TAIL_LENGTH = 4;

/**
 * A credential value shown without itself: `****` plus its last 4 characters when it is longer
 * than 12, enough to tell two keys apart; a shorter value would give away too much of itself.
 */
export function maskValue(value: string): string {
  // Code points, so that a tail never splits a surrogate pair.
  const characters = Array.from(value);
  return characters.length > MASK_KEEPS_TAIL_ABOVE
    ? `****${characters.slice(-MASK_TAIL_LENGTH).join('')}`
    : '****';
}

/**
 * The API's answer with every header, query and body value masked; names and shape kept. Fields
 * are picked, not spread: one the schema gains later is shown only once someone masks it.
 */
export function maskAuthorization(parameters: AuthorizationParameters): AuthorizationParameters {
  return {
    ConnectionArn: parameters.ConnectionArn,
    AuthorizationType: parameters.AuthorizationType,
    Headers: maskValues(parameters.Headers),
    QueryParameters: maskValues(parameters.QueryParameters),
    BodyParameters: maskValues(parameters.BodyParameters),
    TokenGeneration: parameters.TokenGeneration,
    ...(parameters.TokenExpiresAt !== undefined && { TokenExpiresAt: parameters.TokenExpiresAt }),
  };
}

/** `broker connections authorization` and `refresh`: the fields, then one row per value. */
export function formatAuthorization(parameters: AuthorizationParameters): string {
  const fields = formatFields([
    ['Connection', nameFromArn(parameters.ConnectionArn)],
    ['ARN', parameters.ConnectionArn],
    ['Type', parameters.AuthorizationType],
    ['Token generation', String(parameters.TokenGeneration)],
    [
      'Token expires',
      parameters.TokenExpiresAt === undefined ? undefined : formatTime(parameters.TokenExpiresAt),
    ],
  ]);
  const places = [
    ['header', parameters.Headers],
    ['query', parameters.QueryParameters],
    ['body', parameters.BodyParameters],
  ] as const;
  const rows = places.flatMap(([kind, values]) =>
    Object.entries(values).map(([name, value]) => [kind, name, String(value)]),
  );
  if (rows.length === 0) return fields;
  return `${fields}\n${formatTable(['KIND', 'NAME', 'VALUE'], rows)}`;
}

function maskValues(values: Readonly<Record<string, string>>): Record<string, string> {
  // fromEntries defines own properties, so a parameter named __proto__ stays a plain key; String()
  // because the value came over the wire, and masked output must hold no part of it whatever it is.
  return Object.fromEntries(
    Object.entries(values).map(([name, value]) => [name, maskValue(String(value))]),
  );
}
