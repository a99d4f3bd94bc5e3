// A user-facing error: the CLI prints its message without a stack trace and exits with `exitCode`.
// A wrapped error keeps what caused it (`{ cause }`), so a message can be rewritten for the user
// without losing the original's code and stack for --debug output and instanceof checks.
export class UserError extends Error {
  override name = 'UserError';
  readonly exitCode: number;
  constructor(message: string, opts: number | { exitCode?: number; cause?: unknown } = 1) {
    const o = typeof opts === 'number' ? { exitCode: opts } : opts;
    super(message, o.cause === undefined ? undefined : { cause: o.cause });
    this.exitCode = o.exitCode ?? 1;
  }
}

export class NotFoundError extends UserError {
  override name = 'NotFoundError';
}

/** A user error printed as it is, without "Error: ", where Docker's text has no such prefix. */
export class VerbatimError extends UserError {
  override name = 'VerbatimError';
}
