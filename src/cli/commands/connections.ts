import { BrokerApiError, BrokerUnreachableError, unwrap } from '../../client/broker-api-error.js';
import type { components } from '../../openapi-types.js';
import { parseChoice, parseCount } from '../args.js';
import type { OptionSpecs, OutputFormat } from '../args.js';
import { formatAuthorization, maskAuthorization } from '../authorization-views.js';
import type { Command, CommandContext } from '../command.js';
import { defineCommand } from '../command.js';
import {
  buildCreateRequest,
  buildUpdateRequest,
  CONNECTION_BODY_HELP,
  CONNECTION_BODY_OPTIONS,
} from '../connection-request.js';
import { formatImportSummary, importConnections, MAX_ATTEMPTS } from '../connection-import.js';
import {
  formatConnectionDescription,
  formatConnectionList,
  formatConnectionState,
} from '../connection-views.js';
import { CONNECTION_STATES } from '../../connections/connection.js';
import { ItemsFailedError, UsageError } from '../exit-codes.js';
import { formatJson, printable } from '../format.js';

type Schemas = components['schemas'];

/** ListConnections' own maximum page size (openapi.yaml). */
const MAX_PAGE_SIZE = 100;
const MAX_LIMIT = 1_000_000;

const NAME_OR_ARN = ['name'] as const;

/** The statuses RefreshAuthorization accepts (openapi.yaml): the upstream's rejections. */
const REJECTION_STATUSES = ['401', '407'] as const;

const REVEAL_OPTION = { reveal: { type: 'boolean' } } as const satisfies OptionSpecs;
const REVEAL_HELP = [
  '--reveal',
  'show the values in full (default: masked, in the table and in -o json)',
] as const;
const MASKING_DETAILS = `Every value is masked as **** (followed by its last 4 characters when it is longer than 12),
in the table and in -o json, unless --reveal: a revealed value is a live credential, so keep it
out of shared terminals, tickets and logs.`;

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
    await writeChangedState(context, output, state);
  },
});

const MAX_IMPORT_CONCURRENCY = 64;
const DEFAULT_IMPORT_CONCURRENCY = 4;

