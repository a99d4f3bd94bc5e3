// The OCI image spec data model (image-spec v1.1), shared by every subsystem.
export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  urls?: string[];
  annotations?: Record<string, string>;
  data?: string;
  platform?: Platform;
  artifactType?: string;
}

export interface Platform {
  architecture: string;
  os: string;
  'os.version'?: string;
  'os.features'?: string[];
  variant?: string;
  features?: string[];
}

export interface ImageManifest {
  schemaVersion: 2;
  mediaType?: string;
  artifactType?: string;
  config: Descriptor;
  layers: Descriptor[];
  subject?: Descriptor;
  annotations?: Record<string, string>;
}

export interface ImageIndex {
  schemaVersion: 2;
  mediaType?: string;
  artifactType?: string;
  manifests: Descriptor[];
  subject?: Descriptor;
  annotations?: Record<string, string>;
}

export interface HealthConfig {
  Test?: string[];
  Interval?: number;
  Timeout?: number;
  StartPeriod?: number;
  StartInterval?: number;
  Retries?: number;
}

/** The "config" object of an image config: what a container starts with. Docker-compatible superset. */
export interface ContainerConfig {
  User?: string;
  ExposedPorts?: Record<string, Record<string, never>>;
  Env?: string[];
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  Volumes?: Record<string, Record<string, never>>;
  WorkingDir?: string;
  Labels?: Record<string, string>;
  StopSignal?: string;
  ArgsEscaped?: boolean;
  // Docker extensions, kept because Docker and buildah write and read them.
  Healthcheck?: HealthConfig;
  OnBuild?: string[] | null;
  Shell?: string[];
}

export interface HistoryEntry {
  created?: string;
  created_by?: string;
  author?: string;
  comment?: string;
  empty_layer?: boolean;
}

export interface ImageConfig {
  created?: string;
  author?: string;
  architecture: string;
  os: string;
  'os.version'?: string;
  'os.features'?: string[];
  variant?: string;
  config?: ContainerConfig;
  rootfs: { type: 'layers'; diff_ids: string[] };
  history?: HistoryEntry[];
}

export type Manifest = ImageManifest | ImageIndex;

export function isIndex(m: Manifest): m is ImageIndex {
  return Array.isArray((m as ImageIndex).manifests);
}
