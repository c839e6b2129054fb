/**
 * The Helm chart, linted and rendered by a real helm (built into .tools/bin by
 * scripts/ensure-helm.sh when missing: never skipped), every rendered object validated against
 * its Kubernetes or prometheus-operator model, and its configuration, dashboard and alerts checked
 * against what the broker really reads and exports.
 */

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  PrometheusRule,
  ServiceMonitor,
} from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';
import { Deployment } from 'kubernetes-models/apps/v1';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { ConfigMap, PersistentVolumeClaim, Service, ServiceAccount } from 'kubernetes-models/v1';
import type { IContainer, IPodSpec, IVolume } from 'kubernetes-models/v1';
import { Histogram, Summary } from 'prom-client';
import { parseAllDocuments } from 'yaml';
import { loadConfig } from '../../src/config.js';
import { createMetrics } from '../../src/metrics.js';
import { ensureTool } from '../support/ensure-tool.js';

const PROJECT_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CHART = join(PROJECT_ROOT, 'helm', 'connection-broker');
const PRODUCTION_VALUES = join(CHART, 'ci', 'production-values.yaml');
const HELM = join(PROJECT_ROOT, '.tools', 'bin', 'helm');
/** A cold build of helm from the Go module proxy took about 4 to 8 minutes on two cores. */
const INSTALL_TIMEOUT_MS = 1_200_000;
const RELEASE = 'cb';
const NAMESPACE = 'brokers';
const FULLNAME = 'cb-connection-broker';

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  [field: string]: unknown;
}

interface HelmResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Every kind the chart may render, and the model that validates it. */
const MODELS: Record<string, (object: K8sObject) => { validate(): void }> = {
  'v1/ConfigMap': (o) => new ConfigMap(o),
  'v1/Service': (o) => new Service(o),
  'v1/ServiceAccount': (o) => new ServiceAccount(o),
  'v1/PersistentVolumeClaim': (o) => new PersistentVolumeClaim(o),
  'apps/v1/Deployment': (o) => new Deployment(o),
  'policy/v1/PodDisruptionBudget': (o) => new PodDisruptionBudget(o),
  'autoscaling/v2/HorizontalPodAutoscaler': (o) => new HorizontalPodAutoscaler(o),
  'networking.k8s.io/v1/NetworkPolicy': (o) => new NetworkPolicy(o),
  'monitoring.coreos.com/v1/ServiceMonitor': (o) => new ServiceMonitor(o as never),
  'monitoring.coreos.com/v1/PrometheusRule': (o) => new PrometheusRule(o as never),
};

