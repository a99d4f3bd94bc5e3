// The executor: runs a build graph (graph.ts) with the cache in front, BuildKit's solver in
// small. A vertex runs once its parent and the stages it reads are done, so independent stages,
// and COPY --from of stages that are finished, run at the same time; at most `parallelism` ops
// (RUN/COPY/ADD) execute at once. A step's key is looked up first; a miss executes the op on an
// overlay and keeps the upper dir as an uncompressed snapshot. Its compressed blob is made in the
// same tar pass that hashes the diffID (rootfs.ts snapshotLayer) and finishes while the next step
// runs; the exporter and the cache entry (written when its blob exists) await it. Layers of
// earlier builds without a blob are compressed once per diffID.
import os from 'node:os';
import { Writable } from 'node:stream';
import { shortId, digestOf } from '../image/digest.js';
import type { HistoryEntry, ImageConfig } from '../image/types.js';
import { UserError } from '../util/errors.js';
import { formatPlatform } from '../image/platform.js';
import type { CacheEntry, CachedLayer } from './cache.js';
import type { BuildGraph, BuildLayer, Vertex } from './vertex.js';
import { withRootfs, compressSnapshot } from './rootfs.js';
import type { BuildSession } from './session.js';

export interface StepReport {
  step: number;
  instruction: string;
  cached: boolean;
  key: string;
  /** Not executed here: another platform of the same build ran the step (same key). */
  shared?: boolean;
}

/** A stage's filesystem and history after a vertex. */
export interface SolvedState {
  layers: BuildLayer[];
  history: HistoryEntry[];
  /** Last history `created` (the image's created time). */
  created: string;
}

export interface StepImage {
  /** The config digest printed on the step's " ---> ID" line. */
  id: string;
  config: ImageConfig;
  layers: BuildLayer[];
}

/** The image config after a step: the planned config with the solved layers and history. */
export function imageConfig(planned: ImageConfig, state: SolvedState): ImageConfig {
  return {
    ...planned, created: state.created,
    rootfs: { type: 'layers', diff_ids: state.layers.map((l) => l.diffID) },
    history: state.history,
  };
}

/** Raised in branches that stop because another branch failed; never shown. */
class Canceled extends Error {}

/** p-limit in a few lines: at most `n` tasks run, the rest wait in order. */
export function limiter(n: number): <T>(task: () => Promise<T>) => Promise<T> {
  let active = 0;
  const queue: (() => void)[] = [];
  const next = () => { active--; queue.shift()?.(); };
  return async <T>(task: () => Promise<T>): Promise<T> => {
    if (active >= n) await new Promise<void>((resolve) => queue.push(resolve));
    active++;
    try { return await task(); } finally { next(); }
  };
}

export class Solver {
  private readonly results = new Map<number, Promise<SolvedState>>();
  private readonly blobs = new Map<string, Promise<CachedLayer>>();
  private readonly puts: Promise<void>[] = [];
  private readonly limit: <T>(task: () => Promise<T>) => Promise<T>;
  private readonly lastOfStage = new Map<number, Vertex>();
  private readonly prefixed: boolean;
  private readonly finalVertex: Vertex;
  private failure: unknown;
  readonly steps: StepReport[] = [];
  /** Each step's intermediate image (all but the target's last step), as printed. */
  readonly stepImages: StepImage[] = [];

  constructor(private readonly s: BuildSession, private readonly graph: BuildGraph) {
    for (const st of graph.stages) this.lastOfStage.set(st.index, st.vertices[st.vertices.length - 1]!);
    this.finalVertex = this.lastOfStage.get(graph.target)!;
    this.prefixed = graph.stages.length > 1;
    this.limit = s.opts.shared?.limit ?? limiter(s.opts.parallelism ?? Math.max(2, os.availableParallelism?.() ?? os.cpus().length));
    s.opts.shared?.failed.signal.addEventListener('abort', () => { void this.killRunning(); }, { once: true });
  }

  /** Scratch dirs of the ops executing now (their RUN containers are recorded there). */
  private readonly executing = new Set<string>();

