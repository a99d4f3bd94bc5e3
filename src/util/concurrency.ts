// Bounded concurrency over a list: image copies (layers at once) and the build cache's exporters
// (BuildKit's s3 exporter runs upload_parallelism workers; its registry pusher pushes layers
// concurrently); independent steps awaited together (a RUN step's preparation).

/**
 * Runs `fn` for each item, at most `limit` at a time; rejects with the first failure. After a
 * failure no worker takes another item, and the calls already running finish (or fail) before it
 * is thrown, so no request outlives the operation.
 */
export async function eachLimit<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: { error: unknown } | undefined;
  const worker = async () => {
    while (!failure && next < items.length) {
      const item = items[next++]!;
      try {
        await fn(item);
      } catch (e) {
        failure ??= { error: e };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  if (failure) throw failure.error;
}

/**
 * Awaits independent operations together and returns their results; once all have settled,
 * throws the first failure in argument order (the one a sequential version would have thrown),
 * so nothing still runs behind the error.
 */
export async function allSettledOrThrow<T extends readonly unknown[]>(promises: T): Promise<{ -readonly [K in keyof T]: Awaited<T[K]> }> {
  const results = await Promise.allSettled(promises);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
  return results.map((r) => (r as PromiseFulfilledResult<unknown>).value) as { -readonly [K in keyof T]: Awaited<T[K]> };
}
