// distribution's on-disk layout (registry/storage/paths.go), so an operator can point drydock at
// an existing registry:2 root and back. Every component comes from a validated repository name,
// tag, digest or upload id, never from raw request text.
import type { Digest } from '../../image/digest.js';

export const ROOT = '/docker/registry/v2';
export const BLOBS = `${ROOT}/blobs`;
export const REPOSITORIES = `${ROOT}/repositories`;
/** Not in distribution: one folder per running gc (its start stamp and the blobs it holds back). */
export const GC_RUNS = `${ROOT}/_drydock/gc`;

export const paths = {
  blobDir: (d: Digest) => `${BLOBS}/${d.algorithm}/${d.hex.slice(0, 2)}/${d.hex}`,
  blobData: (d: Digest) => `${BLOBS}/${d.algorithm}/${d.hex.slice(0, 2)}/${d.hex}/data`,
  repo: (name: string) => `${REPOSITORIES}/${name}`,
  layerLink: (name: string, d: Digest) => `${REPOSITORIES}/${name}/_layers/${d.algorithm}/${d.hex}/link`,
  layerLinkDir: (name: string, d: Digest) => `${REPOSITORIES}/${name}/_layers/${d.algorithm}/${d.hex}`,
  layers: (name: string) => `${REPOSITORIES}/${name}/_layers`,
  revisions: (name: string) => `${REPOSITORIES}/${name}/_manifests/revisions`,
  revisionLink: (name: string, d: Digest) => `${REPOSITORIES}/${name}/_manifests/revisions/${d.algorithm}/${d.hex}/link`,
  revisionDir: (name: string, d: Digest) => `${REPOSITORIES}/${name}/_manifests/revisions/${d.algorithm}/${d.hex}`,
  tags: (name: string) => `${REPOSITORIES}/${name}/_manifests/tags`,
  tagDir: (name: string, tag: string) => `${REPOSITORIES}/${name}/_manifests/tags/${tag}`,
  tagCurrent: (name: string, tag: string) => `${REPOSITORIES}/${name}/_manifests/tags/${tag}/current/link`,
  tagIndexEntry: (name: string, tag: string, d: Digest) => `${REPOSITORIES}/${name}/_manifests/tags/${tag}/index/${d.algorithm}/${d.hex}/link`,
  // Not in distribution 2.8 (it predates the referrers API): one descriptor file per referrer.
  referrersOf: (name: string, subject: Digest) => `${REPOSITORIES}/${name}/_referrers/${subject.algorithm}/${subject.hex}`,
  referrer: (name: string, subject: Digest, d: Digest) => `${REPOSITORIES}/${name}/_referrers/${subject.algorithm}/${subject.hex}/${d.algorithm}-${d.hex}`,
  uploads: (name: string) => `${REPOSITORIES}/${name}/_uploads`,
  uploadDir: (name: string, id: string) => `${REPOSITORIES}/${name}/_uploads/${id}`,
  uploadData: (name: string, id: string) => `${REPOSITORIES}/${name}/_uploads/${id}/data`,
  uploadStartedAt: (name: string, id: string) => `${REPOSITORIES}/${name}/_uploads/${id}/startedat`,
  // Not in distribution: held by the one request writing the upload (filesystem driver only).
  uploadLock: (name: string, id: string) => `${REPOSITORIES}/${name}/_uploads/${id}/writer.lock`,
  gcRun: (id: string) => `${GC_RUNS}/${id}`,
  gcStamp: (id: string) => `${GC_RUNS}/${id}/startedat`,
  gcHeldBlobs: (id: string) => `${GC_RUNS}/${id}/blobs`,
  gcHeldBlob: (id: string, d: Digest) => `${GC_RUNS}/${id}/blobs/${d.algorithm}-${d.hex}`,
  gcHeldLinks: (id: string) => `${GC_RUNS}/${id}/links`,
  gcHeldLink: (id: string, name: string, d: Digest) => `${GC_RUNS}/${id}/links/${name}/${d.algorithm}-${d.hex}`,
};
