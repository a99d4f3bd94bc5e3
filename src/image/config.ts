// Image configs for images that start from one layer (import, mkimage): one place decides the
// created time (SOURCE_DATE_EPOCH for reproducible digests), the platform and the history entry.
import { hostPlatform } from './platform.js';
import type { ContainerConfig, HistoryEntry, ImageConfig, Platform } from './types.js';

export interface SingleLayerConfigOptions {
  diffID: string;
  config: ContainerConfig;
  /** Default: the host's platform. */
  platform?: Platform;
  /** Seconds since the epoch for `created`; default now. */
  sourceDateEpoch?: number;
  history: Omit<HistoryEntry, 'created'>;
}

export function singleLayerConfig(opts: SingleLayerConfigOptions): ImageConfig {
  const created = (opts.sourceDateEpoch !== undefined ? new Date(opts.sourceDateEpoch * 1000) : new Date()).toISOString();
  const platform = opts.platform ?? hostPlatform();
  return {
    created,
    architecture: platform.architecture,
    os: platform.os,
    ...(platform.variant ? { variant: platform.variant } : {}),
    config: opts.config,
    rootfs: { type: 'layers', diff_ids: [opts.diffID] },
    history: [{ created, ...opts.history }],
  };
}
