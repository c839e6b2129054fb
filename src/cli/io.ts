/** What a command may touch outside itself; main.ts passes the process's own. */
export interface CliIo {
  /** BROKER_URL and BROKER_API_KEY are read from here, and nothing else is. */
  env: Readonly<Record<string, string | undefined>>;
  writeOut(text: string): void;
  writeErr(text: string): void;
  /** All of stdin, as bytes (decoded strictly); `what` names the value for a prompt on a terminal. */
  readStdin(what: string): Promise<Uint8Array>;
  readFile(path: string): Promise<Uint8Array>;
  /** Stdin as it arrives, for inputs too large to hold whole (a bulk import). */
  streamStdin(what: string): AsyncIterable<Uint8Array>;
  /** A file as it is read; rejects when it cannot be opened, before anything is read. */
  streamFile(path: string): Promise<AsyncIterable<Uint8Array>>;
}
