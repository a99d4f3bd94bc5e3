// The accessControl policy on its own (src/registry/auth/access-control.ts): Zot's globs and
// "longest glob wins", groups from the config and from token claims, default, anonymous and admin
// policies, the config errors, and the server's policy()/identify()/reload(). The HTTP side is test/registry/access-control.test.ts.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { tempDir } from '../helpers/env.js';
import { AccessPolicy, repoGlob, type Identity } from '../../src/registry/auth/access-control.js';
import { htpasswdLine, startRegistry } from '../../src/registry/index.js';

const team = AccessPolicy.parse({
  groups: { devs: { users: ['alice', 'bob'] }, ops: { users: ['olga'] } },
  repositories: {
    '**': { defaultPolicy: ['pull'], anonymousPolicy: [] },
    'team/**': { policies: [{ groups: ['devs'], actions: ['pull', 'push'] }, { users: ['carol'], actions: ['read'] }] },
    'team/secret/*': { policies: [{ users: ['alice'], actions: ['pull'] }] },
    'public/*': { anonymousPolicy: ['pull'], defaultPolicy: ['pull'], policies: [{ groups: ['ci'], actions: ['create', 'update'] }] },
  },
  adminPolicy: { groups: ['ops'], actions: ['pull', 'push', 'delete'] },
});

describe('access-control policy', () => {
  const anon: Identity = {};
  const cases: [string, Identity, string, string, boolean][] = [
    ['default policy: any user pulls', { user: 'dave' }, 'pull', 'misc/app', true],
    ['default policy: not push', { user: 'dave' }, 'push', 'misc/app', false],
    ['anonymous: nothing under **', anon, 'pull', 'misc/app', false],
    ['anonymous pulls public/*', anon, 'pull', 'public/app', true],
    ['public/* is one segment', anon, 'pull', 'public/a/b', false],
    ['group devs pushes team/**', { user: 'bob' }, 'push', 'team/a/b/c', true],
    ['team/** does not match team itself', { user: 'bob' }, 'push', 'team', false],
    ['Zot read = pull', { user: 'carol' }, 'pull', 'team/app', true],
    ['carol may not push', { user: 'carol' }, 'push', 'team/app', false],
    ['team/** has no defaultPolicy: dave cannot pull it', { user: 'dave' }, 'pull', 'team/app', false],
    ['longest glob wins: bob loses team/** push on team/secret/x', { user: 'bob' }, 'push', 'team/secret/x', false],
    ['longest glob wins: bob cannot even pull', { user: 'bob' }, 'pull', 'team/secret/x', false],
    ['alice pulls team/secret/x', { user: 'alice' }, 'pull', 'team/secret/x', true],
    ['admin group olga deletes anywhere', { user: 'olga' }, 'delete', 'team/secret/x', true],
    ['nobody else deletes', { user: 'alice' }, 'delete', 'team/app', false],
    ['group from a token claim', { user: 'robot', groups: ['ci'] }, 'push', 'public/tool', true],
    ['the same user without the claim', { user: 'robot' }, 'push', 'public/tool', false],
    ['unknown action', { user: 'olga' }, 'admin', 'team/app', false],
  ];
  for (const [what, id, action, repo, want] of cases) {
    test(`${what}: can(${id.user ?? 'anonymous'}, ${action}, ${repo}) = ${want}`, () => {
      assert.equal(team.can(id, action, repo), want);
      assert.equal(team.can(id, action, repo), want, 'second call (cached glob match)');
    });
  }

  test('filterRepos keeps what the identity may pull', () => {
    const repos = ['misc/app', 'public/app', 'team/app', 'team/secret/x'];
    assert.deepEqual(team.filterRepos({}, repos), ['public/app']);
    assert.deepEqual(team.filterRepos({ user: 'dave' }, repos), ['misc/app', 'public/app']);
    assert.deepEqual(team.filterRepos({ user: 'alice' }, repos), repos);
    assert.equal(team.anonymousCatalog, true);
  });

  test('grant narrows requested scopes to the policy', () => {
    assert.deepEqual(team.grant({ user: 'carol' }, [
      { type: 'repository', name: 'team/app', actions: ['pull', 'push'] },
      { type: 'repository', name: 'team/secret/x', actions: ['*'] },
      { type: 'registry', name: 'catalog', actions: ['*'] },
    ]), [
      { type: 'repository', name: 'team/app', actions: ['pull'] },
      { type: 'registry', name: 'catalog', actions: ['*'] },
    ]);
  });

  test('globs follow doublestar', () => {
    const t: [string, string, boolean][] = [
      ['**', 'a/b/c', true], ['a/*', 'a/b', true], ['a/*', 'a/b/c', false], ['a/**/c', 'a/c', true],
      ['a/**/c', 'a/x/y/c', true], ['a?c', 'abc', true], ['a?c', 'a/c', false], ['a.b', 'axb', false],
    ];
    for (const [glob, name, want] of t) assert.equal(repoGlob(glob).test(name), want, `${glob} ~ ${name}`);
  });

  test('config errors name the key', () => {
    const bad: [unknown, RegExp][] = [
      ['yes', /accessControl must be a mapping/],
      [{ repos: {} }, /accessControl\.repos: unknown key/],
      [{ repositories: { '**': { policies: [{ users: ['a'], actions: ['pul'] }] } } }, /repositories\["\*\*"\]\.policies\[0\]\.actions: unknown action "pul"/],
      [{ repositories: { '**': { policies: [{ actions: ['pull'] }] } } }, /policies\[0\]: needs users or groups/],
      [{ repositories: { '**': { policies: [{ users: 'alice', actions: ['pull'] }] } } }, /policies\[0\]\.users must be a list/],
      [{ repositories: { '**': { defaultpolicy: ['pull'] } } }, /\.defaultpolicy: unknown key/],
      [{ repositories: { '**': { anonymousPolicy: ['push', 'x'] } } }, /anonymousPolicy: unknown action "x"/],
      [{ groups: { devs: ['alice'] } }, /groups\.devs must be a mapping/],
      [{ adminPolicy: { users: ['root'], actions: ['all'] } }, /adminPolicy\.actions: unknown action "all"/],
    ];
    for (const [doc, re] of bad) assert.throws(() => AccessPolicy.parse(doc), re);
  });
});

