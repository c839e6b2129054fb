import { unwrap } from '../../client/broker-api-error.js';
import type { components } from '../../openapi-types.js';
import { parseChoice, parseCount } from '../args.js';
import type { OutputFormat } from '../args.js';
import type { Command, CommandContext } from '../command.js';
import { defineCommand } from '../command.js';
import {
  buildCreateRequest,
  buildUpdateRequest,
  CONNECTION_BODY_HELP,
  CONNECTION_BODY_OPTIONS,
} from '../connection-request.js';
import {
  formatConnectionDescription,
  formatConnectionList,
  formatConnectionState,
} from '../connection-views.js';
import { CONNECTION_STATES } from '../../connections/connection.js';
import { formatJson, printable } from '../format.js';

type Schemas = components['schemas'];

/** ListConnections' own maximum page size (openapi.yaml). */
const MAX_PAGE_SIZE = 100;
const MAX_LIMIT = 1_000_000;

const NAME_OR_ARN = ['name'] as const;

const list = defineCommand({
  path: 'connections list',
  summary: 'List connections, sorted by name, following every page (or up to --limit).',
  positionals: [],
  options: {
    'name-prefix': { type: 'string' },
    state: { type: 'string' },
    limit: { type: 'string' },
    'page-size': { type: 'string' },
    'next-token': { type: 'string' },
  },
  optionsHelp: [
    ['--name-prefix PREFIX', 'only names starting with PREFIX'],
    ['--state STATE', `only this state: ${CONNECTION_STATES.join(', ')}`],
    ['--limit N', 'at most N connections; json output then carries NextToken when there are more'],
    ['--page-size N', `connections per request, 1-${MAX_PAGE_SIZE} (default ${MAX_PAGE_SIZE})`],
    ['--next-token TOKEN', 'continue a listing cut by --limit'],
  ],
  async run({ values, output }, context) {
    const limit = parseCount(values.limit, '--limit', MAX_LIMIT);
    const pageSize = parseCount(values['page-size'], '--page-size', MAX_PAGE_SIZE) ?? MAX_PAGE_SIZE;
    const state = parseChoice(values.state, '--state', CONNECTION_STATES);
    const client = context.client();
    const connections: Schemas['ConnectionSummary'][] = [];
    let nextToken = values['next-token'];
    do {
      const wanted = Math.min(
        pageSize,
        limit === undefined ? pageSize : limit - connections.length,
      );
      const page = unwrap(
        await client.GET('/v1/connections', {
          params: {
            query: {
              Limit: wanted,
              ...(values['name-prefix'] !== undefined && { NamePrefix: values['name-prefix'] }),
              ...(state !== undefined && { ConnectionState: state }),
              ...(nextToken !== undefined && { NextToken: nextToken }),
            },
          },
        }),
      );
      connections.push(...page.Connections);
      nextToken = page.NextToken;
    } while (nextToken !== undefined && (limit === undefined || connections.length < limit));

    if (output === 'json') {
      context.io.writeOut(
        formatJson({
          Connections: connections,
          ...(nextToken !== undefined && { NextToken: nextToken }),
        }),
      );
      return;
    }
    if (connections.length === 0) context.io.writeErr('No connections found.\n');
    else context.io.writeOut(formatConnectionList(connections));
    if (nextToken !== undefined) {
      context.io.writeErr(`More connections: continue with --next-token ${printable(nextToken)}\n`);
    }
  },
});

const describeCommand = defineCommand({
  path: 'connections describe',
  summary: 'Describe a connection (never its secrets: the broker does not describe them).',
  positionals: NAME_OR_ARN,
  options: {},
  optionsHelp: [],
  details: 'NAME is a connection name or its ARN.',
  async run({ positionals, output }, context) {
    const connection = unwrap(
      await context
        .client()
        .GET('/v1/connections/{name}', { params: { path: { name: nameArgument(positionals) } } }),
    );
    context.io.writeOut(
      output === 'json' ? formatJson(connection) : formatConnectionDescription(connection),
    );
  },
});

