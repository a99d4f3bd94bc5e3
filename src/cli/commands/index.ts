// The command modules and the command names each registers. main() loads only the module that
// owns the command being run (all of them for --help or an unknown word), so a quick command
// like `drydock run --rm IMAGE true` does not pay for parsing every other command's module.
// test/cli/commands.test.ts checks this table against what the modules really register.
import type { Command } from 'commander';

export interface CommandModule {
  names: readonly string[];
  load(): Promise<{ register(program: Command): void }>;
}

export const COMMAND_MODULES: readonly CommandModule[] = [
  { names: ['import', 'images', 'image-ls', 'image', 'inspect', 'tag', 'rmi', 'save', 'load', 'export', 'gc', 'history'], load: () => import('./image.js') },
  { names: ['builder', 'build'], load: () => import('./build.js') },
  { names: ['mkimage'], load: () => import('./mkimage.js') },
  { names: ['pull', 'push', 'copy', 'login', 'logout'], load: () => import('./registry-client.js') },
  { names: ['serve', 'registry'], load: () => import('./registry.js') },
  { names: ['iso', 'disk'], load: () => import('./boot.js') },
  { names: ['os'], load: () => import('./os.js') },
  { names: ['version', 'info', 'system'], load: () => import('./system.js') },
  { names: ['wait', 'rename', 'top', 'pause', 'unpause', 'attach', 'stats'], load: () => import('./container-extra.js') },
  {
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
