// Benchmark: the same Dockerfiles built with `docker build` (BuildKit), `buildah bud` and
// `drydock build` in one run — cold build (no cache), rebuild with one late line changed, fully
// cached rebuild — printing medians and drydock/docker and drydock/buildah ratios. Target
// (issue 15): every row <= 0.8x docker build.
//
//   npm run build && node dist/bench/build.js [rounds]   # drydock = bin/drydock.js (the bundle)
//   DRYDOCK_BENCH_CASES="40 MB,multi-stage" ...          # only the cases whose name contains one
//   DRYDOCK_CLI=$PWD/dist/src/cli/main.js ...            # another CLI (per-file tsc output)
//
// All tools share one busybox base (drydock's, loaded into buildah's private storage and into a
// private dockerd from test/helpers/dockerd.ts, Debian's docker.io with BuildKit on), run RUN
// steps with host networking, build from the same context directories, and have used the base
// once before the timed builds (docker load unpacks it; drydock and buildah do on first use).
// docker's CPU column is empty: BuildKit works inside dockerd, whose CPU time the client's does
// not include. DRYDOCK_TRACE=1 in the environment makes drydock print per-step timing spans.
import { promises as fsp } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { busyboxImage } from '../test/helpers/images.js';
import { requireTool, requireRoot } from '../test/helpers/env.js';
import { drydockCommand, isolatedPodman, measure, quote, median, scratchDir, printTable, cleanupDir, sh, shell } from './mkimage-common.js';
import { podmanStorageArgs } from '../test/helpers/podman.js';
import { startDockerd, DOCKER_CLIENT } from '../test/helpers/dockerd.js';

const ROUNDS = Number(process.argv[2] ?? process.env.DRYDOCK_BENCH_ROUNDS ?? 3);
const CASES = (process.env.DRYDOCK_BENCH_CASES ?? '').split(',').filter(Boolean);

interface Case {
  name: string;
  /** Dockerfile text; LATE marks the line the "edit" changes. */
  dockerfile: (late: string) => string;
  prepare(ctx: string): Promise<void>;
}

const cases: Case[] = [
  {
    name: 'seed-004 style (ADD tarball, 3 RUN, metadata)',
    dockerfile: (late) => `FROM docker.io/library/busybox:latest
ENV APP_HOME=/opt/app
ADD site.tar.gz /opt/app/
RUN mkdir -p /var/lib/app && echo built > /var/lib/app/state
RUN echo 'app:x:1001:1001::/opt/app:/bin/sh' >> /etc/passwd
EXPOSE 8080
VOLUME /var/lib/app
WORKDIR /opt/app
USER app
RUN echo ${late} > /tmp/late
CMD ["sh"]
`,
    prepare: writeSiteTarball,
  },
  {
    name: 'COPY 40 MB context + RUN',
    dockerfile: (late) => `FROM docker.io/library/busybox:latest
COPY data /data
RUN du -s /data > /du.txt
RUN echo ${late} > /late
`,
    async prepare(ctx) {
      for (let d = 0; d < 40; d++) {
        const dir = path.join(ctx, 'data', `d${d}`);
        await fsp.mkdir(dir, { recursive: true });
        for (let f = 0; f < 8; f++) await fsp.writeFile(path.join(dir, `f${f}.bin`), randomBytes(128 * 1024));
      }
    },
  },
  {
    // Two independent stages (one ADDs and unpacks the tarball, one builds a file tree) copied
    // into a final stage with COPY --from; the late line is in the final stage.
    name: 'multi-stage with COPY --from',
    dockerfile: (late) => `FROM docker.io/library/busybox:latest AS site
ADD site.tar.gz /srv/site/
RUN find /srv/site -name '*.html' | wc -l > /srv/site/count

FROM docker.io/library/busybox:latest AS tools
RUN mkdir -p /opt/tools/bin && for i in 1 2 3 4 5 6 7 8; do echo "echo tool $i" > /opt/tools/bin/tool$i; done && chmod +x /opt/tools/bin/*

FROM docker.io/library/busybox:latest
COPY --from=tools /opt/tools /opt/tools
COPY --from=site /srv/site /srv/site
ENV PATH=/opt/tools/bin:$PATH
RUN echo ${late} > /srv/late
CMD ["sh"]
`,
    prepare: writeSiteTarball,
  },
];