const SECRET_INPUT_DETAILS = `Secrets are read only from files or stdin (PATH -), never from the command line, where
ps and shell history would show them; one trailing newline is dropped.`;

const create = defineCommand({
  path: 'connections create',
  summary: 'Create a connection (EventBridge CreateConnection).',
  positionals: [],
  options: { name: { type: 'string' }, ...CONNECTION_BODY_OPTIONS },
  optionsHelp: [['--name NAME', 'the connection name'], ...CONNECTION_BODY_HELP],
  details: `${SECRET_INPUT_DETAILS}

Examples:
  broker connections create --name stripe --api-key-name Authorization --api-key-value-file ./stripe.key
  printf %s "$PASSWORD" | broker connections create --name legacy --basic-username svc --basic-password-file -
  broker connections create --name github --oauth-client-id app --oauth-client-secret-file ./secret \\
    --oauth-endpoint https://auth.example.com/oauth/token
  broker connections create --file conn.json`,
  async run({ values, output }, context) {
    const body = await buildCreateRequest(values, context.files);
    const state = unwrap(await context.client().POST('/v1/connections', { body }));
    writeChangedState(context, output, state);
  },
});

const update = defineCommand({
  path: 'connections update',
  summary: 'Update or rotate a connection (EventBridge UpdateConnection); omitted fields are kept.',
  positionals: NAME_OR_ARN,
  options: CONNECTION_BODY_OPTIONS,
  optionsHelp: CONNECTION_BODY_HELP,
  details: `${SECRET_INPUT_DETAILS}

Examples:
  broker connections update stripe --api-key-value-file ./stripe-rotated.key
  broker connections update stripe --description "Stripe live key"
  broker connections update stripe --file update.json`,
  async run({ values, positionals, output }, context) {
    const body = await buildUpdateRequest(values, context.files);
    const state = unwrap(
      await context.client().PATCH('/v1/connections/{name}', {
        params: { path: { name: nameArgument(positionals) } },
        body,
      }),
    );
    writeChangedState(context, output, state);
  },
});

const deleteCommand = defineCommand({
  path: 'connections delete',
  summary: 'Delete a connection and its secret (EventBridge DeleteConnection).',
  positionals: NAME_OR_ARN,
  options: {},
  optionsHelp: [],
  async run({ positionals, output }, context) {
    const state = unwrap(
      await context.client().DELETE('/v1/connections/{name}', {
        params: { path: { name: nameArgument(positionals) } },
      }),
    );
    writeState(context, output, state);
  },
});

const deauthorize = defineCommand({
  path: 'connections deauthorize',
  summary:
    'Drop the credentials and token; the connection is unusable until updated with new ones.',
  positionals: NAME_OR_ARN,
  options: {},
  optionsHelp: [],
  async run({ positionals, output }, context) {
    const state = unwrap(
      await context.client().POST('/v1/connections/{name}/deauthorize', {
        params: { path: { name: nameArgument(positionals) } },
      }),
    );
    writeState(context, output, state);
  },
});

export const CONNECTIONS_COMMANDS: Record<string, Command> = {
  list,
  describe: describeCommand,
  create,
  update,
  delete: deleteCommand,
  deauthorize,
};

function writeState(
  context: CommandContext,
  output: OutputFormat,
  state: Schemas['ConnectionStateResponse'],
): void {
  context.io.writeOut(output === 'json' ? formatJson(state) : formatConnectionState(state));
}

/** Create and update: an OAuth token request that failed leaves the connection DEAUTHORIZED. */
function writeChangedState(
  context: CommandContext,
  output: OutputFormat,
  state: Schemas['ConnectionStateResponse'],
): void {
  writeState(context, output, state);
  if (output === 'table' && state.ConnectionState === 'DEAUTHORIZED') {
    context.io.writeErr('The connection is DEAUTHORIZED: describe it for the StateReason.\n');
  }
}

/** parseCommand checked the count; this only satisfies noUncheckedIndexedAccess. */
function nameArgument(positionals: readonly string[]): string {
  return positionals[0] ?? '';
}
