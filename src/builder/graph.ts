// The Dockerfile as a build graph, BuildKit's dockerfile2llb step: each instruction of the stages
// the target needs becomes a vertex with its cache key, its parent vertex, the stages it reads
// (FROM <stage>, COPY --from, RUN --mount from=) and, for RUN/COPY/ADD, an op to execute.
// Planning evaluates ARGs and expansions, resolves base images and hashes sources, but runs and
// mounts nothing: `drydock build --print-plan` prints this graph, solver.ts executes it.
import { parseLine, isMetadataKeyword, metadataCommand, type Instruction, type Stage } from '../dockerfile/index.js';
import type { LocalImage } from '../store/images.js';
import { formatPlatform, parsePlatform, hostPlatform } from '../image/platform.js';
import type { ImageConfig, Platform } from '../image/types.js';
import type { Writable } from 'node:stream';
import { UserError } from '../util/errors.js';
import { stepKey, type CachedLayer } from './cache.js';
import { splitRawWords } from './instructions.js';
import { dispatchMetadata, configEnv } from './dispatch.js';
import { parseMountFlag } from './mounts.js';
import { planRun } from './ops/run.js';
import { planCopy } from './ops/copy.js';
import type { BuildSession } from './session.js';

const DEFAULT_PATH_ENV = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** A layer during a build: a base image's blob, a cached step's blob, or a snapshot of this build. */
export interface BuildLayer {
  diffID: string;
  /** The blob, once it exists (base images, cache hits, SOURCE_DATE_EPOCH builds). */
  known?: CachedLayer;
  /** The blob being made from the snapshot (solver.ts starts it once per diffID). */
  blob?: Promise<CachedLayer>;
}

/** What an op gets from the executor: the step's mounted rootfs and its neighbours. */
export interface ExecContext {
  rootfs: string;
  lowers: string[];
  upper: string;
  workDir: string;
  /** Layers of a finished stage this vertex reads (COPY --from, RUN --mount from=). */
  stageLayers(index: number): BuildLayer[];
  /** Runs `fn` when the step ends, before its upper dir is taken (unmounts of sources). */
  defer(fn: () => Promise<void>): void;
  /** The step's output (RUN's stdout/stderr), prefixed with the stage when stages run at once. */
  out: Writable | undefined;
  /** "step 3/7", for messages. */
  stepLabel: string;
}

export interface Op {
  kind: 'run' | 'copy';
  exec(x: ExecContext): Promise<void>;
}

export interface PlannedOp {
  history: string;
  keyParts: unknown[];
  /** Stages the op reads. */
  inputs: number[];
  op: Op;
}

/** Where a stage starts. */
export type BaseSource =
  | { kind: 'image'; name: string; image: LocalImage }
  | { kind: 'stage'; stage: number }
  | { kind: 'scratch' };

export interface Vertex {
  /** Position in BuildGraph.vertices (dependency order). */
  id: number;
  stage: number;
  /** "Step N/M" number; ONBUILD triggers share their FROM's. */
  step: number;
  trigger: boolean;
  inst: Instruction;
  key: string;
  /** The previous vertex of the stage; absent for FROM. */
  parent?: Vertex;
  /** Stages this vertex reads besides its parent (FROM <stage> included). */
  inputs: number[];
  /** History `created_by` (FROM: none). */
  history?: string;
  op?: Op;
  /** FROM only. */
  base?: BaseSource;
  /** The config after this step, without rootfs/history (the solver adds those). */
  config: ImageConfig;
}

export interface StagePlan {
  index: number;
  name?: string;
  vertices: Vertex[];
  /** Stages this one reads (FROM, COPY --from, RUN --mount from=). */
  deps: number[];
}

export interface BuildGraph {
  /** The stages the target needs, in dependency order; the target is last. */
  stages: StagePlan[];
  target: number;
  vertices: Vertex[];
  totalSteps: number;
}

/** A stage's state while planning: what the next instruction builds on. */
export interface PlanState {
  key: string;
  config: ImageConfig;
  /** ARGs declared in this stage so far, with their values. */
  args: Map<string, string>;
  /** CMD was set in this stage (ENTRYPOINT then keeps it). */
  cmdSet: boolean;
  /** The final key of an already planned stage (for COPY --from / mount keys). */
  stageKey(index: number): string;
}

export async function planBuild(s: BuildSession): Promise<BuildGraph> {
  return new Planner(s).plan();
}

class Planner {
  private readonly stageState = new Map<number, PlanState>();
  private readonly vertices: Vertex[] = [];
  private stepNo = 0;

  constructor(private readonly s: BuildSession) {}

  async plan(): Promise<BuildGraph> {
    this.s.globalArgs = this.evalMetaArgs();
    const target = this.pickTarget();
    const order = this.stagesNeeded(target);
    const totalSteps = order.reduce((n, st) => n + 1 + st.commands.length, 0);
    const stages: StagePlan[] = [];
    for (const stage of order) {
      const vertices = await this.planStage(stage);
      const deps = [...new Set(vertices.flatMap((v) => v.inputs))];
      stages.push({ index: stage.index, name: stage.name, vertices, deps });
    }
    return { stages, target: target.index, vertices: this.vertices, totalSteps };
  }

