// The container runtime: layer cache + overlay rootfs, OCI runtime spec generation and runc
// invocation (shared with the builder's RUN), plus the container lifecycle behind `drydock run`.
export { ensureLayersUnpacked, adoptUnpackedLayer, adoptUnpackedLayerSync, unpackedLayerDir, layerCacheDir, gcLayerCache, type LayerCacheGcResult, type LayerRef } from './layers.js';
export { mountRootfs, unmountPath, isMountPoint, type MountedRootfs, type MountRootfsOptions } from './overlay.js';
export {
  createRuntimeSpec, withDefaultPath, DEFAULT_CAPABILITIES, DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS, DEFAULT_PATH,
  type OciSpec, type OciMount, type OciResources, type RuntimeSpecOptions, type NetworkSpec,
} from './spec.js';
export { runOnce, runOnceCaptured, runcStateRoot, containerState, killContainer, deleteContainer, type RunOnceOptions, type RunResult } from './runc.js';
export { resolveUser, type ResolvedUser } from './user.js';
export { resolveInRoot, readFileInRoot, checkWorkdir } from './rootfs-path.js';
// Container lifecycle (what the CLI's container commands call).
export { createContainer, type CreateOptions } from './create.js';
export { runNew, startExisting, stopContainer, killCtr, removeContainer, execIn, commitContainer, inspectContainer, type RunOptions } from './lifecycle.js';
export { listContainers, findContainer, type Container, type ContainerRecord, type ContainerState } from './containers.js';
export { copy, splitContainerPath } from './cp.js';
export { createVolume, listVolumes, removeVolume, inspectVolume, type VolumeInfo } from './volumes.js';
export { parsePublish, startPortProxy, type PortBinding } from './ports.js';
export { sweepOrphans, createOwnedDir, clearOwnedDir, addOwnedContainer, killOwnedContainers, scratchRoot, type SweepResult } from './orphans.js';
export { parseUlimit, checkUlimits, type Rlimit } from './ulimits.js';
