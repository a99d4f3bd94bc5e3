// COPY and ADD as an op. Planning resolves the sources and hashes them (context files, heredocs,
// downloaded URLs, git commits, the producing stage's key for --from) into the cache key; exec
// writes them into the step's mounted rootfs (src/builder/copy.ts does the file work).
import { promises as fsp, createReadStream } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { PatternMatcher, type Instruction } from '../../dockerfile/index.js';
import { STREAM_CHUNK } from '../../util/fs.js';
import { SourceTree, hashSources } from '../context.js';
import { parseChmod, splitRawWords } from '../instructions.js';
import { parseGitSource, resolveGitCommit, checkoutGit, type GitSource } from '../git.js';
import { treeFor } from '../rootfs.js';
import { expandHeredoc } from '../dispatch.js';
import type { BuildSession } from '../session.js';
import type { ExecContext, PlannedOp, PlanState } from '../vertex.js';
import { download, type Download } from './fetch.js';

export async function planCopy(s: BuildSession, inst: Instruction, state: PlanState, env: Map<string, string>, flags: Map<string, string | undefined>): Promise<PlannedOp> {
  const isAdd = inst.keyword === 'ADD';
  const c = state.config.config!;
  const words = inst.json ?? s.at(inst, () => splitRawWords(inst.args, s.df.escape).map((w) => s.lex.processWord(w, env)));
  const heredocs = new Map(inst.heredocs.map((h) => [h.name, h]));
  if (words.length < 2) throw s.err(inst, `${inst.keyword} requires at least two arguments, but only one was provided. Destination could not be determined`);
  let dest = words[words.length - 1]!;
  const srcs = words.slice(0, -1);
  const workdir = c.WorkingDir || '/';
  const destAbs = path.posix.resolve(workdir, dest) + (dest.endsWith('/') || dest === '.' || dest === './' ? '/' : '');
  dest = destAbs.replace(/\/+$/, '/') || '/';
  const from = flags.get('from') !== undefined ? s.lex.processWord(flags.get('from')!, env) : undefined;
  const chown = flags.get('chown') !== undefined ? s.lex.processWord(flags.get('chown')!, env) : undefined;
  const chmodText = flags.get('chmod');
  const chmod = chmodText !== undefined ? s.at(inst, () => parseChmod(chmodText)) : undefined;
  const checksum = flags.get('checksum');
  if (from !== undefined && isAdd) throw s.err(inst, 'ADD does not support --from; use COPY --from');

  // Sources and their content hashes, computed without touching the image.
  const inline: { name: string; content: string }[] = [];
  const urls: string[] = [];
  const gits: GitSource[] = [];
  const local: string[] = [];
  // A heredoc source is the word the parser opened it with (`<<$EOF` is not expanded first).
  const rawWords = inst.json ? [] : splitRawWords(inst.args, s.df.escape);
  for (const [i, src] of srcs.entries()) {
    const hd = inst.heredocs.find((h) => h.word === rawWords[i]) ?? (src.startsWith('<<') ? heredocs.get(src.replace(/^<<-?["']?|["']?$/g, '')) : undefined);
    if (hd) inline.push({ name: hd.name, content: hd.expand ? s.at(inst, () => expandHeredoc(s.lex, hd.content, env)) : hd.content });
    else if (isAdd && s.at(inst, () => parseGitSource(src))) gits.push(parseGitSource(src)!);
    else if (isAdd && /^https?:\/\//i.test(src)) urls.push(src);
    else local.push(src);
  }
  const keepGitDir = flags.has('keep-git-dir') && flags.get('keep-git-dir') !== 'false';
  const parents = flags.has('parents') && flags.get('parents') !== 'false';
  const excludes = inst.flags.filter((f) => f.name === 'exclude').map((f) => s.lex.processWord(f.value ?? '', env));
  const exclude = excludes.length ? s.at(inst, () => new PatternMatcher(excludes)) : undefined;
  const keyParts: unknown[] = [inst.keyword, dest, chown ?? '', chmod ?? '', flags.has('link'), inline, ...(parents ? ['parents'] : []), ...(excludes.length ? [['exclude', excludes]] : [])];
  const inputs: number[] = [];
  let sourceTree: SourceTree | undefined;
  /** ADD's context files: each may be an archive to extract. */
  let contextFiles: string[] = [];
  let largeLayer = false;
  if (local.length) {
    if (from !== undefined) {
      const st = s.stageRef(from, Infinity);
      if (st) inputs.push(st.index);
      keyParts.push(['from', st ? state.stageKey(st.index) : from, local]);
    } else {
      sourceTree = s.context;
      const entries = await s.at(inst, () => s.context.resolve(local, inst.keyword));
      keyParts.push(['context', local, await hashSources(s.context, entries)]);
      if (isAdd) contextFiles = entries.filter((e) => e.stat.isFile()).map((e) => e.hostPath);
      const { holdsLargeLayer } = await import('../snapshot-worker.js');
      largeLayer = holdsLargeLayer(entries);
    }
  }
  const downloads: Download[] = [];
  for (const url of urls) {
    const d = await download(s, inst, url, checksum);
    downloads.push(d);
    keyParts.push(['url', url, d.digest]);
  }
  const commits: string[] = [];
  for (const g of gits) {
    commits.push(await s.at(inst, () => resolveGitCommit(g)));
    keyParts.push(['git', g.url, commits[commits.length - 1], g.subdir ?? '', keepGitDir]);
  }
  let archiveChecks: Map<string, Promise<boolean>> | undefined;
  const history = `${inst.keyword} ${[...inst.flags.filter((f) => f.name !== 'link').map((f) => (f.value === undefined ? `--${f.name}` : `--${f.name}=${f.value}`)), ...srcs, dest].join(' ')} # buildkit`;

  return {
    history,
    keyParts,
    inputs,
    op: {
      kind: 'copy',
      // ADD: whether each context file is an archive (a read through the decompressor) and the
      // extractor's modules, 15-30 ms that otherwise start only once the rootfs is mounted.
      prepare() {
        if (!contextFiles.length) return;
        const copy = import('../copy.js');
        archiveChecks = new Map(contextFiles.map((f) => [f, copy.then((m) => m.isArchive(f))]));
        void copy.then((m) => m.loadExtractor()).catch(() => { /* the extraction reports it */ });
      },
      largeLayer,
      async exec(x: ExecContext) {
        const { copyEntries, writeFileInRoot } = await import('../copy.js');
        const owner = chown ? await resolveChown(s, inst, x.rootfs, chown) : { uid: 0, gid: 0 };
        // One local source is all this step writes: it may go straight into the upper dir.
        const alone = srcs.length === 1 && local.length === 1;
        // A copy of unknown size (another stage's tree, many small context files) starts the
        // snapshot worker once it is large; a large context COPY started it with the step.
        const { workerStarterForCopy, workerPays } = await import('../snapshot-worker.js');
        const onEntry = largeLayer || s.opts.sourceDateEpoch !== undefined || !workerPays() ? undefined : workerStarterForCopy();
        const copyOpts = { ...owner, chmod, extractArchives: isAdd, archiveChecks, instruction: inst.keyword, parents, exclude, onEntry, ...(alone ? { overlay: { upper: x.upper, lowers: x.lowers } } : {}) };
        const many = srcs.length > 1;
        if (many && !dest.endsWith('/')) throw s.err(inst, `When using ${inst.keyword} with more than one source file, the destination must be a directory and end with a /`);
        if (local.length) {
          const tree = sourceTree ?? await treeFor(s, x, inst, from!);
          const entries = await s.at(inst, () => tree.resolve(local, inst.keyword));
          await s.at(inst, () => copyEntries(tree, entries, x.rootfs, dest, copyOpts));
        }
        for (const [i, g] of gits.entries()) {
          const checkout = path.join(s.store.tmpDir, `git-${randomBytes(8).toString('hex')}`);
          try {
            const root = await s.at(inst, () => checkoutGit(g, commits[i]!, checkout, keepGitDir));
            const tree = new SourceTree(root, undefined, `git repository ${g.url}`);
            await s.at(inst, async () => copyEntries(tree, await tree.resolve(['.'], inst.keyword), x.rootfs, dest.endsWith('/') ? dest : `${dest}/`, { ...copyOpts, extractArchives: false }));
          } finally {
            await fsp.rm(checkout, { recursive: true, force: true });
          }
        }
        for (const h of inline) {
          const target = dest.endsWith('/') ? path.posix.join(dest, h.name) : dest;
          await writeFileInRoot(x.rootfs, target, h.content, 0o644, copyOpts);
        }
        for (const d of downloads) {
          const name = path.posix.basename(new URL(d.url).pathname) || 'index.html';
          const target = dest.endsWith('/') ? path.posix.join(dest, name) : dest;
          await writeFileInRoot(x.rootfs, target, createReadStream(d.file, { highWaterMark: STREAM_CHUNK }), 0o600, copyOpts);
        }
      },
    },
  };
}

async function resolveChown(s: BuildSession, inst: Instruction, rootfs: string, spec: string): Promise<{ uid: number; gid: number }> {
  const { resolveUser } = await import('../../runtime/index.js');
  const [u, g] = spec.split(':', 2) as [string, string | undefined];
  const resolved = await resolveUser(rootfs, g === undefined ? u : `${u}:${g}`).catch((e: Error) => { throw s.err(inst, `--chown=${spec}: ${e.message}`); });
  // "--chown=user" without a group uses the user's UID as the GID, as Docker documents.
  return { uid: resolved.uid, gid: g === undefined ? resolved.uid : resolved.gid };
}
