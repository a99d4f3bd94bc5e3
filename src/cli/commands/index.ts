// The command modules and the command names each registers. main() loads only the module that
// owns the command being run (all of them for --help or an unknown word), so a quick command
// like `drydock run --rm IMAGE true` does not pay for parsing every other command's module.
// test/cli/commands.test.ts checks this table against what the modules really register.
import type { Command } from 'commander';

export interface CommandModule {
  /** The module's file name without extension; also its bundle's name (scripts/bundle-cli.mjs). */
  module: string;
  names: readonly string[];
  /**
   * `register` adds the module's commands to the program; with `only` (the command word being
   * run, a name or alias of `names`) just that one, so a run builds one command's options and help.
   */
  load(): Promise<{ register(program: Command, only?: string): void }>;
}

export const COMMAND_MODULES: readonly CommandModule[] = [
  { module: 'image-list', names: ['image-ls', 'images'], load: () => import('./image-list.js') },
  { module: 'image', names: ['import', 'image', 'inspect', 'tag', 'rmi', 'save', 'load', 'export', 'gc', 'history'], load: () => import('./image.js') },
  { module: 'build', names: ['builder', 'build'], load: () => import('./build.js') },
  { module: 'mkimage', names: ['mkimage'], load: () => import('./mkimage.js') },
  { module: 'registry-client', names: ['pull', 'push', 'copy', 'login', 'logout'], load: () => import('./registry-client.js') },
  { module: 'registry', names: ['serve', 'registry'], load: () => import('./registry.js') },
  { module: 'boot', names: ['iso', 'disk'], load: () => import('./boot.js') },
  { module: 'os', names: ['os'], load: () => import('./os.js') },
  { module: 'system', names: ['version', 'info', 'system'], load: () => import('./system.js') },
  { module: 'container-extra', names: ['wait', 'rename', 'top', 'pause', 'unpause', 'attach', 'stats'], load: () => import('./container-extra.js') },
  {
    module: 'container',
    names: ['run', 'create', 'start', 'ps', 'logs', 'stop', 'restart', 'kill', 'rm', 'exec', 'commit', 'cp', 'port', 'container', 'volume', 'generate'],
    load: () => import('./container.js'),
  },
];

/** The first word of argv that is not a global option (or its value): the command's name. */
export function commandWord(args: readonly string[]): string | undefined {
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--root') { i++; continue; }
    if (a.startsWith('-')) continue;
    return a;
  }
  return undefined;
}

/** The modules needed to run `args`: the owner of its command, or every module. */
export function modulesFor(args: readonly string[]): readonly CommandModule[] {
  const word = commandWord(args);
  // `drydock --version` needs no command at all.
  if (word === undefined && args.some((a) => a === '-v' || a === '--version')) return [];
  const owner = word === undefined || word === 'help' ? undefined : COMMAND_MODULES.find((m) => m.names.includes(word));
  return owner ? [owner] : COMMAND_MODULES;
}

/**
 * The name of the bundle that runs `args` (scripts/bundle-cli.mjs writes dist/cli/<name>.cjs):
 * the owning module's, "version" when no module is needed, "all" for help and unknown words.
 */
export function bundleFor(args: readonly string[]): string {
  const modules = modulesFor(args);
  if (modules.length === 0) return 'version';
  return modules.length === 1 ? modules[0]!.module : 'all';
}