const importCommand = defineCommand({
  path: 'connections import',
  summary: "Create many connections from a JSON Lines file, within the broker's rate limits.",
  positionals: ['file'],
  options: { concurrency: { type: 'string' } },
  optionsHelp: [
    [
      '--concurrency N',
      `creates in flight at once, 1-${MAX_IMPORT_CONCURRENCY} (default ${DEFAULT_IMPORT_CONCURRENCY})`,
    ],
  ],
  details: `FILE (or - for stdin) holds one REST API CreateConnection body per line, secrets included,
e.g. {"Name":"stripe","AuthorizationType":"API_KEY","AuthParameters":{"ApiKeyAuthParameters":
{"ApiKeyName":"Authorization","ApiKeyValue":"…"}}}. It is read as a stream; blank lines are skipped.

Each line is one create: an existing connection (ResourceAlreadyExistsException) is skipped, a 429
is retried after its Retry-After (up to ${MAX_ATTEMPTS} attempts), any other error fails that line
and the import goes on. A line that is not a JSON object fails as InvalidLine. No line's content is
ever printed: a failure names its line number, Name, code and the broker's detail.

Progress goes to stderr about once a second; the summary to stdout at the end (-o json:
{"created","skipped","failed","retried","failures":[{"line","name","code","detail"}]},
retried counting the creates sent again after a 429).
Exit 0 when no line failed, 1 when some did, 2 when FILE cannot be read (nothing sent),
3 when the broker cannot be reached (the import stops).

Examples:
  broker connections import connections.jsonl
  generate-connections | broker connections import - --concurrency 8 -o json`,
  async run({ values, positionals, output }, context) {
    const concurrency =
      parseCount(values.concurrency, '--concurrency', MAX_IMPORT_CONCURRENCY) ??
      DEFAULT_IMPORT_CONCURRENCY;
    const source = positionals[0] ?? '';
    const chunks = await context.files.stream(source, 'FILE');
    const client = context.client();
    const summary = await importConnections(chunks, {
      client,
      concurrency,
      writeProgress: (text) => context.io.writeErr(text),
    });
    context.io.writeOut(output === 'json' ? formatJson(summary) : formatImportSummary(summary));
    if (summary.failed > 0) {
      throw new ItemsFailedError(`${summary.failed} line(s) failed to import (see the summary)`);
    }
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
    await writeChangedState(context, output, state);
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

const authorization = defineCommand({
  path: 'connections authorization',
  summary: 'Show the headers, query and body parameters an executor would apply (values masked).',
  positionals: NAME_OR_ARN,
  options: REVEAL_OPTION,
  optionsHelp: [REVEAL_HELP],
  details: `NAME is a connection name or its ARN. Sends GET /v1/connections/NAME/authorization, which
needs RetrieveConnectionCredentials; an OAuth token with under 60 seconds left is refreshed first.

${MASKING_DETAILS}

Examples:
  broker connections authorization stripe
  broker connections authorization github -o json | jq .TokenGeneration`,
  async run({ values, positionals, output }, context) {
    const parameters = unwrap(
      await context.client().GET('/v1/connections/{name}/authorization', {
        params: { path: { name: nameArgument(positionals) } },
      }),
    );
    const shown = values.reveal === true ? parameters : maskAuthorization(parameters);
    context.io.writeOut(output === 'json' ? formatJson(shown) : formatAuthorization(shown));
  },
});

const refresh = defineCommand({
  path: 'connections refresh',
  summary:
    'Report a 401 or 407 from the upstream API, as an executor does, and show what to retry with.',
  positionals: NAME_OR_ARN,
  options: { status: { type: 'string' }, generation: { type: 'string' }, ...REVEAL_OPTION },
  optionsHelp: [
    ['--status 401|407', "the upstream API's answer (required)"],
    ['--generation N', 'the rejected TokenGeneration (default: the current one, fetched first)'],
    REVEAL_HELP,
  ],
  details: `NAME is a connection name or its ARN. Sends POST /v1/connections/NAME/authorization/refresh
and prints the new TokenGeneration and expiry with the parameters to apply on the retry. Without
--generation, the CLI first fetches the authorization (GET /v1/connections/NAME/authorization)
to learn the current TokenGeneration, and reports that one.

OAUTH_CLIENT_CREDENTIALS: while N is current the broker requests a new token (one request
however many callers report N); when the token already moved on, it answers the current one.
BASIC and API_KEY: the connection becomes DEAUTHORIZED (EventBridge's rule) and the broker
answers 409 InvalidConnectionStateException (exit 1); it stays unusable until updated with new
credentials, so reporting needs DeauthorizeConnection besides RetrieveConnectionCredentials.

${MASKING_DETAILS}

Examples:
  broker connections refresh github --status 401
  broker connections refresh github --status 407 --generation 3 -o json`,
  async run({ values, positionals, output }, context) {
    const status = parseChoice(values.status, '--status', REJECTION_STATUSES);
    if (status === undefined) {
      throw new UsageError(`--status is required: ${REJECTION_STATUSES.join(' or ')}`);
    }
    const reported = parseCount(values.generation, '--generation', Number.MAX_SAFE_INTEGER);
    const client = context.client();
    const name = nameArgument(positionals);
    const generation =
      reported ??
      unwrap(
        await client.GET('/v1/connections/{name}/authorization', {
          params: { path: { name } },
        }),
      ).TokenGeneration;
    const parameters = unwrap(
      await client.POST('/v1/connections/{name}/authorization/refresh', {
        params: { path: { name } },
        body: { StatusCode: status === '401' ? 401 : 407, TokenGeneration: generation },
      }),
    );
    const shown = values.reveal === true ? parameters : maskAuthorization(parameters);
    if (output === 'json') {
      context.io.writeOut(formatJson(shown));
      return;
    }
    context.io.writeOut(
      `Reported HTTP ${status} for token generation ${generation}; the broker now serves generation ${parameters.TokenGeneration}.\n\n${formatAuthorization(shown)}`,
    );
  },
});

export const CONNECTIONS_COMMANDS: Record<string, Command> = {
  list,
  describe: describeCommand,
  create,
  import: importCommand,
  update,
  delete: deleteCommand,
  deauthorize,
  authorization,
  refresh,
};

function writeState(
  context: CommandContext,
  output: OutputFormat,
  state: Schemas['ConnectionStateResponse'],
): void {
  context.io.writeOut(output === 'json' ? formatJson(state) : formatConnectionState(state));
}

/**
 * Create and update: an OAuth token request that failed leaves the connection DEAUTHORIZED, and
 * the call still succeeded (exit 0); its StateReason goes to stderr, so -o json stays the answer.
 */
async function writeChangedState(
  context: CommandContext,
  output: OutputFormat,
  state: Schemas['ConnectionStateResponse'],
): Promise<void> {
  writeState(context, output, state);
  if (state.ConnectionState === 'DEAUTHORIZED') {
    context.io.writeErr(await explainDeauthorized(context, state));
  }
}

/** `StateReason: …` from the answer or, as ConnectionStateResponse declares none yet, a describe. */
async function explainDeauthorized(
  context: CommandContext,
  state: Schemas['ConnectionStateResponse'],
): Promise<string> {
  const answered: unknown = (state as { StateReason?: unknown }).StateReason; // read as unknown, checked below
  let reason = typeof answered === 'string' ? answered : undefined;
  if (reason === undefined) {
    try {
      const described = unwrap(
        await context.client().GET('/v1/connections/{name}', {
          params: { path: { name: state.ConnectionArn } },
        }),
      );
      reason = described.StateReason;
    } catch (error) {
      // The change itself succeeded: only its explanation is missing, which is no reason to fail.
      const unread = 'The connection is DEAUTHORIZED; describing it for its StateReason failed';
      if (error instanceof BrokerApiError)
        return `${unread}: ${printable(error.code)} (HTTP ${error.status}).\n`;
      if (error instanceof BrokerUnreachableError) return `${unread}: ${error.message}.\n`;
      throw error;
    }
  }
  return reason === undefined
    ? 'The connection is DEAUTHORIZED (the broker described no StateReason).\n'
    : `StateReason: ${printable(reason)}\n`;
}

/** parseCommand checked the count; this only satisfies noUncheckedIndexedAccess. */
function nameArgument(positionals: readonly string[]): string {
  return positionals[0] ?? '';
}