describe('the library API the web UI uses', () => {
  test('startRegistry with accessControl: policy(), identify() and reload()', async () => {
    const dir = tempDir('drydock-registry-acl-api-');
    writeFileSync(path.join(dir, 'htpasswd'), `${await htpasswdLine('alice', 'pw', 4)}\n`);
    const reg = await startRegistry({ root: path.join(dir, 'data'), htpasswd: path.join(dir, 'htpasswd'), accessControl: { repositories: { 'team/**': { defaultPolicy: ['pull'] } } } });
    try {
      assert.equal(reg.policy()!.can({ user: 'alice' }, 'pull', 'team/app'), true);
      assert.deepEqual(reg.policy()!.filterRepos({}, ['team/app']), []);
      const seen: unknown[] = [];
      const probe = createServer((req, res) => { reg.identify(req).then((id) => seen.push(id), (e: Error) => seen.push(e.message)).finally(() => res.end()); });
      await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
      const url = `http://127.0.0.1:${(probe.address() as AddressInfo).port}/`;
      await fetch(url).then((r) => r.arrayBuffer());
      await fetch(url, { headers: { authorization: `Basic ${Buffer.from('alice:pw').toString('base64')}` } }).then((r) => r.arrayBuffer());
      await fetch(url, { headers: { authorization: `Basic ${Buffer.from('alice:wrong').toString('base64')}` } }).then((r) => r.arrayBuffer());
      probe.close();
      assert.deepEqual(seen, [{}, { user: 'alice' }, 'authentication required']);
      await reg.reload({ ...reg.config, accessControl: { repositories: { '**': { defaultPolicy: ['pull', 'push'] } } } });
      assert.equal(reg.policy()!.can({ user: 'alice' }, 'push', 'other/app'), true);
      await assert.rejects(reg.reload({ ...reg.config, accessControl: { repositories: { '**': { defaultPolicy: ['fly'] } } } }), /unknown action "fly"/);
      assert.equal(reg.policy()!.can({ user: 'alice' }, 'push', 'other/app'), true, 'the last good policy stays');
    } finally {
      await reg.close();
    }
  });
});
