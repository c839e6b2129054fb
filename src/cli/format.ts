/** Output for people (aligned tables, key-value blocks) and for scripts (JSON). */

/** Pretty JSON with a final newline: the API's own field names, for scripts and jq. */
export function formatJson(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}

/**
 * Control characters, and the bidirectional overrides that reorder a line, shown escaped: a
 * description or a state reason comes from other people and must not drive the terminal.
 */
const UNPRINTABLE = /[\p{Cc}\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/gu;

/** A value from the broker, safe to print on a terminal (one line, no escape sequences). */
export function printable(text: string): string {
  return text.replace(UNPRINTABLE, (character) => {
    if (character === '\n') return '\\n';
    if (character === '\r') return '\\r';
    if (character === '\t') return '\\t';
    return `\\u${character.charCodeAt(0).toString(16).padStart(4, '0')}`;
  });
}

/** Columns aligned with two spaces between them; no trailing spaces. */
export function formatTable(
  headers: readonly string[],
  rows: ReadonlyArray<readonly string[]>,
): string {
  const lines = [headers, ...rows].map((cells) => cells.map(printable));
  // A loop, not Math.max(...column): spreading a few hundred thousand rows overflows the stack.
  const widths = headers.map(() => 0);
  for (const cells of lines) {
    cells.forEach((cell, column) => {
      widths[column] = Math.max(widths[column] ?? 0, cell.length);
    });
  }
  const line = (cells: readonly string[]): string =>
    cells
      .map((cell, column) => cell.padEnd(widths[column] ?? 0))
      .join('  ')
      .trimEnd();
  return `${lines.map(line).join('\n')}\n`;
}

/** `Label  value` lines, labels aligned; rows without a value are left out. */
export function formatFields(fields: ReadonlyArray<readonly [string, string | undefined]>): string {
  const present = fields.filter(
    (field): field is readonly [string, string] => field[1] !== undefined,
  );
  const width = Math.max(0, ...present.map(([label]) => label.length));
  return (
    present
      .map(([label, value]) => `${`${label}:`.padEnd(width + 1)}  ${printable(value)}`.trimEnd())
      .join('\n') + '\n'
  );
}

/** `2024-06-20T10:00:00.123Z` as `2024-06-20 10:00:00Z` (UTC, to the second). */
export function formatTime(iso: string | undefined): string {
  if (iso === undefined) return '-';
  const match = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})(?:\.\d+)?Z$/.exec(iso);
  return match === null ? iso : `${match[1]} ${match[2]}Z`;
}

/** A connection's name, from its ARN (`arn:…:connection/<name>/<uuid>`). */
export function nameFromArn(arn: string): string {
  return /:connection\/([^/]+)\//.exec(arn)?.[1] ?? arn;
}