  // ---- args, target and the stages it needs -----------------------------------------------

  private evalMetaArgs(): Map<string, string> {
    const s = this.s;
    const env = new Map<string, string>();
    const p = s.platform;
    const host = hostPlatform();
    const auto: Record<string, string> = {
      TARGETPLATFORM: formatPlatform(p), TARGETOS: p.os, TARGETARCH: p.architecture, TARGETVARIANT: p.variant ?? '',
      BUILDPLATFORM: formatPlatform(host), BUILDOS: host.os, BUILDARCH: host.architecture, BUILDVARIANT: '',
    };
    for (const [k, v] of Object.entries(auto)) env.set(k, v);
    for (const inst of s.df.metaArgs) {
      for (const [name, def] of this.parseArgDecls(inst, env)) {
        const v = s.buildArgs.has(name) ? s.buildArgs.get(name)! : def;
        if (s.buildArgs.has(name)) s.usedArgs.add(name);
        if (v !== undefined) env.set(name, v); else env.delete(name);
      }
    }
    return env;
  }

  private parseArgDecls(inst: Instruction, env: Map<string, string>): [string, string | undefined][] {
    const s = this.s;
    return s.at(inst, () => splitRawWords(inst.args, s.df.escape).map((w): [string, string | undefined] => {
      const eq = w.indexOf('=');
      const name = eq < 0 ? w : w.slice(0, eq);
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new UserError(`invalid ARG name "${name}"`);
      return [name, eq < 0 ? undefined : s.lex.processWord(w.slice(eq + 1), env)];
    }));
  }

  private pickTarget(): Stage {
    const stages = this.s.df.stages;
    const wanted = this.s.opts.target;
    if (!wanted) return stages[stages.length - 1]!;
    const t = wanted.toLowerCase();
    const st = stages.find((x) => x.name === t);
    if (!st) throw new UserError(`target stage "${wanted}" could not be found (stages: ${stages.map((x) => x.name ?? String(x.index)).join(', ')})`);
    return st;
  }

  private baseName(stage: Stage): string {
    return this.s.at(stage.from, () => this.s.lex.processWord(stage.baseText, this.s.globalArgs));
  }

  private dependencies(stage: Stage): Stage[] {
    const s = this.s;
    const deps: Stage[] = [];
    const base = s.stageRef(this.baseName(stage), stage.index);
    if (base) deps.push(base);
    for (const inst of stage.commands) {
      for (const f of inst.flags) {
        let ref: string | undefined;
        if (inst.keyword === 'COPY' && f.name === 'from') ref = f.value;
        if (inst.keyword === 'RUN' && f.name === 'mount' && f.value) ref = parseMountFlag(f.value).from;
        if (!ref) continue;
        const dep = s.stageRef(s.lex.processWord(ref, s.globalArgs), stage.index);
        if (dep) deps.push(dep);
      }
    }
    return deps;
  }

  /** The target and the stages it needs, in dependency order; others are skipped. */
  private stagesNeeded(target: Stage): Stage[] {
    const order: Stage[] = [];
    const seen = new Set<number>();
    const visit = (st: Stage) => {
      if (seen.has(st.index)) return;
      seen.add(st.index);
      for (const d of this.dependencies(st)) visit(d);
      order.push(st);
    };
    visit(target);
    return order;
  }

  // ---- one stage ----------------------------------------------------------------------------

  private stageKey = (index: number): string => {
    const st = this.stageState.get(index);
    if (!st) throw new Error(`stage ${index} is not planned yet`);
    return st.key;
  };

  private add(v: Omit<Vertex, 'id'>): Vertex {
    const vertex = { ...v, id: this.vertices.length };
    this.vertices.push(vertex);
    return vertex;
  }

  private async planStage(stage: Stage): Promise<Vertex[]> {
    const s = this.s;
    const out: Vertex[] = [];
    let { state, vertex } = await this.planFrom(stage);
    out.push(vertex);
    const onbuild = state.config.config?.OnBuild;
    if (onbuild && onbuild.length && vertex.base?.kind === 'image') {
      for (const trigger of onbuild) {
        const inst = parseLine(trigger, `${s.df.file} (ONBUILD trigger of ${this.baseName(stage)})`, stage.from.start, s.df.escape);
        ({ state, vertex } = await this.planStep(stage, state, vertex, inst, true));
        out.push(vertex);
      }
    }
    // Triggers run once: neither the stage nor its image passes them on.
    if (state.config.config) state.config.config.OnBuild = null;
    if (vertex.config.config) vertex.config.config.OnBuild = null;
    for (const inst of stage.commands) {
      ({ state, vertex } = await this.planStep(stage, state, vertex, inst, false));
      out.push(vertex);
    }
    this.stageState.set(stage.index, state);
    return out;
  }

