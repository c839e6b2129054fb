/** Output for people (aligned tables, key-value blocks) and for scripts (JSON). */

/** Pretty JSON with a final newline: the API's own field names, for scripts and jq. */
export function formatJson(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}

/** Columns aligned with two spaces between them; no trailing spaces. */
export function formatTable(
  headers: readonly string[],
  rows: ReadonlyArray<readonly string[]>,
): string {
  const widths = headers.map((header, column) =>
    Math.max(header.length, ...rows.map((row) => (row[column] ?? '').length)),
  );
  const line = (cells: readonly string[]): string =>
    cells
      .map((cell, column) => cell.padEnd(widths[column] ?? 0))
      .join('  ')
      .trimEnd();
  return `${[headers, ...rows].map(line).join('\n')}\n`;
}

/** `Label  value` lines, labels aligned; rows without a value are left out. */
export function formatFields(fields: ReadonlyArray<readonly [string, string | undefined]>): string {
  const present = fields.filter(
    (field): field is readonly [string, string] => field[1] !== undefined,
  );
  const width = Math.max(0, ...present.map(([label]) => label.length));
  return (
    present
      .map(([label, value]) => `${`${label}:`.padEnd(width + 1)}  ${value}`.trimEnd())
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
