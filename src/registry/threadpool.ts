// Imported first by server.ts for its side effect: a larger libuv threadpool for the server.
// Every fs call runs on that pool, and a blob commit's fsync holds a thread for as long as the disk
// takes to flush the blob (tens of ms for 8 MiB here). With node's default 4 threads, four commits
// in flight stall every other request's reads, writes and stats behind them; distribution's Go
// runtime starts another OS thread for each blocking syscall (its filesystem driver also fsyncs
// every file it commits). The size is read once, when the pool first starts, so this only takes
// effect when nothing has used the pool yet: the installed `drydock serve` (a CommonJS bundle),
// not an ES-module entry whose loader reads files through the pool (tests, dist/src/cli/main.js).
// An operator's UV_THREADPOOL_SIZE wins.
/** Threads for `drydock serve`: one per client of a 32-client push, each possibly in fsync. */
export const SERVE_THREADPOOL_SIZE = 32;

if (!process.env.UV_THREADPOOL_SIZE) process.env.UV_THREADPOOL_SIZE = String(SERVE_THREADPOOL_SIZE);
