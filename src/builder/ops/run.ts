// RUN as an op: planning turns the instruction into argv, environment, mounts and a cache key
// (no filesystem work beyond hashing bind-mounted context files); exec runs it in runc on the
// step's overlay, through the same createRuntimeSpec + runOnce as `drydock run`.
import { promises as fsp } from 'node:fs';
import { Readable, Writable } from 'node:stream';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { parseHeredocWord, type Instruction } from '../../dockerfile/index.js';
import { hostPlatform } from '../../image/platform.js';
import { checkBinfmt } from '../binfmt.js';
import { UserError } from '../../util/errors.js';
import { span, traced } from '../../util/trace.js';
import { allSettledOrThrow } from '../../util/concurrency.js';
import { hashSources } from '../context.js';
import { DEFAULT_SHELL } from '../dispatch.js';
import { parseMountFlag, cacheMountDir, ociMount, removeMountpoints, type MountRequest } from '../mounts.js';
import { treeFor } from '../rootfs.js';
import { PROXY_ARGS, type BuildSession } from '../session.js';
import type { ExecContext, PlannedOp, PlanState } from '../vertex.js';

export async function planRun(s: BuildSession, inst: Instruction, state: PlanState, env: Map<string, string>, flags: Map<string, string | undefined>): Promise<PlannedOp> {
  const c = state.config.config!;
  const shell = c.Shell ?? DEFAULT_SHELL;
  let argv: string[];
  let stdin: string | undefined;
  const heredoc = inst.heredocs[0];
  if (inst.json) {
    argv = inst.json;
  } else if (heredoc && inst.heredocs.length === 1 && parseHeredocWord(inst.args.trim())) {
    // `RUN <<EOF` alone: the body is the script (the shell expands variables in it); a #!
    // line picks the interpreter, like BuildKit.
    const body = heredoc.content;
    const shebang = /^#!(.*)\n/.exec(body);
    if (shebang) { argv = [...shebang[1]!.trim().split(/\s+/), '/dev/stdin']; stdin = body; } else argv = [...shell, body];
  } else if (inst.heredocs.length) {
    // Heredocs inside a shell command: the shell itself reads them.
    argv = [...shell, [inst.args, ...inst.heredocs.map((h) => `${h.content}${h.name}`)].join('\n')];
  } else {
    argv = [...shell, inst.args];
  }
  const network = (flags.get('network') ?? s.opts.network ?? 'host') as string;
  if (!['host', 'none', 'default'].includes(network)) throw s.err(inst, `unsupported --network=${network} (host, none, default)`);
  const mounts = inst.flags.filter((f) => f.name === 'mount').map((f) => s.at(inst, () => parseMountFlag(s.lex.processWord(f.value ?? '', env))));
  // Build args in effect reach the command's environment but not the image config.
  const argEnv = [...state.args].filter(([k]) => !(c.Env ?? []).some((e) => e.startsWith(`${k}=`))).map(([k, v]) => `${k}=${v}`);
  const proxyEnv = [...s.buildArgs].filter(([k]) => PROXY_ARGS.has(k)).map(([k, v]) => `${k}=${v}`);
  const mountKeys: unknown[] = [];
  const inputs: number[] = [];
  for (const m of mounts) {
    if (m.type === 'bind' && !m.from) {
      const entries = await s.at(inst, () => s.context.resolve([m.source ?? '.'], 'RUN --mount'));
      mountKeys.push([m.text, await hashSources(s.context, entries)]);
    } else if (m.type === 'bind' && m.from) {
      const st = s.stageRef(m.from, Infinity);
      if (st) inputs.push(st.index);
      mountKeys.push([m.text, st ? state.stageKey(st.index) : m.from]);
    } else mountKeys.push(m.text);
  }
  const history = `RUN ${argEnv.length ? `|${argEnv.length} ${argEnv.join(' ')} ` : ''}${argv.join(' ')} # buildkit`;
  const architecture = state.config.architecture;
  return {
    history,
    keyParts: ['RUN', argv, argEnv, mountKeys, network === 'none' ? 'none' : 'host', stdin ?? ''],
    inputs,
    op: {
      kind: 'run',
      async exec(x: ExecContext) {
        const endPrepare = span('run.prepare');
        // The runtime's modules this step uses, not its index (which loads the container
        // lifecycle, cp, volumes and ports too, on the way to this step's `runc run`).
        const [{ createRuntimeSpec }, { runOnce }, { checkWorkdirSync, mkdirInRootSync }, { addOwnedContainer }, { withoutAbsentAbis }] = await Promise.all([
          import('../../runtime/spec.js'), import('../../runtime/runc.js'), import('../../runtime/rootfs-path.js'),
          import('../../runtime/orphans.js'), import('../../runtime/seccomp.js'),
        ]);
        const cwd = c.WorkingDir || '/';
        // The step's scratch dir has a name no other dir had (mkdtemp), so its container's id is unique too.
        const id = `drydock-build-${path.basename(x.workDir).replace(/^step-/, '')}`;
        // Three independent parts, awaited together; the first failure in this order is the one
        // reported. The file-system work is synchronous calls (a few lstats, small reads and
        // writes), where thread-pool round trips would each be time this step waits.
        const workdirReady = (async () => {
          // A foreign platform's RUN needs qemu-user-static's binfmt_misc handler (multi-platform builds).
          if (architecture) await checkBinfmt(architecture).catch((e: Error) => { throw s.err(inst, e.message); });
          try { checkWorkdirSync(x.rootfs, cwd); } catch (e) { throw s.err(inst, (e as Error).message); }
          mkdirInRootSync(x.rootfs, cwd, { uid: 0, gid: 0 });
        })();
        const specReady = (async () => {
          const ociMounts = [];
          const sshEnv: string[] = [];
          for (const m of mounts) {
            if (m.type === 'ssh') {
              const sock = s.opts.ssh?.[m.id!];
              if (!sock) {
                // Like BuildKit: an agent nobody forwarded is skipped unless the mount requires it.
                if (m.required) throw s.err(inst, `no SSH key "${m.id}" forwarded from the client (drydock build --ssh ${m.id}[=SOCKET])`);
                continue;
              }
              if (!sshEnv.length) sshEnv.push(`SSH_AUTH_SOCK=${m.target}`);
              ociMounts.push(ociMount(m, sock));
              continue;
            }
            ociMounts.push(ociMount(m, await mountSource(s, x, inst, m)));
          }
          const spec = await createRuntimeSpec({
            rootfs: x.rootfs, args: argv, env: [...(c.Env ?? []), ...argEnv, ...proxyEnv, ...sshEnv], cwd, user: c.User || '0:0',
            network: network === 'none' ? 'none' : 'host', mounts: ociMounts, hostFilesDir: path.join(x.workDir, 'hostfiles'),
            extraHosts: s.opts.extraHosts, shmSize: s.opts.shmSize, rlimits: s.opts.ulimits,
            ...(s.opts.memory ? { resources: { memory: { limit: s.opts.memory } } } : {}),
          });
          // Docker's profile, minus the x32 ABI on a kernel that has none (runc compiles the filter
          // in every RUN; x32 is a third of its cost and none of its effect there).
          if (spec.linux.seccomp) spec.linux.seccomp = await withoutAbsentAbis(spec.linux.seccomp);
          return spec;
        })();
        // Recorded before runc starts: a build killed meanwhile leaves a container the next sweep kills.
        const owned = addOwnedContainer(x.workDir, id);
        const [, spec] = await allSettledOrThrow([workdirReady, specReady, owned] as const);
        endPrepare();
        // Keep the tail of stderr: runc's init reports exec failures there, not in its log.
        let stderrTail = '';
        // Made when runOnce connects runc's pipes, after runc has started: a quiet build loads
        // node:stream (~1 ms) only then, in the time runc runs.
        let sink: Writable | undefined;
        let stderr: Writable | undefined;
        const stdout = () => (sink ??= x.out ?? new Writable({ write: (_c, _e, cb) => cb() }));
        const stdio = {
          get stdout() { return stdout(); },
          get stderr() {
            return (stderr ??= new Writable({
              write: (chunk: Buffer, _e, cb) => { stderrTail = (stderrTail + chunk.toString('utf8')).slice(-4096); stdout().write(chunk, cb); },
            }));
          },
          ...(stdin !== undefined ? { stdin: Readable.from([stdin]) } : {}),
        };
        const result = await runOnce({
          id, bundleDir: path.join(x.workDir, 'bundle'), spec, architecture, stdio,
        }).catch((e: Error) => { throw s.err(inst, e.message); });
        if (result.exitCode !== 0 && /exec [^\n]*: exec format error\s*$/.test(stderrTail)) {
          const host = hostPlatform().architecture;
          throw s.err(inst, `the image is for ${architecture} but this host is ${host}; install qemu-user-static/binfmt or build for linux/${host} (${argv[0]}: exec format error)`);
        }
        if (result.exitCode !== 0) {
          throw new UserError(`${s.df.file}:${inst.start.line}: ${x.stepLabel}: process "${argv.join(' ')}" did not complete successfully: exit code: ${result.exitCode}`, result.exitCode);
        }
        await traced('run.remove-mountpoints', () => removeMountpoints(x.upper, x.lowers, [
          ...mounts.map((m) => m.target), '/etc/hosts', '/etc/hostname', '/etc/resolv.conf', '/proc', '/sys', '/dev',
        ]));
      },
    },
  };
}

