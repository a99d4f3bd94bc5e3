// The CLI loads only the module that owns the command being run; this keeps the name table in
// src/cli/commands/index.ts true to what each module registers, and checks the dispatch.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Command } from 'commander';
import { COMMAND_MODULES, bundleFor, commandWord, modulesFor } from '../../src/cli/commands/index.js';
import { runCli } from '../helpers/env.js';

test('each module registers exactly the names the table lists', async () => {
  const seen = new Set<string>();
  for (const m of COMMAND_MODULES) {
    const program = new Command();
    (await m.load()).register(program);
    const names = program.commands.flatMap((c) => [c.name(), ...c.aliases()]);
    assert.deepEqual([...names].sort(), [...m.names].sort());
    for (const n of names) {
      assert.ok(!seen.has(n), `"${n}" is registered by two modules`);
      seen.add(n);
    }
  }
});

test('with the command word, a module registers that command alone, with the same options and help', async () => {
  for (const m of COMMAND_MODULES) {
    const mod = await m.load();
    const all = new Command('drydock');
    mod.register(all);
    const byName = (p: Command, n: string) => p.commands.find((c) => c.name() === n || c.aliases().includes(n));
    // Subcommands too (`image ls`, `container ls`): every level's help, as text.
    const helpOf = (c: Command): string[] => [c.helpInformation(), ...c.commands.flatMap(helpOf)];
    for (const word of m.names) {
      const one = new Command('drydock');
      mod.register(one, word);
      assert.equal(one.commands.length, 1, `${m.module} registers ${one.commands.map((c) => c.name()).join(', ')} for ${word}`);
      assert.ok(byName(one, word), `${m.module}: ${word} is not what it registers for ${word}`);
      assert.deepEqual(helpOf(byName(one, word)!), helpOf(byName(all, word)!), `${word}: help differs when registered alone`);
    }
  }
});

const cases: { args: string[]; word: string | undefined; modules: number; bundle: string }[] = [
  { args: ['run', '--rm', 'busybox', 'true'], word: 'run', modules: 1, bundle: 'container' },
  { args: ['--root', '/tmp/x', 'images'], word: 'images', modules: 1, bundle: 'image-list' },
  { args: ['--root=/tmp/x', 'build', '.'], word: 'build', modules: 1, bundle: 'build' },
  { args: ['--help'], word: undefined, modules: COMMAND_MODULES.length, bundle: 'all' },
  { args: ['help', 'build'], word: 'help', modules: COMMAND_MODULES.length, bundle: 'all' },
  { args: ['no-such-command'], word: 'no-such-command', modules: COMMAND_MODULES.length, bundle: 'all' },
  { args: ['--version'], word: undefined, modules: 0, bundle: 'version' },
  { args: ['-v'], word: undefined, modules: 0, bundle: 'version' },
  { args: ['build', '-v', '/x:/y'], word: 'build', modules: 1, bundle: 'build' },
];

for (const c of cases) {
  test(`dispatch: drydock ${c.args.join(' ')}`, () => {
    assert.equal(commandWord(c.args), c.word);
    assert.equal(modulesFor(c.args).length, c.modules);
    assert.equal(bundleFor(c.args), c.bundle);
  });
}

test('--version prints the version without loading any command', async () => {
  const r = await runCli(['--version']);
  assert.equal(r.code, 0);
  assert.match(r.stdout, /^\d+\.\d+\.\d+\n$/);
});

test('help lists every command; an unknown command is an error with a suggestion', async () => {
  const help = await runCli(['--help']);
  assert.equal(help.code, 0);
  for (const m of COMMAND_MODULES) assert.match(help.stdout, new RegExp(`\\n  ${m.names.at(-1)}\\b`));
  const bad = await runCli(['imagse']);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /unknown command 'imagse'.*\n?.*images/s);
});