async function main(): Promise<void> {
  requireRoot();
  requireTool('buildah');
  requireTool('runc');
  const work = scratchDir('drydock-bench-build-');
  const root = path.join(work, 'store');
  const pmDir = path.join(work, 'podman');
  const pm = await isolatedPodman(pmDir);
  const dd = drydockCommand();
  // NODE_EXTRA_CA_CERTS (set globally on some CI machines) makes every Node start parse a CA
  // bundle (~50 ms here) although a local build never uses TLS; buildah pays nothing similar.
  const env = `env -u NODE_EXTRA_CA_CERTS DRYDOCK_ROOT=${root}`;
  const buildah = ['buildah', ...podmanStorageArgs(pmDir).slice(0, 6)];
  const dockerd = await startDockerd();
  const docker = `env DOCKER_HOST=${dockerd.host} DOCKER_CONFIG=${path.join(dockerd.dir, 'client')} DOCKER_BUILDKIT=1 ${DOCKER_CLIENT}`;
  try {
    await busyboxImage(root);
    const archive = path.join(work, 'busybox.tar');
    sh([...dd, 'save', '-o', archive, 'busybox:latest'], { env: { ...process.env, DRYDOCK_ROOT: root } });
    sh([...pm.argv, 'load', '-i', archive]);
    const loaded = await dockerd.docker(['load', '-i', archive]);
    if (loaded.code !== 0) throw new Error(`docker load: ${loaded.stderr}`);

    // Warm-up, not timed: `docker load` unpacks the base into overlay2, drydock and buildah
    // unpack it on first use. One RUN on the base by each tool puts all three at the same start.
    const warm = path.join(work, 'warm');
    await fsp.mkdir(warm, { recursive: true });
    await fsp.writeFile(path.join(warm, 'Dockerfile'), 'FROM docker.io/library/busybox:latest\nRUN true\n');
    shell(`${env} ${quote([...dd, 'build', '-q', '-t', 'warm:latest', warm])} > /dev/null`);
    shell(`${quote([...buildah, 'bud', '-q', '--layers', '--network', 'host', '--isolation', 'oci', '-t', 'localhost/warm:latest', warm])} > /dev/null`);
    shell(`${docker} build -q --network host -t warm:latest ${quote([warm])} > /dev/null`);

    const rows: [string, ...string[]][] = [];
    let cachedWorst = 0;
    for (const [i, c] of cases.entries()) {
      if (CASES.length && !CASES.some((x) => c.name.includes(x))) continue;
      const ctx = path.join(work, `ctx${i}`);
      await fsp.mkdir(ctx, { recursive: true });
      await c.prepare(ctx);
      const df = path.join(ctx, 'Dockerfile');
      type Series = { dd: number[]; bh: number[]; dk: number[]; ddCpu: number[]; bhCpu: number[]; dkCpu: number[] };
      const series = (): Series => ({ dd: [], bh: [], dk: [], ddCpu: [], bhCpu: [], dkCpu: [] });
      const results: Record<string, Series> = { cold: series(), edit: series(), cached: series() };
      const record = (phase: string, tool: 'dd' | 'bh' | 'dk', script: string) => {
        const t = measure(script);
        results[phase]![tool].push(t.wall);
        results[phase]![`${tool}Cpu`].push(t.cpu);
      };
      for (let r = 0; r < ROUNDS; r++) {
        await fsp.writeFile(df, c.dockerfile(`round${r}`));
        const ddBuild = (extra: string[]) => `${env} ${quote([...dd, 'build', '-q', ...extra, '-t', `bench${i}:latest`, ctx])} > /dev/null`;
        const bhBuild = (extra: string[]) => `${quote([...buildah, 'bud', '-q', '--layers', '--network', 'host', '--isolation', 'oci', ...extra, '-t', `localhost/bench${i}:latest`, ctx])} > /dev/null`;
        const dkBuild = (extra: string[]) => `${docker} build -q --network host ${quote([...extra, '-t', `bench${i}:latest`, ctx])} > /dev/null`;
        record('cold', 'dd', ddBuild(['--no-cache']));
        record('cold', 'bh', bhBuild(['--no-cache']));
        record('cold', 'dk', dkBuild(['--no-cache']));
        await fsp.writeFile(df, c.dockerfile(`round${r}-edited`));
        record('edit', 'dd', ddBuild([]));
        record('edit', 'bh', bhBuild([]));
        record('edit', 'dk', dkBuild([]));
        record('cached', 'dd', ddBuild([]));
        record('cached', 'bh', bhBuild([]));
        record('cached', 'dk', dkBuild([]));
      }
      for (const phase of ['cold', 'edit', 'cached'] as const) {
        const d = median(results[phase]!.dd);
        const b = median(results[phase]!.bh);
        const k = median(results[phase]!.dk);
        const dc = median(results[phase]!.ddCpu);
        const bc = median(results[phase]!.bhCpu);
        if (phase === 'cached') cachedWorst = Math.max(cachedWorst, d);
        const label = { cold: 'cold build', edit: 'one late line changed', cached: 'fully cached rebuild' }[phase];
        rows.push([c.name, label, `${d.toFixed(2)} s`, `${k.toFixed(2)} s`, `${(d / k).toFixed(2)}x`, `${b.toFixed(2)} s`, `${(d / b).toFixed(2)}x`, `${dc.toFixed(2)} s`, `${bc.toFixed(2)} s`, `${(dc / bc).toFixed(2)}x`]);
      }
    }
    printTable(`drydock build vs docker build (BuildKit) and buildah bud (median of ${ROUNDS}; wall clock, and CPU time incl. children; CLI: ${dd.slice(1).join(' ')})`, rows,
      ['Dockerfile', 'phase', 'drydock wall', 'docker wall', 'vs docker', 'buildah wall', 'vs buildah', 'drydock CPU', 'buildah CPU', 'CPU vs buildah']);
    console.log(`load average during the run: ${(await fsp.readFile('/proc/loadavg', 'utf8')).split(' ').slice(0, 3).join(' ')} (wall times on a shared, loaded host are mostly waiting; CPU time is the fair comparison there)`);
    const vsDocker = rows.map((r) => Number(r[4].replace('x', '')));
    console.log(`\ntarget: every row <= 0.8x docker build -> ${vsDocker.every((x) => x <= 0.8) ? 'met' : 'NOT met'} (${vsDocker.map((x) => `${x}x`).join(', ')}); fully cached worst ${cachedWorst.toFixed(2)} s`);
  } finally {
    await dockerd.stop();
    pm.cleanup();
    try { execFileSync('umount', ['-R', path.join(pmDir, 'root', 'overlay')], { stdio: 'ignore' }); } catch { /* not mounted */ }
    cleanupDir(work);
  }
}

await main();

/** The seed-style context: site.tar.gz of 200 small HTML pages, made by GNU tar. */
async function writeSiteTarball(ctx: string): Promise<void> {
  const site = path.join(ctx, '..', `site-${randomBytes(3).toString('hex')}`);
  await fsp.mkdir(site, { recursive: true });
  for (let i = 0; i < 200; i++) await fsp.writeFile(path.join(site, `page${i}.html`), `<h1>${i}</h1>\n`.repeat(200));
  sh(['tar', '-C', site, '-czf', path.join(ctx, 'site.tar.gz'), '.']);
}
