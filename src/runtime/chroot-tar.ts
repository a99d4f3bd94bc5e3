// Runs tar work for `drydock cp` chrooted into a container's rootfs, so the kernel resolves every
// path component inside the rootfs and a container that swaps a directory for a symlink while
// the copy runs (CVE-2018-15664) can never point it at the host.
//
// Why a chroot and why Python: a user-space resolver (resolve, then open by host path) always
// has a window between the check and the use; only kernel-side resolution closes it. Node has no
// chroot and no openat2 binding, and a chrooted tar binary would have to be loaded from the
// container (its loader and libraries are untrusted). The host's python3 is started, imports
// everything it needs from the host, then chroots into the rootfs and does the tar work with
// its standard tarfile module. After the chroot it can load nothing from the container: the
// import machinery is emptied (an import fails instead of reading the container's .py files),
// user and group names are never looked up (glibc would load the container's NSS modules into
// this root process, CVE-2019-14271), and the codecs tarfile uses are looked up beforehand.
// The rootfs is the same directory the container has as its root, so the container cannot move
// anything out from under the chroot either.
import { spawn } from 'node:child_process';
import { UserError } from '../util/errors.js';

export const PYTHON = '/usr/bin/python3';

const HELPER = String.raw`
import sys, os, stat, codecs, posixpath, tarfile, zlib, bz2, lzma
for _enc in ('utf-8', 'ascii', 'latin-1', 'iso8859-1'):
    codecs.lookup(_enc)
tarfile.pwd = None
tarfile.grp = None
root, mode, *args = sys.argv[1:]
os.chroot(root)
os.chdir('/')
sys.meta_path[:] = []
sys.path[:] = []
sys.path_hooks[:] = []

def warn(msg):
    sys.stderr.write('drydock cp: ' + msg + '\n')

def fail(msg, code=1):
    warn(msg)
    sys.stderr.flush()
    os._exit(code)

def kind(p):
    try:
        st = os.stat(p)
    except OSError:
        return 'missing'
    return 'dir' if stat.S_ISDIR(st.st_mode) else 'file'

class Padded:
    # A file that shrinks while it is archived is padded with zeros to the size in its header.
    def __init__(self, f):
        self.f = f
    def read(self, n):
        b = self.f.read(n)
        return b if len(b) >= n else b + bytes(n - len(b))

def create(src, arcname):
    if kind(src) == 'missing':
        fail('no such file or directory: ' + src, 2)
    top = os.path.realpath(src)
    out = tarfile.open(fileobj=sys.stdout.buffer, mode='w|', format=tarfile.PAX_FORMAT)
    seen = set()
    def add(p, name):
        # Each name once: a directory listed twice while it changes must not yield a symlink
        # entry and then entries beneath it.
        if name in seen:
            return
        seen.add(name)
        try:
            st = os.lstat(p)
            if stat.S_ISREG(st.st_mode):
                # O_NOFOLLOW|O_NONBLOCK: a file swapped for a symlink or a FIFO is skipped, not followed or waited on.
                fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY)
                with os.fdopen(fd, 'rb') as f:
                    fst = os.fstat(fd)
                    if not stat.S_ISREG(fst.st_mode) or (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino):
                        raise OSError(0, 'it changed while it was copied')
                    ti = out.gettarinfo(arcname=name, fileobj=f)
                    out.addfile(ti, Padded(f) if ti.size else None)
                return
            ti = out.gettarinfo(p, arcname=name)
            if ti is None:
                return
            out.addfile(ti)
            if ti.isdir():
                for child in sorted(os.listdir(p)):
                    add(p.rstrip('/') + '/' + child, name + '/' + child)
        except OSError as e:
            if name == arcname:
                fail(p + ': ' + (e.strerror or str(e)), 2)
            warn('skipping ' + p + ': ' + (e.strerror or str(e)))
    add(top, arcname)
    out.close()
    sys.stdout.buffer.flush()

def inside(name, what):
    n = posixpath.normpath(name.lstrip('/')) if name.strip('/') else '.'
    if n == '..' or n.startswith('../'):
        fail(what + ' ' + name + ' is outside of the destination', 1)
    return n

def extract(dest):
    try:
        os.chdir(dest)
    except OSError:
        fail('destination ' + dest + ' must be a directory in the container', 2)
    tar = tarfile.open(fileobj=sys.stdin.buffer, mode='r|*')
    def members():
        for m in tar:
            m.name = inside(m.name, 'archive entry')
            if m.islnk():
                m.linkname = inside(m.linkname, 'hard link target')
            if m.name != '.':
                try:
                    st = os.lstat(m.name)
                except OSError:
                    st = None
                # Replace what is there instead of writing through it (a file opened for writing
                # follows a symlink; the symlink stays inside the rootfs, but it is not what cp means).
                if st is not None and not stat.S_ISDIR(st.st_mode):
                    os.unlink(m.name)
            yield m
    tar.extractall('.', members=members(), numeric_owner=True)

try:
    if mode == 'stat':
        sys.stdout.write(kind(args[0]) + '\n')
    elif mode == 'mkdir':
        os.makedirs(args[0], exist_ok=True)
    elif mode == 'create':
        create(args[0], args[1])
    elif mode == 'extract':
        extract(args[0])
    else:
        fail('unknown mode ' + mode)
    sys.stdout.flush()
except (OSError, tarfile.TarError, EOFError) as e:
    fail(str(e))
`;

export interface ChrootTarOptions {
  stdin?: NodeJS.ReadableStream;
  stdout?: NodeJS.WritableStream;
}

/**
 * Runs one helper step chrooted into `rootfs`: `stat PATH` (prints dir|file|missing),
 * `mkdir PATH`, `create PATH ARCNAME` (tar to stdout) or `extract DIR` (tar from stdin).
 * Returns what it printed when no stdout stream is given.
 */
export async function chrootTar(rootfs: string, args: string[], o: ChrootTarOptions = {}): Promise<string> {
  const child = spawn(PYTHON, ['-I', '-S', '-c', HELPER, rootfs, ...args], { stdio: [o.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
  let err = '';
  let out = '';
  child.stderr!.on('data', (d) => (err += d));
  if (o.stdout) child.stdout!.pipe(o.stdout, { end: false });
  else child.stdout!.on('data', (d) => (out += d));
  if (o.stdin) {
    o.stdin.pipe(child.stdin!);
    child.stdin!.on('error', () => { /* the helper failed; its stderr says why */ });
  }
  const code = await new Promise<number>((resolve, reject) => {
    child.on('error', (e) => reject((e as NodeJS.ErrnoException).code === 'ENOENT' ? new UserError(`drydock cp needs ${PYTHON} (apt-get install python3)`) : e));
    child.on('close', (c) => resolve(c ?? 1));
  });
  if (o.stdin) o.stdin.unpipe(child.stdin!);
  if (code !== 0) throw new UserError(err.trim().split('\n').at(-1)?.replace(/^drydock cp: /, '') || `the cp helper exited with ${code}`);
  // Files skipped because they changed during the copy are reported, like GNU tar's warnings.
  if (err) process.stderr.write(err);
  return out;
}
