// The cache exporters' blob uploads (s3.ts, export.ts for registry and local): several at once,
// at most `parallelism`, as BuildKit's s3 exporter runs upload_parallelism workers over the
// layers and its registry pusher pushes layers concurrently. The first failure stops the
// workers from taking more blobs; the uploads already running finish (or fail) before it is
// thrown, so no request outlives the export.

/** Runs `upload` for each item, at most `parallelism` at a time; rejects with the first failure. */
export async function uploadEach<T>(items: readonly T[], parallelism: number, upload: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: { error: unknown } | undefined;
  const worker = async () => {
    while (!failure && next < items.length) {
      const item = items[next++]!;
      try {
        await upload(item);
      } catch (e) {
        failure ??= { error: e };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(parallelism, items.length)) }, worker));
  if (failure) throw failure.error;
}
