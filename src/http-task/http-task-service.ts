import type { Logger } from 'pino';
import {
  UnsendableConnectionError,
  type PreparedAuthorization,
} from '../connections/authorization-parameters.js';
import type { ConnectionService } from '../connections/connection-service.js';
import { BrokerError } from '../errors.js';
import type { BrokerMetrics } from '../metrics.js';
import { OutboundPolicy } from '../net/outbound-policy.js';
import {
  sendHttpTaskRequest,
  toTaskOutput,
  type HttpTaskOutput,
  type RawResponse,
} from './http-task-invoker.js';
import {
  buildHttpTaskRequest,
  type ConnectionParameters,
  type HttpTaskParameters,
  type PreparedRequest,
} from './http-task-request.js';
import { TaskFailure } from './task-failure.js';

export type InspectionLevel = 'INFO' | 'DEBUG' | 'TRACE';

export interface Inspection {
  level: InspectionLevel;
  revealSecrets: boolean;
}

interface InspectionData {
  Parameters?: HttpTaskParameters;
  Request?: PreparedRequest;
  Response?: {
    Protocol: string;
    StatusCode: number;
    StatusMessage: string;
    Headers: Record<string, string[]>;
    Body: string;
  };
}

type Failed = { Status: 'FAILED'; Error: string; Cause: string; InspectionData?: InspectionData };
export type PrepareResult =
  { Status: 'SUCCEEDED'; Request: PreparedRequest; InspectionData?: InspectionData } | Failed;
export type InvokeResult =
  { Status: 'SUCCEEDED'; Output: HttpTaskOutput; InspectionData?: InspectionData } | Failed;

export interface HttpTaskServiceDeps {
  connections: Pick<ConnectionService, 'getAuthorization' | 'reportRejection'>;
  userAgent: string;
  allowInsecureEndpoints: boolean;
  /** Where tasks may send requests; defaults to allowInsecureEndpoints' rules, no allowlist. */
  outboundPolicy?: OutboundPolicy;
  metrics: Pick<BrokerMetrics, 'httpTaskInvocations' | 'httpTaskDuration'>;
  logger: Logger;
  invokeTimeoutMs?: number;
}

const REDACTED = '*****';

function redacted(parameters: ConnectionParameters): ConnectionParameters {
  const mask = (map: Record<string, string>) =>
    Object.fromEntries(Object.keys(map).map((key) => [key, REDACTED]));
  return {
    headers: mask(parameters.headers),
    queryParameters: mask(parameters.queryParameters),
    bodyParameters: mask(parameters.bodyParameters),
  };
}

/** Runs HTTP Tasks with Step Functions' semantics for executors that are not Step Functions. */
export class HttpTaskService {
  private readonly outboundPolicy: OutboundPolicy;

  constructor(private readonly deps: HttpTaskServiceDeps) {
    this.outboundPolicy =
      deps.outboundPolicy ?? new OutboundPolicy({ allowInsecure: deps.allowInsecureEndpoints });
  }

  async prepare(parameters: HttpTaskParameters, inspection: Inspection): Promise<PrepareResult> {
    const inspectionData = this.inspectionBase(parameters, inspection);
    try {
      const { request, shown } = await this.buildRequest(parameters, inspection);
      if (inspection.level === 'TRACE') inspectionData.Request = shown;
      return { Status: 'SUCCEEDED', Request: request, ...this.attach(inspection, inspectionData) };
    } catch (error) {
      return this.failed(error, inspection, inspectionData);
    }
  }

