import { Router } from 'express';
import type { HttpTaskParameters } from '../http-task/http-task-request.js';
import type {
  HttpTaskService,
  Inspection,
  InspectionLevel,
} from '../http-task/http-task-service.js';
import type { RequestValidator } from './request-validator.js';

export interface HttpTaskRoutesDeps {
  httpTasks: HttpTaskService;
  validator: RequestValidator;
}

function inspectionOf(query: Record<string, unknown>): Inspection {
  return {
    level: (query['inspectionLevel'] as InspectionLevel | undefined) ?? 'INFO',
    revealSecrets: query['revealSecrets'] === true,
  };
}

/** A task failure is a 200 answer `{Status: "FAILED", …}`; only broker problems are errors. */
export function httpTaskRoutes({ httpTasks, validator }: HttpTaskRoutesDeps): Router {
  const router = Router();

  router.post('/v1/http-task/prepare', async (req, res) => {
    const { body, query } = validator.validate<HttpTaskParameters>('PrepareHttpTask', req);
    res.set('cache-control', 'no-store').json(await httpTasks.prepare(body, inspectionOf(query)));
  });

  router.post('/v1/http-task/invoke', async (req, res) => {
    const { body, query } = validator.validate<HttpTaskParameters>('InvokeHttpTask', req);
    res.set('cache-control', 'no-store').json(await httpTasks.invoke(body, inspectionOf(query)));
  });

  return router;
}
