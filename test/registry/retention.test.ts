// Retention policies (storage.maintenance.retention, Zot's fields) applied by `drydock registry gc`
// over real HTTP pushes and pulls: each case pushes the same tags to tmp/ci/app (the policy's glob)
// and prod/app (no policy), pulls some tags through the server (pull times are batched and
// written on shutdown), ages some tags' push times on disk, then checks `gc --dry-run` lists
// exactly what `gc` then deletes, and what the registry serves afterwards.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp, writeFileSync } from 'node:fs';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { requireTool, runCli, tempDir } from '../helpers/env.js';
import { startRegistry, type GcResult, type RetentionConfig } from '../../src/registry/index.js';
import { http, pushImage, type PushedImage } from './util.js';

const DAY = 86_400_000;
const REPOS = '/docker/registry/v2/repositories';

interface Case {
  name: string;
  retention: RetentionConfig;
  tags: string[];
  /** Tags whose push time is set this many days back. */
  agedDays?: Record<string, number>;
  /** Tags pulled, in this order. */
  pulls?: string[];
  /** Manifests pushed by digest only: name → age in days. */
  untagged?: Record<string, number>;
  wantTagsDeleted: string[];
  /** Untagged manifests (by name above, or "tag:<t>" for a deleted tag's manifest) that gc deletes. */
  wantManifestsDeleted?: string[];
}

const policy = (p: NonNullable<RetentionConfig['policies']>[number]) => p;

const cases: Case[] = [
  {
    name: 'mostRecentlyPushedCount keeps the newest N',
    retention: { policies: [policy({ repositories: ['tmp/**'], keepTags: [{ mostRecentlyPushedCount: 2 }] })] },
    tags: ['a', 'b', 'c', 'd'], agedDays: { a: 4, b: 3, c: 2, d: 1 },
    wantTagsDeleted: ['a', 'b'],
  },
  {
    name: 'patterns keep matching tags (whole-tag regex)',
    retention: { policies: [policy({ repositories: ['tmp/ci/*'], keepTags: [{ patterns: ['v1\\..*'] }] })] },
    tags: ['v1.0', 'v1.1', 'dev', 'latest', 'xv1.0'],
    wantTagsDeleted: ['dev', 'latest', 'xv1.0'],
  },
  {
    name: 'pushedWithin keeps recent pushes',
    retention: { policies: [policy({ repositories: ['tmp/**'], keepTags: [{ pushedWithin: '48h' }] })] },
    tags: ['old', 'new'], agedDays: { old: 5 },
    wantTagsDeleted: ['old'],
  },
  {
    name: 'pulledWithin keeps tags pulled recently',
    retention: { policies: [policy({ repositories: ['tmp/**'], keepTags: [{ pulledWithin: '24h' }] })] },
    tags: ['a', 'b', 'c'], pulls: ['b', 'b'],
    wantTagsDeleted: ['a', 'c'],
  },
  {
    name: 'mostRecentlyPulledCount keeps the last pulled',
    retention: { policies: [policy({ repositories: ['tmp/**'], keepTags: [{ mostRecentlyPulledCount: 1 }] })] },
    tags: ['a', 'b', 'c'], pulls: ['c', 'a'],
    wantTagsDeleted: ['b', 'c'],
  },
  {
    name: 'rules are or-ed: a pattern or the newest push',
    retention: { policies: [policy({ repositories: ['tmp/**'], keepTags: [{ patterns: ['release-.*'] }, { mostRecentlyPushedCount: 1 }] })] },
    tags: ['release-1', 'x', 'y'], agedDays: { 'release-1': 9, x: 2, y: 1 },
    wantTagsDeleted: ['x'],
  },
  {
    name: 'first matching policy wins; a policy without keepTags keeps every tag',
    retention: { policies: [policy({ repositories: ['tmp/ci/app'] }), policy({ repositories: ['tmp/**'], keepTags: [{ mostRecentlyPushedCount: 0 }] })] },
    tags: ['a', 'b'],
    wantTagsDeleted: [],
  },
  {
    name: 'deleteUntagged removes untagged manifests older than delay, including those retention untagged',
    retention: { delay: '24h', policies: [policy({ repositories: ['tmp/**'], deleteUntagged: true, keepTags: [{ patterns: ['keep'] }] })] },
    tags: ['keep', 'drop'], agedDays: { drop: 2 }, untagged: { old: 2, fresh: 0 },
    wantTagsDeleted: ['drop'], wantManifestsDeleted: ['tag:drop', 'old'],
  },
];

