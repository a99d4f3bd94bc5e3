// ADD of git repositories through the system git, like BuildKit's git source:
// `ADD https://host/repo.git#ref:subdir /dest`, `git@host:repo.git`, `git://`, `ssh://`. The ref
// (branch, tag or commit; default HEAD) is resolved to a commit with `git ls-remote` while
// planning, so the commit is the cache key; the checkout happens only when the step runs.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { UserError } from '../util/errors.js';

// Made on first use: promisify(execFile) at module load reads execFile, and the CLI bundle's lazy
// node:child_process (with the net and dgram it loads, ~10 ms) then loads for every build.
async function run(file: string, args: string[], opts: { env: NodeJS.ProcessEnv; maxBuffer: number }): Promise<{ stdout: string }> {
  return promisify(execFile)(file, args, { ...opts, encoding: 'utf8' });
}

export interface GitSource {
  /** The repository URL without the fragment. */
  url: string;
  ref?: string;
  /** Directory inside the repository to copy (`#ref:subdir`). */
  subdir?: string;
}

/** A git source, or undefined when `s` is not a git URL (BuildKit's isGitURL). */
export function parseGitSource(s: string): GitSource | undefined {
  if (!/^(git@[^:]+:|git:\/\/|ssh:\/\/|git\+ssh:\/\/)/.test(s) && !/^https?:\/\/[^#]+\.git(\/)?(#.*)?$/.test(s)) return undefined;
  const hash = s.indexOf('#');
  const url = hash < 0 ? s : s.slice(0, hash);
  const fragment = hash < 0 ? '' : s.slice(hash + 1);
  const [ref, subdir] = fragment.split(':', 2) as [string, string | undefined];
  if (subdir !== undefined && (path.posix.normalize(subdir).startsWith('..') || path.posix.isAbsolute(subdir))) {
    throw new UserError(`invalid git subdirectory "${subdir}" in ${s}`);
  }
  return { url, ...(ref ? { ref } : {}), ...(subdir ? { subdir } : {}) };
}

const GIT_ENV = { ...process.env, GIT_TERMINAL_PROMPT: '0', GIT_ASKPASS: 'true' };

async function git(args: string[], what: string): Promise<string> {
  try {
    return (await run('git', args, { env: GIT_ENV, maxBuffer: 16 << 20 })).stdout;
  } catch (e) {
    const err = e as Error & { stderr?: string; code?: string };
    if (err.code === 'ENOENT') throw new UserError('ADD of a git repository needs git (apt-get install git)');
    throw new UserError(`${what}: ${(err.stderr ?? err.message).trim()}`);
  }
}

/** The commit `ref` names in the remote repository. */
export async function resolveGitCommit(src: GitSource): Promise<string> {
  if (src.ref && /^[0-9a-f]{40}$/.test(src.ref)) return src.ref;
  const ref = src.ref ?? 'HEAD';
  const out = await git(['ls-remote', '--', src.url, ref, `${ref}^{}`], `git ls-remote ${src.url}`);
  const lines = out.trim().split('\n').filter(Boolean).map((l) => l.split('\t') as [string, string]);
  // An annotated tag's peeled line (^{}) names the commit; otherwise take the first match.
  const hit = lines.find(([, name]) => name.endsWith('^{}')) ?? lines[0];
  if (!hit) throw new UserError(`git ref "${ref}" not found in ${src.url}`);
  return hit[0];
}

/** Checks out `commit` into the empty directory `dir`; returns the directory to copy from. */
export async function checkoutGit(src: GitSource, commit: string, dir: string, keepGitDir: boolean): Promise<string> {
  await git(['init', '-q', dir], 'git init');
  const fetchRef = src.ref && !/^[0-9a-f]{40}$/.test(src.ref) ? src.ref : undefined;
  // A branch or tag is fetched alone and shallow; a commit id needs the branches and tags.
  const refspecs = fetchRef ? ['--depth=1', '--', src.url, fetchRef] : src.ref ? ['--', src.url, '+refs/heads/*:refs/remotes/origin/*', '+refs/tags/*:refs/tags/*'] : ['--', src.url];
  await git(['-C', dir, 'fetch', '-q', ...refspecs], `git fetch ${src.url}`);
  await git(['-C', dir, '-c', 'advice.detachedHead=false', 'checkout', '-q', commit], `git checkout ${commit}`);
  if (!keepGitDir) await fsp.rm(path.join(dir, '.git'), { recursive: true, force: true });
  const root = src.subdir ? path.join(dir, src.subdir) : dir;
  const st = await fsp.stat(root).catch(() => undefined);
  if (!st?.isDirectory()) throw new UserError(`git subdirectory "${src.subdir}" not found in ${src.url} at ${commit}`);
  return root;
}
