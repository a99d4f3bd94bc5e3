// Drives a command on a real pseudo-terminal (python3's pty module: the child gets a controlling
// terminal, so isTTY, raw mode and the detach keys behave as they do for a user). Steps send
// bytes and wait for text; the result is the exit status and everything the terminal showed.
import { spawn } from 'node:child_process';
import { requireTool } from './env.js';

export interface PtyStep { send?: string; expect?: string; timeoutSec?: number }
export interface PtyResult { code: number; out: string; error?: string }

const DRIVER = `
import os, pty, sys, time, select, json
argv, steps = json.loads(sys.argv[1]), json.loads(sys.argv[2])
pid, fd = pty.fork()
if pid == 0:
    os.execvp(argv[0], argv)
out = b''
def read_until(pat, timeout):
    global out
    end = time.time() + timeout
    while time.time() < end:
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            try: d = os.read(fd, 4096)
            except OSError: return None
            if not d: return None
            out += d
            if pat and pat.encode() in out: return True
    return False
for s in steps:
    if 'send' in s: os.write(fd, s['send'].encode())
    if 'expect' in s and not read_until(s['expect'], s.get('timeoutSec', 30)):
        os.kill(pid, 9)
        print(json.dumps({'code': -1, 'error': 'timed out waiting for ' + repr(s['expect']), 'out': out.decode(errors='replace')}))
        sys.exit(0)
# Read to the end: EIO once the terminal is gone, or the child has exited (a process it left
# behind may hold the terminal open; that is not this child's output). At most 5 minutes.
status = None
for _ in range(300):
    ended = read_until(None, 1) is None
    done, st = os.waitpid(pid, os.WNOHANG)
    if done:
        status = st
        read_until(None, 0.3)
        break
    if ended: break
if status is None:
    _, status = os.waitpid(pid, 0)
print(json.dumps({'code': os.waitstatus_to_exitcode(status), 'out': out.decode(errors='replace')}))
`;

export function runOnPty(argv: string[], steps: PtyStep[], env: NodeJS.ProcessEnv = {}): Promise<PtyResult> {
  requireTool('python3');
  return new Promise((resolve, reject) => {
    const p = spawn('python3', ['-c', DRIVER, JSON.stringify(argv), JSON.stringify(steps)], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
    let text = '';
    p.stdout.on('data', (d) => (text += d));
    p.on('error', reject);
    p.on('close', () => { try { resolve(JSON.parse(text)); } catch { reject(new Error(`pty driver printed ${text}`)); } });
  });
}