function runHelm(args: string[]): HelmResult {
  const result = spawnSync(HELM, args, { cwd: PROJECT_ROOT, encoding: 'utf8', timeout: 60_000 });
  if (result.error !== undefined) throw result.error;
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

function templateArgs(valueFiles: string[], sets: string[]): string[] {
  return [
    'template',
    RELEASE,
    CHART,
    '--namespace',
    NAMESPACE,
    ...valueFiles.flatMap((file) => ['--values', file]),
    ...sets.flatMap((set) => ['--set', set]),
  ];
}

/** `helm template`; fails the test with helm's message when it does not render. */
function render(options: { valueFiles?: string[]; sets?: string[] } = {}): K8sObject[] {
  const result = runHelm(templateArgs(options.valueFiles ?? [], options.sets ?? []));
  assert.equal(result.status, 0, `helm template failed: ${result.stderr}`);
  return parseAllDocuments(result.stdout)
    .map((document) => document.toJS() as K8sObject | null)
    .filter((object): object is K8sObject => object !== null);
}

/** `helm template` that must fail; returns helm's message. */
function renderFailure(sets: string[]): string {
  const result = runHelm(templateArgs([], sets));
  assert.notEqual(result.status, 0, `helm template rendered with ${sets.join(' ')}`);
  return result.stderr;
}

function only(objects: K8sObject[], kind: string): K8sObject {
  const found = objects.filter((object) => object.kind === kind);
  assert.equal(found.length, 1, `expected one ${kind}, got ${found.length}`);
  return found[0]!;
}

function kinds(objects: K8sObject[]): string[] {
  return objects.map((object) => object.kind).sort();
}

function podSpec(objects: K8sObject[]): IPodSpec {
  const deployment = new Deployment(only(objects, 'Deployment'));
  const spec = deployment.spec?.template.spec;
  assert.ok(spec !== undefined);
  return spec;
}

function brokerContainer(objects: K8sObject[]): IContainer {
  const container = podSpec(objects).containers.find((c) => c.name === 'broker');
  assert.ok(container !== undefined);
  return container;
}

function brokerConfigMapData(objects: K8sObject[]): Record<string, string> {
  const configMap = objects.find(
    (object) => object.kind === 'ConfigMap' && object.metadata.name === FULLNAME,
  );
  assert.ok(configMap !== undefined);
  return configMap['data'] as Record<string, string>;
}

function secretVolume(volumes: IVolume[], name: string): IVolume {
  const volume = volumes.find((v) => v.name === name);
  assert.ok(volume?.secret !== undefined, `no secret volume ${name}`);
  return volume;
}

/** Every environment name src/config.ts reads: loadConfig is handed an env that records reads. */
function namesConfigReads(): Set<string> {
  const read = new Set<string>();
  const recorder = new Proxy<NodeJS.ProcessEnv>(
    {},
    {
      get(_target, name) {
        if (typeof name === 'string') read.add(name);
        return undefined;
      },
    },
  );
  loadConfig(recorder);
  return read;
}

interface ExportedMetric {
  labels: Set<string>;
}

/** Series names the broker exports (histograms as _bucket, _sum, _count), with label names. */
function exportedSeries(): Map<string, ExportedMetric> {
  const { registry } = createMetrics({ collectDefaults: true });
  const series = new Map<string, ExportedMetric>();
  for (const metric of registry.getMetricsAsArray()) {
    const labelNames = (metric as unknown as { labelNames?: readonly string[] }).labelNames ?? [];
    const labels = new Set(labelNames);
    if (metric instanceof Histogram) {
      series.set(`${metric.name}_bucket`, { labels: new Set([...labels, 'le']) });
      series.set(`${metric.name}_sum`, { labels });
      series.set(`${metric.name}_count`, { labels });
    } else if (metric instanceof Summary) {
      series.set(metric.name, { labels: new Set([...labels, 'quantile']) });
      series.set(`${metric.name}_sum`, { labels });
      series.set(`${metric.name}_count`, { labels });
    } else {
      series.set(metric.name, { labels });
    }
  }
  return series;
}

/** Labels Prometheus adds to every scraped series (target labels), not the broker's own. */
const TARGET_LABELS = new Set(['namespace', 'job', 'pod', 'instance', 'service', 'container']);

/** Problems with an expression's broker_* metric names and their label matchers. */
function checkPromQL(expr: string, series: Map<string, ExportedMetric>): string[] {
  const problems: string[] = [];
  const references = [...expr.matchAll(/\b(broker_[a-z0-9_]+)\s*(\{[^}]*\})?/g)];
  if (references.length === 0) problems.push(`no broker metric in: ${expr}`);
  for (const [, name, selector] of references) {
    const metric = series.get(name!);
    if (metric === undefined) {
      problems.push(`${name} is not exported by src/metrics.ts (in: ${expr})`);
      continue;
    }
    for (const [, label] of (selector ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)/g)) {
      if (!metric.labels.has(label!) && !TARGET_LABELS.has(label!)) {
        problems.push(`${name} has no label ${label} (in: ${expr})`);
      }
    }
  }
  return problems;
}

before(() =>
  ensureTool({
    name: 'helm',
    script: 'scripts/ensure-helm.sh',
    binary: '.tools/bin/helm',
    installTimeoutMs: INSTALL_TIMEOUT_MS,
  }),
);