  /** Another platform failed: kill this one's RUN containers until no op is left running. */
  private async killRunning(): Promise<void> {
    if (this.executing.size === 0) return;
    const { killOwnedContainers } = await import('../runtime/index.js');
    // Again until the ops end: a container recorded but not yet created cannot be killed yet.
    while (this.executing.size) {
      await Promise.all([...this.executing].map((d) => killOwnedContainers(d)));
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  private get canceled(): boolean {
    return !!this.s.opts.shared?.failed.signal.aborted;
  }

  /** Builds the target stage; on failure, waits for the steps still running to clean up. */
  async solve(): Promise<SolvedState> {
    try {
      return await this.stage(this.graph.target);
    } catch (e) {
      this.failure ??= e;
      await Promise.allSettled([...this.results.values()]);
      throw this.failure;
    } finally {
      this.steps.sort((a, b) => a.step - b.step);
    }
  }

  /** Waits for the cache entries of executed steps (written once their blobs exist). */
  async flush(): Promise<void> {
    await Promise.all(this.puts);
  }

  /** The blob of a layer: already known, or compressed from its snapshot once. */
  blob(layer: BuildLayer): Promise<CachedLayer> {
    if (layer.known) return Promise.resolve(layer.known);
    layer.blob ??= this.compress(layer.diffID);
    return layer.blob;
  }

  /** True when the target's last vertex is a step whose " ---> ID" line the exporter prints. */
  get finalStepPrintsImageId(): boolean {
    return this.finalVertex.parent !== undefined && !this.finalVertex.trigger;
  }

  /** The target stage's line prefix ("[name] " when stages run at once, else empty). */
  get finalPrefix(): string {
    return this.label(this.finalVertex);
  }

  private compress(diffID: string): Promise<CachedLayer> {
    let p = this.blobs.get(diffID);
    if (!p) {
      p = compressSnapshot(this.s.store, diffID, this.s.opts.compression);
      p.catch(() => { /* awaited by the exporter or flush() */ });
      this.blobs.set(diffID, p);
    }
    return p;
  }

  private stage(index: number): Promise<SolvedState> {
    return this.vertex(this.lastOfStage.get(index)!);
  }

  private vertex(v: Vertex): Promise<SolvedState> {
    let p = this.results.get(v.id);
    if (!p) {
      p = this.execute(v).catch((e) => {
        if (!(e instanceof Canceled)) {
          this.failure ??= e;
          // The other platforms (and this one's other running steps) stop now, not once this
          // platform's remaining steps have finished.
          this.s.opts.shared?.failed.abort(e);
        }
        throw e;
      });
      p.catch(() => { /* reported through solve() */ });
      this.results.set(v.id, p);
    }
    return p;
  }

  /**
   * How errors name the step: drydock's `step 3/7 "RUN make"`; with several platforms BuildKit's
   * vertex name, `[linux/arm64 build 2/3] RUN make` (the stage's FROM is 1, each RUN/COPY/ADD one more).
   */
  private stepLabel(v: Vertex): string {
    if (!this.s.opts.shared) return `step ${v.step}/${this.graph.totalSteps} "${v.inst.original}"`;
    const st = this.graph.stages.find((x) => x.index === v.stage)!;
    const counted = st.vertices.filter((x) => !x.parent || x.op);
    const name = st.name ?? (this.graph.stages.length > 1 ? `stage-${st.index}` : '');
    return `[${formatPlatform(this.s.platform)} ${name ? `${name} ` : ''}${counted.indexOf(v) + 1}/${counted.length}] ${v.inst.original}`;
  }

  private label(v: Vertex): string {
    if (!this.prefixed) return '';
    const st = this.graph.stages.find((x) => x.index === v.stage)!;
    return `[${st.name ?? `stage-${st.index}`}] `;
  }

  private async execute(v: Vertex): Promise<SolvedState> {
    const s = this.s;
    // A step the cache has needs only its parent's state: the stages it reads (COPY --from, bind
    // mounts) are solved only on a miss, as BuildKit does, so a cached final stage never builds
    // the stages it copies from. Without a cache candidate, parent and inputs start together.
    const noCache = s.opts.noCache || !v.parent;
    let entry: CacheEntry | undefined = noCache ? undefined : await s.cache.get(v.key);
    const candidate = !!entry || (!noCache && !!s.opts.remoteCache?.has(v.key));
    const parentP = v.parent ? this.vertex(v.parent) : this.base(v);
    let [parent, ...inputs] = await Promise.all([parentP, ...(candidate ? [] : v.inputs.map((i) => this.stage(i)))]);
    if (!entry && candidate) entry = await s.opts.remoteCache!.lookup(v.key, parent!.layers.map((l) => l.diffID));
    if (candidate && !entry) inputs = await Promise.all(v.inputs.map((i) => this.stage(i)));
    if (this.failure !== undefined || this.canceled) throw new Canceled('another step failed');
    if (s.interrupted) throw new UserError('build interrupted', 130);
    const prefix = this.label(v);
    const stepText = `${v.trigger ? 'Trigger' : `Step ${v.step}/${this.graph.totalSteps}`} : ${v.inst.original}`;
    s.log(`${prefix}${stepText}\n`);
    if (!v.parent) {
      const base = v.base!;
      s.log(`${prefix} ---> ${base.kind === 'stage' ? `stage ${this.graph.stages.find((x) => x.index === base.stage)?.name ?? base.stage}` : base.kind === 'image' ? shortId(base.image.configDigest) : ''}\n`);
      const triggers = this.graph.vertices.filter((x) => x.stage === v.stage && x.trigger).length;
      if (triggers) s.log(`${prefix}# Executing ${triggers} build trigger${triggers > 1 ? 's' : ''}\n`);
      this.steps.push({ step: v.step, instruction: v.inst.original, cached: true, key: v.key });
      if (base.kind !== 'stage') this.report(v, parent, false);
      return parent;
    }
    const cached = !!entry;
    let layer: BuildLayer | undefined;
    // Another platform of this build already runs the same key: take its result (checked and
    // registered with no await in between, so exactly one platform executes it).
    const running = !entry && v.op ? s.opts.shared?.steps.get(v.key) : undefined;
    let shared = false;
    if (entry) {
      s.log(`${prefix} ---> Using cache\n`);
      if (entry.layer) layer = { diffID: entry.layer.diffID, known: entry.layer };
    } else if (running) {
      const r = await running;
      s.log(`${prefix} ---> Using the result of the same step for ${r.platform}\n`);
      entry = { created: r.created };
      layer = r.layer;
      shared = true;
    } else {
      entry = { created: s.stamp };
      if (v.op) {
        const layers = new Map(v.inputs.map((i, n) => [i, inputs[n]!.layers]));
        const stageOut = prefix && s.out ? new PrefixedLines(s.out, prefix) : undefined;
        const out = stageOut ?? s.out;
        const created = entry.created;
        const exec = (async () => {
          try {
            return await this.limit(() => {
              if (this.canceled) throw new Canceled('another platform failed');
              return withRootfs(s, parent.layers, { stageLayers: (i) => layers.get(i) ?? [], out, stepLabel: this.stepLabel(v) }, async (x) => {
                this.executing.add(x.workDir);
                try {
                  // Checked after the add: an abort from now on finds this op in `executing` and
                  // kills its container; one that came while the rootfs was mounted stops it here.
                  if (this.canceled) throw new Canceled('another platform failed');
                  await v.op!.exec(x);
                } catch (e) {
                  // Killed because another platform failed: that failure is the build's error.
                  throw this.canceled ? new Canceled('another platform failed') : e;
                } finally {
                  this.executing.delete(x.workDir);
                }
              });
            });
          } finally {
            stageOut?.end();
          }
        })();
        if (s.opts.shared) {
          const result = exec.then((l) => ({ layer: l, created, platform: formatPlatform(s.platform) }));
          result.catch(() => { /* the waiting platform reports it */ });
          s.opts.shared.steps.set(v.key, result);
        }
        layer = await exec;
        const key = v.key;
        const put = this.blob(layer).then((l) => s.cache.put(key, { created, layer: l }));
        put.catch(() => { /* awaited by flush() */ });
        this.puts.push(put);
      } else {
        const put = s.cache.put(v.key, entry);
        put.catch(() => {});
        this.puts.push(put);
      }
    }
    const state: SolvedState = {
      layers: layer ? [...parent.layers, layer] : parent.layers,
      history: [...parent.history, {
        created: entry.created, created_by: v.history, comment: 'buildkit.dockerfile.v0', ...(layer ? {} : { empty_layer: true }),
      }],
      created: entry.created,
    };
    if (v !== this.finalVertex || v.trigger) {
      // Like Docker's classic builder, the ID is the step's intermediate image: its config is
      // final now (diffIDs need no blobs), the image is written by the exporter once the blobs exist.
      const config = imageConfig(v.config, state);
      const id = digestOf(Buffer.from(JSON.stringify(config)));
      this.stepImages.push({ id, config, layers: state.layers });
      s.log(`${prefix} ---> ${shortId(id)}\n`);
    }
    this.steps.push({ step: v.step, instruction: v.inst.original, cached, key: v.key, ...(shared ? { shared } : {}) });
    this.report(v, state, !!layer);
    return state;
  }

  /** Tells a remote cache (--cache-to) about a step; its blobs are resolved only if exported. */
  private report(v: Vertex, state: SolvedState, hasLayer: boolean): void {
    this.s.opts.remoteCache?.onStep({
      key: v.key, parent: v.parent?.key, created: state.created, hasLayer,
      layers: () => Promise.all(state.layers.map((l) => this.blob(l))),
    });
  }

  private async base(v: Vertex): Promise<SolvedState> {
    const base = v.base!;
    if (base.kind === 'stage') return this.stage(base.stage);
    if (base.kind === 'scratch') return { layers: [], history: [], created: this.s.stamp };
    const img = base.image;
    return {
      layers: img.manifest.layers.map((l, i) => {
        const known = { digest: l.digest, size: l.size, mediaType: l.mediaType, diffID: img.config.rootfs.diff_ids[i]! };
        return { diffID: known.diffID, known };
      }),
      history: img.config.history ?? [],
      created: img.config.created ?? this.s.stamp,
    };
  }
}

/** RUN output of concurrent stages: whole lines, each with its stage's prefix. */
export class PrefixedLines extends Writable {
  private partial = '';
  constructor(private readonly target: Writable, private readonly prefix: string) { super(); }
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    const text = this.partial + chunk.toString('utf8');
    const lines = text.split('\n');
    this.partial = lines.pop()!;
    if (lines.length) this.target.write(lines.map((l) => `${this.prefix}${l}\n`).join(''));
    cb();
  }
  override _final(cb: (e?: Error | null) => void): void {
    if (this.partial) this.target.write(`${this.prefix}${this.partial}\n`);
    this.partial = '';
    cb();
  }
}
