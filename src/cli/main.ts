// The drydock CLI: a thin shell over the library. Each command module registers its flags and
// imports its subsystem lazily inside the action, so `drydock --help` and quick commands start fast.
// commander itself (125 KB, and node:child_process) is imported inside main(), after the
// `--version` fast path, so printing the version loads nothing but this file.
import { UserError, VerbatimError } from '../util/errors.js';
import { commandWord, modulesFor } from './commands/index.js';
import { writeStdout } from './stdout.js';
import { watchStdio, exitWithoutTeardown } from '../util/raw-exit.js';

const VERSION = process.env.npm_package_version ?? '0.1.0';

export async function main(argv: string[] = process.argv): Promise<number> {
  const args = argv.slice(2);
  if (args.length === 1 && (args[0] === '--version' || args[0] === '-v')) {
    writeStdout(`${VERSION}\n`);
    return 0;
  }
  const { Command } = await import('commander');
  const program = new Command('drydock')
    .description('Daemonless, Docker-compatible container image toolkit')
    .version(VERSION, '-v, --version')
    .option('--root <dir>', 'store root (default $DRYDOCK_ROOT or ~/.local/share/drydock)')
    .showHelpAfterError('(run with --help for usage)')
    // Options after a subcommand belong to it (`run IMAGE cmd --flag` passes --flag through).
    .enablePositionalOptions()
    .exitOverride();
  program.hook('preAction', (cmd) => {
    const root = cmd.opts().root as string | undefined;
    if (root) process.env.DRYDOCK_ROOT = root;
  });
  try {
    // One module owns the word: it registers that command alone. Help and unknown words get all.
    const modules = modulesFor(args);
    const only = modules.length === 1 ? commandWord(args) : undefined;
    for (const mod of await Promise.all(modules.map((m) => m.load()))) mod.register(program, only);
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (e) {
    return reportError(e);
  }
}

export function reportError(e: unknown): number {
  if (isCommanderError(e)) {
    // commander already printed the message (or help/version, which exit 0).
    return e.exitCode;
  }
  if (e instanceof VerbatimError) {
    process.stderr.write(`${e.message}\n`);
    return e.exitCode;
  }
  if (e instanceof UserError) {
    process.stderr.write(`Error: ${e.message}\n`);
    // The wrapped cause (its code and stack) is for whoever debugs, not in the user's message.
    if (process.env.DRYDOCK_DEBUG && e.cause !== undefined) process.stderr.write(`caused by: ${(e.cause as Error)?.stack ?? String(e.cause)}\n`);
    return e.exitCode;
  }
  const err = e as Error & { code?: string };
  if (process.env.DRYDOCK_DEBUG) process.stderr.write(`${err?.stack ?? String(e)}\n`);
  else process.stderr.write(`Error: ${err?.message ?? String(e)}\n`);
  return 1;
}

/** commander's errors carry a `commander.*` code; checked by shape so commander need not be loaded. */
function isCommanderError(e: unknown): e is { exitCode: number } {
  const err = e as { code?: unknown; exitCode?: unknown } | null;
  return typeof err?.code === 'string' && err.code.startsWith('commander.') && typeof err.exitCode === 'number';
}

/**
 * A reader that went away (`drydock images | head -1`) ends the CLI quietly, as SIGPIPE ends
 * docker: no EPIPE stack, status 141 like a shell reports a process killed by SIGPIPE.
 */
export function exitQuietlyOnEpipe(stream: NodeJS.WriteStream = process.stdout): void {
  stream.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(141);
    throw e;
  });
}

/**
 * exitQuietlyOnEpipe for process.stdout, attached when something first uses it: making the
 * stream loads node:stream, and for a pipe or terminal net and tty too (milliseconds), which a
 * command that prints nothing (`tag`, `rm`, `images -q` of an empty store) need not pay.
 */
function exitQuietlyOnEpipeOnceUsed(): void {
  const own = Object.getOwnPropertyDescriptor(process, 'stdout');
  if (!own?.get || !own.configurable) return exitQuietlyOnEpipe();
  const getStdout = own.get;
  Object.defineProperty(process, 'stdout', {
    configurable: true,
    enumerable: own.enumerable,
    get() {
      const stdout = getStdout.call(process) as NodeJS.WriteStream;
      Object.defineProperty(process, 'stdout', { ...own, get: getStdout });
      exitQuietlyOnEpipe(stdout);
      return stdout;
    },
  });
}

const invokedDirectly = process.argv[1] && /(?:[\\/]cli[\\/]main\.[jt]s|[\\/]drydock(?:\.js)?)$/.test(process.argv[1]);
if (invokedDirectly) {
  watchStdio();
  exitQuietlyOnEpipeOnceUsed();
  main().then((code) => {
    process.exitCode = code;
    exitWithoutTeardown();
  });
}
