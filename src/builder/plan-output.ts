// `drydock build --print-plan`: the build graph as a table or as JSON, with each vertex's cache
// status looked up (not executed): "cached" means the solver would take the step from the cache.
import type { BuildGraph, Vertex } from './vertex.js';
import type { BuildSession } from './session.js';

export interface PlanVertex {
  id: number;
  stage: number;
  step: number;
  trigger: boolean;
  instruction: string;
  /** source (FROM), exec (RUN/COPY/ADD: runs and makes a layer) or metadata (config only). */
  kind: 'source' | 'exec' | 'metadata';
  key: string;
  parent: number | null;
  /** Stages read besides the parent (FROM <stage>, COPY --from, RUN --mount from=). */
  inputs: number[];
  cached: boolean;
  /** With several platforms: the same key is in another platform's graph (it runs once). */
  shared?: boolean;
}

export interface PlanEdge { from: number; to: number; kind: 'parent' | 'stage' }

export interface PlanDocument {
  target: number;
  stages: { index: number; name: string | null; base: string; dependsOn: number[]; vertices: number[] }[];
  vertices: PlanVertex[];
  edges: PlanEdge[];
}

export async function describePlan(s: BuildSession, graph: BuildGraph): Promise<PlanDocument> {
  const last = new Map(graph.stages.map((st) => [st.index, st.vertices[st.vertices.length - 1]!]));
  const vertices: PlanVertex[] = [];
  const edges: PlanEdge[] = [];
  for (const v of graph.vertices) {
    const kind = !v.parent ? 'source' : v.op ? 'exec' : 'metadata';
    const cached = kind === 'source' || (!s.opts.noCache && !!(await s.cache.get(v.key)));
    vertices.push({
      id: v.id, stage: v.stage, step: v.step, trigger: v.trigger, instruction: v.inst.original, kind,
      key: `sha256:${v.key}`, parent: v.parent?.id ?? null, inputs: v.inputs, cached,
    });
    if (v.parent) edges.push({ from: v.parent.id, to: v.id, kind: 'parent' });
    for (const i of new Set(v.inputs)) edges.push({ from: last.get(i)!.id, to: v.id, kind: 'stage' });
  }
  return {
    target: graph.target,
    stages: graph.stages.map((st) => ({
      index: st.index, name: st.name ?? null, base: baseText(st.vertices[0]!), dependsOn: st.deps, vertices: st.vertices.map((v) => v.id),
    })),
    vertices, edges,
  };
}

/** `--print-plan` with several platforms: one document per platform, in --platform order. */
export interface PlatformsPlanDocument {
  platforms: (PlanDocument & { platform: string })[];
  /** Keys (sha256:…) in more than one platform's graph. */
  shared: string[];
}

export function sharedPlan(platforms: string[], docs: PlanDocument[]): PlatformsPlanDocument {
  const count = new Map<string, number>();
  for (const d of docs) for (const k of new Set(d.vertices.map((v) => v.key))) count.set(k, (count.get(k) ?? 0) + 1);
  const shared = [...count].filter(([, n]) => n > 1).map(([k]) => k).sort();
  const set = new Set(shared);
  return {
    platforms: docs.map((d, i) => ({ platform: platforms[i]!, ...d, vertices: d.vertices.map((v) => ({ ...v, shared: set.has(v.key) })) })),
    shared,
  };
}

/** Each platform's plan under a `platform linux/…` heading; shared vertices say so. */
export function formatPlatformsPlan(doc: PlatformsPlanDocument): string {
  const execShared = new Set(doc.platforms.flatMap((p) => p.vertices.filter((v) => v.shared && v.kind === 'exec').map((v) => v.key))).size;
  let out = `build plan: ${doc.platforms.length} platforms (${doc.platforms.map((p) => p.platform).join(', ')}), ${doc.shared.length} vertices shared (${execShared} of them run once for all)\n`;
  for (const p of doc.platforms) {
    const lines = formatPlan(p).split('\n');
    lines[0] = `platform ${p.platform}: ${lines[0]}`;
    out += lines.map((l) => {
      const m = /^ {2}#(\d+)/.exec(l);
      return m && p.vertices[Number(m[1])]!.shared ? `${l}  (shared)` : l;
    }).join('\n');
  }
  return out;
}

function baseText(from: Vertex): string {
  const b = from.base!;
  return b.kind === 'image' ? b.name : b.kind === 'stage' ? `stage ${b.stage}` : 'scratch';
}

export function formatPlan(doc: PlanDocument): string {
  const stageName = (i: number) => {
    const st = doc.stages.find((x) => x.index === i)!;
    return st.name ?? `stage-${i}`;
  };
  const cached = doc.vertices.filter((v) => v.cached && v.kind !== 'source').length;
  const steps = doc.vertices.filter((v) => v.kind !== 'source').length;
  const lines = [`build plan: ${doc.stages.length} stage${doc.stages.length === 1 ? '' : 's'}, ${doc.vertices.length} vertices, ${cached} of ${steps} steps cached, target ${stageName(doc.target)}`];
  for (const st of doc.stages) {
    const deps = st.dependsOn.length ? ` <- ${st.dependsOn.map(stageName).join(', ')}` : '';
    lines.push(`stage ${st.index} ${stageName(st.index)} (FROM ${st.base})${deps}`);
    for (const id of st.vertices) {
      const v = doc.vertices[id]!;
      const status = v.kind === 'source' ? 'source' : v.cached ? 'cached' : v.kind === 'exec' ? 'run' : 'config';
      const label = v.trigger ? 'Trigger' : `${v.step}/${doc.vertices.reduce((n, x) => (x.trigger ? n : n + 1), 0)}`;
      const from = v.inputs.length && v.kind !== 'source' ? `  <- ${[...new Set(v.inputs)].map(stageName).join(', ')}` : '';
      lines.push(`  #${String(v.id).padEnd(3)} ${status.padEnd(7)} ${v.key.slice(7, 19)}  ${label.padEnd(6)} ${oneLine(v.instruction)}${from}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

function oneLine(s: string): string {
  const first = s.split('\n')[0]!;
  return first.length > 72 ? `${first.slice(0, 71)}…` : first + (s.includes('\n') ? ' …' : '');
}
