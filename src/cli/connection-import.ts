/**
 * `broker connections import`: JSON Lines of CreateConnection bodies, sent with bounded
 * concurrency, retrying what the broker's rate limits turn away.
 */

import { BrokerApiError, unwrap } from '../client/broker-api-error.js';
import type { BrokerClient } from '../client/broker-client.js';
import type { CreateConnectionRequest } from './connection-request.js';
import { formatFields, formatTable } from './format.js';

/** Attempts per line when the broker answers 429 (or 503 with Retry-After). */
export const MAX_ATTEMPTS = 10;
/** The longest wait between two attempts, whatever Retry-After says. */
const MAX_WAIT_MS = 60_000;
/** Progress lines on stderr at most this often. */
const PROGRESS_INTERVAL_MS = 1_000;

export interface ImportFailure {
  line: number;
  /** The line's Name, when it had one. */
  name?: string;
  code: string;
  detail: string;
}

export interface ImportSummary {
  created: number;
  skipped: number;
  failed: number;
  /** Creates sent again after a 429 (or a 503 with Retry-After): how hard the limits pushed back. */
  retried: number;
  failures: ImportFailure[];
}

export interface ImportOptions {
  client: BrokerClient;
  concurrency: number;
  writeProgress(text: string): void;
  sleep?: (ms: number) => Promise<void>;
  now?: () => number;
}

type Line =
  | { number: number; body: CreateConnectionRequest; name: string | undefined }
  | { number: number; invalid: string; name: string | undefined };

type Outcome =
  { kind: 'created' } | { kind: 'skipped' } | { kind: 'failed'; code: string; detail: string };

const INVALID_LINE = 'InvalidLine';

/**
 * Sends every line's create; a line that is not a JSON object fails on its own and the rest go
 * on. Lines are pulled as workers free up, so memory stays bounded by the concurrency, not by
 * the file. An unreachable broker stops the import (the error is thrown).
 */
export async function importConnections(
  chunks: AsyncIterable<Uint8Array>,
  options: ImportOptions,
): Promise<ImportSummary> {
  const sleep = options.sleep ?? ((ms) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  const now = options.now ?? Date.now;
  const summary: ImportSummary = { created: 0, skipped: 0, failed: 0, retried: 0, failures: [] };
  let lastProgress = now();
  const progress = (): string =>
    `imported ${summary.created + summary.skipped + summary.failed} (created ${summary.created}, skipped ${summary.skipped}, failed ${summary.failed})\n`;

  const lines = parseLines(chunks);
  let stopped = false;
  const worker = async (): Promise<void> => {
    // Concurrent next() calls on one async generator are queued: each line goes to one worker.
    for (;;) {
      if (stopped) return;
      const next = await lines.next();
      if (next.done === true) return;
      const line = next.value;
      let outcome: Outcome;
      try {
        outcome =
          'invalid' in line
            ? { kind: 'failed', code: INVALID_LINE, detail: line.invalid }
            : await createWithRetry(options.client, line.body, sleep, () => summary.retried++);
      } catch (error) {
        stopped = true;
        throw error;
      }
      if (outcome.kind === 'failed') {
        summary.failed++;
        summary.failures.push({
          line: line.number,
          ...(line.name !== undefined && { name: line.name }),
          code: outcome.code,
          detail: outcome.detail,
        });
      } else summary[outcome.kind]++;
      if (now() - lastProgress >= PROGRESS_INTERVAL_MS) {
        lastProgress = now();
        options.writeProgress(progress());
      }
    }
  };
  const results = await Promise.allSettled(
    Array.from({ length: options.concurrency }, () => worker()),
  );
  const rejected = results.find((result) => result.status === 'rejected');
  if (rejected !== undefined) {
    options.writeProgress(`stopped: ${progress()}`);
    throw rejected.reason;
  }
  options.writeProgress(progress());
  summary.failures.sort((a, b) => a.line - b.line);
  return summary;
}

async function createWithRetry(
  client: BrokerClient,
  body: CreateConnectionRequest,
  sleep: (ms: number) => Promise<void>,
  onRetry: () => void,
): Promise<Outcome> {
  for (let attempt = 1; ; attempt++) {
    try {
      unwrap(await client.POST('/v1/connections', { body }));
      return { kind: 'created' };
    } catch (error) {
      if (!(error instanceof BrokerApiError)) throw error;
      if (error.code === 'ResourceAlreadyExistsException') return { kind: 'skipped' };
      const retryable =
        error.status === 429 || (error.status === 503 && error.retryAfterSeconds !== undefined);
      if (retryable && attempt < MAX_ATTEMPTS) {
        onRetry();
        await sleep(waitMs(error.retryAfterSeconds, attempt));
        continue;
      }
      return { kind: 'failed', code: error.code, detail: error.detail };
    }
  }
}

/** Retry-After when given, else an exponential backoff; jittered so workers do not retry in step. */
function waitMs(retryAfterSeconds: number | undefined, attempt: number): number {
  const base =
    retryAfterSeconds !== undefined ? retryAfterSeconds * 1000 : 250 * 2 ** (attempt - 1);
  return Math.min(MAX_WAIT_MS, base + Math.floor(Math.random() * 250));
}

/** Numbered lines from the chunks; blank lines are counted in the numbering but not yielded. */
async function* parseLines(chunks: AsyncIterable<Uint8Array>): AsyncGenerator<Line> {
  let pending = Buffer.alloc(0);
  let number = 0;
  for await (const chunk of chunks) {
    pending = pending.length === 0 ? Buffer.from(chunk) : Buffer.concat([pending, chunk]);
    let start = 0;
    for (let end = pending.indexOf(0x0a, start); end !== -1; end = pending.indexOf(0x0a, start)) {
      number++;
      const line = parseLine(pending.subarray(start, end), number);
      start = end + 1;
      if (line !== undefined) yield line;
    }
    // A copy, so the chunk the rest came from is not kept alive by it.
    pending = Buffer.from(pending.subarray(start));
  }
  if (pending.length > 0) {
    const line = parseLine(pending, number + 1);
    if (line !== undefined) yield line;
  }
}

/** One line as a CreateConnection body, or why it is not one (never quoting it: it holds secrets). */
function parseLine(bytes: Uint8Array, number: number): Line | undefined {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return { number, invalid: 'the line is not UTF-8 text', name: undefined };
  }
  text = text.replace(/^\uFEFF/, '').trim();
  if (text === '') return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    // JSON.parse's message quotes the text around the error, which may be a secret.
    return { number, invalid: 'the line is not valid JSON', name: undefined };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return { number, invalid: 'the line is not a JSON object', name: undefined };
  }
  const name: unknown = (value as Record<string, unknown>)['Name']; // a JSON object (checked above)
  return {
    number,
    // The broker validates the body against the schema, as for `create --file`.
    body: value as CreateConnectionRequest, // a JSON object, checked above; the broker checks the rest
    name: typeof name === 'string' ? name : undefined,
  };
}

/** The summary for people: the counts, then each failure with its reason. */
export function formatImportSummary(summary: ImportSummary): string {
  const counts = formatFields([
    ['Created', String(summary.created)],
    ['Skipped (already exist)', String(summary.skipped)],
    ['Failed', String(summary.failed)],
    ['Retried (throttled)', String(summary.retried)],
  ]);
  if (summary.failures.length === 0) return counts;
  const rows = summary.failures.map((failure) => [
    String(failure.line),
    failure.name ?? '-',
    failure.code,
    failure.detail,
  ]);
  return `${counts}\n${formatTable(['LINE', 'NAME', 'CODE', 'DETAIL'], rows)}`;
}
