import { Router } from 'express';
import type { HttpTaskParameters } from '../http-task/http-task-request.js';
import type {
  HttpTaskService,
  Inspection,
  InspectionLevel,
} from '../http-task/http-task-service.js';
import type { RequestValidator } from './request-validator.js';
import { authorize, may } from './access.js';
import type { Response } from 'express';

export interface HttpTaskRoutesDeps {
  httpTasks: HttpTaskService;
  validator: RequestValidator;
}

function inspectionOf(query: Record<string, unknown>): Inspection {
  return {
    level: (query['inspectionLevel'] as InspectionLevel | undefined) ?? 'INFO', // the validator checked it against the enum
    revealSecrets: query['revealSecrets'] === true,
  };
}

/** Prepare needs the credentials, invoke needs them and to invoke, a trace showing them needs RevealSecrets. */
function authorizeTask(
  res: Response,
  action: 'RetrieveConnectionCredentials' | 'InvokeHttpTask',
  body: HttpTaskParameters,
  inspection: Inspection,
): void {
  const connection = body.Authentication.ConnectionArn;
  if (inspection.revealSecrets) authorize(res, 'RevealSecrets', connection);
  authorize(res, action, connection);
  // The caller picks ApiEndpoint, so invoking sends the credentials wherever it likes: as on
  // AWS, it needs the right to retrieve them too (a denial is audited as such).
  if (action === 'InvokeHttpTask') {
    authorize(res, 'RetrieveConnectionCredentials', connection, { audit: 'denial' });
  }
}

/** A task failure is a 200 answer `{Status: "FAILED", …}`; only broker problems are errors. */
export function httpTaskRoutes({ httpTasks, validator }: HttpTaskRoutesDeps): Router {
  const router = Router();

  router.post('/v1/http-task/prepare', async (req, res) => {
    const { body, query } = validator.validate<HttpTaskParameters>('PrepareHttpTask', req);
    const inspection = inspectionOf(query);
    authorizeTask(res, 'RetrieveConnectionCredentials', body, inspection);
    res.set('cache-control', 'no-store').json(await httpTasks.prepare(body, inspection));
  });

  router.post('/v1/http-task/invoke', async (req, res) => {
    const { body, query } = validator.validate<HttpTaskParameters>('InvokeHttpTask', req);
    const inspection = inspectionOf(query);
    authorizeTask(res, 'InvokeHttpTask', body, inspection);
    const mayDeauthorize = may(res, 'DeauthorizeConnection', body.Authentication.ConnectionArn);
    res
      .set('cache-control', 'no-store')
      .json(await httpTasks.invoke(body, inspection, { mayDeauthorize }));
  });

  return router;
}
