/** What a command may touch outside itself; main.ts passes the process's own. */
export interface CliIo {
  /** BROKER_URL and BROKER_API_KEY are read from here, and nothing else is. */
  env: Readonly<Record<string, string | undefined>>;
  writeOut(text: string): void;
  writeErr(text: string): void;
  /** All of stdin, as bytes (decoded strictly); `what` names the value for a prompt on a terminal. */
  readStdin(what: string): Promise<Uint8Array>;
  readFile(path: string): Promise<Uint8Array>;
}