  /**
   * `mayDeauthorize`: whether a 401/407 to BASIC or API_KEY credentials may deauthorize the
   * connection (the caller's DeauthorizeConnection right); OAuth tokens are refreshed either way.
   */
  async invoke(
    parameters: HttpTaskParameters,
    inspection: Inspection,
    { mayDeauthorize = true }: { mayDeauthorize?: boolean } = {},
  ): Promise<InvokeResult> {
    const startedMs = performance.now();
    const inspectionData = this.inspectionBase(parameters, inspection);
    // Broker problems (unknown connection, refused endpoint) are not HTTP Task outcomes.
    let outcome: string | undefined;
    try {
      const { request, shown, authorization } = await this.buildRequest(parameters, inspection);
      if (inspection.level === 'TRACE') inspectionData.Request = shown;
      const response = await sendHttpTaskRequest(request, {
        outboundPolicy: this.outboundPolicy,
        timeoutMs: this.deps.invokeTimeoutMs,
      });
      if (inspection.level === 'TRACE') inspectionData.Response = this.traceResponse(response);
      if (response.statusCode === 401 || response.statusCode === 407) {
        await this.reportRejection(
          parameters,
          response.statusCode,
          authorization.generation,
          mayDeauthorize,
        );
      }
      const output = toTaskOutput(response);
      outcome = 'SUCCEEDED';
      return { Status: 'SUCCEEDED', Output: output, ...this.attach(inspection, inspectionData) };
    } catch (error) {
      const failed = this.failed(error, inspection, inspectionData);
      outcome = failed.Error.startsWith('States.Http.StatusCode.')
        ? 'States.Http.StatusCode'
        : failed.Error;
      return failed;
    } finally {
      if (outcome !== undefined) {
        this.deps.metrics.httpTaskInvocations.inc({ outcome });
        this.deps.metrics.httpTaskDuration.observe(
          { outcome },
          (performance.now() - startedMs) / 1000,
        );
      }
    }
  }

  private async buildRequest(
    parameters: HttpTaskParameters,
    inspection: Inspection,
  ): Promise<{
    request: PreparedRequest;
    shown: PreparedRequest;
    authorization: PreparedAuthorization;
  }> {
    this.outboundPolicy.assertEndpointAllowed('ApiEndpoint', parameters.ApiEndpoint);
    const authorization = await this.authorizationFor(parameters.Authentication.ConnectionArn);
    const options = { userAgent: this.deps.userAgent };
    const request = buildHttpTaskRequest(parameters, authorization.parameters, options);
    // The trace shows what the connection added only on request (TestState's revealSecrets).
    const shown = inspection.revealSecrets
      ? request
      : buildHttpTaskRequest(parameters, redacted(authorization.parameters), options);
    return { request, shown, authorization };
  }

  private async authorizationFor(nameOrArn: string): Promise<PreparedAuthorization> {
    try {
      return await this.deps.connections.getAuthorization(nameOrArn);
    } catch (error) {
      // Headers that cannot go on the wire are the request's problem, as the task's own are.
      if (error instanceof UnsendableConnectionError) {
        throw new TaskFailure('States.Runtime', error.message);
      }
      if (error instanceof BrokerError && error.code === 'InvalidConnectionStateException') {
        throw new TaskFailure(
          'Events.ConnectionResource.InvalidConnectionState',
          `Connection resource is not authorized. ${error.message}`,
        );
      }
      throw error;
    }
  }

  /** README, The executor's loop: a 401/407 refreshes the token, so the task's Retry succeeds. */
  private async reportRejection(
    parameters: HttpTaskParameters,
    statusCode: number,
    generation: number,
    mayDeauthorize: boolean,
  ): Promise<void> {
    try {
      await this.deps.connections.reportRejection(
        parameters.Authentication.ConnectionArn,
        statusCode,
        generation,
        { mayDeauthorize },
      );
    } catch (error) {
      // The task fails with the API's status either way; the refresh outcome is the connection's.
      this.deps.logger.info(
        { code: error instanceof BrokerError ? error.code : 'InternalException', statusCode },
        'credentials refresh after an HTTP Task rejection did not succeed',
      );
    }
  }

  private traceResponse(response: RawResponse): NonNullable<InspectionData['Response']> {
    return {
      Protocol: `HTTP/${response.httpVersion}`,
      StatusCode: response.statusCode,
      StatusMessage: response.statusText,
      Headers: response.headers,
      Body: response.body.toString('utf8'),
    };
  }

  private inspectionBase(parameters: HttpTaskParameters, inspection: Inspection): InspectionData {
    return inspection.level === 'INFO' ? {} : { Parameters: parameters };
  }

  private attach(
    inspection: Inspection,
    data: InspectionData,
  ): { InspectionData?: InspectionData } {
    return inspection.level === 'INFO' ? {} : { InspectionData: data };
  }

  private failed(error: unknown, inspection: Inspection, data: InspectionData): Failed {
    if (!(error instanceof TaskFailure)) throw error;
    return {
      Status: 'FAILED',
      Error: error.error,
      Cause: error.causeText,
      ...this.attach(inspection, data),
    };
  }
}