async function age(root: string, file: string, days: number): Promise<void> {
  const t = new Date(Date.now() - days * DAY);
  await fsp.utimes(path.join(root, file), t, t);
}

describe('retention policies via registry gc', () => {
  for (const c of cases) {
    test(c.name, async () => {
      const root = tempDir('drydock-retention-');
      const retention = { ...c.retention, pullFlushInterval: '1h' };
      const reg = await startRegistry({ root, config: { storage: { maintenance: { retention } } } as never });
      const pushed = new Map<string, PushedImage>();
      const untagged = new Map<string, PushedImage>();
      try {
        for (const repo of ['tmp/ci/app', 'prod/app']) {
          for (const tag of c.tags) pushed.set(`${repo}:${tag}`, await pushImage(reg.url, repo, tag));
        }
        for (const [name] of Object.entries(c.untagged ?? {})) {
          const img = await pushImage(reg.url, 'tmp/ci/app', 'tmp-untagged');
          assert.equal((await http(`${reg.url}/v2/tmp/ci/app/manifests/tmp-untagged`, { method: 'DELETE' })).status, 202);
          untagged.set(name, img);
        }
        for (const tag of c.pulls ?? []) {
          assert.equal((await http(`${reg.url}/v2/tmp/ci/app/manifests/${tag}`, { headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' } })).status, 200);
          await new Promise((r) => setTimeout(r, 20));
        }
      } finally {
        await reg.close();
      }
      for (const repo of ['tmp/ci/app', 'prod/app']) {
        for (const [tag, days] of Object.entries(c.agedDays ?? {})) {
          await age(root, `${REPOS}/${repo}/_manifests/tags/${tag}/current/link`, days);
          const d = pushed.get(`${repo}:${tag}`)!.digest.split(':');
          await age(root, `${REPOS}/${repo}/_manifests/revisions/${d[0]}/${d[1]}/link`, days);
        }
      }
      for (const [name, days] of Object.entries(c.untagged ?? {})) {
        const d = untagged.get(name)!.digest.split(':');
        await age(root, `${REPOS}/tmp/ci/app/_manifests/revisions/${d[0]}/${d[1]}/link`, days);
      }
      const config = path.join(tempDir('drydock-retention-cfg-'), 'config.yml');
      writeFileSync(config, `version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: ${root}\n  maintenance:\n    retention: ${JSON.stringify(c.retention)}\n`);

      const wantTags = c.wantTagsDeleted.map((t) => `tmp/ci/app:${t}`).sort();
      const wantManifests = (c.wantManifestsDeleted ?? []).map((m) => `tmp/ci/app@${m.startsWith('tag:') ? pushed.get(`tmp/ci/app:${m.slice(4)}`)!.digest : untagged.get(m)!.digest}`).sort();
      const dry = await runCli(['registry', 'gc', '--config', config, '--grace-period', '0', '--dry-run']);
      assert.equal(dry.code, 0, dry.stderr);
      const listed = [...dry.stdout.matchAll(/^would delete tag (\S+) /gm)].map((m) => m[1]!).sort();
      assert.deepEqual(listed, wantTags, dry.stdout);
      const listedManifests = [...dry.stdout.matchAll(/^would delete manifest (\S+): retention$/gm)].map((m) => m[1]!).sort();
      assert.deepEqual(listedManifests, wantManifests, dry.stdout);

      const real = await runCli(['registry', 'gc', '--config', config, '--grace-period', '0', '--format', 'json']);
      assert.equal(real.code, 0, real.stderr);
      const result = JSON.parse(real.stdout) as GcResult;
      assert.deepEqual([...result.tagsDeleted].sort(), wantTags);
      assert.deepEqual([...result.manifestsDeleted].sort(), wantManifests);

      const after = await startRegistry({ root });
      try {
        const list = async (repo: string) => ((await http(`${after.url}/v2/${repo}/tags/list`)).json() as { tags: string[] | null }).tags ?? [];
        assert.deepEqual((await list('tmp/ci/app')).sort(), c.tags.filter((t) => !c.wantTagsDeleted.includes(t)).sort());
        assert.deepEqual((await list('prod/app')).sort(), [...c.tags].sort(), 'prod/app has no policy');
        for (const t of c.wantTagsDeleted) {
          // An image whose tag went and which nothing else references loses its layer (grace 0).
          const img = pushed.get(`tmp/ci/app:${t}`)!;
          if (c.wantManifestsDeleted?.includes(`tag:${t}`)) assert.equal((await http(`${after.url}/v2/tmp/ci/app/blobs/${img.layers[0]}`)).status, 404);
        }
        for (const [name, img] of untagged) {
          const status = (await http(`${after.url}/v2/tmp/ci/app/manifests/${img.digest}`, { headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' } })).status;
          assert.equal(status, wantManifests.includes(`tmp/ci/app@${img.digest}`) ? 404 : 200, name);
        }
      } finally {
        await after.close();
      }
    });
  }

  test('pulls are not written per request: one file per repository, on flush', async () => {
    const root = tempDir('drydock-retention-pulls-');
    const retention: RetentionConfig = { pullFlushInterval: '1h', policies: [{ repositories: ['**'], keepTags: [{ pulledWithin: '1h' }] }] };
    const reg = await startRegistry({ root, config: { storage: { maintenance: { retention } } } as never });
    const file = path.join(root, '/docker/registry/v2/_drydock/pulls/team/app/pulltimes.json');
    try {
      await pushImage(reg.url, 'team/app', 'v1');
      await pushImage(reg.url, 'team/app', 'v2');
      await pushImage(reg.url, 'team/app', 'v3');
      for (let i = 0; i < 50; i++) assert.equal((await http(`${reg.url}/v2/team/app/manifests/${i % 2 ? 'v1' : 'v2'}`)).status, 200);
      // A real client's pull (skopeo inspect GETs the manifest by tag) counts too.
      requireTool('skopeo');
      // Async: a spawnSync would block this process's registry, which skopeo is talking to.
      await new Promise<void>((resolve, reject) => execFile('skopeo', ['inspect', '--tls-verify=false', '--raw', `docker://${reg.host}/team/app:v3`], (err, _out, stderr) => (err ? reject(new Error(stderr)) : resolve())));
      await assert.rejects(fsp.stat(file), /ENOENT/, 'nothing written while serving');
    } finally {
      await reg.close();
    }
    const times = JSON.parse(await fsp.readFile(file, 'utf8')) as Record<string, number>;
    assert.deepEqual(Object.keys(times).sort(), ['v1', 'v2', 'v3']);
    for (const t of Object.values(times)) assert.ok(Date.now() - t < 60_000);
  });

  test('gc --dry-run --delete-untagged counts the tags retention drops as gone', async () => {
    const root = tempDir('drydock-retention-du-');
    const reg = await startRegistry({ root });
    let dropped: PushedImage;
    try {
      await pushImage(reg.url, 'tmp/app', 'keep');
      dropped = await pushImage(reg.url, 'tmp/app', 'drop');
    } finally {
      await reg.close();
    }
    const config = path.join(tempDir('drydock-retention-du-cfg-'), 'config.yml');
    writeFileSync(config, `version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: ${root}\n  maintenance:\n    retention: ${JSON.stringify({ policies: [{ repositories: ['tmp/*'], keepTags: [{ patterns: ['keep'] }] }] })}\n`);
    const args = ['registry', 'gc', '--config', config, '--grace-period', '0', '--delete-untagged', '--format', 'json'];
    const dry = JSON.parse((await runCli([...args, '--dry-run'])).stdout) as GcResult;
    const real = JSON.parse((await runCli(args)).stdout) as GcResult;
    assert.deepEqual(real.manifestsDeleted, [`tmp/app@${dropped.digest}`]);
    assert.deepEqual(dry.manifestsDeleted, real.manifestsDeleted);
    assert.deepEqual([...dry.blobsDeleted].sort(), [...real.blobsDeleted].sort());
    assert.equal(real.blobsDeleted.length, 3, 'manifest, config and layer of the dropped image');
  });

  test('a bad policy is refused at config load', async () => {
    const dir = tempDir('drydock-retention-bad-');
    const config = path.join(dir, 'config.yml');
    writeFileSync(config, `version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: ${dir}\n  maintenance:\n    retention:\n      policies:\n        - repositories: ["**"]\n          keepTags:\n            - patterns: ["("]\n`);
    const r = await runCli(['registry', 'gc', '--config', config, '--dry-run']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /retention\.policies\[0\]\.keepTags\[0\]\.patterns/);
  });
});