describe('helm chart', () => {
  describe('chart metadata', () => {
    test('when no image tag is given, then the image is the chart\'s appVersion, which is package.json\'s version', () => {
      const chart = readFileSync(join(CHART, 'Chart.yaml'), 'utf8');
      const appVersion = /^appVersion:\s*"?([^"\s]+)"?\s*$/m.exec(chart)?.[1];
      const { version } = JSON.parse(readFileSync(join(PROJECT_ROOT, 'package.json'), 'utf8')) as {
        version: string;
      };
      assert.equal(appVersion, version);
      assert.equal(brokerContainer(render()).image, `connection-broker:${version}`);
      const digest = `sha256:${'a'.repeat(64)}`;
      assert.equal(
        brokerContainer(render({ sets: [`image.digest=${digest}`, 'image.tag=9.9.9'] })).image,
        `connection-broker@${digest}`,
      );
    });
  });

  describe('lint', () => {
    test('when the chart is linted strictly with the default values, then it passes', () => {
      const result = runHelm(['lint', '--strict', CHART]);
      assert.equal(result.status, 0, result.stdout + result.stderr);
    });

    test('when the chart is linted strictly with the production values, then it passes', () => {
      const result = runHelm(['lint', '--strict', CHART, '--values', PRODUCTION_VALUES]);
      assert.equal(result.status, 0, result.stdout + result.stderr);
    });
  });

  describe('rendered objects', () => {
    test('when rendered with the default values, then the file store objects render and each is valid for its model', () => {
      const objects = render();
      assert.deepEqual(kinds(objects), [
        'ConfigMap',
        'Deployment',
        'PersistentVolumeClaim',
        'Service',
        'ServiceAccount',
      ]);
      for (const object of objects) MODELS[`${object.apiVersion}/${object.kind}`]!(object).validate();
    });

    test('when rendered with the production values, then the aws store, scaling and monitoring objects render and each is valid for its model', () => {
      const objects = render({ valueFiles: [PRODUCTION_VALUES] });
      assert.deepEqual(kinds(objects), [
        'ConfigMap',
        'ConfigMap',
        'Deployment',
        'HorizontalPodAutoscaler',
        'NetworkPolicy',
        'PodDisruptionBudget',
        'PrometheusRule',
        'Service',
        'ServiceAccount',
        'ServiceMonitor',
      ]);
      for (const object of objects) {
        const model = MODELS[`${object.apiVersion}/${object.kind}`];
        assert.ok(model !== undefined, `no model for ${object.apiVersion}/${object.kind}`);
        model(object).validate();
      }
    });
  });

  describe('pod', () => {
    test('when rendered, then the pod and its container run hardened', () => {
      for (const objects of [render(), render({ valueFiles: [PRODUCTION_VALUES] })]) {
        const spec = podSpec(objects);
        assert.equal(spec.securityContext?.runAsNonRoot, true);
        assert.deepEqual(spec.securityContext?.seccompProfile, { type: 'RuntimeDefault' });
        assert.equal(spec.automountServiceAccountToken, false);
        assert.deepEqual(brokerContainer(objects).securityContext, {
          runAsNonRoot: true,
          privileged: false,
          readOnlyRootFilesystem: true,
          allowPrivilegeEscalation: false,
          capabilities: { drop: ['ALL'] },
          seccompProfile: { type: 'RuntimeDefault' },
        });
      }
    });

    test('when rendered, then liveness checks /healthz and readiness checks /readyz on the http port', () => {
      const container = brokerContainer(render());
      assert.deepEqual(container.ports, [{ name: 'http', containerPort: 8080, protocol: 'TCP' }]);
      assert.deepEqual(container.livenessProbe?.httpGet, { path: '/healthz', port: 'http' });
      assert.deepEqual(container.startupProbe?.httpGet, { path: '/healthz', port: 'http' });
      assert.deepEqual(container.readinessProbe?.httpGet, { path: '/readyz', port: 'http' });
      assert.ok(container.resources?.requests !== undefined);
    });

    test('when rendered, then /tmp is a writable emptyDir over the read-only root filesystem', () => {
      const objects = render();
      const tmpMount = brokerContainer(objects).volumeMounts?.find((m) => m.mountPath === '/tmp');
      assert.ok(tmpMount !== undefined && tmpMount.readOnly !== true);
      const tmp = podSpec(objects).volumes?.find((v) => v.name === tmpMount.name);
      assert.ok(tmp?.emptyDir !== undefined);
    });

    test('when rendered, then the broker delays and drains by itself (no preStop hook) and the grace period outlasts both', () => {
      const objects = render();
      const spec = podSpec(objects);
      assert.equal(brokerContainer(objects).lifecycle, undefined);
      const data = brokerConfigMapData(objects);
      assert.equal(data['BROKER_SHUTDOWN_DELAY_SECONDS'], '5');
      assert.equal(data['BROKER_DRAIN_TIMEOUT_SECONDS'], '10');
      assert.ok(spec.terminationGracePeriodSeconds! >= 5 + 10 + 5);
    });

    test('when the grace period does not cover the shutdown delay plus the drain, then rendering fails saying so', () => {
      const message = renderFailure(['terminationGracePeriodSeconds=15']);
      assert.match(message, /terminationGracePeriodSeconds \(15\) must be at least/);
      assert.doesNotThrow(() =>
        render({ sets: ['config.shutdownDelaySeconds=0', 'terminationGracePeriodSeconds=15'] }),
      );
    });
  });

  describe('secrets', () => {
    test('when rendered with the file store, then the master key and policy Secrets are mounted as read-only directories, never by subPath', () => {
      const objects = render();
      const container = brokerContainer(objects);
      const volumes = podSpec(objects).volumes ?? [];
      const env = brokerConfigMapData(objects);
      for (const [volumeName, variable, secretName] of [
        ['master-key', 'BROKER_MASTER_KEY_FILE', 'connection-broker-master-key'],
        ['policy', 'BROKER_POLICY_FILE', 'connection-broker-policy'],
      ] as const) {
        const mount = container.volumeMounts?.find((m) => m.name === volumeName);
        assert.ok(mount !== undefined, `no mount of ${volumeName}`);
        assert.equal(mount.subPath, undefined);
        assert.equal(mount.subPathExpr, undefined);
        assert.equal(mount.readOnly, true);
        assert.equal(secretVolume(volumes, volumeName).secret?.secretName, secretName);
        assert.ok(env[variable]?.startsWith(`${mount.mountPath}/`), `${variable} is in the mount`);
      }
    });

    test('when rendered with the aws store, then there is no master key volume, PersistentVolumeClaim or data directory', () => {
      const objects = render({ valueFiles: [PRODUCTION_VALUES] });
      const volumes = podSpec(objects).volumes ?? [];
      assert.deepEqual(volumes.map((v) => v.name).sort(), ['policy', 'tmp']);
      assert.ok(!objects.some((object) => object.kind === 'PersistentVolumeClaim'));
      const env = brokerConfigMapData(objects);
      assert.equal(env['BROKER_MASTER_KEY_FILE'], undefined);
      assert.equal(env['BROKER_DATA_DIR'], undefined);
    });

    test('when rendered, then no Secret and no secret value appear anywhere in the output', () => {
      const key = randomBytes(32).toString('base64');
      for (const valueFiles of [[], [PRODUCTION_VALUES]]) {
        // The config checksum is the one 64-hex-digit value the chart renders on purpose.
        const output = runHelm(templateArgs(valueFiles, [])).stdout.replace(
          /checksum\/config: [0-9a-f]{64}/g,
          '',
        );
        const objects = render({ valueFiles });
        assert.ok(!objects.some((object) => object.kind === 'Secret'));
        const env = brokerConfigMapData(objects);
        for (const inline of ['BROKER_MASTER_KEY', 'BROKER_MASTER_KEYS']) {
          assert.equal(env[inline], undefined);
        }
        // Nothing shaped like a 32-byte base64 key or a 64-hex-digit caller key.
        assert.doesNotMatch(output, /[A-Za-z0-9+/]{43}=/);
        assert.doesNotMatch(output, /\b[0-9a-f]{64}\b/);
        assert.ok(!output.includes(key));
      }
    });

    test('when a secret is offered through values, then the schema refuses it', () => {
      const key = randomBytes(32).toString('base64');
      assert.match(
        renderFailure([`store.file.masterKey.value=${key}`]),
        /additional properties 'value' not allowed/,
      );
      assert.match(
        renderFailure([`extraEnv[0].name=BROKER_MASTER_KEY`, `extraEnv[0].value=${key}`]),
        /extraEnv\/0\/name/,
      );
    });
  });

  describe('store modes and scaling', () => {
    test('when rendered with the file store, then one replica is replaced by Recreate on a kept ReadWriteOnce claim', () => {
      const objects = render();
      const deployment = new Deployment(only(objects, 'Deployment'));
      assert.equal(deployment.spec?.replicas, 1);
      assert.deepEqual(deployment.spec?.strategy, { type: 'Recreate' });
      const claim = new PersistentVolumeClaim(only(objects, 'PersistentVolumeClaim'));
      assert.deepEqual(claim.spec?.accessModes, ['ReadWriteOnce']);
      assert.equal(claim.metadata?.annotations?.['helm.sh/resource-policy'], 'keep');
      const data = podSpec(objects).volumes?.find((v) => v.name === 'data');
      assert.equal(data?.persistentVolumeClaim?.claimName, claim.metadata?.name);
      assert.equal(brokerConfigMapData(objects)['BROKER_SECRET_STORE'], 'file');
    });

    test('when accessMode is ReadWriteOncePod, then the claim allows one pod only; a mode that lets two nodes write is refused', () => {
      const objects = render({ sets: ['store.file.persistence.accessMode=ReadWriteOncePod'] });
      const claim = new PersistentVolumeClaim(only(objects, 'PersistentVolumeClaim'));
      assert.deepEqual(claim.spec?.accessModes, ['ReadWriteOncePod']);
      assert.match(
        renderFailure(['store.file.persistence.accessMode=ReadWriteMany']),
        /accessMode/,
      );
    });

    test('when the file store is given replicaCount 2, then rendering fails with a clear message', () => {
      const message = renderFailure(['replicaCount=2']);
      assert.match(message, /store\.type=file runs exactly one replica/);
      assert.match(message, /replicaCount is 2/);
    });

    test('when the file store is given autoscaling, then rendering fails with a clear message', () => {
      assert.match(
        renderFailure(['autoscaling.enabled=true']),
        /store\.type=file runs exactly one replica.*autoscaling\.enabled must be false/,
      );
    });

    test('when rendered with the production values, then Secrets Manager is configured, rolled without downtime and scaled by the HorizontalPodAutoscaler', () => {
      const objects = render({ valueFiles: [PRODUCTION_VALUES] });
      const deployment = new Deployment(only(objects, 'Deployment'));
      assert.equal(deployment.spec?.replicas, undefined, 'the HPA owns the replica count');
      assert.deepEqual(deployment.spec?.strategy, {
        type: 'RollingUpdate',
        rollingUpdate: { maxUnavailable: 0, maxSurge: 1 },
      });
      const hpa = new HorizontalPodAutoscaler(only(objects, 'HorizontalPodAutoscaler'));
      assert.deepEqual(hpa.spec?.scaleTargetRef, {
        apiVersion: 'apps/v1',
        kind: 'Deployment',
        name: FULLNAME,
      });
      assert.equal(hpa.spec?.minReplicas, 3);
      const env = brokerConfigMapData(objects);
      assert.equal(env['BROKER_SECRET_STORE'], 'aws');
      assert.equal(env['BROKER_REGION'], 'eu-west-1');
      assert.equal(env['BROKER_SECRET_NAME_PREFIX'], 'connection-broker/');
      assert.match(env['BROKER_KMS_KEY_ID'] ?? '', /^arn:aws:kms:/);
      const account = only(objects, 'ServiceAccount');
      assert.equal(
        (account.metadata as { annotations?: Record<string, string> }).annotations?.[
          'eks.amazonaws.com/role-arn'
        ],
        'arn:aws:iam::123456789012:role/connection-broker',
      );
      assert.equal(podSpec(objects).serviceAccountName, account.metadata.name);
    });

    test('when one replica runs, then there is no PodDisruptionBudget and no anti-affinity', () => {
      for (const objects of [render(), render({ sets: ['store.type=aws'] })]) {
        assert.ok(!objects.some((object) => object.kind === 'PodDisruptionBudget'));
        assert.equal(podSpec(objects).affinity, undefined);
      }
    });

    test('when more than one replica runs, then a PodDisruptionBudget and pod anti-affinity keep them apart', () => {
      const objects = render({ sets: ['store.type=aws', 'replicaCount=2'] });
      const budget = new PodDisruptionBudget(only(objects, 'PodDisruptionBudget'));
      assert.equal(budget.spec?.maxUnavailable, 1);
      assert.deepEqual(budget.spec?.selector?.matchLabels, {
        'app.kubernetes.io/name': 'connection-broker',
        'app.kubernetes.io/instance': RELEASE,
      });
      const preferred =
        podSpec(objects).affinity?.podAntiAffinity?.preferredDuringSchedulingIgnoredDuringExecution;
      assert.equal(preferred?.[0]?.podAffinityTerm.topologyKey, 'kubernetes.io/hostname');
      const hard = podSpec(render({ valueFiles: [PRODUCTION_VALUES] })).affinity?.podAntiAffinity;
      assert.equal(
        hard?.requiredDuringSchedulingIgnoredDuringExecution?.[0]?.topologyKey,
        'kubernetes.io/hostname',
      );
    });
  });

  describe('scheduling and extensions', () => {
    test('when a topology spread constraint has no labelSelector, then it counts this release\'s pods', () => {
      const constraints = podSpec(render({ valueFiles: [PRODUCTION_VALUES] }))
        .topologySpreadConstraints;
      assert.equal(constraints?.length, 1);
      assert.deepEqual(constraints?.[0]?.labelSelector?.matchLabels, {
        'app.kubernetes.io/name': 'connection-broker',
        'app.kubernetes.io/instance': RELEASE,
      });
      const own = podSpec(
        render({
          sets: [
            'topologySpreadConstraints[0].maxSkew=1',
            'topologySpreadConstraints[0].topologyKey=topology.kubernetes.io/zone',
            'topologySpreadConstraints[0].whenUnsatisfiable=DoNotSchedule',
            'topologySpreadConstraints[0].labelSelector.matchLabels.team=payments',
          ],
        }),
      ).topologySpreadConstraints;
      assert.deepEqual(own?.[0]?.labelSelector, { matchLabels: { team: 'payments' } });
    });

    test('when extra volumes and mounts are given (a private CA bundle), then the pod mounts them beside its own', () => {
      const objects = render({
        sets: [
          'extraVolumes[0].name=internal-ca',
          'extraVolumes[0].configMap.name=internal-ca-bundle',
          'extraVolumeMounts[0].name=internal-ca',
          'extraVolumeMounts[0].mountPath=/etc/ssl/internal',
          'extraVolumeMounts[0].readOnly=true',
          'extraEnv[0].name=NODE_EXTRA_CA_CERTS',
          'extraEnv[0].value=/etc/ssl/internal/ca.crt',
        ],
      });
      for (const object of objects) MODELS[`${object.apiVersion}/${object.kind}`]!(object).validate();
      const volumes = podSpec(objects).volumes ?? [];
      assert.deepEqual(volumes.map((v) => v.name), ['tmp', 'data', 'master-key', 'policy', 'internal-ca']);
      assert.deepEqual(volumes.at(-1)?.configMap, { name: 'internal-ca-bundle' });
      const mounts = brokerContainer(objects).volumeMounts ?? [];
      assert.deepEqual(mounts.at(-1), {
        name: 'internal-ca',
        mountPath: '/etc/ssl/internal',
        readOnly: true,
      });
      assert.equal(brokerContainer(objects).securityContext?.readOnlyRootFilesystem, true);
      assert.match(renderFailure(['extraVolumes[0].name=policy']), /\/extraVolumes\/0\/name/);
      assert.match(renderFailure(['extraVolumeMounts[0].name=x']), /\/extraVolumeMounts\/0/);
    });
  });

  describe('values schema', () => {
    test('when a value has an unknown key, then the schema refuses it', () => {
      assert.match(renderFailure(['replicas=2']), /additional properties 'replicas' not allowed/);
      assert.match(
        renderFailure(['config.tokenTimeout=5000']),
        /at '\/config': additional properties 'tokenTimeout' not allowed/,
      );
    });

    test('when a value has the wrong type or is out of range, then the schema refuses it', () => {
      assert.match(renderFailure(['replicaCount=two']), /\/replicaCount': got string, want integer/);
      assert.match(renderFailure(['store.type=s3']), /\/store\/type/);
      assert.match(renderFailure(['config.tokenTimeoutMs=50']), /\/config\/tokenTimeoutMs/);
      assert.match(renderFailure(['config.accountId=12345']), /\/config\/accountId/);
    });
  });

  describe('configuration', () => {
    test('when rendered, then every ConfigMap entry is a variable src/config.ts reads, and loadConfig accepts them all', () => {
      const known = namesConfigReads();
      for (const valueFiles of [[], [PRODUCTION_VALUES]]) {
        const env = brokerConfigMapData(render({ valueFiles }));
        const unknown = Object.keys(env).filter((name) => !known.has(name));
        assert.deepEqual(unknown, []);
        assert.doesNotThrow(() => loadConfig(env));
      }
    });

    test('when JWT callers are configured, then issuer and audience reach the broker, and one without the other is refused', () => {
      const env = brokerConfigMapData(
        render({
          sets: ['config.jwt.issuer=https://oidc.example.com', 'config.jwt.audience=broker'],
        }),
      );
      assert.equal(env['BROKER_JWT_ISSUER'], 'https://oidc.example.com');
      assert.equal(env['BROKER_JWT_AUDIENCE'], 'broker');
      assert.match(
        renderFailure(['config.jwt.issuer=https://oidc.example.com']),
        /config\.jwt\.issuer and config\.jwt\.audience together/,
      );
    });

    test('when the broker runs open deliberately, then no policy is mounted; otherwise the policy Secret is required', () => {
      const objects = render({ sets: ['config.auth=none'] });
      assert.equal(brokerConfigMapData(objects)['BROKER_POLICY_FILE'], undefined);
      assert.ok(!(podSpec(objects).volumes ?? []).some((v) => v.name === 'policy'));
      assert.match(renderFailure(['policy.existingSecret.name=']), /needs policy\.existingSecret\.name/);
    });
  });

  describe('network policy', () => {
    test('when the network policy is on, then ingress reaches only the http port and egress stays open', () => {
      const policy = only(render({ valueFiles: [PRODUCTION_VALUES] }), 'NetworkPolicy');
      const spec = new NetworkPolicy(policy).spec;
      assert.deepEqual(spec?.policyTypes, ['Ingress']);
      assert.deepEqual(spec?.ingress?.[0]?.ports, [{ port: 'http', protocol: 'TCP' }]);
      assert.equal(spec?.ingress?.[0]?.from?.length, 2);
    });

    test('when egress is restricted, then DNS and the listed rules are the only ways out', () => {
      const policy = only(
        render({
          sets: [
            'networkPolicy.enabled=true',
            'networkPolicy.egress.restrict=true',
            'networkPolicy.egress.rules[0].ports[0].port=443',
          ],
        }),
        'NetworkPolicy',
      );
      new NetworkPolicy(policy).validate();
      const spec = new NetworkPolicy(policy).spec;
      assert.deepEqual(spec?.policyTypes, ['Ingress', 'Egress']);
      assert.equal(spec?.egress?.length, 2);
      assert.deepEqual(spec?.egress?.[0]?.ports?.map((p) => p.port), [53, 53]);
      assert.deepEqual(spec?.egress?.[0]?.to, [
        { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'kube-system' } } },
      ]);
      assert.deepEqual(spec?.egress?.[1], { ports: [{ port: 443 }] });
    });

    test('when name resolution is elsewhere (NodeLocal DNSCache), then DNS egress goes to the peers given', () => {
      const policy = only(
        render({
          sets: [
            'networkPolicy.enabled=true',
            'networkPolicy.egress.restrict=true',
            'networkPolicy.egress.dnsPeers[0].ipBlock.cidr=169.254.20.10/32',
          ],
        }),
        'NetworkPolicy',
      );
      new NetworkPolicy(policy).validate();
      const spec = new NetworkPolicy(policy).spec;
      assert.deepEqual(spec?.egress?.[0]?.to, [{ ipBlock: { cidr: '169.254.20.10/32' } }]);
      assert.deepEqual(spec?.egress?.[0]?.ports?.map((p) => p.port), [53, 53]);
    });
  });

  describe('monitoring', () => {
    const series = exportedSeries();

    test('when the dashboard is on, then it is a ConfigMap for the Grafana sidecar whose every query uses metrics the broker exports', () => {
      const objects = render({ valueFiles: [PRODUCTION_VALUES] });
      const configMap = objects.find((o) => o.metadata.name === `${FULLNAME}-dashboard`);
      assert.ok(configMap !== undefined);
      assert.equal(configMap.metadata.labels?.['grafana_dashboard'], '1');
      const json = (configMap['data'] as Record<string, string>)['connection-broker.json'];
      assert.ok(json !== undefined);
      assert.equal(json, readFileSync(join(CHART, 'dashboards', 'connection-broker.json'), 'utf8').trimEnd());
      const dashboard = JSON.parse(json) as {
        panels: { type: string; title: string; targets?: { expr: string }[] }[];
      };
      const queries = dashboard.panels.flatMap((panel) => panel.targets ?? []);
      assert.ok(queries.length >= 15, `only ${queries.length} queries`);
      assert.deepEqual(
        queries.flatMap((query) => checkPromQL(query.expr, series)),
        [],
      );
      const titles = dashboard.panels.map((panel) => panel.title);
      for (const title of [
        'Credential requests by status',
        'Credential latency',
        'Token requests by outcome',
        'Cache hit ratio',
        'Connections by state',
        'Secret store up',
        'Secret store errors',
      ]) {
        assert.ok(titles.includes(title), `no panel ${title}`);
      }
    });

    test('when the alerts are on, then every rule uses metrics the broker exports, scoped to this release', () => {
      const rule = new PrometheusRule(
        only(render({ valueFiles: [PRODUCTION_VALUES] }), 'PrometheusRule') as never,
      );
      const rules = rule.spec?.groups?.flatMap((group) => group.rules ?? []) ?? [];
      assert.deepEqual(
        rules.map((r) => r.alert),
        [
          'ConnectionBrokerDown',
          'ConnectionBrokerSecretStoreDown',
          'ConnectionBrokerTokenEndpointFailures',
          'ConnectionBrokerDeauthorizedConnections',
          'ConnectionBrokerServingStaleConnections',
          'ConnectionBrokerHigh5xxRate',
        ],
      );
      for (const r of rules) {
        const expr = String(r.expr);
        // The one rule on Prometheus' own `up`: it fires when the broker's series are all gone.
        if (r.alert !== 'ConnectionBrokerDown') assert.deepEqual(checkPromQL(expr, series), []);
        assert.ok(expr.includes(`namespace="${NAMESPACE}", job="${FULLNAME}"`), expr);
        assert.equal(r.labels?.['team'], 'platform');
      }
      assert.equal(
        String(rules[0]?.expr),
        `absent(up{namespace="${NAMESPACE}", job="${FULLNAME}"} == 1)`,
      );
      assert.equal(rules[0]?.labels?.['namespace'], NAMESPACE);
      assert.match(String(rules[1]?.expr), /broker_secret_store_up\{[^}]*\}\) == 0$/);
    });

    test('when the alerts are on without the chart\'s ServiceMonitor, then no ConnectionBrokerDown alert assumes its job label', () => {
      const rule = new PrometheusRule(
        only(
          render({ valueFiles: [PRODUCTION_VALUES], sets: ['serviceMonitor.enabled=false'] }),
          'PrometheusRule',
        ) as never,
      );
      const alerts = rule.spec?.groups?.flatMap((group) => group.rules ?? []).map((r) => r.alert);
      assert.ok(alerts !== undefined && alerts.length === 5 && !alerts.includes('ConnectionBrokerDown'));
    });

    test('when the ServiceMonitor is on, then it scrapes /metrics on the http port of this release', () => {
      const monitor = new ServiceMonitor(
        only(render({ valueFiles: [PRODUCTION_VALUES] }), 'ServiceMonitor') as never,
      );
      assert.equal(monitor.spec.endpoints?.[0]?.port, 'http');
      assert.equal(monitor.spec.endpoints?.[0]?.path, '/metrics');
      assert.equal(monitor.metadata?.labels?.['release'], 'kube-prometheus-stack');
      assert.deepEqual(monitor.spec.selector.matchLabels, {
        'app.kubernetes.io/name': 'connection-broker',
        'app.kubernetes.io/instance': RELEASE,
      });
    });

    test('when /metrics needs a caller, then the ServiceMonitor must carry a caller key', () => {
      assert.match(
        renderFailure(['store.type=aws', 'config.metricsAuth=true', 'serviceMonitor.enabled=true']),
        /serviceMonitor\.authorization\.secretName/,
      );
      const monitor = only(
        render({
          sets: [
            'config.metricsAuth=true',
            'serviceMonitor.enabled=true',
            'serviceMonitor.authorization.secretName=scraper',
            'serviceMonitor.authorization.secretKey=key',
          ],
        }),
        'ServiceMonitor',
      );
      new ServiceMonitor(monitor as never).validate();
      assert.deepEqual(
        (monitor['spec'] as { endpoints: { authorization: unknown }[] }).endpoints[0]?.authorization,
        { type: 'Bearer', credentials: { name: 'scraper', key: 'key' } },
      );
    });

    test('when the caller key Secret is named without its key, or the other way round, then rendering fails saying so', () => {
      for (const half of [
        'serviceMonitor.authorization.secretName=scraper',
        'serviceMonitor.authorization.secretKey=key',
      ]) {
        assert.match(
          renderFailure(['config.metricsAuth=true', 'serviceMonitor.enabled=true', half]),
          /serviceMonitor\.authorization\.secretName and serviceMonitor\.authorization\.secretKey together/,
        );
      }
    });
  });
});
