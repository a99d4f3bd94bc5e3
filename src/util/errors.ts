// A user-facing error: the CLI prints its message without a stack trace and exits with `exitCode`.
export class UserError extends Error {
  override name = 'UserError';
  constructor(message: string, readonly exitCode = 1) {
    super(message);
  }
}

export class NotFoundError extends UserError {
  override name = 'NotFoundError';
}

/** A user error printed as it is, without "Error: ", where Docker's text has no such prefix. */
export class VerbatimError extends UserError {
  override name = 'VerbatimError';
}
