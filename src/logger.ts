import { pino, type Logger, type DestinationStream } from 'pino';

/**
 * Every path where a secret could ride along into a log line. Log calls pick fields, and this
 * list is the second line of defence.
 */
export const REDACTED_PATHS = [
  'password',
  '*.password',
  'Password',
  '*.Password',
  '*.*.Password',
  'ApiKeyValue',
  '*.ApiKeyValue',
  '*.*.ApiKeyValue',
  'ClientSecret',
  '*.ClientSecret',
  '*.*.ClientSecret',
  '*.*.*.ClientSecret',
  'client_secret',
  '*.client_secret',
  'api_key_value',
  '*.api_key_value',
  'access_token',
  '*.access_token',
  'accessToken',
  '*.accessToken',
  'token',
  '*.token',
  'authorization',
  '*.authorization',
  'req.headers.authorization',
  'req.headers.cookie',
  'headers.authorization',
  'Headers',
  '*.Headers',
  'body',
  '*.body',
];

/**
 * Standard output, written asynchronously: under load, lines that arrive while a write is in
 * flight leave in one write instead of one system call each (the audit line of every credential
 * retrieval made that the hot path's largest cost). pino flushes what is pending on exit.
 */
export function stdoutDestination(): DestinationStream {
  return pino.destination({ dest: 1, sync: false });
}

let stampedAtMs = -1;
let stamp = '';

/**
 * pino's isoTime formats a Date per line (about 3% of the credential path's CPU under load, one
 * audit line per retrieval); lines within one millisecond share one string.
 */
function isoTimestampCachedPerMs(): string {
  const nowMs = Date.now();
  if (nowMs !== stampedAtMs) {
    stampedAtMs = nowMs;
    stamp = `,"time":"${new Date(nowMs).toISOString()}"`;
  }
  return stamp;
}

export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'connection-broker' },
      redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
      timestamp: isoTimestampCachedPerMs,
    },
    destination,
  );
}
