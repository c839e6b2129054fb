import type { Response } from 'express';
import type { ArnContext } from '../../connections/arn.js';
import type { ConnectionService } from '../../connections/connection-service.js';
import {
  toListQuery,
  type CreateConnectionInput,
  type ListConnectionsInput,
  type UpdateConnectionInput,
} from '../../connections/connection-input.js';
import { authorize, authorizeSome } from '../access.js';
import type { WireValidator } from './wire-validator.js';
import {
  createdShape,
  deauthorizingShape,
  describeShape,
  stateShape,
  summaryShape,
} from './wire-shapes.js';

/** EventBridge's connection operations, as named in `X-Amz-Target: AWSEvents.<Operation>`. */
export const WIRE_OPERATIONS = [
  'CreateConnection',
  'DescribeConnection',
  'ListConnections',
  'UpdateConnection',
  'DeleteConnection',
  'DeauthorizeConnection',
] as const;
export type WireOperation = (typeof WIRE_OPERATIONS)[number];

export interface WireContext {
  service: ConnectionService;
  validator: WireValidator;
  arn: ArnContext;
  /** Carries the caller and the audit notes (src/http/access.ts). */
  res: Response;
}

type Handler = (input: Record<string, unknown>, ctx: WireContext) => Promise<object>;

interface NameInput {
  Name: string;
}

/**
 * EventBridge's way for writes: answer AUTHORIZING and get the OAuth token afterwards; store an
 * AuthorizationEndpoint that is no URL at all and let its authorization fail (DEAUTHORIZED).
 */
const WRITE_OPTIONS = { authorization: 'background', unparsableEndpoint: 'deauthorize' } as const;

/**
 * One use case each, with the REST API's rules: same validation, same policy, same service;
 * only HttpMethod's casing and AuthorizationEndpoint follow EventBridge's looser model.
 */
const HANDLERS: Record<WireOperation, Handler> = {
  CreateConnection: async (input, { service, validator, arn, res }) => {
    const body = validator.validate<CreateConnectionInput>('CreateConnection', input);
    authorize(res, 'CreateConnection', body.Name);
    return createdShape(arn, await service.create(body, WRITE_OPTIONS));
  },

  DescribeConnection: async (input, { service, validator, arn, res }) => {
    const { Name } = validator.validate<NameInput>('DescribeConnection', input);
    authorize(res, 'DescribeConnection', Name);
    return describeShape(arn, await service.describe(Name));
  },

  ListConnections: async (input, { service, validator, arn, res }) => {
    const query = validator.validate<ListConnectionsInput>('ListConnections', input);
    const permitted = authorizeSome(res, 'ListConnections');
    const page = await service.list(toListQuery(query, permitted));
    return {
      Connections: page.connections.map((c) => summaryShape(arn, c)),
      ...(page.nextToken !== undefined && { NextToken: page.nextToken }),
    };
  },

  UpdateConnection: async (input, { service, validator, arn, res }) => {
    const { Name, ...body } = validator.validate<UpdateConnectionInput & NameInput>(
      'UpdateConnection',
      input,
    );
    authorize(res, 'UpdateConnection', Name);
    return stateShape(arn, await service.update(Name, body, WRITE_OPTIONS));
  },

  DeleteConnection: async (input, { service, validator, arn, res }) => {
    const { Name } = validator.validate<NameInput>('DeleteConnection', input);
    authorize(res, 'DeleteConnection', Name);
    return stateShape(arn, await service.delete(Name));
  },

  DeauthorizeConnection: async (input, { service, validator, arn, res }) => {
    const { Name } = validator.validate<NameInput>('DeauthorizeConnection', input);
    authorize(res, 'DeauthorizeConnection', Name);
    return deauthorizingShape(arn, await service.deauthorize(Name));
  },
};

export function isWireOperation(name: string): name is WireOperation {
  return (WIRE_OPERATIONS as readonly string[]).includes(name); // widened to test any string
}

export function runWireOperation(
  operation: WireOperation,
  input: Record<string, unknown>,
  ctx: WireContext,
): Promise<object> {
  return HANDLERS[operation](input, ctx);
}
