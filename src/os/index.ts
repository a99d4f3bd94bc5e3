// Machines that update themselves (docs/boot.md): the data partition of a disk made with
// `drydock disk --updates-from` holds each image layer once, as os/layers/<diffid>.squashfs or
// .erofs (--layer-format), and
// deployments that stack them; `drydock os` stages new ones from a registry, fetching only the
// layers the machine lacks, and every switch is one rename of os/state.json.
//
// For the disk builder (src/boot):
//  - seedOsRoot(root, src, ref, opts): writes os/ under `root` (the data partition's root) with
//    the image of `src` (e.g. new StoreImageSource(store, name)) as the default deployment,
//    tracking `ref`; opts.insecureRegistries / opts.authfile ("os/auth.json", copied there first)
//    go to state.json for the machine's own upgrades.
//  - convertLayer / OsLayout: one layer → squashfs or erofs; the paths of os/.
export { OsLayout, DEFAULT_OS_ROOT, DEFAULT_TRIES, DEFAULT_DEADLINE_SECONDS, DEFAULT_LAYER_FORMAT, LAYER_FORMATS, diffHex, layerFormatOf } from './layout.js';
export type { OsState, Deployment, DeploymentKernel, PendingDeployment, AbandonedDeployment, UpgradeRecord, LayerFormat } from './layout.js';
export { convertLayer, mkfsErofs } from './layers.js';
export type { ConvertedLayer } from './layers.js';
export { upgrade, stageImage, seedOsRoot, clientOptionsFor } from './upgrade.js';
export type { UpgradeOptions, UpgradeResult, StageEvent, StageOptions, StagedImage, SeedOptions } from './upgrade.js';
export { status, rollback, confirm } from './deployments.js';
export type { OsStatus, DeploymentStatus, RollbackResult, ConfirmResult } from './deployments.js';
export { withLock } from './lock.js';
export { stageKernel } from './kernel.js';
export type { KernelEvent } from './kernel.js';
export { bundleRuntime } from './bundle.js';
export type { BundleRuntimeOptions, RuntimeBundle } from './bundle.js';
