import { BrokerError } from '../errors.js';
import { Router } from 'express';
import type { ArnContext } from '../connections/arn.js';
import type { ConnectionService } from '../connections/connection-service.js';
import { describeView, isoTime, stateView, summaryView } from '../connections/connection-view.js';
import {
  toListQuery,
  type CreateConnectionInput,
  type ListConnectionsInput,
  type UpdateConnectionInput,
} from '../connections/connection-input.js';
import type { components } from '../openapi-types.js';
import type { RequestValidator } from './request-validator.js';
import { requestIdFor, sendAuthorization } from './request-context.js';
import { authorize, authorizeSome, may } from './access.js';

export interface ConnectionsRoutesDeps {
  service: ConnectionService;
  validator: RequestValidator;
  arn: ArnContext;
}

type RefreshInput = components['schemas']['RefreshAuthorizationRequest'];

/** Thin handlers: validate against openapi.yaml, call one use case, send its view. */
export function connectionsRoutes({ service, validator, arn }: ConnectionsRoutesDeps): Router {
  const router = Router();
  const nameOf = (params: Record<string, unknown>): string => String(params['name']);

  router.post('/v1/connections', async (req, res) => {
    const { body } = validator.validate<CreateConnectionInput>('CreateConnection', req);
    authorize(res, 'CreateConnection', body.Name);
    const connection = await service.create(body);
    res
      .status(201)
      .location(`/v1/connections/${encodeURIComponent(connection.name)}`)
      .json(stateView(arn, connection, isoTime));
  });

  router.get('/v1/connections', async (req, res) => {
    const query = validator.validate('ListConnections', req).query as ListConnectionsInput; // validated against openapi.yaml
    const permitted = authorizeSome(res, 'ListConnections');
    const page = await service.list(toListQuery(query, permitted));
    res.json({
      Connections: page.connections.map((c) => summaryView(arn, c, isoTime)),
      ...(page.nextToken !== undefined && { NextToken: page.nextToken }),
    });
  });

  router.get('/v1/connections/:name', async (req, res) => {
    const { params } = validator.validate('DescribeConnection', req);
    authorize(res, 'DescribeConnection', nameOf(params));
    res.json(describeView(arn, await service.describe(nameOf(params)), isoTime));
  });

  router.patch('/v1/connections/:name', async (req, res) => {
    const { params, body } = validator.validate<UpdateConnectionInput>('UpdateConnection', req);
    authorize(res, 'UpdateConnection', nameOf(params));
    // An empty update would only move LastModifiedTime: almost surely a mistake.
    if (Object.keys(body).length === 0) {
      throw new BrokerError(
        'ValidationException',
        'Nothing to update: give at least one of Description, AuthorizationType and AuthParameters.',
      );
    }
    res.json(stateView(arn, await service.update(nameOf(params), body), isoTime));
  });

  router.delete('/v1/connections/:name', async (req, res) => {
    const { params } = validator.validate('DeleteConnection', req);
    authorize(res, 'DeleteConnection', nameOf(params));
    res.json(stateView(arn, await service.delete(nameOf(params)), isoTime));
  });

  router.post('/v1/connections/:name/deauthorize', async (req, res) => {
    const { params } = validator.validate('DeauthorizeConnection', req);
    authorize(res, 'DeauthorizeConnection', nameOf(params));
    res.json(stateView(arn, await service.deauthorize(nameOf(params)), isoTime));
  });

  router.get('/v1/connections/:name/authorization', async (req, res) => {
    const { params } = validator.validate('GetAuthorization', req);
    authorize(res, 'RetrieveConnectionCredentials', nameOf(params));
    const prepared = await service.getAuthorization(nameOf(params));
    sendAuthorization(res, prepared.body, requestIdFor(res));
  });

  router.post('/v1/connections/:name/authorization/refresh', async (req, res) => {
    const { params, body } = validator.validate<RefreshInput>('RefreshAuthorization', req);
    authorize(res, 'RetrieveConnectionCredentials', nameOf(params));
    const prepared = await service.reportRejection(
      nameOf(params),
      body.StatusCode,
      body.TokenGeneration,
      { mayDeauthorize: may(res, 'DeauthorizeConnection', nameOf(params)) },
    );
    sendAuthorization(res, prepared.body, requestIdFor(res));
  });

  return router;
}