/** Host path backing a RUN --mount. */
async function mountSource(s: BuildSession, x: ExecContext, inst: Instruction, m: MountRequest): Promise<string | undefined> {
  switch (m.type) {
    case 'tmpfs': case 'ssh': return undefined;
    case 'cache': {
      const dir = cacheMountDir(s.store.root, m);
      await fsp.mkdir(dir, { recursive: true });
      return dir;
    }
    case 'secret': {
      const src = s.opts.secrets?.[m.id ?? ''];
      if (!src) {
        if (m.required) throw s.err(inst, `secret "${m.id}" is required but was not given (--secret id=${m.id},src=FILE)`);
        // An absent optional secret mounts an empty file, so the command can test for it.
        const empty = path.join(x.workDir, `secret-${randomBytes(4).toString('hex')}`);
        await fsp.writeFile(empty, '', { mode: 0o400 });
        return empty;
      }
      return path.resolve(src);
    }
    case 'bind': {
      let host: string;
      if (m.from) {
        const tree = await treeFor(s, x, inst, m.from);
        host = (await tree.resolve([m.source ?? '.'], 'RUN --mount'))[0]!.hostPath;
      } else {
        host = (await s.at(inst, () => s.context.resolve([m.source ?? '.'], 'RUN --mount')))[0]!.hostPath;
      }
      if (m.readonly) return host;
      // rw bind mounts write to a throwaway copy, like BuildKit: the source is never changed.
      const copy = path.join(x.workDir, `bind-${randomBytes(4).toString('hex')}`);
      await fsp.cp(host, copy, { recursive: true, preserveTimestamps: true });
      return copy;
    }
  }
}
