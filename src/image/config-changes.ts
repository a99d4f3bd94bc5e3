// `docker import --change` / `docker commit --change`: Dockerfile instructions that only touch
// the image config (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME,
// WORKDIR, HEALTHCHECK NONE). Applied to a copy; the input config is not modified.
import type { ContainerConfig } from './types.js';
import { UserError } from '../util/errors.js';

export const CHANGE_INSTRUCTIONS = ['CMD', 'ENTRYPOINT', 'ENV', 'EXPOSE', 'LABEL', 'ONBUILD', 'STOPSIGNAL', 'USER', 'VOLUME', 'WORKDIR', 'HEALTHCHECK'] as const;

/** JSON exec form ["a","b"] when the text parses as an array of strings, else undefined. */
function execForm(text: string): string[] | undefined {
  if (!text.trimStart().startsWith('[')) return undefined;
  try {
    const v = JSON.parse(text) as unknown;
    if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v as string[];
  } catch { /* shell form after all */ }
  return undefined;
}

/** Splits `a=b "c d"=e f='g h'` into words, honouring quotes and backslash escapes. */
export function splitWords(text: string): string[] {
  const words: string[] = [];
  let cur = '';
  let quote: '"' | "'" | undefined;
  let has = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (quote) {
      if (ch === quote) quote = undefined;
      else if (ch === '\\' && quote === '"' && i + 1 < text.length) cur += text[++i];
      else cur += ch;
    } else if (ch === '"' || ch === "'") { quote = ch; has = true; }
    else if (ch === '\\' && i + 1 < text.length) { cur += text[++i]; has = true; }
    else if (/\s/.test(ch)) { if (has || cur) words.push(cur); cur = ''; has = false; }
    else { cur += ch; has = true; }
  }
  if (quote) throw new UserError(`unterminated ${quote} quote in "${text}"`);
  if (has || cur) words.push(cur);
  return words;
}

function keyValues(instr: string, text: string): [string, string][] {
  const words = splitWords(text);
  if (words.length === 0) throw new UserError(`${instr} needs at least one argument`);
  if (!words[0]!.includes('=')) {
    // Legacy form "ENV key value with spaces".
    const m = /^\s*(\S+)\s+(.*)$/s.exec(text);
    if (!m) throw new UserError(`${instr} ${text}: expected key=value or "key value"`);
    return [[m[1]!, splitWords(m[2]!).join(' ')]];
  }
  return words.map((w) => {
    const eq = w.indexOf('=');
    if (eq <= 0) throw new UserError(`${instr} ${text}: "${w}" is not key=value`);
    return [w.slice(0, eq), w.slice(eq + 1)];
  });
}

/** Applies `changes` (e.g. `CMD ["/bin/sh"]`, `ENV A=1`) to a copy of `config`. */
export function applyConfigChanges(config: ContainerConfig, changes: string[]): ContainerConfig {
  const out: ContainerConfig = structuredClone(config);
  for (const change of changes) {
    const m = /^\s*([A-Za-z]+)(?:\s+([\s\S]*))?$/.exec(change);
    if (!m) throw new UserError(`invalid change "${change}": expected a Dockerfile instruction`);
    const instr = m[1]!.toUpperCase();
    const args = (m[2] ?? '').trim();
    if (!(CHANGE_INSTRUCTIONS as readonly string[]).includes(instr)) {
      throw new UserError(`invalid change "${change}": ${instr} is not allowed (allowed: ${CHANGE_INSTRUCTIONS.join(', ')})`);
    }
    if (!args && instr !== 'HEALTHCHECK') throw new UserError(`invalid change "${change}": ${instr} needs an argument`);
    switch (instr) {
      case 'CMD':
      case 'ENTRYPOINT': {
        const argv = execForm(args) ?? ['/bin/sh', '-c', args];
        if (instr === 'CMD') out.Cmd = argv; else out.Entrypoint = argv;
        break;
      }
      case 'ENV': {
        const env = [...(out.Env ?? [])];
        for (const [k, v] of keyValues(instr, args)) {
          const i = env.findIndex((e) => e.split('=')[0] === k);
          if (i >= 0) env[i] = `${k}=${v}`; else env.push(`${k}=${v}`);
        }
        out.Env = env;
        break;
      }
      case 'LABEL':
        out.Labels = { ...(out.Labels ?? {}), ...Object.fromEntries(keyValues(instr, args)) };
        break;
      case 'EXPOSE': {
        const ports = { ...(out.ExposedPorts ?? {}) };
        for (const p of splitWords(args)) {
          if (!/^\d{1,5}(?:-\d{1,5})?(?:\/(?:tcp|udp|sctp))?$/i.test(p)) throw new UserError(`invalid change "${change}": "${p}" is not a port (e.g. 80, 53/udp)`);
          ports[p.includes('/') ? p.toLowerCase() : `${p}/tcp`] = {};
        }
        out.ExposedPorts = ports;
        break;
      }
      case 'VOLUME': {
        const vols = { ...(out.Volumes ?? {}) };
        for (const v of execForm(args) ?? splitWords(args)) vols[v] = {};
        out.Volumes = vols;
        break;
      }
      case 'WORKDIR':
        out.WorkingDir = args.startsWith('/') ? args : `${(out.WorkingDir ?? '/').replace(/\/$/, '')}/${args}`;
        break;
      case 'USER':
        out.User = args;
        break;
      case 'STOPSIGNAL':
        out.StopSignal = args;
        break;
      case 'ONBUILD':
        out.OnBuild = [...(out.OnBuild ?? []), args];
        break;
      case 'HEALTHCHECK':
        if (args.toUpperCase() !== 'NONE') throw new UserError(`invalid change "${change}": only HEALTHCHECK NONE is supported in --change`);
        out.Healthcheck = { Test: ['NONE'] };
        break;
    }
  }
  return out;
}
