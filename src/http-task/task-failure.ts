/** Step Functions error names an HTTP Task can fail with. */
export type TaskErrorName =
  | `States.Http.StatusCode.${number}`
  | 'States.Http.Socket'
  | 'States.Runtime'
  | 'Events.ConnectionResource.InvalidConnectionState';

/** A task failure: a successful broker answer `{Status: "FAILED", Error, Cause}`, not an HTTP error. */
export class TaskFailure extends Error {
  constructor(
    readonly error: TaskErrorName,
    readonly causeText: string,
  ) {
    super(causeText);
    this.name = 'TaskFailure';
  }
}
