// The executor: runs a build graph (graph.ts) with the cache in front, BuildKit's solver in
// small. A vertex runs once its parent and the stages it reads are done, so independent stages,
// and COPY --from of stages that are finished, run at the same time; at most `parallelism` ops
// (RUN/COPY/ADD) execute at once. A step's key is looked up first; a miss executes the op on an
// overlay and keeps the upper dir as an uncompressed snapshot. The next step starts on that dir
// at once (it needs the parent's files, not its diffID: keys chain definitions), while one tar
// pass over the snapshot hashes the diffID and makes the compressed blob (rootfs.ts
// StepSnapshot); a step's state, its " ---> ID" line and its cache entry wait for its diffID,
// the exporter for the blobs. Layers of earlier builds without a blob are compressed once per diffID.
import os from 'node:os';
import { shortId, digestOf } from '../image/digest.js';
import type { HistoryEntry, ImageConfig } from '../image/types.js';
import { UserError } from '../util/errors.js';
import { formatPlatform } from '../image/platform.js';
import type { CacheEntry, CachedLayer } from './cache.js';
import type { BuildGraph, BuildLayer, Vertex } from './vertex.js';
import { withRootfs, compressSnapshot, type LowerLayer, type StepSnapshot } from './rootfs.js';
import { whileIdle } from '../util/idle.js';
import { prestartSnapshotWorker, workerPays } from './snapshot-worker.js';
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

/** A promise with its resolvers (Promise.withResolvers is Node 22). */
interface Deferred<T> { promise: Promise<T>; resolve(v: T | Promise<T>): void; reject(e: unknown): void; settled: boolean }
function deferred<T>(): Deferred<T> {
  const d = { settled: false } as Deferred<T>;
  d.promise = new Promise<T>((resolve, reject) => {
    d.resolve = (v) => { d.settled = true; resolve(v); };
    d.reject = (e) => { d.settled = true; reject(e); };
  });
  d.promise.catch(() => { /* the vertex's full result reports it */ });
  return d;
}

/** What a vertex's dependants may use before it is complete. */
interface Node {
  /** The layers a child step mounts: known when the step's op has ended, before its diffID. */
  lowers: Deferred<LowerLayer[]>;
  /** The step's last progress line is written (its dependants' lines come after it). */
  printed: Deferred<void>;
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
  private readonly nodes = new Map<number, Node>();
  private readonly snapshots: StepSnapshot[] = [];
  private readonly blobs = new Map<string, Promise<CachedLayer>>();
  private readonly puts: Promise<void>[] = [];
  private readonly limit: <T>(task: () => Promise<T>) => Promise<T>;
  private readonly lastOfStage = new Map<number, Vertex>();
  private readonly prefixed: boolean;
  private readonly finalVertex: Vertex;
  private failure: unknown;
  /** The progress output's streams (step-output.ts), loaded by solve() when there is progress output. */
  private output: typeof import('./step-output.js') | undefined;
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

  /** The snapshots moved into the layer cache, once solve() has returned (see adopted()). */
  private adopting?: Promise<void>;

  /**
   * Builds the target stage; on failure, waits for the steps still running to clean up. The
   * target's state comes as soon as its diffIDs are known: the export starts then, while the
   * snapshots move into the layer cache (adopted()) and the last blobs are compressed.
   */
  async solve(): Promise<SolvedState> {
    let state: SolvedState;
    // Here, not in execute(), which must not await between its shared-step check and registration.
    if (this.s.out) this.output = await import('./step-output.js');
    try {
      state = await this.stage(this.graph.target);
      // A stage the target copies from was read before its snapshot ended: a failure there
      // (its layer could not be written) still fails the build.
      await Promise.all(this.results.values());
    } catch (e) {
      this.failure ??= e;
      await Promise.allSettled([...this.results.values()]);
      throw this.failure;
    } finally {
      this.steps.sort((a, b) => a.step - b.step);
      // No step runs now, so no overlay has a snapshot's dir as a lower any more.
      this.adopting = Promise.all(this.snapshots.map((x) => x.adopt())).then(() => {});
      if (this.failure !== undefined) await this.adopting;
    }
    return state;
  }

