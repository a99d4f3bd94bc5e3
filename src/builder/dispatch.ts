// The metadata instructions' one implementation: (state, command) → state, pure. The builder
// calls it for ENV, LABEL, EXPOSE, ... and adds a cache key and history entry from the result;
// `import --change` and `commit --change` (changes.ts) call it with the image's own environment.
// Errors are UserErrors without position; each caller says where (Dockerfile:3:1, or the change).
import path from 'node:path/posix';
import type { Lexer, MetadataCommand } from '../dockerfile/index.js';
import type { ContainerConfig } from '../image/types.js';
import { UserError } from '../util/errors.js';
import { parseKeyValues, parsePorts, parseHealthcheck, validateSignal } from './instructions.js';

export const DEFAULT_SHELL = ['/bin/sh', '-c'];

export interface MetadataState {
  config: ContainerConfig;
  author?: string;
  /** CMD was set in this stage (a later ENTRYPOINT then keeps it). */
  cmdSet: boolean;
}

export interface Dispatched {
  state: MetadataState;
  /** The history `created_by` text. */
  history: string;
  /** What the step's cache key depends on besides its parent. */
  keyParts: unknown[];
}

/** The environment variable expansion sees: the config's Env, then the build args in effect. */
export function configEnv(config: ContainerConfig, args: ReadonlyMap<string, string> = new Map()): Map<string, string> {
  const env = new Map(args);
  for (const e of config.Env ?? []) {
    const eq = e.indexOf('=');
    if (eq > 0) env.set(e.slice(0, eq), e.slice(eq + 1));
  }
  return env;
}

export function dispatchMetadata(prev: MetadataState, cmd: MetadataCommand, lex: Lexer, env: ReadonlyMap<string, string>): Dispatched {
  const state: MetadataState = { ...prev, config: structuredClone(prev.config) };
  const c = state.config;
  const x = (s: string) => lex.processWord(s, env);
  const xs = (s: string) => lex.processWords(s, env);
  let history = cmd.inst.original;
  let keyParts: unknown[];
  switch (cmd.kind) {
    case 'ENV': {
      const pairs = parseKeyValues(cmd.args, lex, env, 'ENV');
      for (const [k, v] of pairs) {
        c.Env = (c.Env ?? []).filter((e) => !e.startsWith(`${k}=`));
        c.Env.push(`${k}=${v}`);
      }
      history = `ENV ${pairs.map(([k, v]) => `${k}=${v}`).join(' ')}`;
      keyParts = ['ENV', pairs];
      break;
    }
    case 'LABEL': {
      const pairs = parseKeyValues(cmd.args, lex, env, 'LABEL');
      c.Labels = { ...(c.Labels ?? {}) };
      for (const [k, v] of pairs) c.Labels[k] = v;
      history = `LABEL ${pairs.map(([k, v]) => `${k}=${v}`).join(' ')}`;
      keyParts = ['LABEL', pairs];
      break;
    }
    case 'MAINTAINER':
      state.author = x(cmd.args);
      keyParts = ['MAINTAINER', state.author];
      break;
    case 'EXPOSE': {
      const ports = parsePorts(xs(cmd.args));
      c.ExposedPorts = { ...(c.ExposedPorts ?? {}) };
      for (const p of ports) c.ExposedPorts[p] = {};
      history = `EXPOSE map[${ports.map((p) => `${p}:{}`).join(' ')}]`;
      keyParts = ['EXPOSE', ports];
      break;
    }
    case 'USER':
      c.User = x(cmd.args);
      history = `USER ${c.User}`;
      keyParts = ['USER', c.User];
      break;
    case 'WORKDIR': {
      const dir = x(cmd.args);
      const next = path.resolve(c.WorkingDir || '/', dir);
      if (next === '/proc' || next.startsWith('/proc/')) {
        throw new UserError(`WORKDIR ${dir}: a working directory under /proc is refused (it could expose host file descriptors, CVE-2024-21626)`);
      }
      c.WorkingDir = next;
      history = `WORKDIR ${next}`;
      keyParts = ['WORKDIR', next];
      break;
    }
    case 'VOLUME': {
      const vols = cmd.json ?? xs(cmd.args);
      if (vols.length === 0 || vols.some((v) => v.trim() === '')) throw new UserError('VOLUME specified can not be an empty string');
      c.Volumes = { ...(c.Volumes ?? {}) };
      for (const v of vols) c.Volumes[v] = {};
      history = `VOLUME [${vols.join(' ')}]`;
      keyParts = ['VOLUME', vols];
      break;
    }
    case 'STOPSIGNAL':
      c.StopSignal = validateSignal(x(cmd.args));
      keyParts = ['STOPSIGNAL', c.StopSignal];
      break;
    case 'SHELL':
      c.Shell = cmd.json;
      keyParts = ['SHELL', cmd.json];
      break;
    case 'CMD':
      c.Cmd = cmd.json ?? [...(c.Shell ?? DEFAULT_SHELL), cmd.args];
      state.cmdSet = true;
      history = `CMD ${JSON.stringify(c.Cmd)}`;
      keyParts = ['CMD', c.Cmd];
      break;
    case 'ENTRYPOINT':
      c.Entrypoint = cmd.json ?? [...(c.Shell ?? DEFAULT_SHELL), cmd.args];
      // Like Docker: a new ENTRYPOINT drops the CMD inherited from the base image.
      if (!state.cmdSet) c.Cmd = null;
      history = `ENTRYPOINT ${JSON.stringify(c.Entrypoint)}`;
      keyParts = ['ENTRYPOINT', c.Entrypoint];
      break;
    case 'HEALTHCHECK':
      c.Healthcheck = parseHealthcheck(cmd.args, undefined, cmd.flags);
      keyParts = ['HEALTHCHECK', c.Healthcheck];
      break;
    case 'ONBUILD':
      c.OnBuild = [...(c.OnBuild ?? []), cmd.trigger.original];
      keyParts = ['ONBUILD', cmd.trigger.original];
      break;
  }
  return { state, history, keyParts };
}

/** Heredoc bodies expand variables but keep quotes: each `$x`/`${…}` is expanded on its own. */
export function expandHeredoc(lex: Lexer, content: string, env: Map<string, string>): string {
  return content.split('\n').map((line) => line.replace(/\$(\{[^}]*\}|[A-Za-z_][A-Za-z0-9_]*)/g, (m) => lex.processWord(m, env))).join('\n');
}
