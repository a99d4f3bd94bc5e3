// Docker's USER semantics: "name", "uid", "name:group", "uid:gid", looked up in the image's
// /etc/passwd and /etc/group (read inside the rootfs, never the host's), plus the supplementary
// groups the user is a member of.
import { readFileInRootSync } from './rootfs-path.js';
import { UserError } from '../util/errors.js';

export interface ResolvedUser {
  uid: number;
  gid: number;
  additionalGids: number[];
  home: string;
}

interface PasswdEntry { name: string; uid: number; gid: number; home: string }
interface GroupEntry { name: string; gid: number; members: string[] }

export function parsePasswd(text: string): PasswdEntry[] {
  return text.split('\n').map((l) => l.split(':')).filter((f) => f.length >= 4 && f[0] && !f[0].startsWith('#'))
    .map((f) => ({ name: f[0]!, uid: Number(f[2]), gid: Number(f[3]), home: f[5] || '/' }))
    .filter((e) => Number.isInteger(e.uid) && Number.isInteger(e.gid));
}

export function parseGroup(text: string): GroupEntry[] {
  return text.split('\n').map((l) => l.split(':')).filter((f) => f.length >= 3 && f[0] && !f[0].startsWith('#'))
    .map((f) => ({ name: f[0]!, gid: Number(f[2]), members: (f[3] ?? '').split(',').map((s) => s.trim()).filter(Boolean) }))
    .filter((e) => Number.isInteger(e.gid));
}

const isNumeric = (s: string) => /^\d+$/.test(s);

/**
 * Resolves a USER spec the way runc's libcontainer (and so Docker) does: an empty spec is uid 0,
 * gid 0, home "/" (no passwd file needed, e.g. FROM scratch); a numeric uid or gid needs no entry;
 * a name must be in the image's file, else Docker's "no matching entries" error.
 */
export async function resolveUser(rootfs: string, spec: string | undefined, extraGroups: string[] = []): Promise<ResolvedUser> {
  const value = (spec ?? '').trim();
  const colon = value.indexOf(':');
  const userPart = colon < 0 ? value : value.slice(0, colon);
  const groupPart = colon < 0 ? undefined : value.slice(colon + 1);
  // Two small files, read with synchronous calls: a RUN step waits for them before runc starts.
  const passwdText = readFileInRootSync(rootfs, '/etc/passwd');
  const groupText = readFileInRootSync(rootfs, '/etc/group');
  const passwd = parsePasswd(passwdText ?? '');
  const groups = parseGroup(groupText ?? '');
  let entry: PasswdEntry | undefined;
  let uid: number;
  if (userPart === '') {
    uid = 0;
    entry = passwd.find((e) => e.uid === 0);
  } else if (isNumeric(userPart)) {
    uid = Number(userPart);
    entry = passwd.find((e) => e.uid === uid);
  } else {
    entry = passwd.find((e) => e.name === userPart);
    if (!entry) throw new UserError(`unable to find user ${userPart}: no matching entries in passwd file`);
    uid = entry.uid;
  }
  let gid = entry?.gid ?? 0;
  if (groupPart !== undefined && groupPart !== '') gid = lookupGroup(groups, groupPart);
  const additional = new Set<number>();
  // Supplementary groups come from /etc/group only when no explicit group was given, like Docker
  // (an explicit group replaces the user's group set). Docker's list holds the primary group too
  // (`id` prints groups=0(root)), in the group file's order, also with an explicit group.
  if (groupPart === undefined || groupPart === '') {
    for (const g of groups) if (g.gid === gid || (entry && g.members.includes(entry.name))) additional.add(g.gid);
  }
  additional.add(gid);
  for (const g of extraGroups) additional.add(lookupGroup(groups, g));
  return { uid, gid, additionalGids: [...additional], home: entry?.home ?? '/' };
}

function lookupGroup(groups: GroupEntry[], g: string): number {
  if (isNumeric(g)) return Number(g);
  const found = groups.find((e) => e.name === g);
  if (!found) throw new UserError(`unable to find group ${g}: no matching entries in group file`);
  return found.gid;
}