  private async planFrom(stage: Stage): Promise<{ state: PlanState; vertex: Vertex }> {
    const s = this.s;
    this.stepNo++;
    const name = this.baseName(stage);
    const fromStage = s.stageRef(name, stage.index);
    let state: PlanState;
    let base: BaseSource;
    if (fromStage) {
      const prev = this.stageState.get(fromStage.index)!;
      state = { ...prev, config: structuredClone(prev.config), args: new Map(), cmdSet: false };
      base = { kind: 'stage', stage: fromStage.index };
    } else if (name.toLowerCase() === 'scratch') {
      const p = s.platform;
      state = {
        key: stepKey('', ['FROM scratch', formatPlatform(p)]),
        config: {
          architecture: p.architecture, os: p.os, ...(p.variant ? { variant: p.variant } : {}),
          config: { Env: [DEFAULT_PATH_ENV] }, rootfs: { type: 'layers', diff_ids: [] }, history: [],
        },
        args: new Map(), cmdSet: false, stageKey: this.stageKey,
      };
      base = { kind: 'scratch' };
    } else {
      const platformFlag = stage.from.flags.find((f) => f.name === 'platform')?.value;
      const platform: Platform = platformFlag ? parsePlatform(s.lex.processWord(platformFlag, s.globalArgs)) : s.platform;
      const image = await s.resolveBase(name, platform, stage.from);
      state = { key: stepKey('', ['FROM', image.manifestDescriptor.digest]), config: structuredClone(image.config), args: new Map(), cmdSet: false, stageKey: this.stageKey };
      state.config.config ??= {};
      // Like BuildKit and buildah: an image without PATH gets the default one, so RUN and the
      // final container find their binaries.
      const env = state.config.config.Env ?? [];
      if (!env.some((e) => e.startsWith('PATH='))) state.config.config.Env = [DEFAULT_PATH_ENV, ...env];
      base = { kind: 'image', name, image };
    }
    const vertex = this.add({
      stage: stage.index, step: this.stepNo, trigger: false, inst: stage.from, key: state.key,
      inputs: base.kind === 'stage' ? [base.stage] : [], base, config: structuredClone(state.config),
    });
    return { state, vertex };
  }

  private async planStep(stage: Stage, prevState: PlanState, parent: Vertex, inst: Instruction, trigger: boolean): Promise<{ state: PlanState; vertex: Vertex }> {
    const s = this.s;
    if (!trigger) this.stepNo++;
    const state: PlanState = { ...prevState, config: structuredClone(prevState.config), args: new Map(prevState.args) };
    state.config.config ??= {};
    const env = configEnv(state.config.config, state.args);
    const flags = new Map(inst.flags.map((f) => [f.name, f.value]));
    let history = inst.original;
    let keyParts: unknown[];
    let planned: PlannedOp | undefined;
    switch (inst.keyword) {
      case 'ARG': {
        const decls = this.parseArgDecls(inst, env);
        for (const [name, def] of decls) {
          let v = s.buildArgs.has(name) ? s.buildArgs.get(name) : def;
          if (s.buildArgs.has(name)) s.usedArgs.add(name);
          if (v === undefined && s.globalArgs.has(name)) v = s.globalArgs.get(name);
          if (v === undefined) state.args.delete(name); else state.args.set(name, v);
        }
        history = `ARG ${decls.map(([n, d]) => (d === undefined ? n : `${n}=${d}`)).join(' ')}`;
        keyParts = ['ARG', decls.map(([n]) => [n, state.args.get(n)])];
        break;
      }
      case 'RUN':
        planned = await planRun(s, inst, state, env, flags);
        break;
      case 'COPY':
      case 'ADD':
        planned = await planCopy(s, inst, state, env, flags);
        break;
      default: {
        if (!isMetadataKeyword(inst.keyword)) throw s.err(inst, `unsupported instruction ${inst.keyword}`);
        const cmd = metadataCommand(s.df.file, inst, s.df.escape);
        const c = state.config.config;
        const d = s.at(inst, () => dispatchMetadata({ config: c, author: state.config.author, cmdSet: state.cmdSet }, cmd, s.lex, env));
        state.config.config = d.state.config;
        if (d.state.author !== undefined) state.config.author = d.state.author;
        state.cmdSet = d.state.cmdSet;
        history = d.history;
        keyParts = d.keyParts;
      }
    }
    if (planned) {
      history = planned.history;
      keyParts = planned.keyParts;
    }
    state.key = stepKey(prevState.key, keyParts!);
    const vertex = this.add({
      stage: stage.index, step: this.stepNo, trigger, inst, key: state.key, parent,
      inputs: planned?.inputs ?? [], history, op: planned?.op, config: structuredClone(state.config),
    });
    return { state, vertex };
  }
}
