// Splits a parsed Dockerfile into its global ARGs and stages, and checks each instruction's flags
// and argument count with positions, so mistakes surface before anything is built.
import type { Dockerfile, Instruction } from './parser.js';
import { DockerfileError } from './errors.js';

export interface Stage {
  index: number;
  /** Lower-cased `AS name`, if given. */
  name?: string;
  from: Instruction;
  /** Raw image reference text after FROM flags (not yet expanded). */
  baseText: string;
  commands: Instruction[];
}

export interface StagedDockerfile {
  file: string;
  escape: string;
  /** ARG instructions before the first FROM. */
  metaArgs: Instruction[];
  stages: Stage[];
}

const ALLOWED_FLAGS: Record<string, string[]> = {
  FROM: ['platform'],
  RUN: ['mount', 'network', 'security'],
  COPY: ['from', 'chown', 'chmod', 'link', 'parents', 'exclude'],
  ADD: ['chown', 'chmod', 'link', 'checksum', 'keep-git-dir', 'exclude'],
  HEALTHCHECK: ['interval', 'timeout', 'start-period', 'start-interval', 'retries'],
};
const REPEATABLE = new Set(['mount', 'exclude']);

export function checkInstruction(file: string, inst: Instruction): void {
  const allowed = ALLOWED_FLAGS[inst.keyword] ?? [];
  const seen = new Set<string>();
  for (const f of inst.flags) {
    if (!allowed.includes(f.name)) throw new DockerfileError(file, f.position, `unknown flag: --${f.name} for ${inst.keyword}`);
    if (seen.has(f.name) && !REPEATABLE.has(f.name)) throw new DockerfileError(file, f.position, `duplicate flag specified: --${f.name}`);
    seen.add(f.name);
  }
  const needsArgs = !['HEALTHCHECK'].includes(inst.keyword);
  if (needsArgs && inst.args.trim() === '' && inst.heredocs.length === 0) {
    throw new DockerfileError(file, inst.start, `${inst.keyword} requires at least one argument`);
  }
}

export function splitStages(df: Dockerfile): StagedDockerfile {
  const metaArgs: Instruction[] = [];
  const stages: Stage[] = [];
  for (const inst of df.instructions) {
    checkInstruction(df.file, inst);
    if (inst.keyword === 'FROM') {
      const words = inst.args.trim().split(/\s+/);
      let name: string | undefined;
      if (words.length === 3 && words[1]!.toUpperCase() === 'AS') {
        name = words[2]!.toLowerCase();
        if (!/^[a-z][a-z0-9-_.]*$/.test(name)) throw new DockerfileError(df.file, inst.argsPosition, `invalid name for build stage: "${words[2]}", name can't start with a number or contain symbols`);
        if (stages.some((s) => s.name === name)) throw new DockerfileError(df.file, inst.argsPosition, `duplicate stage name "${name}"`);
      } else if (words.length !== 1) {
        throw new DockerfileError(df.file, inst.argsPosition, 'FROM requires either one or three arguments (image [AS name])');
      }
      stages.push({ index: stages.length, name, from: inst, baseText: words[0]!, commands: [] });
      continue;
    }
    if (stages.length === 0) {
      if (inst.keyword !== 'ARG') throw new DockerfileError(df.file, inst.start, `no build stage in current context: ${inst.keyword} before the first FROM (only ARG may come first)`);
      metaArgs.push(inst);
      continue;
    }
    stages[stages.length - 1]!.commands.push(inst);
  }
  if (stages.length === 0) throw new DockerfileError(df.file, { line: 1, column: 1 }, 'the Dockerfile has no FROM instruction');
  return { file: df.file, escape: df.escape, metaArgs, stages };
}
