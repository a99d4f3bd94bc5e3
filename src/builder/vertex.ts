// The build graph's data: vertices, stages, the ops they carry and what an op is given when it
// runs. Kept apart from the planner (graph.ts) so the ops and the executor can name these types
// without importing the planner, which imports the ops.
import type { Writable } from 'node:stream';
import type { Instruction } from '../dockerfile/index.js';
import type { LocalImage } from '../store/images.js';
import type { ImageConfig } from '../image/types.js';
import type { CachedLayer } from './cache.js';

/** A layer during a build: a base image's blob, a cached step's blob, or a snapshot of this build. */
export interface BuildLayer {
  diffID: string;
  /** The blob, once it exists (base images, cache hits, SOURCE_DATE_EPOCH builds). */
  known?: CachedLayer;
  /** The blob being made from the snapshot (solver.ts starts it once per diffID). */
  blob?: Promise<CachedLayer>;
  /**
   * The blob's descriptor while `blob` is still being written: a snapshot compressed in memory
   * knows its digest before the write and fsync, so the manifest is written meanwhile (export.ts);
   * the tag waits for `blob`.
   */
  described?: CachedLayer;
  /**
   * This build's snapshot, still in its step's scratch dir: later steps mount it there until the
   * build ends and it moves into the layer cache (rootfs.ts StepSnapshot).
   */
  dir?: string;
}

/** A layer a step mounts: one of this build's snapshots by its dir, or a layer by its diffID. */
export type LowerLayer = BuildLayer | { dir: string; diffID?: undefined };

/** What an op gets from the executor: the step's mounted rootfs and its neighbours. */
export interface ExecContext {
  rootfs: string;
  lowers: string[];
  upper: string;
  workDir: string;
  /**
   * The layers of a stage this vertex reads (COPY --from, RUN --mount from=): on disk, the last
   * one possibly a snapshot whose diffID is still being hashed.
   */
  stageLayers(index: number): LowerLayer[];
  /** Runs `fn` when the step ends, before its upper dir is taken (unmounts of sources). */
  defer(fn: () => Promise<void>): void;
  /** The step's output (RUN's stdout/stderr), prefixed with the stage when stages run at once. */
  out: Writable | undefined;
  /** The step as messages name it: `step 3/7 "RUN make"`, or BuildKit's `[linux/arm64 2/3] RUN make` for one platform of several. */
  stepLabel: string;
}

export interface Op {
  kind: 'run' | 'copy';
  /**
   * Called when the step is about to execute, before its rootfs is mounted: work that needs no
   * rootfs (reading the sources, loading modules) starts then and overlaps the mount.
   */
  prepare?(): void;
  exec(x: ExecContext): Promise<void>;
  /**
   * A COPY of build-context sources holding several MiB: its snapshot repays the snapshot
   * worker and its second (gzip) thread, which start with the step where they pay (4 or more
   * CPUs, snapshot-worker.ts workerPays).
   */
  largeLayer?: boolean;
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