  /** Resolves once every snapshot of this build is in the layer cache (or dropped). */
  adopted(): Promise<void> {
    return this.adopting ?? Promise.resolve();
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

  /**
   * The blob's descriptor as soon as it is known: before the blob is durable for a layer that
   * carries one (BuildLayer.described), else once it is (blob()).
   */
  descriptor(layer: BuildLayer): Promise<CachedLayer> {
    if (layer.known) return Promise.resolve(layer.known);
    if (layer.described) return Promise.resolve(layer.described);
    return this.blob(layer);
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

  /** The layers a step on top of `v` mounts, as soon as they are on disk. */
  private lowers(v: Vertex): Promise<LowerLayer[]> {
    void this.vertex(v);
    return this.nodes.get(v.id)!.lowers.promise;
  }

  private vertex(v: Vertex): Promise<SolvedState> {
    let p = this.results.get(v.id);
    if (!p) {
      const node: Node = { lowers: deferred(), printed: deferred() };
      this.nodes.set(v.id, node);
      p = this.execute(v, node).then((state) => {
        if (!node.lowers.settled) node.lowers.resolve(state.layers);
        return state;
      }, (e) => {
        if (!node.lowers.settled) node.lowers.reject(e);
        if (!node.printed.settled) node.printed.resolve();
        throw e;
      }).catch((e) => {
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

  private async execute(v: Vertex, node: Node): Promise<SolvedState> {
    const s = this.s;
    // A step the cache has needs only its parent's state: the stages it reads (COPY --from, bind
    // mounts) are solved only on a miss, as BuildKit does, so a cached final stage never builds
    // the stages it copies from. Without a cache candidate, parent and inputs start together.
    const noCache = s.opts.noCache || !v.parent;
    let entry: CacheEntry | undefined = noCache ? undefined : await s.cache.get(v.key);
    const candidate = !!entry || (!noCache && !!s.opts.remoteCache?.has(v.key));
    // What a child mounts: a metadata step's is its parent's, a FROM <stage>'s that stage's.
    if (v.parent && !v.op) node.lowers.resolve(this.lowers(v.parent));
    if (!v.parent && v.base?.kind === 'stage') node.lowers.resolve(this.lowers(this.lastOfStage.get(v.base.stage)!));
    // A step that executes starts on its parent's files, without waiting for the parent's
    // snapshot (its diffID); with several platforms a step's layer is shared, and so complete.
    const early = !!v.op && !candidate && !s.opts.shared && !!v.parent;
    const parentP = v.parent ? this.vertex(v.parent) : this.base(v);
    let parent: SolvedState | undefined;
    let lowers: LowerLayer[];
    let inputs: LowerLayer[][];
    if (early) {
      // The stages it reads, likewise, as soon as their last step's files are on disk: the key
      // names the producing stage's key, not its layers, so nothing here needs their diffIDs.
      [lowers, ...inputs] = await Promise.all([this.lowers(v.parent!), ...v.inputs.map((i) => this.lowers(this.lastOfStage.get(i)!))]);
    } else {
      let first: SolvedState;
      let states: SolvedState[];
      [first, ...states] = await Promise.all([parentP, ...(candidate ? [] : v.inputs.map((i) => this.stage(i)))]);
      parent = first;
      lowers = parent.layers;
      if (!entry && candidate) entry = await s.opts.remoteCache!.lookup(v.key, parent.layers.map((l) => l.diffID));
      if (candidate && !entry) states = await Promise.all(v.inputs.map((i) => this.stage(i)));
      inputs = states.map((st) => st.layers);
    }
    if (this.failure !== undefined || this.canceled) throw new Canceled('another step failed');
    if (s.interrupted) throw new UserError('build interrupted', 130);
    // Progress lines in order along a stage although a step starts before its parent's last line
    // (its " ---> ID" needs the parent's diffID): this step's lines, and its RUN output, are held
    // until the parent's are written.
    let printed: Promise<void> = v.parent ? this.nodes.get(v.parent.id)!.printed.promise : Promise.resolve();
    const say = (text: string) => { printed = printed.then(() => s.log(text)); };
    const prefix = this.label(v);
    const stepText = `${v.trigger ? 'Trigger' : `Step ${v.step}/${this.graph.totalSteps}`} : ${v.inst.original}`;
    say(`${prefix}${stepText}\n`);
    if (!v.parent) {
      const base = v.base!;
      parent = await parentP;
      say(`${prefix} ---> ${base.kind === 'stage' ? `stage ${this.graph.stages.find((x) => x.index === base.stage)?.name ?? base.stage}` : base.kind === 'image' ? shortId(base.image.configDigest) : ''}\n`);
      const triggers = this.graph.vertices.filter((x) => x.stage === v.stage && x.trigger).length;
      if (triggers) say(`${prefix}# Executing ${triggers} build trigger${triggers > 1 ? 's' : ''}\n`);
      node.printed.resolve(printed);
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
      say(`${prefix} ---> Using cache\n`);
      if (entry.layer) layer = { diffID: entry.layer.diffID, known: entry.layer };
    } else if (running) {
      const r = await running;
      say(`${prefix} ---> Using the result of the same step for ${r.platform}\n`);
      entry = { created: r.created };
      layer = r.layer;
      shared = true;
    } else {
      entry = { created: s.stamp };
      if (v.op) {
        const layers = new Map(v.inputs.map((i, n) => [i, inputs[n]!]));
        // RUN output waits behind this step's header line.
        const held = s.out ? new this.output!.HeldOutput(s.out, printed) : undefined;
        const stageOut = prefix && held ? new this.output!.PrefixedLines(held, prefix) : undefined;
        const out = stageOut ?? held;
        const created = entry.created;
        // A COPY of 4 MiB or more of the context is snapshotted in the worker thread (with 4 or
        // more CPUs): it starts while the files are copied (src/builder/snapshot-worker.ts). A copy
        // of unknown size (another stage's tree) starts it once it has copied that much
        // (workerStarterForCopy).
        if (v.op.kind === 'copy' && v.op.largeLayer && s.opts.sourceDateEpoch === undefined && workerPays()) prestartSnapshotWorker({ gzipThread: true });
        const exec = (async () => {
          try {
            return await this.limit(() => {
              if (this.canceled) throw new Canceled('another platform failed');
              v.op!.prepare?.();
              return withRootfs(s, lowers, { stageLayers: (i) => layers.get(i) ?? [], out, stepLabel: this.stepLabel(v) }, async (x) => {
                this.executing.add(x.workDir);
                // While the op waits (runc runs), what its snapshot and the export need next.
                const stopWarming = warmUpAfterOps();
                try {
                  // Checked after the add: an abort from now on finds this op in `executing` and
                  // kills its container; one that came while the rootfs was mounted stops it here.
                  if (this.canceled) throw new Canceled('another platform failed');
                  await v.op!.exec(x);
                } catch (e) {
                  // Killed because another platform failed: that failure is the build's error.
                  throw this.canceled ? new Canceled('another platform failed') : e;
                } finally {
                  stopWarming();
                  this.executing.delete(x.workDir);
                }
              });
            });
          } finally {
            if (stageOut) await new Promise<void>((resolve) => stageOut.end(resolve));
            if (held) await new Promise<void>((resolve) => held.end(resolve));
          }
        })();
        const label = this.stepLabel(v);
        const result = exec.then(async (snap) => {
          this.snapshots.push(snap);
          if (early) node.lowers.resolve([...lowers, snap.lower]);
          // The snapshot is read, hashed and written while later steps run: its failure fails
          // the build (through this step's state, or the exporter awaiting the blob) and names it.
          const failed = (e: unknown) => new UserError(`${label}: writing the step's layer failed: ${(e as Error).message}`, { cause: e });
          let l: BuildLayer;
          try {
            l = await snap.layer;
          } catch (e) {
            throw failed(e);
          }
          if (l.blob) {
            l.blob = l.blob.catch((e: unknown) => { throw failed(e); });
            l.blob.catch(() => { /* awaited by the exporter and the cache entry */ });
          }
          return { snap, layer: l };
        });
        if (s.opts.shared) {
          // Moved into the layer cache now: another platform's solver may mount it after this one ended.
          const published = result.then(async (r) => { await r.snap.adopt(); return { layer: r.layer, created, platform: formatPlatform(s.platform) }; });
          published.catch(() => { /* the waiting platform reports it */ });
          s.opts.shared.steps.set(v.key, published);
          await published;
        }
        layer = (await result).layer;
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
    parent ??= await parentP;
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
      say(`${prefix} ---> ${shortId(id)}\n`);
    }
    node.printed.resolve(printed);
    // The exporter's last line (the final " ---> ID") comes after this one.
    if (v === this.finalVertex) await printed;
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

let warmedUp = false;

/**
 * Loads, in the main thread's idle time during the first op of a build (util/idle.ts), the
 * modules that the step's snapshot (tar, gzip, the blob writer) loads on first use right after
 * it: 3–9 ms on the path from `runc run`'s exit to the image otherwise.
 */
function warmUpAfterOps(): () => void {
  if (warmedUp) return () => {};
  warmedUp = true;
  // In the order a late RUN's in-memory snapshot needs them (a late RUN's `runc run` leaves time
  // for about two), then the streamed snapshot's compressor and blob writer.
  return whileIdle([
    // node:crypto (~2.5 ms to load, and the first SHA-256 sets up OpenSSL's state): nothing
    // before `runc run` needed it (src/util/sha256.ts), and the snapshot hashes its tar with it
    // right after the exit. First: the costliest, and a late RUN's ~35 ms leave room for few tasks.
    () => import('node:crypto').then((c) => { c.createHash('sha256').update(Buffer.alloc(1024)).digest(); }),
    () => import('../layer/create.js'),
    // The first gzipSync of a process sets up zlib's state (~1 ms): a late RUN's in-memory
    // snapshot makes it right after `runc run` exits.
    () => import('../layer/parallel-gzip.js').then((m) => { m.gzipSync(Buffer.alloc(1024)); }),
    () => import('../layer/compression.js').then((m) => m.compressor('gzip').destroy()),
    () => import('../store/blob-file-writer.js'),
  ]);
}
