// `images --filter`: Docker's dangling, reference, label, before and since filters over the
// store's image list. Several values of one key are alternatives; different keys must all match.
import type { ContentStore, ImageSummary } from '../../store/index.js';
import { UserError } from '../../util/errors.js';

/** Docker's reference filter: a shell-style pattern over "repo" or "repo:tag" (path.Match). */
function globToRegExp(pattern: string): RegExp {
  const body = pattern.replace(/[.+^${}()|\\]/g, '\\$&').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]');
  return new RegExp(`^${body}$`);
}

export async function filterImages(store: ContentStore, images: ImageSummary[], filters: string[]): Promise<ImageSummary[]> {
  if (filters.length === 0) return images;
  const byKey = new Map<string, string[]>();
  for (const f of filters) {
    const eq = f.indexOf('=');
    if (eq < 0) throw new UserError(`bad format of filter (expected name=value)`);
    const k = f.slice(0, eq).toLowerCase();
    if (!['dangling', 'reference', 'label', 'before', 'since'].includes(k)) throw new UserError(`invalid filter '${k}'`);
    byKey.set(k, [...(byKey.get(k) ?? []), f.slice(eq + 1)]);
  }
  const { parseReference, familiarName } = await import('../../image/index.js');
  const { resolveImage } = await import('../../store/index.js');
  const createdOf = async (ref: string) => {
    const img = await resolveImage(store, ref);
    return Date.parse(img.config.created ?? '') || 0;
  };
  const before = byKey.has('before') ? Math.min(...await Promise.all(byKey.get('before')!.map(createdOf))) : undefined;
  const since = byKey.has('since') ? Math.max(...await Promise.all(byKey.get('since')!.map(createdOf))) : undefined;
  for (const v of byKey.get('dangling') ?? []) if (!['true', 'false', '1', '0'].includes(v)) throw new UserError(`invalid filter 'dangling=${v}'`);
  return images.filter((i) => {
    const dangling = i.name === '<none>:<none>';
    const d = byKey.get('dangling');
    if (d && !d.some((v) => (v === 'true' || v === '1') === dangling)) return false;
    const r = byKey.get('reference');
    if (r) {
      if (dangling) return false;
      const ref = parseReference(i.name);
      const repo = familiarName(ref);
      if (!r.some((p) => globToRegExp(p).test(repo) || globToRegExp(p).test(`${repo}:${ref.tag ?? ''}`))) return false;
    }
    const l = byKey.get('label');
    if (l && !l.every((kv) => {
      const eq = kv.indexOf('=');
      const labels = i.labels ?? {};
      return eq < 0 ? kv in labels : labels[kv.slice(0, eq)] === kv.slice(eq + 1);
    })) return false;
    const t = Date.parse(i.created ?? '') || 0;
    if (before !== undefined && !(t < before)) return false;
    if (since !== undefined && !(t > since)) return false;
    return true;
  });
}
